package dimse

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/internal/connlimit"
	"github.com/ferryhealth/ferry/internal/listener"
)

// Defaults the Server applies to zero fields.
const (
	DefaultAddr     = ":11112" // the customary unprivileged DICOM port (104 needs root)
	DefaultAETitle  = "FERRY"
	DefaultMaxConns = 200
	// DefaultMaxConnsPerAddr caps the connections from one source address: 200 idle
	// connections from one machine must not lock everyone else out.
	DefaultMaxConnsPerAddr = 20
	// DefaultHandshakeTimeout bounds a TLS handshake, done before the connection takes one of
	// MaxConns.
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultMaxPDULength     = 128 << 10 // 131072, the largest dcmtk proposes
	DefaultARTIMTimeout     = 30 * time.Second
	DefaultReadTimeout      = 30 * time.Second
	// DefaultIdleTimeout aborts an association on which nothing happens for a minute (Orthanc
	// uses 30 s): an idle association holds a slot.
	DefaultIdleTimeout  = time.Minute
	DefaultWriteTimeout = 30 * time.Second
)

// VerificationSOPClass is the Verification SOP class (PS3.4 annex A), served with C-ECHO.
const VerificationSOPClass = "1.2.840.10008.1.1"

// defaultTransferSyntaxes are the transfer syntaxes accepted for a Service that declares none,
// in order of preference: explicit VR little endian, then the default, implicit VR little
// endian, which every DICOM implementation supports (PS3.5 10.1).
var defaultTransferSyntaxes = []string{dicom.ExplicitVRLittleEndian, dicom.ImplicitVRLittleEndian}

// ErrServerClosed is returned by Serve and ListenAndServe after Shutdown was called.
var ErrServerClosed = errors.New("dimse: server closed")

// ErrCancelRequested is the cause (context.Cause) of a handler's context when the peer sent a
// C-CANCEL-RQ for its request (PS3.7 9.3.2.3 for C-FIND). The handler should stop and answer
// StatusCancel; if it returns without a final response, the Server sends StatusCancel.
var ErrCancelRequested = errors.New("dimse: C-CANCEL-RQ received")

// ErrResponded is returned by ResponseWriter.Respond after the final response was sent.
var ErrResponded = errors.New("dimse: final response already sent")

// ErrAssociationClosed is the cause of a handler's context, and what ResponseWriter.Respond and
// reading Request.Data return, when the association ended (A-ABORT, connection lost, Shutdown's
// deadline) before the operation completed.
var ErrAssociationClosed = errors.New("dimse: association closed")

// Handler carries out the DIMSE operations of one SOP class. The Server calls ServeDIMSE once
// per request, on its own goroutine, as soon as the request's command set has arrived; requests
// on one association come one at a time (no asynchronous operations are negotiated), and
// associations run concurrently.
//
// The handler answers through w: any number of pending responses (C-FIND matches), then exactly
// one final response, which ends the operation. If it returns without a final response, the
// Server sends StatusProcessingFailure (StatusCancel after a C-CANCEL-RQ). A C-STORE handler
// must send its success status only once the instance is durably stored (DESIGN.md rule 1).
//
// ctx is cancelled with cause ErrCancelRequested when the peer cancels this request, and with
// ErrAssociationClosed when the association ends. A panic in ServeDIMSE is recovered and logged;
// the association is aborted.
type Handler interface {
	ServeDIMSE(ctx context.Context, req *Request, w ResponseWriter)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req *Request, w ResponseWriter)

// ServeDIMSE calls fn(ctx, req, w).
func (fn HandlerFunc) ServeDIMSE(ctx context.Context, req *Request, w ResponseWriter) {
	fn(ctx, req, w)
}

