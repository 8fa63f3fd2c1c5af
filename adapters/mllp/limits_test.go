package mllp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ferryhealth/ferry/internal/workcount"
)

// dialFrom connects to addr from the local IP from (127.0.0.0/8 is all loopback on Linux), so a
// test can play peers on different addresses.
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dialing %s from %s: %v", addr, from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func clientOn(c net.Conn) *client { return &client{Conn: c, r: NewReader(c, 0), w: NewWriter(c)} }

// Issue 17: 1,000 idle MLLP connections filled every slot for 10 minutes. Now one address gets
// at most MaxConnsPerAddress of them: 300 idle connections from one address take 10 slots, the
// rest are refused at once, a sender already connected keeps getting its ACKs, and a new sender
// from another address is served.
func TestServerIdleConnectionsFromOneAddress(t *testing.T) {
	t.Parallel()
	const perAddress, attack = 10, 300
	ts := startServer(t, func(s *Server) { s.MaxConns = 50; s.MaxConnsPerAddress = perAddress })
	stop := wellBehavedOn(t, clientOn(dialFrom(t, "127.0.0.2", ts.addr)))

	idle := make([]net.Conn, attack)
	for i := range idle {
		idle[i] = dialFrom(t, "127.0.0.1", ts.addr)
	}
	changes.For(t, "the connections over the per-address cap to be refused", func() bool {
		_, _, rejected, _ := ts.obs.snapshot()
		return rejected == attack-perAddress
	})
	if opened, _, _, _ := ts.obs.snapshot(); opened != perAddress+1 {
		t.Errorf("%d connections were given a slot, want %d (the cap and the good sender)", opened, perAddress+1)
	}
	c := clientOn(dialFrom(t, "127.0.0.3", ts.addr))
	if ack, err := c.roundTrip("newcomer"); err != nil || ack != "ACK|newcomer" {
		t.Errorf("a new sender from another address: %q, %v", ack, err)
	}
	stop()

	// Slots given back are usable again by that address.
	for _, c := range idle {
		c.Close()
	}
	changes.For(t, "the idle connections to be closed", func() bool {
		opened, closed, _, _ := ts.obs.snapshot()
		return opened-closed == 2 // the good sender and the newcomer
	})
	if ack, err := clientOn(dialFrom(t, "127.0.0.1", ts.addr)).roundTrip("back"); err != nil || ack != "ACK|back" {
		t.Errorf("a connection from the capped address after it closed its others: %q, %v", ack, err)
	}
}

// A negative MaxConnsPerAddress turns the per-address cap off (a listener behind a TCP load
// balancer sees every peer at the balancer's address).
func TestServerPerAddressCapOff(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(s *Server) { s.MaxConnsPerAddress = -1 })
	for i := range DefaultMaxConnsPerAddress + 5 {
		c := dial(t, ts.addr)
		if _, err := c.roundTrip("hi"); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	if _, _, rejected, _ := ts.obs.snapshot(); rejected != 0 {
		t.Errorf("%d connections refused with the per-address cap off", rejected)
	}
}

// Issue 17: a TLS handshake took a slot before it completed. Now peers that open connections and
// never finish their handshake hold no slot: with 3 slots and 20 stalled handshakes, a sender
// already connected keeps getting ACKs and a new TLS sender is served.
func TestServerStalledTLSHandshakesTakeNoSlot(t *testing.T) {
	t.Parallel()
	p := testPKI(t)
	ts := startServer(t, func(s *Server) { s.TLSConfig = p.serverConfig(false); s.MaxConns = 3 })
	stop := wellBehavedTLS(t, ts.addr, p.clientConfig(false))
	for range 20 {
		c := dialFrom(t, "127.0.0.1", ts.addr) // a TCP connection that never says ClientHello
		_ = c
	}
	for i := range 2 { // the two slots left, each by a sender that completes its handshake
		c := dialTLS(t, ts.addr, p.clientConfig(false))
		if ack, err := c.roundTrip("tls newcomer"); err != nil || ack != "ACK|tls newcomer" {
			t.Fatalf("TLS sender %d while 20 handshakes stall: %q, %v", i, ack, err)
		}
	}
	stop()
	if _, _, rejected, _ := ts.obs.snapshot(); rejected != 0 {
		t.Errorf("%d connections refused: stalled handshakes took slots", rejected)
	}
}

