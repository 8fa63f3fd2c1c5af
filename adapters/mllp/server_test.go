package mllp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/internal/testwait"

	"github.com/ferryhealth/ferry/internal/tlsconfig"
)

// countingObserver records what the Server reports.
type countingObserver struct {
	mu                       sync.Mutex
	opened, closed, rejected int
	discarded                int64
	errs                     map[string]int
}

func (o *countingObserver) ConnOpened()   { o.mu.Lock(); o.opened++; o.mu.Unlock(); changes.Notify() }
func (o *countingObserver) ConnClosed()   { o.mu.Lock(); o.closed++; o.mu.Unlock(); changes.Notify() }
func (o *countingObserver) ConnRejected() { o.mu.Lock(); o.rejected++; o.mu.Unlock(); changes.Notify() }
func (o *countingObserver) Discarded(n int64) {
	o.mu.Lock()
	o.discarded += n
	o.mu.Unlock()
	changes.Notify()
}
func (o *countingObserver) FrameError(kind string) {
	o.mu.Lock()
	if o.errs == nil {
		o.errs = map[string]int{}
	}
	o.errs[kind]++
	o.mu.Unlock()
	changes.Notify()
}
func (o *countingObserver) errCount(kind string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.errs[kind]
}
func (o *countingObserver) snapshot() (opened, closed, rejected int, discarded int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.opened, o.closed, o.rejected, o.discarded
}

var _ Observer = (*countingObserver)(nil)

// echoHandler answers "ACK|" plus what it received, and records every frame. Special messages:
// "PANIC" panics; "SLOW" waits for release (or ctx); "BLOCK" waits for ctx.
type echoHandler struct {
	mu      sync.Mutex
	frames  []*Frame
	started chan string   // receives each message's data as the handler starts, if set
	release chan struct{} // SLOW waits for it
}

func (h *echoHandler) ServeMLLP(ctx context.Context, f *Frame) []byte {
	h.mu.Lock()
	h.frames = append(h.frames, f)
	h.mu.Unlock()
	if h.started != nil {
		h.started <- string(f.Data)
	}
	switch {
	case f.TooLarge:
		return fmt.Appendf(nil, "NAK|too large|%d|%s", f.Size, f.Data[:min(len(f.Data), 10)])
	case len(f.Data) == 0:
		return []byte("NAK|empty")
	case string(f.Data) == "PANIC":
		panic("handler bug")
	case string(f.Data) == "NIL":
		return nil
	case string(f.Data) == "BADACK":
		return []byte("ACK\x1cwith an end block")
	case string(f.Data) == "SLOW":
		select {
		case <-h.release:
		case <-ctx.Done():
			return []byte("ACK|cancelled")
		}
	case string(f.Data) == "BLOCK":
		<-ctx.Done()
		return nil
	}
	return append([]byte("ACK|"), f.Data...)
}

func (h *echoHandler) seen(data string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, f := range h.frames {
		if string(f.Data) == data {
			return true
		}
	}
	return false
}