// Service registers a Handler for one SOP class (abstract syntax).
type Service struct {
	// SOPClass is the abstract syntax UID proposed in presentation contexts, e.g.
	// VerificationSOPClass or the Modality Worklist Information Model - FIND SOP class.
	SOPClass string
	// TransferSyntaxes the handler can read and write, in order of preference: the first of
	// them that the peer proposed is accepted. Empty: explicit VR little endian, then implicit
	// VR little endian. A C-STORE service that keeps instances as received may list compressed
	// transfer syntaxes too.
	TransferSyntaxes []string
	Handler          Handler
	// Operation is what serving this SOP class lets a caller do, for Server.Peers and
	// Server.UnknownCallers (OpStore, OpFindWorklist, OpEcho). Empty: the SOP class UID.
	Operation Operation
}

// operation is the Operation the Service belongs to.
func (svc *Service) operation() Operation {
	if svc.Operation != "" {
		return svc.Operation
	}
	if svc.SOPClass == VerificationSOPClass {
		return OpEcho
	}
	return Operation(svc.SOPClass)
}

// Request is one DIMSE request handed to a Handler.
type Request struct {
	Command *Command
	// ContextID, SOPClass and TransferSyntax describe the presentation context the request came
	// on: its abstract syntax and the transfer syntax of its data set.
	ContextID      byte
	SOPClass       string
	TransferSyntax string
	Association    *Association
	// Data streams the request's data set (C-FIND identifier, C-STORE instance) as its
	// fragments arrive, encoded in TransferSyntax; nil when Command.HasDataSet is false. It ends
	// with io.EOF after the last fragment, or with ErrAssociationClosed. Only as much as the
	// handler reads is held in memory (one PDU), so a C-STORE handler can copy it to a file of
	// any size. What the handler leaves unread is discarded when it sends its final response.
	Data io.Reader
	// ReceivedAt is when the command set had arrived.
	ReceivedAt time.Time
}

// ReadDataSet reads the whole of Data and decodes it, refusing more than maxBytes: the way to
// get a C-FIND identifier. It returns an error wrapping io.ErrShortBuffer when the data set is
// larger, a *DataSetError when it does not decode, and nil, nil when there is no data set.
func (r *Request) ReadDataSet(maxBytes int64) (*dicom.DataSet, error) {
	if r.Data == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Data, maxBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > maxBytes {
		return nil, fmt.Errorf("dimse: data set larger than %d bytes: %w", maxBytes, io.ErrShortBuffer)
	}
	return dicom.DecodeDataSet(b, r.TransferSyntax, dicom.DecodeOptions{})
}

// Association describes an accepted association: the peer and what was negotiated. None of it
// is patient data; all of it may be logged.
type Association struct {
	CallingAETitle string // the peer's AE title
	CalledAETitle  string // this server's, as the peer addressed it
	RemoteAddr     string
	// TLS is the connection's TLS state, nil without TLS.
	TLS                       *tls.ConnectionState
	ImplementationClassUID    string
	ImplementationVersionName string
	// PeerMaxPDULength is the largest P-DATA-TF PDU the peer receives (0: no limit).
	PeerMaxPDULength uint32
}

// ResponseWriter sends a Handler's responses. Respond may be called from the handler's goroutine
// only.
type ResponseWriter interface {
	// Respond sends one response message. A pending status (StatusPending, StatusPendingWarning)
	// may be sent any number of times; any other status is final: it ends the operation, and
	// later calls return ErrResponded. Before sending a final response, Respond discards what is
	// left unread of Request.Data and waits for the data set's last fragment, since a response
	// may not overtake its request. It returns an error when the response could not be sent
	// (the association ended); the handler then has nothing more to do.
	Respond(rsp Response) error
}

// Response is one response message. The Server fills in the command field, the message ID
// responded to, the affected SOP class and instance UIDs (from the request) and the data set
// type.
type Response struct {
	Status dicom.Status
	// DataSet, when not nil, is sent after the command: a C-FIND match, for instance. It is
	// encoded in the request's transfer syntax.
	DataSet *dicom.DataSet
	// ErrorComment (0000,0902), for failure and warning statuses: at most 64 characters, no
	// patient data.
	ErrorComment string
	// Other are more command elements (group 0000), e.g. OffendingElement (0000,0901).
	Other []*dicom.Element
}

