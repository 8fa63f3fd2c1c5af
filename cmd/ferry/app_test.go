package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// stopLog records the order in which an app's parts stopped.
type stopLog struct {
	mu    sync.Mutex
	names []string
}

func (l *stopLog) add(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.names = append(l.names, name)
}

func (l *stopLog) got() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.names)
}

// TestAppStopsEveryPartLastFirst: an app stops when its context ends (nil) or when a part fails
// (that part's error), and either way every part is stopped once, the last started first, its
// workers' goroutines returned; a failed assembly stops what had started the same way.
func TestAppStopsEveryPartLastFirst(t *testing.T) {
	t.Parallel()
	failed := errors.New("listener broke")
	for _, tc := range []struct {
		name    string
		end     func(cancel context.CancelFunc, fail chan<- error) // how the app is made to stop
		abort   bool                                               // assembly fails instead of wait
		wantErr error
	}{
		{"Signal", func(cancel context.CancelFunc, _ chan<- error) { cancel() }, false, nil},
		{"PartFails", func(_ context.CancelFunc, fail chan<- error) { fail <- failed }, false, failed},
		{"AssemblyFails", func(context.CancelFunc, chan<- error) {}, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			a := newApp(ctx, 30*time.Second, slog.New(slog.DiscardHandler))
			var stopped stopLog
			a.closer("store", func() error { stopped.add("store"); return nil })
			workerDone := make(chan struct{})
			a.worker("worker", func(ctx context.Context) {
				<-ctx.Done()
				stopped.add("worker")
				close(workerDone)
			})
			fail := make(chan error, 1)
			stop := make(chan struct{})
			a.start(part{name: "server",
				run: func() error {
					select {
					case err := <-fail:
						return err
					case <-stop:
						return nil
					}
				},
				stop: func(context.Context) error { stopped.add("server"); close(stop); return nil }})
			ln, err := a.listen("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}

			tc.end(cancel, fail)
			if tc.abort {
				a.abort()
			} else if err := a.wait(); !errors.Is(err, tc.wantErr) {
				t.Errorf("wait: %v, want %v", err, tc.wantErr)
			}
			<-workerDone
			// The worker ends as the app begins to stop; the others stop last started first.
			got := stopped.got()
			others := slices.DeleteFunc(slices.Clone(got), func(n string) bool { return n == "worker" })
			if want := []string{"server", "store"}; !slices.Equal(others, want) || len(got) != 3 {
				t.Errorf("stopped %v, want the worker and then %v", got, want)
			}
			if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("the listener after the app stopped: %v, want it closed", err)
			}
		})
	}
}