type testServer struct {
	srv     *Server
	addr    string
	obs     *countingObserver
	handler *echoHandler
	served  chan error
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startServer serves on 127.0.0.1:0 with an echoHandler; configure may change the Server first.
func startServer(t *testing.T, configure func(*Server)) *testServer {
	t.Helper()
	ts := &testServer{obs: &countingObserver{}, handler: &echoHandler{}, served: make(chan error, 1)}
	ts.srv = &Server{
		Handler:     ts.handler,
		Metrics:     ts.obs,
		Logger:      testLogger(t),
		ReadTimeout: time.Minute, // long: a busy machine must not time a test's frame out
		IdleTimeout: time.Minute,
	}
	if configure != nil {
		configure(ts.srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = ln.Addr().String()
	go func() { ts.served <- ts.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := ts.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-ts.served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ts
}

// client is a test MLLP peer on a plain or TLS connection.
type client struct {
	net.Conn
	r *Reader
	w *Writer
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{Conn: c, r: NewReader(c, 0), w: NewWriter(c)}
}

// roundTrip sends one message and returns the answer.
func (c *client) roundTrip(msg string) (string, error) {
	c.SetDeadline(time.Now().Add(time.Minute)) // guards against a hang only
	if err := c.w.WriteMsg([]byte(msg)); err != nil {
		return "", err
	}
	ack, err := c.r.Next()
	return string(ack), err
}

// waitClosed reports whether the server closes c within d (a read gets EOF or an error).
func waitClosed(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}

// changes wakes the tests waiting on it whenever a test double records something (a
// connection counted, a frame error, an answer received, a message reaching a peer): tests wait
// on these events, not on a clock.
var changes testwait.Changes

// wellBehaved keeps a separate connection sending messages and checking each answer until
// stop is called; stop fails the test if any answer was missing or wrong, or too few came.
func wellBehaved(t *testing.T, addr string) (stop func()) {
	t.Helper()
	return wellBehavedOn(t, dial(t, addr))
}

// wellBehavedOn is wellBehaved on a connection already open.
func wellBehavedOn(t *testing.T, c *client) (stop func()) {
	t.Helper()
	var (
		quit    = make(chan struct{})
		done    = make(chan struct{})
		answers atomic.Int64
		failure atomic.Value
	)
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-quit:
				return
			default:
			}
			msg := fmt.Sprintf("MSH|^~\\&|GOOD|||||||good-%d|P|2.5", i)
			ack, err := c.roundTrip(msg)
			if err != nil || ack != "ACK|"+msg {
				failure.Store(fmt.Sprintf("message %d: answer %q, err %v", i, ack, err))
				return
			}
			answers.Add(1)
			changes.Notify()
		}
	}()
	return func() {
		t.Helper()
		// Let the good peer get a few more answers after the bad input, then stop it.
		start := answers.Load()
		changes.For(t, "the well-behaved connection to get more answers", func() bool {
			return answers.Load() >= start+3 || failure.Load() != nil
		})
		close(quit)
		<-done
		if f := failure.Load(); f != nil {
			t.Errorf("well-behaved connection was disturbed: %s", f)
		}
	}
}

// Every kind of bad input is handled as docs/mllp.md says, while another connection keeps
// getting its answers.
func TestServerBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		configure func(*Server)
		bad       func(t *testing.T, ts *testServer)
	}{
		{name: "empty frame gets the handler's answer and the connection is kept", bad: func(t *testing.T, ts *testServer) {
			c := dial(t, ts.addr)
			if ack, err := c.roundTrip(""); err != nil || ack != "NAK|empty" {
				t.Fatalf("empty frame: answer %q, %v", ack, err)
			}
			if ack, err := c.roundTrip("after"); err != nil || ack != "ACK|after" {
				t.Fatalf("next frame: answer %q, %v", ack, err)
			}
		}},
		{name: "bytes outside frames are dropped and counted, connection kept", bad: func(t *testing.T, ts *testServer) {
			c := dial(t, ts.addr)
			c.Write([]byte("GET / HTTP/1.0\r\n\r\n")) // the frame below follows on the same stream
			if ack, err := c.roundTrip("after junk"); err != nil || ack != "ACK|after junk" {
				t.Fatalf("frame after junk: answer %q, %v", ack, err)
			}
			changes.For(t, "discarded bytes to be reported", func() bool {
				_, _, _, d := ts.obs.snapshot()
				return d == 18
			})
		}},
		{name: "oversized frame is handed on as TooLarge, connection kept",
			configure: func(s *Server) { s.MaxMessageSize = 1024 },
			bad: func(t *testing.T, ts *testServer) {
				c := dial(t, ts.addr)
				big := "MSH|^~\\&|" + strings.Repeat("A", 5000)
				ack, err := c.roundTrip(big)
				if err != nil || ack != "NAK|too large|5009|MSH|^~\\&|A" {
					t.Fatalf("oversized frame: answer %q, %v", ack, err)
				}
				if ack, err := c.roundTrip("after"); err != nil || ack != "ACK|after" {
					t.Fatalf("next frame: answer %q, %v", ack, err)
				}
				if n := ts.obs.errCount(FrameErrTooLarge); n != 1 {
					t.Errorf("too_large reported %d times, want 1", n)
				}
				ts.handler.mu.Lock()
				defer ts.handler.mu.Unlock()
				for _, f := range ts.handler.frames {
					if f.TooLarge && (len(f.Data) != 1024 || f.Size != 5009) {
						t.Errorf("TooLarge frame: %d bytes of data, size %d; want 1024, 5009", len(f.Data), f.Size)
					}
				}
			}},
		{name: "half a frame then disconnect: nothing handled, counted", bad: func(t *testing.T, ts *testServer) {
			c := dial(t, ts.addr)
			c.Write([]byte("\x0bMSH|^~\\&|HALF|"))
			c.Close() // TCP delivers the half frame before the FIN
			changes.For(t, "the truncated frame to be reported", func() bool { return ts.obs.errCount(FrameErrTruncated) == 1 })
			if ts.handler.seen("MSH|^~\\&|HALF|") {
				t.Errorf("the handler got a truncated frame")
			}
		}},
		{name: "random bytes: junk dropped, frames in it handled, connection kept", bad: func(t *testing.T, ts *testServer) {
			c := dial(t, ts.addr)
			rng := mrand.New(mrand.NewPCG(1, 2))
			junk := make([]byte, 64<<10)
			for i := range junk {
				junk[i] = byte(rng.Uint32())
			}
			answers := make(chan string, 1000)
			go func() {
				defer close(answers)
				c.SetReadDeadline(time.Now().Add(time.Minute)) // guards against a hang only
				for {
					a, err := c.r.Next()
					if err != nil {
						return
					}
					answers <- string(a)
				}
			}()
			c.Write(junk)
			c.Write([]byte("\x1c\x0d")) // end whatever frame the junk left open
			c.w.WriteMsg([]byte("after random"))
			for a := range answers {
				if a == "ACK|after random" {
					return
				}
			}
			t.Fatalf("no answer to the frame sent after random bytes")
		}},
		{name: "handler panic closes that connection only", bad: func(t *testing.T, ts *testServer) {
			c := dial(t, ts.addr)
			if ack, err := c.roundTrip("PANIC"); err == nil {
				t.Fatalf("got answer %q after a handler panic, want the connection closed", ack)
			}
			if n := ts.obs.errCount(FrameErrPanic); n != 1 {
				t.Errorf("handler_panic reported %d times, want 1", n)
			}
			c2 := dial(t, ts.addr)
			if ack, err := c2.roundTrip("after panic"); err != nil || ack != "ACK|after panic" {
				t.Fatalf("new connection after a panic: answer %q, %v", ack, err)
			}
		}},
		{name: "nil answer sends nothing, connection kept", bad: func(t *testing.T, ts *testServer) {
			c := dial(t, ts.addr)
			c.w.WriteMsg([]byte("NIL"))
			if ack, err := c.roundTrip("after nil"); err != nil || ack != "ACK|after nil" {
				t.Fatalf("frame after a nil answer: answer %q, %v", ack, err)
			}
		}},
		{name: "an answer that cannot be framed closes that connection", bad: func(t *testing.T, ts *testServer) {
			c := dial(t, ts.addr)
			if ack, err := c.roundTrip("BADACK"); err == nil {
				t.Fatalf("got %q, want the connection closed", ack)
			}
			changes.For(t, "the write error to be reported", func() bool { return ts.obs.errCount(FrameErrWrite) == 1 })
		}},
		{name: "plain TCP to a TLS listener fails the handshake only",
			configure: func(s *Server) { s.TLSConfig = testPKI(t).serverConfig(false) },
			bad: func(t *testing.T, ts *testServer) {
				c := dial(t, ts.addr)
				c.w.WriteMsg([]byte("MSH|plain"))
				if !waitClosed(c, time.Minute) {
					t.Fatalf("plain connection to a TLS listener not closed")
				}
				changes.For(t, "the handshake failure to be reported", func() bool { return ts.obs.errCount(FrameErrHandshake) == 1 })
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, tt.configure)
			var stop func()
			if ts.srv.TLSConfig == nil {
				stop = wellBehaved(t, ts.addr)
			} else {
				stop = wellBehavedTLS(t, ts.addr, testPKI(t).clientConfig(false))
			}
			tt.bad(t, ts)
			stop()
		})
	}
}