// Observer receives the listener's counts, so the engine can feed them to Prometheus without
// this package depending on it. Its methods are called from connection goroutines,
// concurrently, and must not block. Every string argument is one of this package's fixed
// strings or a CommandField's String, safe as metric labels.
type Observer interface {
	// ConnOpened and ConnClosed bracket every connection served under MaxConns.
	ConnOpened()
	ConnClosed()
	// ConnRejected is called for a connection over MaxConns (answered A-ASSOCIATE-RJ
	// transient, local-limit-exceeded, when possible).
	ConnRejected()
	// Association reports the outcome of an A-ASSOCIATE-RQ: one of the Assoc* constants.
	Association(result string)
	// Operation reports a completed DIMSE operation: the request's command, its final status and
	// the time from request to final response.
	Operation(command CommandField, status dicom.Status, d time.Duration)
	// Aborted reports an association or connection ended abnormally: one of the Abort* kinds.
	Aborted(kind string)
}

// Results passed to Observer.Association.
const (
	AssocAccepted                = "accepted"
	AssocRejectedCalledAETitle   = "rejected_called_ae_title"
	AssocRejectedCallingAETitle  = "rejected_calling_ae_title"
	AssocRejectedAppContext      = "rejected_application_context"
	AssocRejectedProtocolVersion = "rejected_protocol_version"
	AssocRejectedConnectionLimit = "rejected_connection_limit"
	AssocAcceptedNoContexts      = "accepted_no_presentation_context" // AC sent, but every context was refused
)

// Kinds passed to Observer.Aborted.
const (
	AbortPeer         = "peer"          // the peer sent A-ABORT
	AbortProtocol     = "protocol"      // the peer broke the protocol; Ferry sent A-ABORT
	AbortTooLarge     = "pdu_too_large" // a PDU over MaxPDULength; Ferry sent A-ABORT
	AbortTimeout      = "timeout"       // ARTIM, read or idle timeout; Ferry sent A-ABORT or closed
	AbortConnLost     = "connection"    // the connection broke or closed without release
	AbortShutdown     = "shutdown"      // Shutdown ended the association; Ferry sent A-ABORT
	AbortHandlerPanic = "handler_panic" // a handler panicked; Ferry sent A-ABORT
	AbortHandshake    = "tls_handshake" // the TLS handshake failed
)

