// Package listener is the lifecycle Ferry's two TCP servers share — the MLLP listener
// (adapters/mllp) and the DICOM one (adapters/dimse): the accept loop with its backoff, the
// listeners and connections being served, the base context of their handlers, and graceful
// shutdown. What a server does with a connection (its limits, TLS handshake, protocol) stays
// with the server; this package only knows when to stop.
package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by Serve once Shutdown has begun (each server returns its own
// ErrServerClosed in its place).
var ErrClosed = errors.New("listener: server closed")

// Lifecycle tracks one server's listeners and connections (C, the server's own type for a
// connection) from Serve to Shutdown. The zero value is ready; it must not be copied after
// first use.
type Lifecycle[C comparable] struct {
	mu         sync.Mutex
	listeners  []net.Listener
	conns      map[C]struct{}
	inShutdown atomic.Bool
	baseCtx    context.Context
	cancel     context.CancelCauseFunc
}

// ShuttingDown reports whether Shutdown has begun.
func (l *Lifecycle[C]) ShuttingDown() bool { return l.inShutdown.Load() }

// Context is the base of the server's handler contexts: Shutdown cancels it, with its cause,
// when its deadline passes.
func (l *Lifecycle[C]) Context() context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.baseCtx == nil {
		l.baseCtx, l.cancel = context.WithCancelCause(context.Background())
	}
	return l.baseCtx
}

// Addr returns the address of the first listener being served, or nil before Serve has started
// and after it returned (how tests and the serve command learn the port chosen for ":0").
func (l *Lifecycle[C]) Addr() net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.listeners) == 0 {
		return nil
	}
	return l.listeners[0].Addr()
}

// Track adds a connection the server serves; it reports false, adding nothing, once Shutdown
// has begun (the server then closes the connection). Untrack removes it when it ends.
func (l *Lifecycle[C]) Track(c C) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inShutdown.Load() {
		return false
	}
	if l.conns == nil {
		l.conns = make(map[C]struct{})
	}
	l.conns[c] = struct{}{}
	return true
}

// Untrack removes a connection Track added.
func (l *Lifecycle[C]) Untrack(c C) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
}

// Serve accepts connections on ln until Shutdown and hands each to accept, on the accepting
// goroutine: accept decides (limits, handshake, a goroutine of its own) and returns nil to go
// on, or an error (ErrClosed when it could not Track a connection) to stop. A temporary accept
// error is retried after a growing pause (5 ms to 1 s, as net/http does) and logged. Serve
// closes ln when it returns: ErrClosed after Shutdown, else the error that stopped it. proto
// names the protocol in the log and errors ("MLLP", "DICOM").
func (l *Lifecycle[C]) Serve(ln net.Listener, log *slog.Logger, proto string, accept func(net.Conn) error) error {
	if !l.addListener(ln) {
		ln.Close()
		return ErrClosed
	}
	defer l.removeListener(ln)
	defer ln.Close()
	var delay time.Duration
	for {
		rwc, err := ln.Accept()
		if err != nil {
			if l.inShutdown.Load() {
				return ErrClosed
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				log.Warn(proto+" accept failed; retrying", "err", err, "retry_in", delay)
				time.Sleep(delay) // backoff before the next Accept, not a synchronisation
				continue
			}
			return fmt.Errorf("accepting %s connections: %w", proto, err)
		}
		delay = 0
		if err := accept(rwc); err != nil {
			return err
		}
	}
}

func (l *Lifecycle[C]) addListener(ln net.Listener) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inShutdown.Load() {
		return false
	}
	l.listeners = append(l.listeners, ln)
	return true
}

func (l *Lifecycle[C]) removeListener(ln net.Listener) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.listeners = slices.DeleteFunc(l.listeners, func(x net.Listener) bool { return x == ln })
}

// Shutdown stops the server gracefully: it closes the listeners, then, every 10 ms, calls
// closeIdle for each connection still open (closeIdle closes it if nothing is in progress on
// it) until none is left, and returns nil. If ctx ends first, it calls closeNow for each
// connection left, cancels the base context with cause and returns ctx's error without
// waiting for the handlers to return. closeIdle and closeNow are called without the lock held.
func (l *Lifecycle[C]) Shutdown(ctx context.Context, closeIdle, closeNow func(C), cause error) error {
	l.mu.Lock()
	l.inShutdown.Store(true)
	for _, ln := range l.listeners {
		ln.Close()
	}
	l.mu.Unlock()

	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, c := range l.snapshot() {
			closeIdle(c)
		}
		if len(l.snapshot()) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			for _, c := range l.snapshot() {
				closeNow(c)
			}
			l.Context()
			l.cancel(cause)
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// snapshot returns the connections open now.
func (l *Lifecycle[C]) snapshot() []C {
	l.mu.Lock()
	defer l.mu.Unlock()
	cs := make([]C, 0, len(l.conns))
	for c := range l.conns {
		cs = append(cs, c)
	}
	return cs
}