// pipeListener is a net.Listener whose connections are net.Pipes, for tests in a synctest
// bubble, where the clock is fake and real sockets cannot be used.
type pipeListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// dial returns the client end of a new connection to the server.
func (l *pipeListener) dial() net.Conn {
	client, server := net.Pipe()
	l.conns <- server
	return client
}

// closedBy starts reading c and returns a channel closed when the server closes c (what is
// read is dropped).
func closedBy(c net.Conn) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(io.Discard, c)
	}()
	return done
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// serveInBubble serves srv on a pipeListener inside a synctest bubble and stops it at the end.
func serveInBubble(t *testing.T, srv *Server) (*pipeListener, func()) {
	ln := newPipeListener()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	return ln, func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}
}

// Issue 17: a connection that sends nothing kept its slot for the 10-minute idle timeout. Now
// it is closed after FirstFrameTimeout, while one that has sent a frame is kept until
// IdleTimeout.
func TestServerFirstFrameTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		obs := &countingObserver{}
		srv := &Server{Handler: &echoHandler{}, Metrics: obs, Logger: testLogger(t),
			FirstFrameTimeout: 30 * time.Second, IdleTimeout: 10 * time.Minute}
		ln, stop := serveInBubble(t, srv)
		defer stop()

		silent := ln.dial()
		silentClosed := closedBy(silent)
		talker := clientOn(ln.dial())
		if err := talker.w.WriteMsg([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		if ack, err := talker.r.Next(); err != nil || string(ack) != "ACK|hello" {
			t.Fatalf("answer: %q, %v", ack, err)
		}
		talkerClosed := closedBy(talker)

		time.Sleep(29 * time.Second) // fake time: the bubble's clock
		synctest.Wait()
		if isClosed(silentClosed) {
			t.Fatalf("a silent connection was closed before FirstFrameTimeout")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if !isClosed(silentClosed) {
			t.Errorf("a connection that sent nothing is still open after FirstFrameTimeout")
		}
		if isClosed(talkerClosed) {
			t.Errorf("a connection that had sent a frame was closed at FirstFrameTimeout, want IdleTimeout")
		}
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if !isClosed(talkerClosed) {
			t.Errorf("an idle connection is still open after IdleTimeout")
		}
	})
}