func TestServerFrameFields(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	before := time.Now()
	msg := "MSH|^~\\&|A\x00\xff\rPID|1\r"
	if ack, err := c.roundTrip(msg); err != nil || ack != "ACK|"+msg {
		t.Fatalf("answer %q, %v", ack, err)
	}
	ts.handler.mu.Lock()
	f := ts.handler.frames[0]
	ts.handler.mu.Unlock()
	if string(f.Data) != msg || f.Size != int64(len(msg)) || f.TooLarge || f.TLS != nil {
		t.Errorf("frame = %+v", f)
	}
	if f.RemoteAddr != c.LocalAddr().String() {
		t.Errorf("RemoteAddr = %q, want %q", f.RemoteAddr, c.LocalAddr())
	}
	if f.ReceivedAt.Before(before) || f.ReceivedAt.After(time.Now()) {
		t.Errorf("ReceivedAt = %v", f.ReceivedAt)
	}
	// Data is the handler's own copy: later frames on the connection do not change it.
	if _, err := c.roundTrip(strings.Repeat("Z", len(msg))); err != nil {
		t.Fatal(err)
	}
	if string(f.Data) != msg {
		t.Errorf("Frame.Data changed after the next frame: %q", f.Data)
	}
}

func TestServerConnectionLimit(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(s *Server) { s.MaxConns = 2 })
	c1, c2 := dial(t, ts.addr), dial(t, ts.addr)
	for _, c := range []*client{c1, c2} {
		if _, err := c.roundTrip("hi"); err != nil {
			t.Fatal(err)
		}
	}
	c3 := dial(t, ts.addr)
	if !waitClosed(c3, time.Minute) {
		t.Fatalf("connection over the limit was not closed")
	}
	changes.For(t, "the refusal to be reported", func() bool { _, _, r, _ := ts.obs.snapshot(); return r == 1 })
	// The open connections are unaffected, and a slot freed is usable again.
	if ack, err := c1.roundTrip("still here"); err != nil || ack != "ACK|still here" {
		t.Fatalf("connection under the limit: %q, %v", ack, err)
	}
	c2.Close()
	changes.For(t, "the closed connection to be counted", func() bool { _, closed, _, _ := ts.obs.snapshot(); return closed == 1 })
	c4 := dial(t, ts.addr)
	if ack, err := c4.roundTrip("new"); err != nil || ack != "ACK|new" {
		t.Fatalf("connection after a slot was freed: %q, %v", ack, err)
	}
}

