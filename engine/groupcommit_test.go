package engine

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
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

// The group committer's tests run in a synctest bubble: synctest.Wait returns once every
// goroutine in it is blocked (on the gate, on the queue, on a linger timer), so the tests know
// what is queued without sleeping, and the linger timers run on the bubble's fake clock.

func TestGroupCommitterBatchesWaitingMessages(t *testing.T) {
	t.Parallel()
	synctest.Test(t, testGroupCommitterBatchesWaitingMessages)
}

func testGroupCommitterBatchesWaitingMessages(t *testing.T) {
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
	synctest.Wait()
	for range 8 {
		wg.Add(1)
		go commit()
	}
	synctest.Wait() // the eight are queued behind the first
	close(st.gate)  // the first batch goes, then whatever queued behind it
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
	synctest.Test(t, testGroupCommitterCancelledBeforeBatchIsNotCommitted)
}

func testGroupCommitterCancelledBeforeBatchIsNotCommitted(t *testing.T) {
	st := &batchStore{gate: make(chan struct{})}
	g := NewGroupCommitter(st, GroupCommitOptions{})
	defer g.Close()
	go func() { _ = g.Commit(context.Background(), &InboundMessage{}) }() // holds the worker
	synctest.Wait()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.Commit(ctx, &InboundMessage{}) }()
	synctest.Wait() // queued behind the first
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

// lingerSetup, called in a synctest bubble, commits m0 alone while m1 and m2 queue behind it, so that the worker expects three
// messages in its next batch: m0's sender coming back, and the two that waited.
func lingerSetup(t *testing.T, linger time.Duration) (*batchStore, *GroupCommitter, chan error) {
	t.Helper()
	st := &batchStore{gate: make(chan struct{})}
	g := NewGroupCommitter(st, GroupCommitOptions{MaxBatch: 8, Linger: linger})
	errs := make(chan error, 8)
	go func() { errs <- g.Commit(context.Background(), &InboundMessage{}) }() // m0, held at the gate
	synctest.Wait()
	for range 2 { // m1, m2
		go func() { errs <- g.Commit(context.Background(), &InboundMessage{}) }()
	}
	synctest.Wait()
	go func() {
		for {
			select {
			case st.gate <- struct{}{}:
			case <-t.Context().Done():
				return
			}
		}
	}()
	return st, g, errs
}

func TestGroupCommitterLingerWaitsForExpectedMessage(t *testing.T) {
	t.Parallel()
	synctest.Test(t, testGroupCommitterLingerWaitsForExpectedMessage)
}

