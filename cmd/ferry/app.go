package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// app is what `ferry serve` runs: its parts — the store, the group committer, the workers (pending
// messages, study derivation, delivery, mapping reloads) and the servers (HTTP, MLLP, DICOM) —
// started under one errgroup and stopped together, each owning its goroutines and its shutdown
// (after prometheus's cmd/prometheus/main.go with oklog/run). A part is started as it is
// assembled; the first to fail, or the end of serve's context (SIGTERM), stops them all, the
// last started first: the servers drain their connections, then the workers end, then the
// committer and the store close. A failed assembly stops what had started the same way.
type app struct {
	logger *slog.Logger
	drain  time.Duration   // bounds the stop of all the parts together
	parent context.Context // serve's: ends on SIGTERM/SIGINT
	group  *errgroup.Group
	ctx    context.Context // ends when parent does or a part fails

	mu       sync.Mutex
	parts    []part
	stopOnce sync.Once
}

// part is one of the app's parts. run, if set, does its work until stop ends it, returning nil
// then (an error before stops every part); stop asks it to end, draining what it has in hand
// within ctx, and returns once it has.
type part struct {
	name string
	run  func() error
	stop func(ctx context.Context) error
}

// newApp returns an app with no parts that stops when ctx ends, its parts draining within drain.
func newApp(ctx context.Context, drain time.Duration, logger *slog.Logger) *app {
	g, gctx := errgroup.WithContext(ctx)
	return &app{logger: logger, drain: drain, parent: ctx, group: g, ctx: gctx}
}

// start starts p's run (if any) and keeps p to stop.
func (a *app) start(p part) {
	a.mu.Lock()
	a.parts = append(a.parts, p)
	a.mu.Unlock()
	if p.run != nil {
		a.group.Go(func() error {
			if err := p.run(); err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			return nil
		})
	}
}

// closer adds a part that has nothing to run, only something to release when the app stops.
func (a *app) closer(name string, release func() error) {
	a.start(part{name: name, stop: func(context.Context) error { return release() }})
}

// worker starts a part that runs work until its context ends — when the app begins to stop, as
// the servers begin to drain; stopping the part waits for work to return.
func (a *app) worker(name string, work func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(a.ctx)
	done := make(chan struct{})
	a.start(part{name: name,
		run: func() error {
			defer close(done)
			work(ctx)
			return nil
		},
		stop: func(context.Context) error {
			cancel()
			<-done
			return nil
		}})
}

// server starts a part that serves ln until stopped; shutdown drains it (nil: another part's
// shutdown does), and closed is what serve returns once shutdown has begun, not a failure.
func (a *app) server(name string, ln net.Listener, serve func(net.Listener) error, shutdown func(context.Context) error, closed error) {
	a.start(part{name: name,
		run: func() error {
			if err := serve(ln); err != nil && !errors.Is(err, closed) {
				return err
			}
			return nil
		},
		stop: func(ctx context.Context) error {
			if shutdown == nil {
				return nil
			}
			return shutdown(ctx)
		}})
}

// wait returns once the app has stopped: after serve's context ended (nil: a graceful stop,
// connections drained) or a part failed (its error).
func (a *app) wait() error {
	<-a.ctx.Done()
	if a.parent.Err() != nil {
		a.logger.Info("shutting down: draining connections")
	}
	a.stop()
	if err := a.group.Wait(); err != nil {
		a.logger.Error("ferry stopped: a part failed", "err", err)
		return err
	}
	a.logger.Info("ferry stopped")
	return nil
}

// stop stops every part once, the last started first, all of them within a.drain.
func (a *app) stop() {
	a.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(a.parent), a.drain)
		defer cancel()
		a.mu.Lock()
		parts := a.parts
		a.mu.Unlock()
		for i := len(parts) - 1; i >= 0; i-- {
			if err := parts[i].stop(ctx); err != nil {
				a.logger.Warn(parts[i].name+" stop incomplete", "err", err)
			}
		}
	})
}

// abort stops an app whose assembly failed: what had started stops as in wait.
func (a *app) abort() {
	a.stop()
	_ = a.group.Wait()
}

// listen opens a TCP listener on addr that the app closes when it stops, whether or not a
// server has taken it by then (a server's shutdown closes it first).
func (a *app) listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	a.closer("listener "+ln.Addr().String(), func() error {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	})
	return ln, nil
}