func TestServerShutdownDrains(t *testing.T) {
	t.Parallel()
	h := &echoHandler{started: make(chan string, 10), release: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Handler: h, Logger: testLogger(t)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	addr := ln.Addr().String()

	busy, idle := dial(t, addr), dial(t, addr)
	if _, err := idle.roundTrip("hello"); err != nil {
		t.Fatal(err)
	}
	<-h.started                                   // "hello"
	busy.SetDeadline(time.Now().Add(time.Minute)) // guards against a hang only
	busy.w.WriteMsg([]byte("SLOW"))
	if got := <-h.started; got != "SLOW" {
		t.Fatalf("handler started %q", got)
	}

	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		shutdown <- srv.Shutdown(ctx)
	}()
	// The idle connection is closed at once; the busy one waits for its handler.
	if !waitClosed(idle, time.Minute) {
		t.Fatalf("idle connection not closed by Shutdown")
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve returned %v, want ErrServerClosed", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("listener still accepting after Shutdown")
	}
	// The idle connection is closed and Serve has returned, so Shutdown is under way; it must
	// still be waiting for the handler, which has not been released.
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned %v while a handler was running", err)
	default:
	}
	close(h.release)
	ack, err := busy.r.Next()
	if err != nil || string(ack) != "ACK|SLOW" {
		t.Fatalf("the message in hand got %q, %v; want its ACK", ack, err)
	}
	if !waitClosed(busy, time.Minute) {
		t.Errorf("busy connection not closed after its ACK")
	}
	if err := <-shutdown; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	if err := srv.Serve(ln); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Shutdown = %v", err)
	}
	if err := srv.ListenAndServe("127.0.0.1:0"); !errors.Is(err, ErrServerClosed) {
		t.Errorf("ListenAndServe after Shutdown = %v", err)
	}
}