func testGroupCommitterLingerWaitsForExpectedMessage(t *testing.T) {
	st, g, errs := lingerSetup(t, 10*time.Second)
	defer g.Close()
	synctest.Wait()     // m1 and m2 wait in a batch for the third
	start := time.Now() // the bubble's clock: it moves only when every goroutine waits on time
	if err := g.Commit(context.Background(), &InboundMessage{}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d != 0 {
		t.Errorf("the expected message waited %s for the linger: the batch should close when it arrives", d)
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.batches) != 2 || st.batches[0] != 1 || st.batches[1] != 3 {
		t.Errorf("batches = %v, want [1 3]", st.batches)
	}
}

func TestGroupCommitterLingerGivesUpAndBacksOff(t *testing.T) {
	t.Parallel()
	synctest.Test(t, testGroupCommitterLingerGivesUpAndBacksOff)
}

func testGroupCommitterLingerGivesUpAndBacksOff(t *testing.T) {
	const linger = 300 * time.Millisecond
	st, g, errs := lingerSetup(t, linger)
	defer g.Close()
	start := time.Now()
	for range 3 { // m1 and m2 wait for a third that never comes, then commit
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d != linger {
		t.Errorf("m1 and m2 waited %s for a third message, want the linger %s", d, linger)
	}
	// The wait missed: the next batches do not wait, though the worker again expects two.
	for range 3 {
		start := time.Now()
		if err := g.Commit(context.Background(), &InboundMessage{}); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("a lone message after a missed wait took %s, want no wait", d)
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if want := []int{1, 2, 1, 1, 1}; !slices.Equal(st.batches, want) {
		t.Errorf("batches = %v, want %v", st.batches, want)
	}
}

func TestGroupCommitterCloseEndsLinger(t *testing.T) {
	t.Parallel()
	synctest.Test(t, testGroupCommitterCloseEndsLinger)
}

func testGroupCommitterCloseEndsLinger(t *testing.T) {
	st, g, errs := lingerSetup(t, time.Minute)
	synctest.Wait() // m1 and m2 wait in a batch for the third
	start := time.Now()
	g.Close()
	if d := time.Since(start); d != 0 {
		t.Errorf("Close waited %s for the linger, want no wait", d)
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Errorf("a message queued before Close: %v, want committed", err)
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.batches) != 2 || st.batches[1] != 2 {
		t.Errorf("batches = %v, want [1 2]", st.batches)
	}
}

func TestGroupCommitterTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, testGroupCommitterTimeout)
}

// A store that never answers (a frozen database): the message in the transaction is answered
// ErrCommitInDoubt, the one queued behind it an error that is not "in doubt" and is never
// committed, both within Timeout; Ready fails until a commit goes through.
func testGroupCommitterTimeout(t *testing.T) {
	st := &batchStore{gate: make(chan struct{})}
	g := NewGroupCommitter(st, GroupCommitOptions{Timeout: 3 * time.Second})
	defer g.Close()
	start := time.Now()
	inTx, queued := make(chan error), make(chan error)
	go func() { inTx <- g.Commit(context.Background(), &InboundMessage{}) }()
	synctest.Wait() // the first holds the worker at the gate
	go func() { queued <- g.Commit(context.Background(), &InboundMessage{}) }()
	if err := <-inTx; !errors.Is(err, ErrCommitInDoubt) {
		t.Errorf("the message in a transaction that does not end: %v, want ErrCommitInDoubt", err)
	}
	if err := <-queued; err == nil || errors.Is(err, ErrCommitInDoubt) {
		t.Errorf("the message queued behind it: %v, want a not-stored error", err)
	}
	if took := time.Since(start); took != 3*time.Second {
		t.Errorf("answered after %v, want the 3s timeout", took)
	}
	if err := g.Ready(); err != nil {
		t.Errorf("Ready while the transaction has not ended: %v (it has not failed yet)", err)
	}
	st.fail.Store(true)
	st.gate <- struct{}{} // the transaction ends: failed
	synctest.Wait()
	if err := g.Ready(); err == nil {
		t.Error("Ready after a failed transaction: nil, want its error")
	}
	st.mu.Lock()
	if len(st.batches) != 0 {
		t.Errorf("batches = %v, want none (the queued message was given up)", st.batches)
	}
	st.mu.Unlock()
	st.fail.Store(false)
	go func() { st.gate <- struct{}{} }()
	if err := g.Commit(context.Background(), &InboundMessage{}); err != nil {
		t.Fatal(err)
	}
	if err := g.Ready(); err != nil {
		t.Errorf("Ready after a commit went through: %v", err)
	}
	// A failure long past with no commit since: ready again, so the node is tried again.
	st.fail.Store(true)
	go func() { st.gate <- struct{}{} }()
	if err := g.Commit(context.Background(), &InboundMessage{}); err == nil {
		t.Fatal("commit on a failing store: nil")
	}
	time.Sleep(ReadyRetry)
	if err := g.Ready(); err != nil {
		t.Errorf("Ready %v after the last failure, no traffic since: %v, want nil", ReadyRetry, err)
	}
}

// nopMessageStore commits instantly: what is left is the committer's own cost per message.
type nopMessageStore struct{ MessageStore }

func (nopMessageStore) CommitInbound(context.Context, []*InboundMessage) error { return nil }

// BenchmarkGroupCommit is the committer's share of the inbound hot path: queueing a message,
// batching it with the others waiting, and answering its caller, 8 callers at once.
func BenchmarkGroupCommit(b *testing.B) {
	g := NewGroupCommitter(nopMessageStore{}, GroupCommitOptions{})
	defer g.Close()
	b.SetParallelism(8)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if err := g.Commit(ctx, &InboundMessage{Status: StatusAccepted}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestRecordLocks: a transaction naming a record one in flight names waits for it to end; one
// naming others does not wait; a wait ends with its context.
func TestRecordLocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var l recordLocks
		ctx := context.Background()
		releaseA, err := l.lock(ctx, []string{"Patient\x00a", "Practitioner\x00d"})
		if err != nil {
			t.Fatal(err)
		}
		releaseB, err := l.lock(ctx, []string{"Patient\x00b"})
		if err != nil {
			t.Fatalf("disjoint records: %v", err)
		}
		releaseB()

		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := l.lock(cancelled, []string{"Practitioner\x00d"}); !errors.Is(err, context.Canceled) {
			t.Fatalf("waiting with a cancelled context: %v", err)
		}

		var released func()
		go func() {
			var err error
			if released, err = l.lock(ctx, []string{"Patient\x00c", "Practitioner\x00d"}); err != nil {
				t.Error(err)
			}
		}()
		synctest.Wait()
		if released != nil {
			t.Fatal("a transaction naming a record in flight did not wait")
		}
		releaseA()
		synctest.Wait()
		if released == nil {
			t.Fatal("the waiting transaction did not take its records once they were let go")
		}
		released()
		if len(l.held) != 0 {
			t.Errorf("records still held: %v", l.held)
		}
	})
}