// Server is a DICOM listener: the upper layer (PS3.8) and DIMSE message exchange (PS3.7) for
// the Services registered. Set its fields, then call ListenAndServe or Serve; the fields must not
// change after that. Zero fields take the defaults named below.
type Server struct {
	// AETitle is the called AE title this server answers to (default DefaultAETitle, "FERRY").
	// An association addressed to another title is rejected: A-ASSOCIATE-RJ, rejected-permanent,
	// source service-user, reason 7 (called-AE-title-not-recognized).
	AETitle string
	// CallingAETitles, when not empty, is the allow-list of peers' AE titles, from any address
	// and for every operation; any other is rejected with reason 3
	// (calling-AE-title-not-recognized) unless UnknownCallers allows it something. Kept for
	// older configurations: Peers says the same and binds titles to addresses and certificates;
	// the two do not go together.
	CallingAETitles []string
	// Peers are the known callers: AE titles bound to addresses and/or client certificates,
	// with the operations each may perform. A caller claiming a listed title from elsewhere is
	// rejected (reason 3). With neither Peers nor CallingAETitles every caller may do
	// everything (a demo) unless Restricted.
	Peers []Peer
	// Restricted applies UnknownCallers even when neither Peers nor CallingAETitles lists
	// anyone: a listener that serves no known caller yet, and unknown ones only what the policy
	// allows.
	Restricted bool
	// UnknownCallers is what callers whose AE title is not among Peers (or CallingAETitles)
	// may do. An operation refused is a presentation context refused (user-rejection), so the
	// caller's request never reaches a handler; a caller allowed nothing is rejected at
	// A-ASSOCIATE-RQ (reason 3). The zero value refuses everything.
	UnknownCallers CallerPolicy
	// Services are the SOP classes served. Verification (C-ECHO) is always served: by the
	// built-in handler unless a Service for VerificationSOPClass is listed.
	Services []Service
	// TLSConfig is the TLS of the listeners served with ServeTLS (DICOM TLS, PS3.15 B.1;
	// mutual TLS with ClientAuth set). Serve's listeners are plain TCP.
	TLSConfig *tls.Config
	// MaxConns caps concurrent connections (default DefaultMaxConns). One over the cap is
	// answered A-ASSOCIATE-RJ rejected-transient, local-limit-exceeded, and closed.
	MaxConns int
	// MaxConnsPerAddr caps the connections from one source address, TLS handshakes in
	// progress included (default DefaultMaxConnsPerAddr; negative: no cap, for a site whose
	// callers all come through one proxy). One over the cap is closed at once.
	MaxConnsPerAddr int
	// HandshakeTimeout bounds a TLS handshake (default DefaultHandshakeTimeout). The handshake
	// happens before the connection takes one of MaxConns, so a peer that connects and says
	// nothing holds no slot.
	HandshakeTimeout time.Duration
	// MaxPDULength is the largest P-DATA-TF PDU (less its 6-byte header) this server receives,
	// announced to the peer in the A-ASSOCIATE-AC (default DefaultMaxPDULength, at least
	// MinMaxPDULength). A larger PDU aborts the association.
	MaxPDULength uint32
	// ARTIMTimeout bounds the wait for the A-ASSOCIATE-RQ after connecting (TLS handshake
	// included) and for the peer to close the connection after a rejection or release
	// (PS3.8 9.1.5; default 30s).
	ARTIMTimeout time.Duration
	// ReadTimeout bounds receiving one PDU once its header has arrived, and the gap between the
	// fragments of one message (default 30s): the defence against a trickling peer.
	ReadTimeout time.Duration
	// IdleTimeout aborts an association on which nothing happens — no PDU, no operation in
	// progress — for this long (default 10 minutes).
	IdleTimeout time.Duration
	// WriteTimeout bounds writing one PDU (default 30s).
	WriteTimeout time.Duration
	// Logger receives association and operation events: addresses, AE titles, SOP classes,
	// statuses, sizes; never data set contents. nil: no logs.
	Logger *slog.Logger
	// Metrics, when set, receives counts (see Observer).
	Metrics Observer

	mu         sync.Mutex                       // guards services and validated
	life       listener.Lifecycle[*association] // the listeners and associations, until Shutdown
	active     atomic.Int64                     // connections being served, for MaxConns
	rejecting  atomic.Int64                     // connections over MaxConns being answered A-ASSOCIATE-RJ
	handshakes connlimit.Handshakes             // TLS handshakes in progress, at most maxHandshakes
	perAddr    connlimit.PerAddress             // connections (and handshakes) per source address
	services   map[string]*Service
	validated  bool
}

// maxHandshakes caps the TLS handshakes in progress, apart from MaxConns: a handshake holds
// no slot, and lasts at most HandshakeTimeout.
const maxHandshakes = 256

// maxRejecting caps the connections over MaxConns that get an A-ASSOCIATE-RJ; beyond it they
// are closed at once.
const maxRejecting = 32