func TestServerShutdownDeadline(t *testing.T) {
	t.Parallel()
	h := &echoHandler{started: make(chan string, 10)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Handler: h, Logger: testLogger(t)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	c := dial(t, ln.Addr().String())
	c.w.WriteMsg([]byte("BLOCK"))
	<-h.started
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want context.DeadlineExceeded", err)
	}
	if !waitClosed(c, time.Minute) {
		t.Errorf("connection not closed after the Shutdown deadline")
	}
	<-served
}

func TestServerNoHandler(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := (&Server{}).Serve(ln); err == nil || errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve without a Handler = %v, want an error", err)
	}
}

func TestListenAndServe(t *testing.T) {
	t.Parallel()
	srv := &Server{Handler: &echoHandler{}}
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe("127.0.0.1:0") }()
	// The one poll left in this package: ListenAndServe reports its address through Addr alone,
	// with no event to wait on. The minute guards against a hang; it is no pass/fail limit.
	for hang := time.Now().Add(time.Minute); srv.Addr() == nil; runtime.Gosched() {
		if time.Now().After(hang) {
			t.Fatal("ListenAndServe did not listen within a minute")
		}
	}
	c := dial(t, srv.Addr().String())
	if ack, err := c.roundTrip("x"); err != nil || ack != "ACK|x" {
		t.Fatalf("answer %q, %v", ack, err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("ListenAndServe = %v, want ErrServerClosed", err)
	}
	if err := (&Server{Handler: &echoHandler{}}).ListenAndServe("127.0.0.1:-1"); err == nil {
		t.Errorf("ListenAndServe on a bad address succeeded")
	}
}