// A TLS handshake must finish within HandshakeTimeout; a stalled one is closed then, having held
// a handshake token but never a slot.
func TestServerHandshakeTimeout(t *testing.T) {
	t.Parallel()
	p := testPKI(t)
	now := time.Now() // the bubble's clock starts in 2000, before the test certificates
	synctest.Test(t, func(t *testing.T) {
		obs := &countingObserver{}
		srv := &Server{Handler: &echoHandler{}, Metrics: obs, Logger: testLogger(t),
			TLSConfig: p.serverConfig(false), HandshakeTimeout: 10 * time.Second, MaxConns: 1}
		ln, stop := serveInBubble(t, srv)
		defer stop()

		stalled := ln.dial()
		stalledClosed := closedBy(stalled)
		synctest.Wait()
		if srv.active.Load() != 0 {
			t.Errorf("a connection in its handshake holds a slot")
		}
		// The one slot is free for a sender that completes its handshake meanwhile.
		cfg := p.clientConfig(false)
		cfg.ServerName = "127.0.0.1"
		cfg.Time = func() time.Time { return now }
		c := tls.Client(ln.dial(), cfg)
		good := clientOn(c)
		if err := good.w.WriteMsg([]byte("tls")); err != nil {
			t.Fatal(err)
		}
		if ack, err := good.r.Next(); err != nil || string(ack) != "ACK|tls" {
			t.Fatalf("answer: %q, %v", ack, err)
		}
		time.Sleep(9 * time.Second)
		synctest.Wait()
		if isClosed(stalledClosed) {
			t.Fatalf("a stalled handshake was closed before HandshakeTimeout")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if !isClosed(stalledClosed) {
			t.Errorf("a stalled handshake is still open after HandshakeTimeout")
		}
		if n := obs.errCount(FrameErrHandshake); n != 1 {
			t.Errorf("%d handshake failures reported, want 1", n)
		}
		good.Close()
	})
}

// Beyond MaxHandshakes in progress, a new connection is refused at once: a flood of stalled
// handshakes costs a bounded number of goroutines and buffers.
func TestServerMaxHandshakes(t *testing.T) {
	t.Parallel()
	p := testPKI(t)
	synctest.Test(t, func(t *testing.T) {
		obs := &countingObserver{}
		srv := &Server{Handler: &echoHandler{}, Metrics: obs, Logger: testLogger(t),
			TLSConfig: p.serverConfig(false), MaxHandshakes: 3}
		ln, stop := serveInBubble(t, srv)
		defer stop()
		var closed []<-chan struct{}
		for range 5 {
			closed = append(closed, closedBy(ln.dial()))
		}
		synctest.Wait()
		refused := 0
		for _, ch := range closed {
			if isClosed(ch) {
				refused++
			}
		}
		if _, _, rejected, _ := obs.snapshot(); refused != 2 || rejected != 2 {
			t.Errorf("%d connections closed and %d refusals reported, want 2 (5 handshakes, 3 allowed)", refused, rejected)
		}
	})
}

// Issue 17: concurrent 15 MB frames cost about 50 MB each. Through the listener, a frame now
// costs at most twice its size in allocations before the handler has it, and no copy after: the
// handler's Data is what the Reader gathered.
func TestServerFrameAllocations(t *testing.T) {
	const size = 15 << 20
	got := make(chan int, 1)
	ts := startServer(t, func(s *Server) {
		s.Handler = HandlerFunc(func(_ context.Context, f *Frame) []byte { got <- len(f.Data); return []byte("ok") })
	})
	c := dial(t, ts.addr)
	msg := bytes.Repeat([]byte("OBX|1|ED|PDF^Report||^AP^PDF^Base64^JVBERi0xLjQK\r"), size/50)
	framed := append(append([]byte{StartBlock}, msg...), EndBlock, CarriageReturn)
	alloc := workcount.Allocated(func() {
		go func() { _, _ = c.Write(framed) }()
		if n := <-got; n != len(msg) {
			t.Errorf("the handler got %d bytes, want %d", n, len(msg))
		}
	})
	if ack, err := c.r.Next(); err != nil || string(ack) != "ok" {
		t.Fatalf("answer: %q, %v", ack, err)
	}
	if limit := 2*uint64(len(msg)) + 4*chunkMax; alloc > limit {
		t.Errorf("a %d-byte frame allocated %d bytes (%.2f×) on its way to the handler, want at most %d", len(msg), alloc, float64(alloc)/float64(len(msg)), limit)
	}
	t.Logf("a %d-byte frame: %d bytes allocated (%.2f×)", len(msg), alloc, float64(alloc)/float64(len(msg)))
}

// Huge frames on other connections, some over the size cap, do not keep a sender already
// connected from getting its ACKs.
func TestServerHugeFramesKeepOthersServed(t *testing.T) {
	t.Parallel()
	const limit = 4 << 20
	ts := startServer(t, func(s *Server) { s.MaxMessageSize = limit; s.ReadTimeout = time.Minute })
	stop := wellBehaved(t, ts.addr)
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", ts.addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			size := limit - 100
			if i%2 == 1 {
				size = 3 * limit // over the cap: consumed, answered from its head
			}
			framed := append(append([]byte{StartBlock}, bytes.Repeat([]byte("Z"), size)...), EndBlock, CarriageReturn)
			for range 3 {
				_ = c.SetDeadline(time.Now().Add(time.Minute))
				if _, err := c.Write(framed); err != nil {
					t.Errorf("sending a huge frame: %v", err)
					return
				}
				if _, err := NewReader(c, 0).Next(); err != nil {
					t.Errorf("answer to a huge frame: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	stop()
	if n := ts.obs.errCount(FrameErrTooLarge); n != 9 {
		t.Errorf("%d oversized frames reported, want 9", n)
	}
}