// Validate checks the configuration and reports every problem it finds. Serve calls it.
func (s *Server) Validate() error {
	var errs []error
	if s.AETitle != "" {
		if err := checkAETitle(s.AETitle); err != nil {
			errs = append(errs, fmt.Errorf("AETitle: %w", err))
		}
	}
	for i, t := range s.CallingAETitles {
		if err := checkAETitle(t); err != nil {
			errs = append(errs, fmt.Errorf("CallingAETitles[%d]: %w", i, err))
		}
	}
	if s.MaxPDULength != 0 && s.MaxPDULength < MinMaxPDULength {
		errs = append(errs, fmt.Errorf("MaxPDULength %d is below the minimum %d", s.MaxPDULength, MinMaxPDULength))
	}
	errs = append(errs, s.validatePeers()...)
	seen := map[string]int{}
	for i, svc := range s.Services {
		switch {
		case svc.SOPClass == "":
			errs = append(errs, fmt.Errorf("services[%d]: SOPClass is empty", i))
		case svc.Handler == nil:
			errs = append(errs, fmt.Errorf("services[%d] (%s): Handler is nil", i, svc.SOPClass))
		}
		if j, dup := seen[svc.SOPClass]; dup && svc.SOPClass != "" {
			errs = append(errs, fmt.Errorf("services[%d]: SOP class %s already registered by services[%d]", i, svc.SOPClass, j))
		}
		seen[svc.SOPClass] = i
		for _, ts := range svc.TransferSyntaxes {
			if ts == "" {
				errs = append(errs, fmt.Errorf("services[%d] (%s): empty transfer syntax", i, svc.SOPClass))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("dimse: invalid server configuration: %w", errors.Join(errs...))
	}
	return nil
}

// checkAETitle applies PS3.5's AE value rules: 1 to 16 characters, not only spaces, no
// backslash or control characters.
func checkAETitle(t string) error {
	switch {
	case strings.TrimSpace(t) == "":
		return errors.New("AE title is empty")
	case len(t) > 16:
		return fmt.Errorf("AE title %q is longer than 16 characters", t)
	case strings.ContainsFunc(t, func(r rune) bool { return r < 0x20 || r == '\\' || r > 0x7E }):
		return fmt.Errorf("AE title %q holds a backslash or a non-printable character", t)
	}
	return nil
}

// ListenAndServe listens on the TCP address addr (DefaultAddr when empty) and serves it until
// Shutdown, after which it returns ErrServerClosed.
func (s *Server) ListenAndServe(addr string) error {
	if s.life.ShuttingDown() {
		return ErrServerClosed
	}
	if err := s.prepare(); err != nil {
		return err
	}
	if addr == "" {
		addr = DefaultAddr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening for DICOM on %s: %w", addr, err)
	}
	return s.Serve(ln)
}

// prepare validates the configuration and builds the service table, once.
func (s *Server) prepare() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.validated {
		return nil
	}
	if err := s.Validate(); err != nil {
		return err
	}
	s.services = make(map[string]*Service, len(s.Services)+1)
	for i := range s.Services {
		svc := s.Services[i]
		if len(svc.TransferSyntaxes) == 0 {
			svc.TransferSyntaxes = defaultTransferSyntaxes
		}
		s.services[svc.SOPClass] = &svc
	}
	s.perAddr.Max = s.maxConnsPerAddr()
	s.handshakes.Max, s.handshakes.Timeout = maxHandshakes, s.handshakeTimeout()
	if _, ok := s.services[VerificationSOPClass]; !ok {
		s.services[VerificationSOPClass] = &Service{SOPClass: VerificationSOPClass,
			TransferSyntaxes: defaultTransferSyntaxes, Handler: HandlerFunc(serveEcho)}
	}
	s.validated = true
	return nil
}

// serveEcho is the built-in Verification SCP (PS3.4 A.4, PS3.7 9.3.5): success to C-ECHO-RQ,
// unrecognized-operation to anything else on the Verification context.
func serveEcho(_ context.Context, req *Request, w ResponseWriter) {
	if req.Command.Field != CEchoRQ {
		_ = w.Respond(Response{Status: dicom.StatusUnrecognizedOperation})
		return
	}
	_ = w.Respond(Response{Status: dicom.StatusSuccess})
}

// Serve accepts plain TCP connections on ln and serves each on its own goroutine until
// Shutdown, after which it returns ErrServerClosed. It closes ln when it returns. Any other
// error means the configuration is invalid or the listener failed.
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, nil) }

