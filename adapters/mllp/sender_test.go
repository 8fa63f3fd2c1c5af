package mllp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// hl7Msg is an order with MSH-10 = id.
func hl7Msg(id string) []byte {
	return []byte("MSH|^~\\&|FERRY|TELERAD|EPIC|STMARYS|20240315083000||ORU^R01|" + id + "|P|2.5.1\r" +
		"PID|1||123456^^^STMARYS^MR\rOBR|1|PLC1|FIL1|71046^XR CHEST^CPT4\r")
}

// hl7Ack is an ACK with MSA-1 = code and MSA-2 = id.
func hl7Ack(code, id string) []byte {
	return []byte("MSH|^~\\&|EPIC|STMARYS|FERRY|TELERAD|20240315083001||ACK^R01|A" + id + "|P|2.5.1\r" +
		"MSA|" + code + "|" + id + "\r")
}

// controlID finds MSH-10 in a test message without the hl7 package (the peer is not under test).
func controlID(msg []byte) string {
	seg, _, _ := strings.Cut(string(msg), "\r")
	f := strings.Split(seg, "|")
	if len(f) > 9 {
		return f[9]
	}
	return ""
}

// fakePeer is a scripted MLLP receiver: script runs once per accepted connection, with that
// connection's number (from 1) and the first message read on it.
type fakePeer struct {
	ln       net.Listener
	accepted atomic.Int64
	mu       sync.Mutex
	received []string // MSH-10 of every message read, in order
}

func startPeer(t *testing.T, script func(n int64, c *client, msg []byte)) *fakePeer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &fakePeer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			n := p.accepted.Add(1)
			go func() {
				defer conn.Close()
				c := &client{Conn: conn, r: NewReader(conn, 0), w: NewWriter(conn)}
				for {
					msg, err := c.r.Next()
					if err != nil {
						return
					}
					p.mu.Lock()
					p.received = append(p.received, controlID(msg))
					p.mu.Unlock()
					changes.Notify()
					script(n, c, msg)
				}
			}()
		}
	}()
	return p
}

func (p *fakePeer) addr() string { return p.ln.Addr().String() }

func (p *fakePeer) got() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.received...)
}

func newSender(t *testing.T, addr string) *Sender {
	s := &Sender{Addr: addr, Timeout: 5 * time.Second, Logger: testLogger(t)}
	t.Cleanup(func() { s.Close() })
	return s
}

// An ACK with another MSA-2 (a late ACK to an earlier message) is dropped and counted, never
// taken for ours; so is an answer that is not HL7.
func TestSenderMatchesByMSA2(t *testing.T) {
	t.Parallel()
	peer := startPeer(t, func(_ int64, c *client, msg []byte) {
		c.w.WriteMsg(hl7Ack("AA", "STALE-1"))
		c.w.WriteMsg([]byte("not hl7 at all"))
		c.w.WriteMsg(hl7Ack("AA", controlID(msg)))
	})
	s := newSender(t, peer.addr())
	ack, err := s.Send(context.Background(), hl7Msg("MSG-1"))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if string(ack) != string(hl7Ack("AA", "MSG-1")) {
		t.Errorf("ACK = %q, want the one for MSG-1", ack)
	}
	if n := s.DroppedAcks(); n != 2 {
		t.Errorf("DroppedAcks = %d, want 2", n)
	}
	// The same connection serves the next message.
	if _, err := s.Send(context.Background(), hl7Msg("MSG-2")); err != nil {
		t.Fatalf("second Send: %v", err)
	}
	if n := peer.accepted.Load(); n != 1 {
		t.Errorf("%d connections for two messages, want 1", n)
	}
}

func TestSenderNAK(t *testing.T) {
	t.Parallel()
	for _, code := range []string{"AE", "AR", "CR", ""} {
		t.Run("code "+code, func(t *testing.T) {
			t.Parallel()
			peer := startPeer(t, func(_ int64, c *client, msg []byte) { c.w.WriteMsg(hl7Ack(code, controlID(msg))) })
			ack, err := newSender(t, peer.addr()).Send(context.Background(), hl7Msg("N1"))
			var nak *NAKError
			if !errors.As(err, &nak) || nak.Code != code || nak.ControlID != "N1" {
				t.Fatalf("Send = %v, want *NAKError{%q, N1}", err, code)
			}
			if msg := nak.Error(); !strings.Contains(msg, "N1") || !strings.Contains(msg, `"`+code+`"`) {
				t.Errorf("NAKError.Error() = %q, want the control ID and the code", msg)
			}
			if string(ack) != string(hl7Ack(code, "N1")) {
				t.Errorf("a NAK must come with the ACK bytes, got %q", ack)
			}
		})
	}
	t.Run("CA is positive", func(t *testing.T) {
		t.Parallel()
		peer := startPeer(t, func(_ int64, c *client, msg []byte) { c.w.WriteMsg(hl7Ack("CA", controlID(msg))) })
		if _, err := newSender(t, peer.addr()).Send(context.Background(), hl7Msg("C1")); err != nil {
			t.Fatalf("Send = %v", err)
		}
	})
}

