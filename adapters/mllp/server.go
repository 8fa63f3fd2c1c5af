package mllp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhealth/ferry/internal/connlimit"
	"github.com/ferryhealth/ferry/internal/listener"
)

// Defaults the Server applies to zero fields.
const (
	DefaultAddr               = ":2575" // the IANA-registered HL7 MLLP port
	DefaultMaxConns           = 1000
	DefaultMaxConnsPerAddress = 50
	DefaultMaxHandshakes      = 128
	DefaultReadTimeout        = 30 * time.Second
	DefaultFirstFrameTimeout  = 30 * time.Second
	DefaultIdleTimeout        = 10 * time.Minute
	DefaultWriteTimeout       = 10 * time.Second
	DefaultHandshakeTimeout   = 10 * time.Second
)

// ErrServerClosed is returned by Serve and ListenAndServe after Shutdown was called.
var ErrServerClosed = errors.New("mllp: server closed")

// Handler answers one received message. The Server calls ServeMLLP once per frame, in the order
// the frames arrived on a connection, and the connection waits for it: MLLP is synchronous, the
// peer sends its next message only after the ACK. Handlers for different connections run
// concurrently.
//
// ServeMLLP returns the bytes to send back, typically an ACK, which the Server frames and writes;
// nil sends nothing. The engine must return its ACK only once the message is committed
// (DESIGN.md rule 1). For a frame with TooLarge set, or with empty Data, it should answer with a
// NAK. ctx is cancelled when the Server gives up on the connection (Shutdown's deadline passed).
// A panic in ServeMLLP is recovered: it is logged, nothing is sent, and that connection is closed.
type Handler interface {
	ServeMLLP(ctx context.Context, f *Frame) []byte
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, f *Frame) []byte

// ServeMLLP calls fn(ctx, f).
func (fn HandlerFunc) ServeMLLP(ctx context.Context, f *Frame) []byte { return fn(ctx, f) }

// Frame is one message as received, handed to a Handler.
type Frame struct {
	// Data is the message: the bytes between the block characters, exactly as received. It is
	// the handler's own copy and may be kept. Empty (non-nil) for an empty frame. For a TooLarge
	// frame, only the first min(HeadSize, MaxMessageSize) bytes.
	Data []byte
	// TooLarge reports that the message exceeded the Server's MaxMessageSize: it was read to its
	// end but not kept whole.
	TooLarge bool
	// Size is the message's full size in bytes (between the block characters); len(Data)
	// unless TooLarge.
	Size int64
	// ReceivedAt is when the frame had been read completely.
	ReceivedAt time.Time
	// RemoteAddr is the peer's address, host:port.
	RemoteAddr string
	// TLS is the connection's TLS state, nil without TLS. Under mutual TLS its PeerCertificates
	// and VerifiedChains hold the client's verified certificate.
	TLS *tls.ConnectionState
}

// Observer receives the listener's counts, so the engine can feed them to Prometheus without
// this package depending on it. Its methods are called from connection goroutines, concurrently,
// and must not block.
type Observer interface {
	// ConnOpened is called when a connection is accepted under the limit; ConnClosed when that
	// connection ends, whatever the reason.
	ConnOpened()
	ConnClosed()
	// ConnRejected is called for a connection closed at once because a limit was reached:
	// MaxConns, MaxConnsPerAddress or MaxHandshakes.
	ConnRejected()
	// Discarded reports n more bytes dropped because they came outside a frame.
	Discarded(n int64)
	// FrameError reports a problem with a connection's input, by kind: one of the FrameErr*
	// constants. Each kind says whether the connection was closed.
	FrameError(kind string)
}