// ServeTLS is Serve for DICOM TLS (PS3.15 B.1, the "secure transport connection profile"):
// every connection on ln starts with a TLS handshake under TLSConfig, done within
// HandshakeTimeout before the connection takes one of MaxConns. dcmtk's tools speak it with
// +tls (customarily on port 2762).
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.TLSConfig == nil {
		ln.Close()
		return errors.New("dimse: ServeTLS without a TLSConfig")
	}
	return s.serve(ln, s.TLSConfig)
}

func (s *Server) serve(ln net.Listener, tlsConfig *tls.Config) error {
	if err := s.prepare(); err != nil {
		ln.Close()
		return err
	}
	log := s.logger()
	err := s.life.Serve(ln, log, "DICOM", func(rwc net.Conn) error { return s.accept(rwc, tlsConfig, log) })
	if errors.Is(err, listener.ErrClosed) {
		return ErrServerClosed
	}
	return err
}

// accept admits one connection: its address's share, then (TLS) a handshake place and the
// handshake on a goroutine of its own, then a slot (start). It returns listener.ErrClosed once
// the server is shutting down.
func (s *Server) accept(rwc net.Conn, tlsConfig *tls.Config, log *slog.Logger) error {
	ip, ok := s.perAddr.Take(rwc.RemoteAddr())
	if !ok {
		if s.Metrics != nil {
			s.Metrics.ConnRejected()
		}
		log.Warn("DICOM connection refused: too many connections from this address",
			"remote", rwc.RemoteAddr().String(), "max_conns_per_addr", s.maxConnsPerAddr())
		rwc.Close()
		return nil
	}
	if tlsConfig == nil {
		if !s.start(rwc, rwc, nil, ip) {
			return listener.ErrClosed
		}
		return nil
	}
	// The handshake runs under its own short timeout and a cap of its own, before the
	// connection takes a slot.
	if !s.handshakes.Begin() {
		s.perAddr.Give(ip)
		if s.Metrics != nil {
			s.Metrics.ConnRejected()
		}
		log.Warn("DICOM connection refused: too many TLS handshakes in progress", "remote", rwc.RemoteAddr().String())
		rwc.Close()
		return nil
	}
	go func() {
		tc, err := s.handshakes.Handshake(s.life.Context(), rwc, tlsConfig)
		if err != nil {
			rwc.Close()
			s.perAddr.Give(ip)
			if s.Metrics != nil {
				s.Metrics.Aborted(AbortHandshake)
			}
			if !s.life.ShuttingDown() {
				s.logger().Warn("DICOM TLS handshake failed", "remote", rwc.RemoteAddr().String(), "err", err)
			}
			return
		}
		st := tc.ConnectionState()
		s.start(rwc, tc, &st, ip)
	}()
	return nil
}

// start gives a connection (its TLS handshake done) one of MaxConns and serves it, or answers
// it A-ASSOCIATE-RJ when none is free. It reports false when the server is shutting down.
func (s *Server) start(rwc, conn net.Conn, st *tls.ConnectionState, ip string) bool {
	if s.active.Add(1) > int64(s.maxConns()) {
		s.active.Add(-1)
		if s.Metrics != nil {
			s.Metrics.ConnRejected()
		}
		s.logger().Warn("DICOM connection refused: connection limit reached",
			"remote", rwc.RemoteAddr().String(), "max_conns", s.maxConns())
		if s.rejecting.Add(1) > maxRejecting {
			s.rejecting.Add(-1)
			rwc.Close()
			s.perAddr.Give(ip)
			return true
		}
		go func() {
			s.rejectBusy(conn)
			s.perAddr.Give(ip)
		}()
		return true
	}
	a := s.newAssociation(rwc, conn, st)
	a.ip = ip
	if !s.life.Track(a) {
		s.active.Add(-1)
		s.perAddr.Give(ip)
		rwc.Close()
		return false
	}
	go a.serve()
	return true
}