// No ACK within Timeout: ErrAckTimeout, and the next Send works on a new connection.
func TestSenderTimeout(t *testing.T) {
	t.Parallel()
	peer := startPeer(t, func(n int64, c *client, msg []byte) {
		if n == 1 {
			return // the first connection never answers
		}
		c.w.WriteMsg(hl7Ack("AA", controlID(msg)))
	})
	s := newSender(t, peer.addr())
	s.Timeout = 200 * time.Millisecond
	// The context's deadline, a hundred times the Timeout, only guards against a hang: had Send
	// ignored Timeout (and waited the 30 s default) it would end with the context's error.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := s.Send(ctx, hl7Msg("T1"))
	if !errors.Is(err, ErrAckTimeout) {
		t.Fatalf("Send = %v, want ErrAckTimeout", err)
	}
	s.Timeout = 5 * time.Second
	if _, err := s.Send(context.Background(), hl7Msg("T2")); err != nil {
		t.Fatalf("Send after a timeout: %v", err)
	}
	if n := peer.accepted.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (the timed-out one is replaced)", n)
	}
}

// The peer drops the connection: between messages, and while a message waits for its ACK.
func TestSenderReconnects(t *testing.T) {
	t.Parallel()
	t.Run("between messages", func(t *testing.T) {
		t.Parallel()
		peer := startPeer(t, func(_ int64, c *client, msg []byte) {
			c.w.WriteMsg(hl7Ack("AA", controlID(msg)))
			c.Close() // one message per connection
		})
		s := newSender(t, peer.addr())
		for i := range 3 {
			if _, err := s.Send(context.Background(), hl7Msg(fmt.Sprint("R", i))); err != nil {
				t.Fatalf("Send %d: %v", i, err)
			}
		}
		if n := peer.accepted.Load(); n != 3 {
			t.Errorf("%d connections, want 3", n)
		}
	})
	t.Run("before the ACK", func(t *testing.T) {
		t.Parallel()
		peer := startPeer(t, func(n int64, c *client, msg []byte) {
			if n == 1 {
				c.Close() // read the message, then drop the connection without an answer
				return
			}
			c.w.WriteMsg(hl7Ack("AA", controlID(msg)))
		})
		s := newSender(t, peer.addr())
		if _, err := s.Send(context.Background(), hl7Msg("D1")); err != nil {
			t.Fatalf("Send: %v", err)
		}
		if got := peer.got(); len(got) != 2 || got[0] != "D1" || got[1] != "D1" {
			t.Errorf("peer received %q, want D1 twice (resent with the same MSH-10)", got)
		}
	})
	t.Run("peer down, then up", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // nothing listens there for now
		s := newSender(t, addr)
		s.Timeout = time.Hour
		// No backoff of its own: each Send to a closed port tries one connection and fails at
		// once (not after the timeout), however many failed before.
		for i := range 5 {
			_, err := s.Send(context.Background(), hl7Msg(fmt.Sprint("U1-", i)))
			if err == nil || errors.Is(err, ErrAckTimeout) || !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("Send %d to a closed port = %v, want the refused connection at once", i, err)
			}
		}
		ln, err = net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("port %s was taken meanwhile: %v", addr, err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
			c := &client{Conn: conn, r: NewReader(conn, 0), w: NewWriter(conn)}
			for {
				msg, err := c.r.Next()
				if err != nil {
					return
				}
				c.w.WriteMsg(hl7Ack("AA", controlID(msg)))
			}
		}()
		s.Timeout = 10 * time.Second
		if _, err := s.Send(context.Background(), hl7Msg("U2")); err != nil {
			t.Fatalf("Send once the peer is up: %v", err)
		}
	})
}

