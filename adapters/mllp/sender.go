package mllp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhealth/ferry/hl7"
)

// Sender defaults.
const (
	DefaultSendTimeout = 30 * time.Second
	DefaultDialTimeout = 10 * time.Second
)

var (
	// ErrAckTimeout is returned by Sender.Send when no matching ACK came within the timeout
	// (including the time spent reconnecting). The message may or may not have been received;
	// send it again later with the same MSH-10 so the receiver can drop a duplicate.
	ErrAckTimeout = errors.New("mllp: no ACK within the timeout")
	// ErrSenderClosed is returned by Sender.Send after Close.
	ErrSenderClosed = errors.New("mllp: sender closed")
	// ErrNoControlID is returned by Sender.Send, before anything is sent, for a message without
	// MSH-10: its ACK could not be told from another's (DESIGN.md rule 2).
	ErrNoControlID = errors.New("mllp: message has no MSH-10 control ID to match its ACK")
)

// NAKError is returned by Sender.Send, together with the ACK, when the peer answered the message
// with anything but MSA-1 AA or CA: AE/CE (error: the message may be sent again once the cause is
// fixed), AR/CR (rejected), or a missing or unknown code. Error text holds no message content.
type NAKError struct {
	Code      string // MSA-1 as received (AE, AR, CE, CR, or something else, possibly empty)
	ControlID string // MSH-10 of the message sent, echoed in MSA-2
}

// Error names the code and the control ID.
func (e *NAKError) Error() string {
	return fmt.Sprintf("mllp: message %s answered %q", e.ControlID, e.Code)
}

// Sender delivers messages to one MLLP peer (an EHR, a downstream system) and waits for each
// ACK. The outbox and `ferry send` use it. It keeps one connection open, opening it on the first
// Send and again on the next Send after it breaks. It has no backoff of its own: a Send that
// cannot connect fails at once, and when to try again is its caller's to say (the deliverer's
// retry policy and probes, issue 18). Sends are one at a time, as MLLP requires; Send
// is safe for concurrent use and queues callers.
//
// Set the fields before the first Send; they must not change after.
type Sender struct {
	// Addr is the peer's host:port.
	Addr string
	// TLSConfig, when set, makes the connection TLS; put a client certificate in it for mutual
	// TLS. When its ServerName is empty, the host of Addr is verified.
	TLSConfig *tls.Config
	// Timeout bounds one Send: reconnecting, writing the message and waiting for its ACK
	// (default DefaultSendTimeout, 30s). A context deadline that comes sooner wins.
	Timeout time.Duration
	// DialTimeout bounds one connection attempt, TLS handshake included (default
	// DefaultDialTimeout, 10s).
	DialTimeout time.Duration
	// Logger receives connection events and dropped ACKs, with control IDs; never message
	// contents. nil: no logs.
	Logger *slog.Logger

	initOnce sync.Once
	turn     chan struct{} // holds a token while a Send has the connection

	mu     sync.Mutex // guards the fields below; Close takes it while a Send runs
	conn   net.Conn
	r      *Reader
	w      *Writer
	closed bool

	dropped atomic.Int64
}

// Send sends msg and returns the ACK whose MSA-2 equals msg's MSH-10. Answers with another MSA-2
// (a late ACK to an earlier message, another peer's mistake) and answers that do not parse are
// dropped, counted in DroppedAcks and logged, never taken for this message's ACK.
//
// If the connection breaks before the ACK arrives (the peer closed it while idle, or restarted),
// Send opens a new one, once, and sends msg again within its timeout: the peer may then see msg
// twice, with the same MSH-10, and drops the duplicate as HL7 expects. A connection that cannot
// be opened, or that breaks again, fails the Send at once.
//
// Errors: a matching ACK with MSA-1 other than AA/CA returns the ACK and a *NAKError.
// ErrAckTimeout: no matching ACK in time (the connection is dropped, the next Send opens a new
// one). ErrNoControlID or an hl7 header error: msg was not sent. ctx's error if ctx was cancelled.
// ErrSenderClosed after Close. Connection errors are wrapped in these or returned wrapped.
func (s *Sender) Send(ctx context.Context, msg []byte) (ack []byte, err error) {
	h, err := hl7.ReadHeader(msg)
	if err != nil {
		return nil, fmt.Errorf("reading MSH-10 of the message to send: %w", err)
	}
	id := h.ControlID
	if id == "" {
		return nil, ErrNoControlID
	}
	if bytes.IndexByte(msg, EndBlock) >= 0 {
		return nil, fmt.Errorf("sending %s: %w", id, ErrEndBlockInMessage)
	}
	s.initOnce.Do(func() { s.turn = make(chan struct{}, 1) })

	timeout := orDefault(s.Timeout, DefaultSendTimeout)
	sendCtx, cancel := context.WithTimeoutCause(ctx, timeout, ErrAckTimeout)
	defer cancel()
	// A socket deadline set from sendCtx's can fire a moment before sendCtx's own timer marks it
	// done (on a busy machine the timer's goroutine runs late): past this instant the send has
	// timed out whatever sendCtx says yet.
	ackDeadline := time.Now().Add(timeout)
	timedOut := func() bool { return sendCtx.Err() != nil || !time.Now().Before(ackDeadline) }
	select {
	case s.turn <- struct{}{}:
		defer func() { <-s.turn }()
	case <-sendCtx.Done():
		return nil, s.sendError(ctx, timedOut(), id, timeout, errors.New("waiting for an earlier message's ACK"))
	}

	var lastErr error
	for {
		conn, r, w, err := s.connect(sendCtx)
		if err != nil {
			if lastErr != nil {
				err = fmt.Errorf("%w (after %w)", err, lastErr)
			}
			return nil, s.sendError(ctx, timedOut(), id, timeout, err)
		}
		ack, code, err := s.exchange(sendCtx, conn, r, w, msg, id)
		if err == nil {
			if code != "AA" && code != "CA" {
				return ack, &NAKError{Code: code, ControlID: id}
			}
			return ack, nil
		}
		s.dropConn(conn)
		if lastErr != nil || timedOut() || s.isClosed() {
			return nil, s.sendError(ctx, timedOut(), id, timeout, err)
		}
		// The connection broke: open a new one and send again (the peer drops a duplicate by
		// MSH-10).
		s.logger().Warn("MLLP connection broke before the ACK; reconnecting to send again",
			"addr", s.Addr, "control_id", id, "err", err)
		lastErr = err
	}
}