// rejectBusy answers a connection over MaxConns: it waits (briefly) for the A-ASSOCIATE-RQ and
// answers A-ASSOCIATE-RJ rejected-transient, local-limit-exceeded (PS3.8 table 9-21), so the
// peer knows to retry later.
func (s *Server) rejectBusy(rwc net.Conn) {
	defer s.rejecting.Add(-1)
	defer rwc.Close()
	if s.Metrics != nil {
		s.Metrics.Association(AssocRejectedConnectionLimit)
	}
	deadline := time.Now().Add(min(s.artimTimeout(), 5*time.Second))
	_ = rwc.SetDeadline(deadline)
	pr := pduReader{r: rwc, maxPData: MinMaxPDULength}
	if p, err := pr.next(nil); err != nil || p.PDUType() != TypeAssociateRQ {
		return
	}
	_ = WritePDU(rwc, &AssociateRJ{Result: RejectTransient, Source: SourceServiceProviderPresentation, Reason: ReasonLocalLimitExceeded})
	drainUntilClosed(rwc, deadline)
}

// drainUntilClosed reads and drops whatever the peer sends until it closes the connection or
// the deadline passes: the wait of state Sta13 (PS3.8 9.2), after a rejection or release.
func drainUntilClosed(c net.Conn, deadline time.Time) {
	_ = c.SetReadDeadline(deadline)
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 1<<20))
}

// Addr returns the address of the first listener being served, or nil before Serve has started
// and after it returned. Tests and the serve command use it to learn the port chosen for ":0".
func (s *Server) Addr() net.Addr { return s.life.Addr() }

// Shutdown stops the server gracefully: it closes the listeners, aborts (A-ABORT) every
// association with no operation and no PDU in progress, and lets each of the others finish the
// operation in hand — receive its data set, run its handler, send its final response — before
// aborting it. DICOM leaves the release of an association to its requestor, so an A-ABORT after
// a completed operation is the acceptor's way to end it; no response is lost by it. Shutdown
// returns nil once all connections are closed. If ctx ends first, it closes the remaining
// connections, cancels their handlers' contexts with ErrAssociationClosed and returns ctx's
// error; an operation cut off that way got no success response, so its requestor retries it.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.life.Shutdown(ctx, (*association).abortIfIdle, (*association).closeNow, ErrAssociationClosed)
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Server) aeTitle() string {
	if s.AETitle == "" {
		return DefaultAETitle
	}
	return strings.TrimSpace(s.AETitle)
}

func (s *Server) maxPDULength() uint32 {
	if s.MaxPDULength == 0 {
		return DefaultMaxPDULength
	}
	return s.MaxPDULength
}

func (s *Server) maxConns() int { return orDefault(s.MaxConns, DefaultMaxConns) }
func (s *Server) handshakeTimeout() time.Duration {
	return orDefault(s.HandshakeTimeout, DefaultHandshakeTimeout)
}

// maxConnsPerAddr is the cap per source address; 0 means none.
func (s *Server) maxConnsPerAddr() int {
	switch {
	case s.MaxConnsPerAddr < 0:
		return 0
	case s.MaxConnsPerAddr == 0:
		return DefaultMaxConnsPerAddr
	}
	return s.MaxConnsPerAddr
}
func (s *Server) artimTimeout() time.Duration { return orDefault(s.ARTIMTimeout, DefaultARTIMTimeout) }
func (s *Server) readTimeout() time.Duration  { return orDefault(s.ReadTimeout, DefaultReadTimeout) }
func (s *Server) idleTimeout() time.Duration  { return orDefault(s.IdleTimeout, DefaultIdleTimeout) }
func (s *Server) writeTimeout() time.Duration { return orDefault(s.WriteTimeout, DefaultWriteTimeout) }
func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// panicText describes a panic value without risking data set contents in the log: runtime errors
// (nil dereference, index out of range) are safe to print; for anything else only its type.
func panicText(p any) string {
	if re, ok := p.(runtime.Error); ok {
		return re.Error()
	}
	return fmt.Sprintf("value of type %T", p)
}