func TestServerTLS(t *testing.T) {
	t.Parallel()
	pki := testPKI(t)
	for _, mutual := range []bool{false, true} {
		t.Run(fmt.Sprintf("mutual=%v", mutual), func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, func(s *Server) { s.TLSConfig = pki.serverConfig(mutual) })
			c := dialTLS(t, ts.addr, pki.clientConfig(mutual))
			if ack, err := c.roundTrip("over tls"); err != nil || ack != "ACK|over tls" {
				t.Fatalf("answer %q, %v", ack, err)
			}
			ts.handler.mu.Lock()
			f := ts.handler.frames[0]
			ts.handler.mu.Unlock()
			if f.TLS == nil || !f.TLS.HandshakeComplete {
				t.Fatalf("Frame.TLS = %+v, want the connection state", f.TLS)
			}
			if mutual {
				if len(f.TLS.VerifiedChains) == 0 || f.TLS.PeerCertificates[0].Subject.CommonName != "ehr-client" {
					t.Errorf("mTLS frame does not carry the verified client certificate")
				}
			} else if len(f.TLS.PeerCertificates) != 0 {
				t.Errorf("TLS without client auth carries peer certificates")
			}
		})
	}
	t.Run("mTLS refuses a client without a certificate", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t, func(s *Server) { s.TLSConfig = pki.serverConfig(true) })
		stop := wellBehavedTLS(t, ts.addr, pki.clientConfig(true))
		conn, err := tls.Dial("tcp", ts.addr, pki.clientConfig(false))
		if err == nil {
			// Under TLS 1.3 the client finishes its side first; the refusal comes on the first read.
			defer conn.Close()
			c := &client{Conn: conn, r: NewReader(conn, 0), w: NewWriter(conn)}
			if ack, err := c.roundTrip("no cert"); err == nil {
				t.Fatalf("client without a certificate got %q", ack)
			}
		}
		changes.For(t, "the handshake failure to be reported", func() bool { return ts.obs.errCount(FrameErrHandshake) == 1 })
		if ts.handler.seen("no cert") {
			t.Errorf("the handler got a message from a client without a certificate")
		}
		stop()
	})
	t.Run("mTLS refuses a certificate from another CA", func(t *testing.T) {
		t.Parallel()
		other := newPKI(t)
		ts := startServer(t, func(s *Server) { s.TLSConfig = pki.serverConfig(true) })
		cfg := pki.clientConfig(false)
		cfg.Certificates = other.clientConfig(true).Certificates
		conn, err := tls.Dial("tcp", ts.addr, cfg)
		if err == nil {
			defer conn.Close()
			c := &client{Conn: conn, r: NewReader(conn, 0), w: NewWriter(conn)}
			if ack, err := c.roundTrip("wrong CA"); err == nil {
				t.Fatalf("client with a foreign certificate got %q", ack)
			}
		}
		changes.For(t, "the handshake failure to be reported", func() bool { return ts.obs.errCount(FrameErrHandshake) == 1 })
	})
}

