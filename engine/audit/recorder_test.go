package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ferryhealth/ferry/engine"
)

// chainStore is a store in memory whose transactions append to a chain as the SQL stores do (the
// stores run the Recorder against themselves in engine/storetest). hold, when set, is received
// from before each transaction begins, so a test decides when the next one starts.
type chainStore struct {
	mu      sync.Mutex
	events  trail
	batches []int // the events of each committed transaction
	hold    chan struct{}
	// failAppend fails the append of an event with this agent; failCommit fails every commit.
	failAppend string
	failCommit error
}

type chainTx struct {
	engine.Tx // the rest of engine.Tx: never called
	st        *chainStore
	events    []*Event
}

func (st *chainStore) Begin(context.Context) (engine.Tx, error) {
	if st.hold != nil {
		<-st.hold
	}
	return &chainTx{st: st}, nil
}

func (tx *chainTx) AppendAudit(_ context.Context, e *Event) error {
	if e.Agent == tx.st.failAppend {
		return errors.New("refused")
	}
	tx.events = append(tx.events, e)
	return nil
}

func (tx *chainTx) Rollback() error { return nil }

func (tx *chainTx) Commit() error {
	st := tx.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.failCommit != nil {
		return st.failCommit
	}
	for _, e := range tx.events {
		prev := []byte{}
		if n := len(st.events); n > 0 {
			prev = st.events[n-1].Hash
		}
		e.Seq, e.PrevHash = int64(len(st.events)+1), prev
		e.Hash = e.ChainHash(prev)
		c := *e
		st.events = append(st.events, &c)
	}
	st.batches = append(st.batches, len(tx.events))
	return nil
}

func (st *chainStore) AuditHead(context.Context) (int64, []byte, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.events) == 0 {
		return 0, []byte{}, nil
	}
	last := st.events[len(st.events)-1]
	return last.Seq, last.Hash, nil
}

func (st *chainStore) AuditEvents(ctx context.Context, f Filter) ([]*Event, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.events.AuditEvents(ctx, f)
}

func readEvent(agent string) *Event {
	return &Event{RecordedAt: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC), Action: ActionRead,
		Outcome: OutcomeSuccess, Agent: agent, Entity: "GET /fhir/r4/Patient/1"}
}

// recordAll starts n Records on rec while the store holds its first transaction back, waits
// until all are queued, lets the transactions run, and returns each caller's error and event.
// It runs inside a synctest bubble: synctest.Wait is "every caller is waiting".
func recordAll(t *testing.T, st *chainStore, rec *Recorder, agents []string) ([]error, []*Event) {
	t.Helper()
	st.hold = make(chan struct{})
	errs, evs := make([]error, len(agents)), make([]*Event, len(agents))
	var wg sync.WaitGroup
	for i, agent := range agents {
		evs[i] = readEvent(agent)
		wg.Go(func() { errs[i] = rec.Record(context.Background(), evs[i]) })
		synctest.Wait() // queued in order: the chain's order is the callers'
	}
	close(st.hold)
	wg.Wait()
	return errs, evs
}

// TestRecorderGroupCommits: N concurrent Records share transactions (up to MaxBatch events each), each returns only after its event is committed, with its place
// in the chain, and the chain holds every event, in the callers' order.
func TestRecorderGroupCommits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 20
		st := &chainStore{}
		rec := &Recorder{Begin: st.Begin, MaxBatch: 8}
		agents := make([]string, n)
		for i := range agents {
			agents[i] = fmt.Sprint("u", i)
		}
		errs, evs := recordAll(t, st, rec, agents)
		for i, err := range errs {
			if err != nil {
				t.Fatalf("Record %d: %v", i, err)
			}
			if evs[i].Seq != int64(i+1) || !bytes.Equal(evs[i].Hash, st.events[i].Hash) {
				t.Errorf("Record %d returned seq %d, want %d with the stored hash", i, evs[i].Seq, i+1)
			}
			if st.events[i].Agent != agents[i] {
				t.Errorf("event %d is %s's, want %s's (the order the callers came in)", i+1, st.events[i].Agent, agents[i])
			}
		}
		// The first event's transaction began before the others came; they waited for it.
		if want := []int{1, 8, 8, 3}; fmt.Sprint(st.batches) != fmt.Sprint(want) {
			t.Errorf("transactions of %v events, want %v: the waiting events share one, up to MaxBatch", st.batches, want)
		}
		if res, err := Verify(context.Background(), st); err != nil || res.Broken != 0 || res.Events != n {
			t.Errorf("Verify: %+v, %v; want %d events, unbroken", res, err, n)
		}
		// A lone event afterwards is committed at once, in a transaction of its own.
		if err := rec.Record(context.Background(), readEvent("late")); err != nil {
			t.Fatal(err)
		}
		if got := st.batches[len(st.batches)-1]; got != 1 || len(st.events) != n+1 {
			t.Errorf("a lone event: a transaction of %d, %d events; want 1, %d", got, len(st.events), n+1)
		}
	})
}

// TestRecorderFailures: an event whose append fails gets that error and keeps no other event of
// its batch out; a failed commit reaches every caller of the batch.
func TestRecorderFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &chainStore{failAppend: "bad"}
		rec := &Recorder{Begin: st.Begin}
		errs, _ := recordAll(t, st, rec, []string{"a", "b", "bad", "c"})
		for i, agent := range []string{"a", "b", "bad", "c"} {
			if (errs[i] != nil) != (agent == "bad") {
				t.Errorf("Record of %s: %v; want an error for the bad event only", agent, errs[i])
			}
		}
		if len(st.events) != 3 || st.events[2].Agent != "c" {
			t.Errorf("%d events stored, want a, b and c", len(st.events))
		}
		if res, err := Verify(context.Background(), st); err != nil || res.Broken != 0 {
			t.Errorf("Verify: %+v, %v", res, err)
		}

		down := errors.New("disk full")
		st.failCommit = down
		errs, _ = recordAll(t, st, rec, []string{"d", "e", "f"})
		for i, err := range errs {
			if !errors.Is(err, down) {
				t.Errorf("Record %d after a failed commit: %v, want %v", i, err, down)
			}
		}
		if len(st.events) != 3 {
			t.Errorf("%d events stored after a failed commit, want still 3", len(st.events))
		}
	})
}

// TestRecorderAbandoned: a caller whose context ends while its event waits gets the context's
// error, and its event is not recorded; the others are.
func TestRecorderAbandoned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &chainStore{hold: make(chan struct{})}
		rec := &Recorder{Begin: st.Begin}
		var wg sync.WaitGroup
		var first, kept error
		wg.Go(func() { first = rec.Record(context.Background(), readEvent("first")) })
		synctest.Wait() // its transaction is held back
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- rec.Record(ctx, readEvent("gone")) }()
		wg.Go(func() { kept = rec.Record(context.Background(), readEvent("kept")) })
		synctest.Wait()
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("an abandoned Record: %v, want context.Canceled", err)
		}
		close(st.hold)
		wg.Wait()
		if first != nil || kept != nil {
			t.Fatalf("Records: %v, %v", first, kept)
		}
		var agents []string
		for _, e := range st.events {
			agents = append(agents, e.Agent)
		}
		if fmt.Sprint(agents) != "[first kept]" {
			t.Errorf("stored %v, want [first kept]", agents)
		}
	})
}
