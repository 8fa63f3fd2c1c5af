package listener

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
)

// conn is a test connection: busy ones are not closed by closeIdle.
type conn struct {
	net.Conn
	busy   atomic.Bool
	closed chan struct{}
}

func (c *conn) close() {
	select {
	case <-c.closed:
	default:
		close(c.closed)
		c.Conn.Close()
	}
}

// TestServeAndShutdown: Serve hands each accepted connection to accept and returns ErrClosed
// after Shutdown; Shutdown closes idle connections at once, and when its context ends closes
// what is left and cancels the base context with the cause.
func TestServeAndShutdown(t *testing.T) {
	t.Parallel()
	var l Lifecycle[*conn]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan *conn)
	served := make(chan error, 1)
	go func() {
		served <- l.Serve(ln, slog.New(slog.DiscardHandler), "TEST", func(rwc net.Conn) error {
			c := &conn{Conn: rwc, closed: make(chan struct{})}
			if !l.Track(c) {
				rwc.Close()
				return ErrClosed
			}
			accepted <- c
			return nil
		})
	}()
	dial := func() {
		d, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
	}
	dial()
	idle := <-accepted
	dial()
	busy := <-accepted
	busy.busy.Store(true)
	if l.Addr().String() != ln.Addr().String() {
		t.Errorf("Addr %v, want %v", l.Addr(), ln.Addr())
	}

	ctx, cancel := context.WithCancel(context.Background())
	closeIdle := func(c *conn) {
		if !c.busy.Load() {
			c.close()
			l.Untrack(c)
		}
	}
	forced := make(chan *conn, 2)
	closeNow := func(c *conn) { c.close(); l.Untrack(c); forced <- c }
	cause := errors.New("test shutdown")
	done := make(chan error, 1)
	go func() { done <- l.Shutdown(ctx, closeIdle, closeNow, cause) }()
	<-idle.closed // closed at once
	if err := <-served; !errors.Is(err, ErrClosed) {
		t.Errorf("Serve returned %v, want ErrClosed", err)
	}
	if l.Track(&conn{}) {
		t.Error("Track accepted a connection during shutdown")
	}
	cancel() // the busy connection never becomes idle: the deadline passes
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown returned %v, want context.Canceled", err)
	}
	if c := <-forced; c != busy {
		t.Error("closeNow got another connection than the busy one")
	}
	if got := context.Cause(l.Context()); !errors.Is(got, cause) {
		t.Errorf("base context cause %v, want %v", got, cause)
	}
	if err := l.Serve(ln, slog.New(slog.DiscardHandler), "TEST", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Serve after Shutdown: %v, want ErrClosed", err)
	}
}

// TestShutdownWaitsForBusy: a busy connection that finishes lets Shutdown return nil.
func TestShutdownWaitsForBusy(t *testing.T) {
	t.Parallel()
	var l Lifecycle[*conn]
	c := &conn{closed: make(chan struct{})}
	c.busy.Store(true)
	c.Conn, _ = net.Pipe()
	l.Track(c)
	calls := make(chan struct{}, 1)
	closeIdle := func(c *conn) {
		select {
		case calls <- struct{}{}:
		default:
		}
		if !c.busy.Load() {
			c.close()
			l.Untrack(c)
		}
	}
	done := make(chan error, 1)
	go func() {
		done <- l.Shutdown(context.Background(), closeIdle, func(*conn) { t.Error("closeNow called") }, nil)
	}()
	<-calls // Shutdown found it busy
	c.busy.Store(false)
	if err := <-done; err != nil {
		t.Errorf("Shutdown returned %v", err)
	}
}
