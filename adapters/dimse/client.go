package dimse

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhealth/ferry/dicom"
)

// ClientConfig configures an association requested by Dial or NewClient.
type ClientConfig struct {
	// CallingAETitle is this side's AE title (default "FERRYSCU").
	CallingAETitle string
	// CalledAETitle is the peer's AE title (default DefaultAETitle, "FERRY").
	CalledAETitle string
	// Contexts are the presentation contexts to propose, one per entry, with IDs 1, 3, 5…
	// Default: Verification with explicit and implicit VR little endian.
	Contexts []ProposedContext
	// MaxPDULength is the largest P-DATA-TF PDU this side receives (default
	// DefaultMaxPDULength; 0 is not "no limit" here).
	MaxPDULength uint32
	// MaxDataSetSize caps a data set received by Receive (default 64 MiB).
	MaxDataSetSize int
	// TLSConfig, when set, makes Dial use TLS.
	TLSConfig *tls.Config
	// Timeout bounds the association handshake and each read or write when the context has no
	// earlier deadline (default 30s).
	Timeout time.Duration
}

// ProposedContext is a presentation context to propose: an abstract syntax and its transfer
// syntaxes (default: explicit, then implicit VR little endian).
type ProposedContext struct {
	SOPClass         string
	TransferSyntaxes []string
}

// Client is the requestor side of one association (an SCU): it sends requests and receives
// responses, one goroutine at a time for each direction. Ferry's own tests use it against its
// Server, and it can talk to any DICOM SCP.
type Client struct {
	conn    net.Conn
	cfg     ClientConfig
	pr      pduReader
	w       messageWriter
	asm     messageAssembler
	pending []PDV
	ac      *AssociateAC
	ctxs    map[byte]clientContext
	nextID  atomic.Uint32
	closeMu sync.Mutex
	closed  bool
}

type clientContext struct {
	sopClass, transferSyntax string
}

// Dial connects to addr and requests an association. A rejection is an *AssociateRejectError.
func Dial(ctx context.Context, addr string, cfg ClientConfig) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dimse: connecting to %s: %w", addr, err)
	}
	if cfg.TLSConfig != nil {
		tc := tls.Client(conn, cfg.TLSConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("dimse: TLS handshake with %s: %w", addr, err)
		}
		conn = tc
	}
	return NewClient(ctx, conn, cfg)
}