func TestSenderBadMessage(t *testing.T) {
	t.Parallel()
	peer := startPeer(t, func(_ int64, c *client, msg []byte) { c.w.WriteMsg(hl7Ack("AA", controlID(msg))) })
	s := newSender(t, peer.addr())
	for name, msg := range map[string]string{
		"no MSH-10":    "MSH|^~\\&|A|B|C|D|20240101||ADT^A01||P|2.5\r",
		"not HL7":      "hello",
		"end block in": "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5\rOBX|1|ST|||a\x1cb\r",
	} {
		if _, err := s.Send(context.Background(), []byte(msg)); err == nil {
			t.Errorf("%s: Send succeeded", name)
		}
	}
	if got := peer.got(); len(got) != 0 {
		t.Errorf("bad messages reached the peer: %q", got)
	}
}

func TestSenderContextAndClose(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 2)
	peer := startPeer(t, func(int64, *client, []byte) { arrived <- struct{}{} }) // never answers
	s := newSender(t, peer.addr())

	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-arrived; cancel() }() // cancelled while the message waits for its ACK
	if _, err := s.Send(ctx, hl7Msg("C1")); !errors.Is(err, context.Canceled) {
		t.Errorf("Send with a cancelled context = %v, want context.Canceled", err)
	}

	done := make(chan error, 1)
	go func() { _, err := s.Send(context.Background(), hl7Msg("C2")); done <- err }()
	changes.For(t, "the message to reach the peer", func() bool { return len(peer.got()) == 2 })
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrSenderClosed) {
			t.Errorf("Send interrupted by Close = %v, want ErrSenderClosed", err)
		}
	case <-time.After(time.Minute): // guards against a hang only
		t.Fatal("Close did not interrupt Send")
	}
	if _, err := s.Send(context.Background(), hl7Msg("C3")); !errors.Is(err, ErrSenderClosed) {
		t.Errorf("Send after Close = %v, want ErrSenderClosed", err)
	}
}

// Concurrent Sends are serialized on the one connection and each gets its own ACK.
func TestSenderConcurrent(t *testing.T) {
	t.Parallel()
	peer := startPeer(t, func(_ int64, c *client, msg []byte) { c.w.WriteMsg(hl7Ack("AA", controlID(msg))) })
	s := newSender(t, peer.addr())
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			id := fmt.Sprint("P", i)
			ack, err := s.Send(context.Background(), hl7Msg(id))
			if err != nil || string(ack) != string(hl7Ack("AA", id)) {
				t.Errorf("Send %s = %q, %v", id, ack, err)
			}
		})
	}
	wg.Wait()
	if n := peer.accepted.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

// The Sender against the Server over mutual TLS, end to end.
func TestSenderServerMutualTLS(t *testing.T) {
	t.Parallel()
	pki := testPKI(t)
	srv := &Server{
		TLSConfig: pki.serverConfig(true),
		Logger:    testLogger(t),
		Handler: HandlerFunc(func(_ context.Context, f *Frame) []byte {
			if f.TLS == nil || len(f.TLS.VerifiedChains) == 0 {
				return hl7Ack("AR", controlID(f.Data))
			}
			return hl7Ack("AA", controlID(f.Data))
		}),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })

	s := newSender(t, ln.Addr().String())
	s.TLSConfig = pki.clientConfig(true)
	if ack, err := s.Send(context.Background(), hl7Msg("TLS1")); err != nil || string(ack) != string(hl7Ack("AA", "TLS1")) {
		t.Fatalf("Send over mTLS = %q, %v", ack, err)
	}

	noCert := newSender(t, ln.Addr().String())
	noCert.TLSConfig = pki.clientConfig(false)
	noCert.Timeout = 500 * time.Millisecond
	if _, err := noCert.Send(context.Background(), hl7Msg("TLS2")); err == nil {
		t.Fatalf("Send without a client certificate succeeded")
	}
}

// BenchmarkSend measures Sender.Send against the Server over loopback TCP: framing, reading the
// header, parsing the ACK and matching MSA-2.
func BenchmarkSend(b *testing.B) {
	ack := hl7Ack("AA", "MSG00001") // typicalORM's MSH-10
	srv := &Server{Handler: HandlerFunc(func(context.Context, *Frame) []byte { return ack })}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	orm := typicalORM()
	s := &Sender{Addr: ln.Addr().String()}
	defer s.Close()
	b.SetBytes(int64(len(orm)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Send(context.Background(), orm); err != nil {
			b.Fatal(err)
		}
	}
}
