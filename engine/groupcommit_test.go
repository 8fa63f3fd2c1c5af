package engine

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// batchStore records the size of each CommitInbound call; it can block or fail on demand.
type batchStore struct {
	MessageStore
	mu      sync.Mutex
	batches []int
	gate    chan struct{} // if set, each commit waits for a receive
	fail    atomic.Bool
}

func (s *batchStore) CommitInbound(_ context.Context, msgs []*InboundMessage) error {
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail.Load() {
		return errors.New("store down")
	}
	s.batches = append(s.batches, len(msgs))
	for _, m := range msgs {
		m.ID = int64(len(s.batches))
	}
	return nil
}

func TestGroupCommitterBatchesWaitingMessages(t *testing.T) {
	t.Parallel()
	st := &batchStore{gate: make(chan struct{})}
	g := NewGroupCommitter(st, GroupCommitOptions{MaxBatch: 8})
	defer g.Close()

	var wg sync.WaitGroup
	errs := make(chan error, 9)
	commit := func() {
		defer wg.Done()
		errs <- g.Commit(context.Background(), &InboundMessage{Status: StatusAccepted})
	}
	wg.Add(1)
	go commit() // the first commit holds the worker at the gate
	time.Sleep(50 * time.Millisecond)
	for range 8 {
		wg.Add(1)
		go commit()
	}
	time.Sleep(100 * time.Millisecond) // let the eight queue up behind the first
	go func() {
		for range 9 {
			st.gate <- struct{}{}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.batches) != 2 || st.batches[0] != 1 || st.batches[1] != 8 {
		t.Errorf("batches = %v, want [1 8]", st.batches)
	}
}

func TestGroupCommitterReportsFailureToEveryCaller(t *testing.T) {
	t.Parallel()
	st := &batchStore{}
	st.fail.Store(true)
	g := NewGroupCommitter(st, GroupCommitOptions{Workers: 2})
	defer g.Close()
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if g.Commit(context.Background(), &InboundMessage{}) != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 20 {
		t.Errorf("%d of 20 callers saw the failure", failed.Load())
	}
}

func TestGroupCommitterClose(t *testing.T) {
	t.Parallel()
	g := NewGroupCommitter(&batchStore{}, GroupCommitOptions{})
	if err := g.Commit(context.Background(), &InboundMessage{}); err != nil {
		t.Fatal(err)
	}
	g.Close()
	if err := g.Commit(context.Background(), &InboundMessage{}); !errors.Is(err, ErrCommitterClosed) {
		t.Errorf("after Close: %v, want ErrCommitterClosed", err)
	}
}

func TestGroupCommitterCancelledBeforeBatchIsNotCommitted(t *testing.T) {
	t.Parallel()
	st := &batchStore{gate: make(chan struct{})}
	g := NewGroupCommitter(st, GroupCommitOptions{})
	defer g.Close()
	go func() { _ = g.Commit(context.Background(), &InboundMessage{}) }() // holds the worker
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.Commit(ctx, &InboundMessage{}) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	st.gate <- struct{}{} // release the first
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled commit: %v, want context.Canceled", err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.batches) != 1 {
		t.Errorf("batches = %v, want only the first", st.batches)
	}
}