// NewClient requests an association over conn, which the Client then owns (and closes on
// failure).
func NewClient(ctx context.Context, conn net.Conn, cfg ClientConfig) (*Client, error) {
	if cfg.CallingAETitle == "" {
		cfg.CallingAETitle = "FERRYSCU"
	}
	if cfg.CalledAETitle == "" {
		cfg.CalledAETitle = DefaultAETitle
	}
	if len(cfg.Contexts) == 0 {
		cfg.Contexts = []ProposedContext{{SOPClass: VerificationSOPClass}}
	}
	if cfg.MaxPDULength == 0 {
		cfg.MaxPDULength = DefaultMaxPDULength
	}
	if cfg.MaxDataSetSize == 0 {
		cfg.MaxDataSetSize = 64 << 20
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if len(cfg.Contexts) > 128 {
		conn.Close()
		return nil, errors.New("dimse: more than 128 presentation contexts")
	}
	c := &Client{conn: conn, cfg: cfg, ctxs: map[byte]clientContext{}}
	c.pr = pduReader{r: conn, maxPData: cfg.MaxPDULength}
	c.w = messageWriter{conn: conn}
	c.asm = messageAssembler{maxData: cfg.MaxDataSetSize}

	rq := &AssociateRQ{
		ProtocolVersion:    1,
		CalledAETitle:      cfg.CalledAETitle,
		CallingAETitle:     cfg.CallingAETitle,
		ApplicationContext: ApplicationContextName,
		UserInfo: UserInfo{
			MaxPDULength:              cfg.MaxPDULength,
			ImplementationClassUID:    dicom.ImplementationClassUID,
			ImplementationVersionName: dicom.ImplementationVersionName,
		},
	}
	for i, pc := range cfg.Contexts {
		ts := pc.TransferSyntaxes
		if len(ts) == 0 {
			ts = defaultTransferSyntaxes
		}
		rq.PresentationContexts = append(rq.PresentationContexts,
			PresentationContextRQ{ID: byte(2*i + 1), AbstractSyntax: pc.SOPClass, TransferSyntaxes: ts})
	}
	stop := c.watch(ctx)
	defer stop()
	if err := c.w.writePDU(rq); err != nil {
		conn.Close()
		return nil, fmt.Errorf("dimse: sending A-ASSOCIATE-RQ: %w", err)
	}
	p, err := c.pr.next(nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("dimse: waiting for A-ASSOCIATE-AC: %w", err)
	}
	switch p := p.(type) {
	case *AssociateAC:
		c.ac = p
	case *AssociateRJ:
		conn.Close()
		return nil, &AssociateRejectError{RJ: *p}
	case *Abort:
		conn.Close()
		return nil, &AbortError{Abort: *p}
	default:
		c.Abort()
		return nil, fmt.Errorf("dimse: %s in answer to A-ASSOCIATE-RQ", p.PDUType())
	}
	for _, pc := range c.ac.PresentationContexts {
		if pc.Result != PresentationAccepted || pc.ID%2 == 0 || int(pc.ID/2) >= len(cfg.Contexts) {
			continue
		}
		c.ctxs[pc.ID] = clientContext{sopClass: cfg.Contexts[pc.ID/2].SOPClass, transferSyntax: pc.TransferSyntax}
	}
	if m := c.ac.UserInfo.MaxPDULength; m != 0 && m < 7 {
		c.Abort()
		return nil, fmt.Errorf("dimse: peer's maximum PDU length %d leaves no room for data", m)
	}
	c.w.peerMax = c.ac.UserInfo.MaxPDULength
	return c, nil
}

// watch applies ctx (its deadline, or Timeout, and its cancellation) to the connection until
// the returned function is called.
func (c *Client) watch(ctx context.Context) (stop func()) {
	deadline := time.Now().Add(c.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.conn.SetDeadline(deadline)
	cancelWatch := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
	return func() { cancelWatch() }
}

// AssociateAC returns the peer's A-ASSOCIATE-AC.
func (c *Client) AssociateAC() *AssociateAC { return c.ac }

// Context returns the accepted presentation context for a SOP class: its ID and transfer syntax.
func (c *Client) Context(sopClass string) (id byte, transferSyntax string, ok bool) {
	for id := byte(1); int(id) < 2*len(c.cfg.Contexts); id += 2 {
		if pc, found := c.ctxs[id]; found && pc.sopClass == sopClass {
			return id, pc.transferSyntax, true
		}
	}
	return 0, "", false
}

// NewMessageID returns a message ID not used before on this association (wrapping after 65535).
func (c *Client) NewMessageID() uint16 { return uint16(c.nextID.Add(1)) }

// Send sends one message on the presentation context: cmd, then the data set read from data
// (already encoded in the context's transfer syntax), if data is not nil. It sets
// cmd.HasDataSet accordingly.
func (c *Client) Send(ctx context.Context, contextID byte, cmd *Command, data io.Reader) error {
	if _, ok := c.ctxs[contextID]; !ok {
		return fmt.Errorf("dimse: presentation context %d was not accepted", contextID)
	}
	cmd.HasDataSet = data != nil
	b, err := cmd.Encode()
	if err != nil {
		return err
	}
	stop := c.watch(ctx)
	defer stop()
	return c.w.writeMessage(contextID, b, data)
}

// Receive returns the next message from the peer. An A-ABORT is an *AbortError; an
// A-RELEASE-RQ from the peer is answered and gives ErrReleased.
func (c *Client) Receive(ctx context.Context) (*Message, error) {
	stop := c.watch(ctx)
	defer stop()
	for {
		for len(c.pending) > 0 {
			v := c.pending[0]
			c.pending = c.pending[1:]
			msg, err := c.asm.add(v)
			if err != nil {
				var pe *ProtocolError
				if errors.As(err, &pe) {
					c.abortWith(AbortServiceProvider, pe.Reason)
				}
				return nil, err
			}
			if msg != nil {
				return msg, nil
			}
		}
		p, err := c.pr.next(nil)
		if err != nil {
			var pe *PDUError
			var tl *PDUTooLargeError
			if errors.As(err, &pe) {
				c.abortWith(AbortServiceProvider, pe.Reason)
			} else if errors.As(err, &tl) {
				c.abortWith(AbortServiceProvider, AbortReasonInvalidPDUParamValue)
			}
			return nil, err
		}
		switch p := p.(type) {
		case *PDataTF:
			c.pending = append(c.pending, p.Items...)
		case *Abort:
			c.Close()
			return nil, &AbortError{Abort: *p}
		case *ReleaseRQ:
			_ = c.w.writePDU(&ReleaseRP{})
			c.Close()
			return nil, ErrReleased
		default:
			c.abortWith(AbortServiceProvider, AbortReasonUnexpectedPDU)
			return nil, fmt.Errorf("dimse: unexpected %s", p.PDUType())
		}
	}
}

// Echo sends a C-ECHO-RQ on the Verification context and returns the response's status.
func (c *Client) Echo(ctx context.Context) (dicom.Status, error) {
	id, _, ok := c.Context(VerificationSOPClass)
	if !ok {
		return 0, errors.New("dimse: the Verification SOP class was not accepted")
	}
	msgID := c.NewMessageID()
	if err := c.Send(ctx, id, &Command{Field: CEchoRQ, MessageID: msgID, AffectedSOPClassUID: VerificationSOPClass}, nil); err != nil {
		return 0, err
	}
	msg, err := c.Receive(ctx)
	if err != nil {
		return 0, err
	}
	if msg.Command.Field != CEchoRSP || msg.Command.MessageIDBeingRespondedTo != msgID {
		return 0, fmt.Errorf("dimse: got %s for message %d in answer to C-ECHO-RQ %d",
			msg.Command.Field, msg.Command.MessageIDBeingRespondedTo, msgID)
	}
	return msg.Command.Status, nil
}

// FindFunc receives one pending C-FIND response: its command (Status is StatusPending or
// StatusPendingWarning) and its identifier, decoded. Returning false asks the peer to stop.
type FindFunc func(rsp *Command, match *dicom.DataSet) bool

// Find runs one C-FIND (PS3.7 9.1.2) on the accepted presentation context of sopClass (e.g.
// ModalityWorklistFindSOPClass, or a Query/Retrieve FIND SOP class of a PACS): it sends
// identifier, encoded in the context's transfer syntax, at medium priority, and calls fn with
// each match as it arrives. When fn returns false, Find sends C-CANCEL-RQ and reads on, without
// calling fn again, to the final response. It returns the final response's command: Status
// (StatusSuccess, StatusCancel, or a failure with its ErrorComment). An error means the
// exchange broke off (the association ended, a response did not decode); the association is
// then in no state to reuse: Abort it.
func (c *Client) Find(ctx context.Context, sopClass string, identifier *dicom.DataSet, fn FindFunc) (*Command, error) {
	id, ts, ok := c.Context(sopClass)
	if !ok {
		return nil, fmt.Errorf("dimse: SOP class %s was not accepted", sopClass)
	}
	body, err := dicom.EncodeDataSet(identifier, ts)
	if err != nil {
		return nil, fmt.Errorf("dimse: encoding the C-FIND identifier: %w", err)
	}
	msgID := c.NewMessageID()
	cmd := &Command{Field: CFindRQ, MessageID: msgID, AffectedSOPClassUID: sopClass, Priority: PriorityMedium}
	if err := c.Send(ctx, id, cmd, bytes.NewReader(body)); err != nil {
		return nil, err
	}
	cancelled := false
	for {
		msg, err := c.Receive(ctx)
		if err != nil {
			return nil, err
		}
		rsp := msg.Command
		if rsp.Field != CFindRSP || rsp.MessageIDBeingRespondedTo != msgID {
			return nil, fmt.Errorf("dimse: got %s for message %d in answer to C-FIND-RQ %d", rsp.Field, rsp.MessageIDBeingRespondedTo, msgID)
		}
		if !rsp.Status.IsPending() {
			return rsp, nil
		}
		if cancelled {
			continue // sent before the peer saw the C-CANCEL-RQ
		}
		var match *dicom.DataSet
		if msg.Data != nil {
			if match, err = dicom.DecodeDataSet(msg.Data, ts, dicom.DecodeOptions{}); err != nil {
				return nil, fmt.Errorf("dimse: C-FIND response identifier: %w", err)
			}
		}
		if !fn(rsp, match) {
			cancelled = true
			if err := c.Send(ctx, id, &Command{Field: CCancelRQ, MessageIDBeingRespondedTo: msgID}, nil); err != nil {
				return nil, err
			}
		}
	}
}

// Release releases the association (A-RELEASE-RQ, then A-RELEASE-RP) and closes the connection.
func (c *Client) Release(ctx context.Context) error {
	defer c.Close()
	stop := c.watch(ctx)
	defer stop()
	if err := c.w.writePDU(&ReleaseRQ{}); err != nil {
		return fmt.Errorf("dimse: sending A-RELEASE-RQ: %w", err)
	}
	for {
		p, err := c.pr.next(nil)
		if err != nil {
			return fmt.Errorf("dimse: waiting for A-RELEASE-RP: %w", err)
		}
		switch p := p.(type) {
		case *ReleaseRP:
			return nil
		case *Abort:
			return &AbortError{Abort: *p}
		case *PDataTF:
			// a late response; dropped
		default:
			return fmt.Errorf("dimse: %s in answer to A-RELEASE-RQ", p.PDUType())
		}
	}
}

// Abort sends A-ABORT (service user) and closes the connection.
func (c *Client) Abort() error {
	return c.abortWith(AbortServiceUser, AbortReasonNotSpecified)
}

func (c *Client) abortWith(source AbortSource, reason AbortReason) error {
	err := c.w.writePDUWithin(&Abort{Source: source, Reason: reason}, 2*time.Second)
	c.Close()
	return err
}

// Close closes the connection without releasing the association.
func (c *Client) Close() error {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	return c.conn.Close()
}