// Kinds passed to Observer.FrameError. They are fixed strings, safe as metric labels.
const (
	FrameErrTooLarge  = "too_large"     // a message over MaxMessageSize; handed on as TooLarge, connection kept
	FrameErrTruncated = "truncated"     // the peer closed inside a frame; nothing handed on; connection closed
	FrameErrTimeout   = "timeout"       // a frame not complete within ReadTimeout; connection closed
	FrameErrRead      = "read"          // another read error inside a frame (e.g. reset); connection closed
	FrameErrHandshake = "tls_handshake" // the TLS handshake failed or timed out; connection closed
	FrameErrPanic     = "handler_panic" // the handler panicked; nothing sent; connection closed
	FrameErrWrite     = "write"         // writing the answer failed or timed out; connection closed
)

// Server is an MLLP listener. Set its fields, then call ListenAndServe or Serve; the fields must
// not change after that. One Server may serve several listeners. Zero fields take the defaults
// named below.
type Server struct {
	// Handler answers each message. Required.
	Handler Handler
	// TLSConfig, when set, makes every connection TLS; with ClientAuth set to
	// tls.RequireAndVerifyClientCert it is mutual TLS. internal/tlsconfig.Server builds one
	// from PEM files. nil: plain TCP.
	TLSConfig *tls.Config
	// MaxConns caps concurrent connections (default DefaultMaxConns, 1000). A connection over the
	// cap is accepted and closed at once, logged and reported to Metrics.ConnRejected. Under TLS
	// a connection takes its slot only once its handshake has completed, so peers that open
	// connections and never finish a handshake cannot fill the slots.
	MaxConns int
	// MaxConnsPerAddress caps the connections open (or in their TLS handshake) from one source
	// IP address (default DefaultMaxConnsPerAddress, 50; negative: no cap, for a listener behind a
	// TCP load balancer that hides the peers' addresses). One peer cannot take every slot. A
	// connection over the cap is closed at once, logged and reported to Metrics.ConnRejected.
	MaxConnsPerAddress int
	// MaxHandshakes caps the TLS handshakes in progress at once (default DefaultMaxHandshakes,
	// 128); a connection beyond it is closed at once and reported to Metrics.ConnRejected.
	MaxHandshakes int
	// HandshakeTimeout bounds the TLS handshake (default 10s); when it fires the connection is
	// closed, having taken no slot.
	HandshakeTimeout time.Duration
	// MaxMessageSize caps one message in bytes (default DefaultMaxMessageSize, 16 MiB). A larger
	// message is read to its end, not kept, and handed to the Handler as a TooLarge Frame.
	MaxMessageSize int
	// ReadTimeout bounds receiving one whole frame once its start block has arrived (default
	// 30s): the defence against a peer that trickles a frame byte by byte. When it fires the
	// connection is closed.
	ReadTimeout time.Duration
	// FirstFrameTimeout closes a connection whose first frame has not started this long after
	// it was accepted (after its TLS handshake) (default 30s): a connection that sends nothing
	// gives its slot back soon. Bytes outside frames do not extend it.
	FirstFrameTimeout time.Duration
	// IdleTimeout closes a connection on which no frame is in progress for this long, once it
	// has sent a frame (default 10 minutes): a sender that keeps its connection open between
	// messages. Bytes outside frames do not extend it.
	IdleTimeout time.Duration
	// WriteTimeout bounds writing one answer (default 10s).
	WriteTimeout time.Duration
	// Logger receives connection events: peer addresses, byte counts, errors; never message
	// contents. nil: no logs.
	Logger *slog.Logger
	// Metrics, when set, receives counts (see Observer).
	Metrics Observer

	life       listener.Lifecycle[*serverConn] // the listeners and connections, until Shutdown
	active     atomic.Int64                    // connections being served, for MaxConns
	limitsOnce sync.Once
	perAddr    connlimit.PerAddress // connections open or in their handshake per source IP
	handshakes connlimit.Handshakes // TLS handshakes in progress, for MaxHandshakes
}

// serverConn is one accepted connection.
type serverConn struct {
	rwc         net.Conn
	addr        string // the peer's IP address, its key in Server.perAddr; "" before taken and once given back
	handshaking bool   // it holds a place among MaxHandshakes (TLS, until its handshake ends)
	slot        bool   // it holds one of the MaxConns slots
	state       atomic.Int32
}