// sendError turns a failed Send into the documented error; timedOut says the Send's own
// timeout has passed.
func (s *Sender) sendError(parent context.Context, timedOut bool, id string, timeout time.Duration, err error) error {
	switch {
	case s.isClosed():
		return fmt.Errorf("sending %s: %w", id, ErrSenderClosed)
	case parent.Err() != nil:
		return fmt.Errorf("sending %s to %s: %w", id, s.Addr, context.Cause(parent))
	case timedOut:
		return fmt.Errorf("sending %s to %s: %w (%s): %w", id, s.Addr, ErrAckTimeout, timeout, err)
	default:
		return fmt.Errorf("sending %s to %s: %w", id, s.Addr, err)
	}
}

// exchange writes msg and reads answers until the one whose MSA-2 is id; it returns that ACK
// and its MSA-1 code.
func (s *Sender) exchange(ctx context.Context, conn net.Conn, r *Reader, w *Writer, msg []byte, id string) (ack []byte, code string, err error) {
	// Wake a blocked read or write when ctx ends (timeout, cancel).
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)

	if err := w.WriteMsg(msg); err != nil {
		return nil, "", err
	}
	for {
		frame, err := r.Next()
		var tooLarge *TooLargeError
		if errors.As(err, &tooLarge) {
			s.drop(id, "an answer over the size limit", "")
			continue
		}
		if err != nil {
			return nil, "", err
		}
		m, err := hl7.Parse(frame)
		if err != nil {
			s.drop(id, "an answer that is not an HL7 message", "")
			continue
		}
		if got := m.Value("MSA-2"); got != id {
			s.drop(id, "an ACK to another message", got)
			continue
		}
		if !stop() {
			// ctx ended as the ACK arrived: the deadline may be set in the past under us; start
			// the next Send on a fresh connection rather than on one that may time out at once.
			s.dropConn(conn)
		}
		return bytes.Clone(frame), m.Value("MSA-1"), nil
	}
}

func (s *Sender) drop(id, what, msa2 string) {
	s.dropped.Add(1)
	if len(msa2) > 64 {
		msa2 = msa2[:64]
	}
	s.logger().Warn("MLLP sender dropped "+what, "addr", s.Addr, "control_id", id, "msa_2", msa2)
}

// DroppedAcks returns how many answers were read and dropped because they were not the ACK
// awaited (another MSA-2, unparseable, or over the size cap).
func (s *Sender) DroppedAcks() int64 { return s.dropped.Load() }

// connect returns the open connection, or opens one.
func (s *Sender) connect(ctx context.Context) (conn net.Conn, r *Reader, w *Writer, err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, nil, nil, ErrSenderClosed
	}
	if s.conn != nil {
		conn, r, w := s.conn, s.r, s.w
		s.mu.Unlock()
		return conn, r, w, nil
	}
	s.mu.Unlock()
	conn, err = s.dial(ctx)
	if err != nil {
		s.logger().Warn("MLLP connection attempt failed", "addr", s.Addr, "err", err)
		return nil, nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		conn.Close()
		return nil, nil, nil, ErrSenderClosed
	}
	s.conn, s.r, s.w = conn, NewReader(conn, 0), NewWriter(conn)
	s.logger().Debug("MLLP sender connected", "addr", s.Addr, "tls", s.TLSConfig != nil)
	return conn, s.r, s.w, nil
}

func (s *Sender) dial(ctx context.Context) (net.Conn, error) {
	d := &net.Dialer{Timeout: orDefault(s.DialTimeout, DefaultDialTimeout), KeepAlive: 3 * time.Minute}
	if s.TLSConfig == nil {
		return d.DialContext(ctx, "tcp", s.Addr)
	}
	// tls.Dialer verifies the host of Addr when the config has no ServerName.
	return (&tls.Dialer{NetDialer: d, Config: s.TLSConfig}).DialContext(ctx, "tcp", s.Addr)
}

// dropConn closes conn, and forgets it if it is still the Sender's connection.
func (s *Sender) dropConn(conn net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == conn {
		s.conn, s.r, s.w = nil, nil, nil
	}
	conn.Close()
}

func (s *Sender) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close closes the connection; a Send in progress fails with ErrSenderClosed, and so does every
// later Send. The outbox calls it on shutdown. It returns the error of closing the connection.
func (s *Sender) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn, s.r, s.w = nil, nil, nil
	return err
}

func (s *Sender) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// ACKCode is MSA-1 of the negative ACK: what adapters/delivery classifies a refusal by (it does
// not import this package).
func (e *NAKError) ACKCode() string { return e.Code }