func TestTLSConfigFromFiles(t *testing.T) {
	t.Parallel()
	pki := testPKI(t)
	dir := t.TempDir()
	write := func(name string, blocks ...*pem.Block) string {
		var b bytes.Buffer
		for _, blk := range blocks {
			pem.Encode(&b, blk)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certFile := write("server.pem", &pem.Block{Type: "CERTIFICATE", Bytes: pki.server.Certificate[0]})
	keyDER, err := x509.MarshalPKCS8PrivateKey(pki.server.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := write("server.key", &pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	caFile := write("ca.pem", &pem.Block{Type: "CERTIFICATE", Bytes: pki.caDER})
	notPEM := write("junk.pem")

	cfg, err := tlsconfig.Server(certFile, keyFile, "")
	if err != nil || cfg.ClientAuth != tls.NoClientCert || len(cfg.Certificates) != 1 || cfg.MinVersion != tls.VersionTLS12 {
		t.Fatalf("TLSConfig without client CA = %+v, %v", cfg, err)
	}
	cfg, err = tlsconfig.Server(certFile, keyFile, caFile)
	if err != nil || cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientCAs == nil {
		t.Fatalf("TLSConfig with client CA = %+v, %v", cfg, err)
	}
	// The config from files serves mutual TLS end to end.
	ts := startServer(t, func(s *Server) { s.TLSConfig = cfg })
	if ack, err := dialTLS(t, ts.addr, pki.clientConfig(true)).roundTrip("files"); err != nil || ack != "ACK|files" {
		t.Fatalf("answer %q, %v", ack, err)
	}
	for _, bad := range [][3]string{
		{filepath.Join(dir, "missing.pem"), keyFile, ""},
		{certFile, notPEM, ""},
		{certFile, keyFile, filepath.Join(dir, "missing-ca.pem")},
		{certFile, keyFile, notPEM},
	} {
		if _, err := tlsconfig.Server(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("tlsconfig.Server(%q, %q, %q) succeeded", bad[0], bad[1], bad[2])
		}
	}
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) *client {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{Conn: c, r: NewReader(c, 0), w: NewWriter(c)}
}

func wellBehavedTLS(t *testing.T, addr string, cfg *tls.Config) func() {
	t.Helper()
	c := dialTLS(t, addr, cfg)
	stop := make(chan struct{})
	done := make(chan string, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- ""
				return
			default:
			}
			msg := fmt.Sprintf("good-%d", i)
			if ack, err := c.roundTrip(msg); err != nil || ack != "ACK|"+msg {
				done <- fmt.Sprintf("message %d: %q, %v", i, ack, err)
				return
			}
		}
	}()
	return func() {
		close(stop)
		if f := <-done; f != "" {
			t.Errorf("well-behaved TLS connection was disturbed: %s", f)
		}
	}
}

// pki is a test CA with a server certificate for 127.0.0.1 and a client certificate.
type pki struct {
	caDER  []byte
	pool   *x509.CertPool
	server tls.Certificate
	client tls.Certificate
}

var (
	sharedPKIOnce sync.Once
	sharedPKI     *pki
)

// testPKI returns one PKI shared by the tests (key generation is slow under -race).
func testPKI(t *testing.T) *pki {
	sharedPKIOnce.Do(func() { sharedPKI = newPKI(t) })
	return sharedPKI
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := key()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Ferry test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) tls.Certificate {
		k := key()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	}
	p := &pki{caDER: caDER, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.server = issue(2, "ferry", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	p.client = issue(3, "ehr-client", x509.ExtKeyUsageClientAuth, nil)
	return p
}

func (p *pki) serverConfig(mutual bool) *tls.Config {
	cfg := &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12}
	if mutual {
		cfg.ClientCAs = p.pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg
}

func (p *pki) clientConfig(withCert bool) *tls.Config {
	cfg := &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}
	if withCert {
		cfg.Certificates = []tls.Certificate{p.client}
	}
	return cfg
}

// BenchmarkRoundTrip measures one message and its ACK through the Server over loopback TCP,
// client and server in this process: framing both ways, one connection, synchronous as MLLP is.
func BenchmarkRoundTrip(b *testing.B) {
	ack := []byte("MSH|^~\\&|FERRY|TELERAD|EPIC|STMARYS|20240315083001||ACK^O01|A1|P|2.5.1\rMSA|AA|MSG00001\r")
	srv := &Server{Handler: HandlerFunc(func(context.Context, *Frame) []byte { return ack })}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	r, w := NewReader(conn, 0), NewWriter(conn)
	orm := typicalORM()
	b.SetBytes(int64(len(orm)))
	b.ReportAllocs()
	for b.Loop() {
		if err := w.WriteMsg(orm); err != nil {
			b.Fatal(err)
		}
		if _, err := r.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// No log line carries message content, whatever happens to the message (DESIGN.md rule 4).
func TestServerLogsNoContent(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	const phi = "DOE^JANE"
	ts := startServer(t, func(s *Server) {
		s.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		s.MaxMessageSize = 100
		s.ReadTimeout = 200 * time.Millisecond
		s.Handler = HandlerFunc(func(_ context.Context, f *Frame) []byte {
			if bytes.HasSuffix(f.Data, []byte("PANIC")) {
				panic(fmt.Errorf("bad message %s", f.Data)) // a careless handler
			}
			return []byte("ACK")
		})
	})
	msg := "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1||123||" + phi + "\r"
	c := dial(t, ts.addr)
	c.roundTrip(msg)
	c.roundTrip(msg + strings.Repeat("x", 200)) // too large
	c.Write([]byte(phi))                        // outside a frame
	c.roundTrip(msg + "PANIC")
	slow := dial(t, ts.addr)
	slow.Write([]byte("\x0b" + msg)) // never finished: timeout
	half := dial(t, ts.addr)
	half.Write([]byte("\x0b" + msg))
	half.Close() // truncated
	// A connection is counted closed once its closing line is logged.
	changes.For(t, "all connections to close", func() bool { _, closed, _, _ := ts.obs.snapshot(); return closed == 3 })
	out := logs.String()
	if strings.Contains(out, phi) || strings.Contains(out, "PID|") {
		t.Errorf("logs carry message content:\n%s", out)
	}
	for _, want := range []string{"size limit", "panicked", "timeout", "truncated"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs do not mention %q:\n%s", want, out)
		}
	}
}