const (
	stateIdle    int32 = iota // no frame in progress: Shutdown may close it
	stateActive               // a frame is being read, handled or answered: Shutdown waits
	stateClosing              // Shutdown closed it
)

// ListenAndServe listens on the TCP address addr (DefaultAddr, ":2575", when empty) and serves
// it until Shutdown, after which it returns ErrServerClosed. Any other error means the server
// could not listen or the listener failed.
func (s *Server) ListenAndServe(addr string) error {
	if s.life.ShuttingDown() {
		return ErrServerClosed
	}
	if addr == "" {
		addr = DefaultAddr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening for MLLP on %s: %w", addr, err)
	}
	return s.Serve(ln)
}

// Serve accepts connections on ln and serves each in its own goroutine until Shutdown, after
// which it returns ErrServerClosed. It closes ln when it returns. Any other error means the
// listener failed (or Handler is nil); connections already open keep being served.
func (s *Server) Serve(ln net.Listener) error {
	if s.Handler == nil {
		ln.Close()
		return errors.New("mllp: Server.Handler is nil")
	}
	log := s.logger()
	err := s.life.Serve(ln, log, "MLLP", func(rwc net.Conn) error {
		c := &serverConn{rwc: rwc}
		if !s.admit(c, log) {
			rwc.Close()
			if s.Metrics != nil {
				s.Metrics.ConnRejected()
			}
			return nil
		}
		if !s.life.Track(c) {
			s.release(c)
			rwc.Close()
			return listener.ErrClosed
		}
		go s.serveConn(c)
		return nil
	})
	if errors.Is(err, listener.ErrClosed) {
		return ErrServerClosed
	}
	return err
}

// admit applies the limits to a connection just accepted: its address's share, then a handshake
// place under TLS (the slot is taken once the handshake is done), or a slot without TLS. It
// reports whether the connection may go on; if not, it has logged why and taken nothing.
func (s *Server) admit(c *serverConn, log *slog.Logger) bool {
	s.limitsOnce.Do(s.setLimits)
	remote := c.rwc.RemoteAddr().String()
	key, ok := s.perAddr.Take(c.rwc.RemoteAddr())
	if !ok {
		log.Warn("MLLP connection refused: per-address connection limit reached",
			"remote", remote, "max_conns_per_address", s.MaxConnsPerAddress)
		return false
	}
	c.addr = key
	if s.TLSConfig != nil {
		if !s.handshakes.Begin() {
			s.release(c)
			log.Warn("MLLP connection refused: too many TLS handshakes in progress",
				"remote", remote, "max_handshakes", s.maxHandshakes())
			return false
		}
		c.handshaking = true
		return true
	}
	if !s.takeSlot(c) {
		s.release(c)
		log.Warn("MLLP connection refused: connection limit reached", "remote", remote, "max_conns", s.maxConns())
		return false
	}
	return true
}

// setLimits sets the per-address and handshake limits from the fields, once, before the first
// connection is admitted.
func (s *Server) setLimits() {
	s.perAddr.Max = s.MaxConnsPerAddress // negative: no cap
	if s.MaxConnsPerAddress == 0 {
		s.perAddr.Max = DefaultMaxConnsPerAddress
	}
	s.handshakes.Max = s.maxHandshakes()
	s.handshakes.Timeout = s.handshakeTimeout()
}

// takeSlot takes one of the MaxConns slots for c, if one is free.
func (s *Server) takeSlot(c *serverConn) bool {
	if s.active.Add(1) > int64(s.maxConns()) {
		s.active.Add(-1)
		return false
	}
	c.slot = true
	return true
}

// release gives back what c holds: its slot, its handshake place while it has not finished its
// handshake, and its address's share.
func (s *Server) release(c *serverConn) {
	if c.handshaking {
		s.handshakes.End()
		c.handshaking = false
	}
	if c.slot {
		s.active.Add(-1)
		c.slot = false
	}
	if c.addr != "" {
		s.perAddr.Give(c.addr)
		c.addr = ""
	}
}

