package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/ferryhealth/ferry/engine"
)

// DefaultMaxBatch caps the events of one transaction (Recorder.MaxBatch).
const DefaultMaxBatch = 64

// Recorder records events that belong to no other change (a read, a search, a login, a refusal)
// in transactions of their own. A change records its event in its own transaction, through the
// transaction's Appender, so that both commit or neither does.
//
// Concurrent Records are group-committed, as engine.GroupCommitter commits inbound messages: the
// events waiting when a transaction begins share it, and with it one hold of the chain's row
// lock and one durable commit, appended in the order they arrived. A batch closes when no further
// event is waiting or MaxBatch is reached, so a lone event is committed at once. Each Record
// still returns only once its own event is committed, or with the error that kept it out: an
// access to patient data is never answered unrecorded (issue 12; HIPAA §164.312(b)).
//
// The zero value with Begin set is ready; a Recorder holds no goroutine while idle (one is
// started when an event arrives to an idle Recorder and ends when the queue is empty), so it
// needs no Close. A Recorder must not be copied after first use.
type Recorder struct {
	// Begin begins a store transaction; the store's Tx must be an Appender (adapters/sqlstore's
	// TxSteps make both stores' so).
	Begin func(ctx context.Context) (engine.Tx, error)
	// MaxBatch caps the events in one transaction (default DefaultMaxBatch).
	MaxBatch int

	mu       sync.Mutex
	queue    []*recordRequest
	draining bool // a goroutine is committing the queue
}

type recordRequest struct {
	ctx  context.Context
	e    Event // a copy: the caller's event is written back only once the caller has its answer
	done chan error
}

// Record appends e and returns once it is committed; the store has then set e's Seq, PrevHash
// and Hash. When ctx ends first, Record returns its error: an event still waiting is not
// recorded; one already in a transaction may yet be.
func (r *Recorder) Record(ctx context.Context, e *Event) error {
	req := &recordRequest{ctx: ctx, e: *e, done: make(chan error, 1)}
	r.mu.Lock()
	r.queue = append(r.queue, req)
	start := !r.draining
	r.draining = true
	r.mu.Unlock()
	if start {
		go r.drain()
	}
	select {
	case err := <-req.done:
		if err == nil {
			*e = req.e
		}
		return err
	case <-ctx.Done():
		// Still queued, it is taken out and never recorded; taken (under mu), it is in a
		// transaction whose outcome its caller will not wait for.
		r.mu.Lock()
		defer r.mu.Unlock()
		if i := slices.Index(r.queue, req); i >= 0 {
			r.queue = slices.Delete(r.queue, i, i+1)
			return fmt.Errorf("recording audit event: %w", ctx.Err())
		}
		return fmt.Errorf("recording audit event: %w (it may yet be committed)", ctx.Err())
	}
}

// drain commits the queue, batch by batch, until it is empty.
func (r *Recorder) drain() {
	maxBatch := r.MaxBatch
	if maxBatch <= 0 {
		maxBatch = DefaultMaxBatch
	}
	var batch []*recordRequest
	for {
		r.mu.Lock()
		n := min(len(r.queue), maxBatch)
		if n == 0 {
			r.draining = false
			r.mu.Unlock()
			return
		}
		batch = append(batch[:0], r.queue[:n]...)
		rest := copy(r.queue, r.queue[n:])
		clear(r.queue[rest:]) // let the answered requests go
		r.queue = r.queue[:rest]
		r.mu.Unlock()
		r.commit(batch)
	}
}

// commit records a batch in one transaction and answers each caller. An event whose append fails
// (an invalid event, or the store failing under it) gets that error, and the others are recorded
// in a new transaction without it: one bad event keeps no other out.
func (r *Recorder) commit(live []*recordRequest) {
	for len(live) > 0 {
		failed, err := r.appendAll(live)
		if failed < 0 {
			for _, req := range live {
				req.done <- err
			}
			return
		}
		live[failed].done <- err
		live = append(live[:failed], live[failed+1:]...)
	}
}

// appendAll appends every request's event in one transaction and commits it. It returns the
// index of the request whose append failed, with its error, or -1 and the transaction's outcome.
func (r *Recorder) appendAll(live []*recordRequest) (failed int, err error) {
	// The transaction outlives any one caller's context: its outcome answers every caller in it.
	ctx := context.WithoutCancel(live[0].ctx)
	tx, err := r.Begin(ctx)
	if err != nil {
		return -1, fmt.Errorf("recording audit event: %w", err)
	}
	app, ok := tx.(Appender)
	if !ok {
		tx.Rollback()
		return -1, errors.New("recording audit event: the store's transactions cannot append to the audit trail")
	}
	for i, req := range live {
		if err := app.AppendAudit(ctx, &req.e); err != nil {
			tx.Rollback()
			return i, fmt.Errorf("recording audit event: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return -1, fmt.Errorf("recording audit event: %w", err)
	}
	return -1, nil
}
