package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// The intake's group commit (issue 18 item 9): the instances that concurrent associations and
// STOW-RS requests hand to Intake.StoreInstance at the same moment are made durable together —
// each directory that received a new entry fsynced once, however many of the batch's files it
// holds, and every row committed in one transaction (InstanceStore.PutInstances), one WAL flush
// for all — instead of one directory fsync and one commit per instance queueing for the store's
// writer. Each caller still returns only once its own instance's directory entry is fsynced and
// its row committed (DESIGN.md rule 1). A batch closes when no further instance is waiting or
// MaxBatch is reached, so a lone instance is committed at once, as before.

// DefaultInstanceBatch caps the instances of one transaction (Intake.MaxBatch).
const DefaultInstanceBatch = 64

type instanceRequest struct {
	inst *Instance
	dir  string // the directory whose new entry must be fsynced before the commit; "" none
	ctx  context.Context
	done chan instanceOutcome // buffered: the drain never blocks on a caller that left
}

type instanceOutcome struct {
	added bool
	err   error
}

// commit makes inst's directory entry in dir durable and commits its row, grouped with whatever
// other instances are waiting, and returns the store's added. ctx and Intake.Timeout bound the
// wait to enter a batch (the instance is then not stored: the error wraps ctx's or
// context.DeadlineExceeded); once the instance is in a transaction only Timeout bounds the wait,
// and past it commit returns ErrCommitInDoubt: the row may yet be committed, so the caller must
// keep the file (a resend finds it and asks the store, Intake.StoreInstance).
func (in *Intake) commit(ctx context.Context, inst *Instance, dir string) (added bool, err error) {
	req := &instanceRequest{inst: inst, dir: dir, ctx: ctx, done: make(chan instanceOutcome, 1)}
	in.mu.Lock()
	in.queue = append(in.queue, req)
	start := !in.draining
	in.draining = true
	in.mu.Unlock()
	if start {
		go in.drain()
	}
	deadline := time.NewTimer(in.timeout())
	defer deadline.Stop()
	cancelled := ctx.Done()
	for {
		select {
		case out := <-req.done:
			return out.added, out.err
		case <-cancelled:
			if in.dequeue(req) {
				return false, fmt.Errorf("waiting to commit instance %s: %w", inst.SOPInstanceUID, ctx.Err())
			}
			cancelled = nil // in a transaction: its outcome decides what becomes of the file
		case <-deadline.C:
			if in.dequeue(req) {
				return false, fmt.Errorf("waiting to commit instance %s: %w", inst.SOPInstanceUID, context.DeadlineExceeded)
			}
			return false, ErrCommitInDoubt
		}
	}
}

// dequeue takes req out of the queue if no batch has taken it yet, and says whether it did.
func (in *Intake) dequeue(req *instanceRequest) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if i := slices.Index(in.queue, req); i >= 0 {
		in.queue = slices.Delete(in.queue, i, i+1)
		return true
	}
	return false
}

// drain commits the queue, batch by batch, until it is empty.
func (in *Intake) drain() {
	maxBatch := in.MaxBatch
	if maxBatch <= 0 {
		maxBatch = DefaultInstanceBatch
	}
	var batch []*instanceRequest
	for {
		in.mu.Lock()
		n := min(len(in.queue), maxBatch)
		if n == 0 {
			in.draining = false
			in.mu.Unlock()
			return
		}
		batch = append(batch[:0], in.queue[:n]...)
		rest := copy(in.queue, in.queue[n:])
		clear(in.queue[rest:]) // let the answered requests go
		in.queue = in.queue[:rest]
		in.mu.Unlock()
		in.commitBatch(batch)
	}
}

// commitBatch fsyncs the batch's directories, each once and all at once, then commits the rows
// of the instances whose directory is durable in one transaction and answers every caller. When
// that transaction fails and held more than one instance, each is committed alone, so one
// instance the store refuses keeps no other out.
func (in *Intake) commitBatch(batch []*instanceRequest) {
	// The transaction outlives any one caller's context (its outcome answers every caller in
	// it), never Timeout: past that its callers have given up on it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(batch[0].ctx), in.timeout())
	defer cancel()
	synced := syncDirs(batch)
	live := batch[:0:0]
	for _, req := range batch {
		if err := synced[req.dir]; err != nil {
			req.done <- instanceOutcome{err: err}
			continue
		}
		live = append(live, req)
	}
	if len(live) == 0 {
		return
	}
	insts := make([]*Instance, len(live))
	for i, req := range live {
		insts[i] = req.inst
	}
	added, err := in.Store.PutInstances(ctx, insts)
	if err == nil {
		for i, req := range live {
			req.done <- instanceOutcome{added: added[i]}
		}
		return
	}
	if len(live) == 1 || ctx.Err() != nil {
		for _, req := range live {
			req.done <- instanceOutcome{err: err}
		}
		return
	}
	for _, req := range live {
		a, err := in.Store.PutInstances(ctx, []*Instance{req.inst})
		if err != nil {
			req.done <- instanceOutcome{err: err}
			continue
		}
		req.done <- instanceOutcome{added: a[0]}
	}
}

// syncDirs fsyncs each distinct directory the batch names, concurrently (the file system
// commits its journal once for fsyncs that overlap), and returns each one's error.
func syncDirs(batch []*instanceRequest) map[string]error {
	var dirs []string
	for _, req := range batch {
		if req.dir != "" && !slices.Contains(dirs, req.dir) {
			dirs = append(dirs, req.dir)
		}
	}
	errs := make([]error, len(dirs))
	var wg sync.WaitGroup
	for i, dir := range dirs {
		wg.Go(func() { errs[i] = syncDir(dir) })
	}
	wg.Wait()
	byDir := make(map[string]error, len(dirs))
	for i, dir := range dirs {
		byDir[dir] = errs[i]
	}
	return byDir
}

// timeout is Intake.Timeout or its default.
func (in *Intake) timeout() time.Duration {
	if in.Timeout > 0 {
		return in.Timeout
	}
	return DefaultCommitTimeout
}

// inDoubt reports whether err leaves an instance's commit undecided (ErrCommitInDoubt).
func inDoubt(err error) bool { return errors.Is(err, ErrCommitInDoubt) }