// Addr returns the address of the first listener being served, or nil before Serve has started
// and after it returned. Tests and the serve command use it to learn the port chosen for ":0".
func (s *Server) Addr() net.Addr { return s.life.Addr() }

// Shutdown stops the server gracefully: it closes the listeners, closes every connection that
// has no frame in progress, and lets each of the others finish the message in hand (reading the
// frame, the handler, writing the answer) before closing it. It returns nil once all connections
// are closed. If ctx ends first, it closes the remaining connections, cancels their handlers'
// context and returns ctx's error without waiting for the handlers to return; messages cut off
// that way were not acknowledged, so their senders send them again.
func (s *Server) Shutdown(ctx context.Context) error {
	closeIdle := func(c *serverConn) {
		if c.state.CompareAndSwap(stateIdle, stateClosing) {
			c.rwc.Close()
		}
	}
	closeNow := func(c *serverConn) {
		c.state.Store(stateClosing)
		c.rwc.Close()
	}
	return s.life.Shutdown(ctx, closeIdle, closeNow, context.Canceled)
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Server) maxConns() int              { return orDefault(s.MaxConns, DefaultMaxConns) }
func (s *Server) maxHandshakes() int         { return orDefault(s.MaxHandshakes, DefaultMaxHandshakes) }
func (s *Server) readTimeout() time.Duration { return orDefault(s.ReadTimeout, DefaultReadTimeout) }
func (s *Server) idleTimeout() time.Duration { return orDefault(s.IdleTimeout, DefaultIdleTimeout) }
func (s *Server) firstFrameTimeout() time.Duration {
	return orDefault(s.FirstFrameTimeout, DefaultFirstFrameTimeout)
}
func (s *Server) handshakeTimeout() time.Duration {
	return orDefault(s.HandshakeTimeout, DefaultHandshakeTimeout)
}
func (s *Server) writeTimeout() time.Duration {
	return orDefault(s.WriteTimeout, DefaultWriteTimeout)
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// serveConn reads frames from one connection until it ends, handing each to the Handler.
func (s *Server) serveConn(c *serverConn) {
	remote := c.rwc.RemoteAddr().String()
	log := s.logger().With("remote", remote)
	var (
		frames     int64
		discarded  int64
		closeKind  string // why the connection ended, when it was a problem
		closeError error
	)
	opened := false // it took a slot and was reported opened
	defer func() {
		if p := recover(); p != nil { // a bug in this package: keep the server up
			log.Error("MLLP connection goroutine panicked", "panic", panicText(p), "stack", string(debug.Stack()))
		}
		c.rwc.Close()
		s.life.Untrack(c)
		s.release(c)
		attrs := []any{"frames", frames, "discarded_bytes", discarded}
		switch {
		case closeKind != "":
			log.Warn("MLLP connection closed: "+closeKind, append(attrs, "err", closeError)...)
		case discarded > 0:
			log.Warn("MLLP connection closed; bytes outside frames were dropped", attrs...)
		default:
			log.Debug("MLLP connection closed", attrs...)
		}
		// Counted once logged, so whoever watches the count finds the line written.
		if opened && s.Metrics != nil {
			s.Metrics.ConnClosed()
		}
	}()
	fail := func(kind string, err error) {
		closeKind, closeError = kind, err
		if s.Metrics != nil {
			s.Metrics.FrameError(kind)
		}
	}

	conn := c.rwc
	var tlsState *tls.ConnectionState
	if s.TLSConfig != nil {
		// The handshake holds a handshake place, not a slot: peers that never finish one cannot
		// keep senders that do out (issue 17). It must finish within HandshakeTimeout.
		tc, err := s.handshakes.Handshake(s.life.Context(), c.rwc, s.TLSConfig)
		c.handshaking = false
		if err != nil {
			if c.state.Load() != stateClosing {
				fail(FrameErrHandshake, err)
			}
			return
		}
		if !s.takeSlot(c) {
			log.Warn("MLLP connection refused after its TLS handshake: connection limit reached", "max_conns", s.maxConns())
			if s.Metrics != nil {
				s.Metrics.ConnRejected()
			}
			return
		}
		st := tc.ConnectionState()
		tlsState = &st
		conn = tc
	}
	opened = true
	if s.Metrics != nil {
		s.Metrics.ConnOpened()
	}
	log.Debug("MLLP connection opened", "tls", tlsState != nil)

	ctx, cancel := context.WithCancel(s.life.Context())
	defer cancel()
	fr := NewReader(conn, s.MaxMessageSize)
	fr.onFrameStart = func() {
		if c.state.CompareAndSwap(stateIdle, stateActive) {
			_ = conn.SetReadDeadline(time.Now().Add(s.readTimeout()))
		}
	}
	w := NewWriter(conn)

	for {
		if s.life.ShuttingDown() {
			return
		}
		// Until its first frame a connection gets FirstFrameTimeout, after that IdleTimeout.
		wait := s.idleTimeout()
		if frames == 0 {
			wait = s.firstFrameTimeout()
		}
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		msg, err := fr.NextOwned()
		if d := fr.Discarded() - discarded; d > 0 {
			discarded += d
			if s.Metrics != nil {
				s.Metrics.Discarded(d)
			}
		}
		if c.state.Load() == stateClosing {
			return // closed by Shutdown; a frame read whole meanwhile was not answered, so it is resent
		}
		f := &Frame{ReceivedAt: time.Now(), RemoteAddr: remote, TLS: tlsState}
		var tooLarge *TooLargeError
		switch {
		case err == nil:
			f.Data = msg // the handler's own (NextOwned), non-nil
			f.Size = int64(len(msg))
		case errors.As(err, &tooLarge):
			f.Data, f.TooLarge, f.Size = tooLarge.Head, true, tooLarge.Size
			if s.Metrics != nil {
				s.Metrics.FrameError(FrameErrTooLarge)
			}
			log.Warn("MLLP message over the size limit; handing its head to the handler",
				"size", tooLarge.Size, "limit", tooLarge.Limit)
		case err == io.EOF:
			return // the peer closed between frames
		case errors.Is(err, ErrTruncated):
			fail(FrameErrTruncated, fmt.Errorf("peer closed after %d bytes of a frame: %w", fr.partial, err))
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			if fr.inFrame {
				fail(FrameErrTimeout, fmt.Errorf("frame not complete within %s (%d bytes read): %w", s.readTimeout(), fr.partial, err))
			} else {
				log.Debug("MLLP connection idle; closing", "timeout", wait, "frames", frames)
			}
			return
		default:
			if fr.inFrame {
				fail(FrameErrRead, err)
			} else {
				log.Debug("MLLP connection read error between frames", "err", err)
			}
			return
		}
		frames++

		ack, ok := s.callHandler(ctx, f, log)
		if !ok {
			fail(FrameErrPanic, errors.New("handler panicked; no answer sent"))
			return
		}
		if ack != nil {
			_ = conn.SetWriteDeadline(time.Now().Add(s.writeTimeout()))
			if err := w.WriteMsg(ack); err != nil {
				if c.state.Load() != stateClosing { // not cut off by Shutdown's deadline
					fail(FrameErrWrite, err)
				}
				return
			}
		}
		c.state.Store(stateIdle)
	}
}

// callHandler runs the handler, recovering a panic; ok is false when it panicked.
func (s *Server) callHandler(ctx context.Context, f *Frame, log *slog.Logger) (ack []byte, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("MLLP handler panicked; closing the connection without an answer",
				"panic", panicText(p), "stack", string(debug.Stack()))
			ack, ok = nil, false
		}
	}()
	return s.Handler.ServeMLLP(ctx, f), true
}

// panicText describes a panic value without risking message contents in the log: runtime errors
// (nil dereference, index out of range) are safe to print; for anything else only its type.
func panicText(p any) string {
	if re, ok := p.(runtime.Error); ok {
		return re.Error()
	}
	return fmt.Sprintf("value of type %T", p)
}
