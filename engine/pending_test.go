package engine

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// A pass the database does not answer (a driver that ignores its context, as lib/pq on a frozen
// server) holds the worker only until it is stopped, and is reported once past its timeout.
func TestRunBoundedStopsWaitingOnShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logged bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logged, nil))
		ctx, stop := context.WithCancel(context.Background())
		release := make(chan struct{})
		returned := make(chan error, 1)
		go func() {
			returned <- runBounded(ctx, time.Second, log, "processing pending messages", func(context.Context) error {
				<-release // frozen: the context's end is not noticed
				return nil
			})
		}()
		time.Sleep(2 * time.Second) // fake time: past the timeout
		synctest.Wait()
		if n := strings.Count(logged.String(), "still running past its timeout"); n != 1 {
			t.Errorf("past the timeout: %d warnings, want 1:\n%s", n, logged.String())
		}
		select {
		case err := <-returned:
			t.Fatalf("runBounded returned %v while the pass hangs and the worker runs", err)
		default:
		}
		stop()
		synctest.Wait()
		select {
		case err := <-returned:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("on shutdown: %v, want context.Canceled", err)
			}
		default:
			t.Fatal("runBounded still waits for the frozen pass after shutdown")
		}
		close(release)
	})
}

// A pass that ends returns its own error, and the worker's store calls see a deadline.
func TestRunBoundedReturnsThePassOutcome(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		want := errors.New("claim failed")
		err := runBounded(context.Background(), time.Second, slog.New(slog.DiscardHandler), "x", func(context.Context) error { return want })
		if !errors.Is(err, want) {
			t.Errorf("got %v, want %v", err, want)
		}
		w := &PendingWorker{Timeout: 3 * time.Second}
		ctx, cancel := context.WithTimeout(context.Background(), w.timeout())
		defer cancel()
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) != 3*time.Second {
			t.Errorf("deadline %v %v, want 3s from now", dl, ok)
		}
	})
}
