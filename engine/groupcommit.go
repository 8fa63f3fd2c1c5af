package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrCommitterClosed is returned by Commit after Close.
var ErrCommitterClosed = errors.New("group committer closed")

// ErrCommitInDoubt is returned by Commit when the transaction holding the message did not end
// within GroupCommitOptions.Timeout (a frozen or unreachable database): the message may yet be
// committed. The caller answers AE (ERR 207) so the sender resends; if the first copy was
// committed after all, the resend is recognised as its duplicate and answered like it, so nothing
// is processed twice and nothing acknowledged is lost (DESIGN.md rule 1).
var ErrCommitInDoubt = errors.New("the commit did not end in time; its outcome is unknown")

// DefaultCommitTimeout bounds one message's commit (GroupCommitOptions.Timeout): a sender is
// answered within it even while the database hangs (issue 18: AE within 5 s).
const DefaultCommitTimeout = 4 * time.Second

// GroupCommitter groups inbound messages from concurrent connections into one store transaction,
// so a burst of N connections costs one durable commit instead of N. Each caller of Commit waits
// until the transaction holding its message has committed (or failed): the ACK contract is kept
// per message. A batch closes when no further request is waiting or MaxBatch is reached, so a
// lone message is committed at once and latency stays at one commit; with Linger set, a batch
// may wait a little for messages it has reason to expect (see GroupCommitOptions.Linger).
type GroupCommitter struct {
	store    MessageStore
	maxBatch int
	observe  func(batch int, d time.Duration, err error)
	linger   time.Duration
	timeout  time.Duration
	// effectSlots bounds the transactions with effects in flight (GroupCommitOptions.EffectWorkers).
	effectSlots chan struct{}
	// records are the records the transactions with effects in flight may change.
	records recordLocks
	// shared are the keys of shared reference records (ordering practitioners) known to exist.
	shared sharedRecords

	reqs chan *commitRequest
	// mu orders Commit's send against Close: no request enters reqs after closed is closed, so
	// the workers' final drain sees every queued request.
	mu       sync.RWMutex
	isClosed bool
	closed   chan struct{}
	wg       sync.WaitGroup

	// health is the outcome of the last transactions, for Ready.
	health struct {
		sync.Mutex
		failedAt time.Time // the last failed transaction, zero once one has committed since
		err      error
	}
	now func() time.Time // time.Now; a test's clock
	// timers are Commit's deadline timers, reused: a timer per message would cost more than
	// the rest of Commit (Go 1.23 timers may be reset and reused safely once stopped).
	timers sync.Pool
}

type commitRequest struct {
	ctx  context.Context
	msg  *InboundMessage
	done chan error
	// state says whether a transaction has taken the request (reqTaken) or its caller has
	// given up on it first (reqAbandoned); whoever changes it from reqQueued decides.
	state atomic.Int32
}

const (
	reqQueued int32 = iota
	reqTaken
	reqAbandoned
)

// GroupCommitOptions tunes a GroupCommitter. Zero values take the defaults.
type GroupCommitOptions struct {
	// MaxBatch caps the messages in one transaction (default 64).
	MaxBatch int
	// Workers is the number of transactions in flight at once (default 1). More can help when
	// each commit waits on a distant database; with the database on the same machine, one worker
	// with Linger makes bigger batches and more throughput (docs/performance.md). SQLite has a
	// single writer.
	Workers int
	// Observe, if set, is called after each transaction with its size, duration and error.
	Observe func(batch int, d time.Duration, err error)
	// EffectWorkers is the number of transactions with effects (orders mapped to resources)
	// in flight at once (default 4). Such a transaction makes a dozen round trips per message,
	// so it waits on the database far more than it works: while it does, the worker gathers and
	// hands off the next batch. Two of them never change the same record at once: a batch
	// naming a patient, order or practitioner that one in flight names waits for it to end.
	// One that conflicts nonetheless (another node's transaction) is rolled back and tried
	// again (commitWithEffects).
	EffectWorkers int
	// Linger, if set, lets a batch wait up to this long for the messages a worker expects
	// (default 0: a batch never waits). An MLLP sender waits for each ACK before it sends its next
	// message, so under load the senders a commit has just answered are about to send again, and
	// those that queued during the commit are waiting: a batch that waits for the former commits
	// both groups at once, instead of the two alternating, each waiting for the other's commit.
	// The wait ends as soon as the expected number has arrived. When a wait times out (senders
	// with nothing more to send), the worker's next batches do not wait, more of them after each
	// miss and fewer after each wait that paid off, so a channel below saturation rarely waits.
	// Go's timers are coarse when the process is idle (about 1 ms), so a missed wait can cost up
	// to that.
	Linger time.Duration
	// Timeout bounds one message's commit, from Commit's call to its answer (default
	// DefaultCommitTimeout): the wait to enter a batch, the transaction (every statement and the
	// commit run under a context with this deadline) and the wait for its outcome. Past it
	// Commit returns ErrCommitInDoubt (in a transaction) or the context's error (not yet in one).
	Timeout time.Duration
}

// NewGroupCommitter starts the committer's workers. Call Close to stop them.
func NewGroupCommitter(store MessageStore, opt GroupCommitOptions) *GroupCommitter {
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = 64
	}
	if opt.Workers <= 0 {
		opt.Workers = 1
	}
	if opt.EffectWorkers <= 0 {
		opt.EffectWorkers = 4
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultCommitTimeout
	}
	g := &GroupCommitter{
		store:       store,
		maxBatch:    opt.MaxBatch,
		observe:     opt.Observe,
		linger:      opt.Linger,
		timeout:     opt.Timeout,
		reqs:        make(chan *commitRequest, opt.MaxBatch*opt.Workers),
		effectSlots: make(chan struct{}, opt.EffectWorkers),
		closed:      make(chan struct{}),
		now:         time.Now,
	}
	g.timers.New = func() any {
		t := time.NewTimer(time.Hour)
		t.Stop()
		return t
	}
	for range opt.Workers {
		g.wg.Add(1)
		go g.work()
	}
	return g
}

// Commit stores msg durably, batched with whatever other messages are waiting, and returns when
// that transaction has committed (nil) or failed. On success the store may have changed msg
// (ID, and Status/ACK for a duplicate). ctx and Timeout bound the wait to enter a batch (the
// message is then not stored: ctx's error); once a message is in a transaction, only Timeout
// bounds the wait for the outcome (shutting down, the caller still learns it), and past it
// Commit returns ErrCommitInDoubt: the caller never ACKs on a guess, and never hangs with the
// database.
func (g *GroupCommitter) Commit(ctx context.Context, msg *InboundMessage) error {
	deadline := g.timers.Get().(*time.Timer)
	deadline.Reset(g.timeout)
	defer func() { deadline.Stop(); g.timers.Put(deadline) }()
	req := &commitRequest{ctx: ctx, msg: msg, done: make(chan error, 1)}
	g.mu.RLock()
	if g.isClosed {
		g.mu.RUnlock()
		return ErrCommitterClosed
	}
	select {
	case g.reqs <- req:
		g.mu.RUnlock()
	case <-ctx.Done():
		g.mu.RUnlock()
		return ctx.Err()
	case <-deadline.C:
		g.mu.RUnlock()
		return fmt.Errorf("waiting to enter a commit: %w", context.DeadlineExceeded)
	}
	select {
	case err := <-req.done:
		return err
	case <-deadline.C:
		if req.state.CompareAndSwap(reqQueued, reqAbandoned) {
			// Still queued: no transaction will take it.
			return fmt.Errorf("waiting for a transaction: %w", context.DeadlineExceeded)
		}
		// In a transaction that has not ended: the duplicate check resolves its outcome
		// when the sender resends.
		return ErrCommitInDoubt
	}
}

// ReadyRetry is how long Ready reports a failed transaction when none has committed since: a
// node taken out of the balancer's rotation gets no messages to show it can commit again, so
// it says it is ready after this long and is tried again.
const ReadyRetry = 30 * time.Second

// Ready reports whether the store can commit (for /readyz): the error of the last transaction
// when it failed (a full disk, a database that refuses writes or does not answer) and none has
// committed since, for up to ReadyRetry; nil otherwise. A message refused on its own merits
// (stored as an error, answered AE/AR) is a transaction that committed.
func (g *GroupCommitter) Ready() error {
	g.health.Lock()
	defer g.health.Unlock()
	if g.health.err == nil || g.now().Sub(g.health.failedAt) >= ReadyRetry {
		return nil
	}
	return fmt.Errorf("the last commit failed: %w", g.health.err)
}

// Close stops accepting messages, commits those already queued and waits for the workers.
func (g *GroupCommitter) Close() {
	g.mu.Lock()
	if !g.isClosed {
		g.isClosed = true
		close(g.closed)
	}
	g.mu.Unlock()
	g.wg.Wait()
}

func (g *GroupCommitter) work() {
	defer g.wg.Done()
	batch := make([]*commitRequest, 0, g.maxBatch)
	msgs := make([]*InboundMessage, 0, g.maxBatch)
	var wait lingerState
	for {
		batch = batch[:0]
		select {
		case req := <-g.reqs:
			batch = append(batch, req)
		case <-g.closed:
			// Drain what was queued before Close so no caller waits forever.
			for {
				select {
				case req := <-g.reqs:
					batch = append(batch[:0], req)
					g.commit(batch, msgs[:0])
				default:
					return
				}
			}
		}
		batch = g.fill(batch)
		if g.linger > 0 {
			batch = g.fill(g.lingerFor(batch, &wait))
		}
		n := len(batch)
		g.commit(batch, msgs[:0])
		// Closed-loop senders: the n just answered come back, the queued ones are waiting.
		wait.expect = n + len(g.reqs)
	}
}

// fill adds the requests already waiting, up to MaxBatch.
func (g *GroupCommitter) fill(batch []*commitRequest) []*commitRequest {
	for len(batch) < g.maxBatch {
		select {
		case req := <-g.reqs:
			batch = append(batch, req)
		default:
			return batch
		}
	}
	return batch
}

// lingerState is one worker's expectation of the next batch and its backoff after misses.
type lingerState struct {
	expect  int // messages expected in the next batch
	skip    int // batches left that do not wait, after a miss
	backoff int // the skip after a miss: doubled by a miss (minLingerBackoff…maxLingerBackoff), halved by a hit
	timer   *time.Timer
}

// After a miss, this many batches do not wait, twice as many after each further miss, at most
// maxLingerBackoff: on a channel below saturation, where most waits would miss, few batches wait.
const (
	minLingerBackoff = 16
	maxLingerBackoff = 1024
)

// lingerFor waits up to Linger for batch to reach the expected size, as GroupCommitOptions.Linger
// describes.
func (g *GroupCommitter) lingerFor(batch []*commitRequest, w *lingerState) []*commitRequest {
	target := min(w.expect, g.maxBatch)
	if len(batch) >= target {
		return batch
	}
	if w.skip > 0 {
		w.skip--
		return batch
	}
	if w.timer == nil {
		w.timer = time.NewTimer(g.linger)
	} else {
		w.timer.Reset(g.linger)
	}
	defer w.timer.Stop()
	for len(batch) < target {
		select {
		case req := <-g.reqs:
			batch = append(batch, req)
		case <-w.timer.C:
			w.backoff = min(max(2*w.backoff, minLingerBackoff), maxLingerBackoff)
			w.skip = w.backoff
			return batch
		case <-g.closed:
			return batch
		}
	}
	w.backoff /= 2
	return batch
}

func (g *GroupCommitter) commit(batch []*commitRequest, msgs []*InboundMessage) {
	// A caller that gave up before its message was taken is not committed: it will not ACK.
	live := batch[:0] // filtered in place: batch is not read again
	for _, req := range batch {
		if !req.state.CompareAndSwap(reqQueued, reqTaken) {
			continue // its caller has given up on it
		}
		if err := req.ctx.Err(); err != nil {
			req.done <- err
			continue
		}
		live = append(live, req)
		msgs = append(msgs, req.msg)
	}
	if len(live) == 0 {
		return
	}
	start := time.Now()
	// The transaction outlives any one caller's context: its outcome decides every ACK in it.
	// Its deadline makes a hung database fail it rather than hold the worker (the callers have
	// been answered ErrCommitInDoubt by then).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(live[0].ctx), g.timeout)
	if hasEffects(msgs) {
		// Hand the batch to a transaction of its own (the worker reuses its slices) and go on
		// gathering; a full set of slots holds the worker back.
		live, msgs := slices.Clone(live), slices.Clone(msgs)
		g.effectSlots <- struct{}{}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer cancel()
			err := g.commitWithEffects(ctx, msgs)
			<-g.effectSlots
			g.finish(live, start, err)
		}()
		return
	}
	defer cancel()
	g.finish(live, start, g.store.CommitInbound(ctx, msgs))
}

// finish reports a transaction's outcome to every caller in it.
func (g *GroupCommitter) finish(live []*commitRequest, start time.Time, err error) {
	if g.observe != nil {
		g.observe(len(live), time.Since(start), err)
	}
	g.health.Lock()
	if err != nil {
		g.health.failedAt, g.health.err = g.now(), err
	} else {
		g.health.failedAt, g.health.err = time.Time{}, nil
	}
	g.health.Unlock()
	for _, req := range live {
		req.done <- err
	}
}

func hasEffects(msgs []*InboundMessage) bool {
	for _, m := range msgs {
		if m.effects != nil {
			return true
		}
	}
	return false
}

// txBeginner is the part of Store that commits messages together with their effects.
type txBeginner interface {
	Begin(ctx context.Context) (Tx, error)
}

// effectAttempts bounds the tries of a transaction with effects that a concurrent change got in
// the way of (ErrConflict: a deadlock broken by the database, a record another node changed or
// created meanwhile). A message that conflicts in the last try is answered AE (ERR 207).
const effectAttempts = 4

// commitWithEffects stores msgs and applies their effects (resources, worklist) in one
// transaction. It waits until no other transaction in flight names a record the batch's
// messages name (recordLocks), so that on one node two transactions never change the same
// record at once, and then runs the batch (tryEffects). When a concurrent change gets in the way
// nonetheless — another node's transaction — the whole transaction is rolled back, which lets go
// of every lock it took, and tried again with the messages as they came (up to effectAttempts):
// a conflict Ferry can resolve by retrying is never answered AE.
func (g *GroupCommitter) commitWithEffects(ctx context.Context, msgs []*InboundMessage) error {
	b, ok := g.store.(txBeginner)
	if !ok {
		return errors.New("the store cannot apply effects: it has no transactions")
	}
	if err := g.shared.create(ctx, b, msgs); err != nil {
		return err
	}
	var keys []string
	for _, m := range msgs {
		keys = append(keys, m.effects.recordKeys()...)
	}
	release, err := g.records.lock(ctx, keys)
	if err != nil {
		return fmt.Errorf("waiting for a transaction on the same records: %w", err)
	}
	defer release()
	saved := make([]InboundMessage, len(msgs))
	for i, m := range msgs {
		saved[i] = *m
	}
	for attempt := 1; ; {
		err := g.tryEffects(ctx, b, msgs, attempt == effectAttempts)
		if errors.Is(err, errFirstUndone) && ctx.Err() == nil {
			continue // the first message is an error now: it cannot fail the same way again
		}
		if !errors.Is(err, ErrConflict) || attempt == effectAttempts || ctx.Err() != nil {
			return err
		}
		attempt++
		// Each message as it came, but one whose effects failed on their own merits (fail
		// dropped them) stays an error: it is not worked out, nor logged, twice.
		for i, m := range msgs {
			if m.effects != nil || saved[i].effects == nil {
				*m = saved[i]
			}
		}
	}
}

// errFirstUndone ends a try whose first message's effects failed on their own merits: the
// message has no savepoint of its own (tryEffects), so the whole transaction is rolled back and
// the batch tried again with that message stored as an error.
var errFirstUndone = errors.New("the first message's effects failed")

// tryEffects is one try of commitWithEffects. Each message after the first is its own savepoint
// (the first needs none: a batch is mostly one or two messages, and a savepoint is a round trip):
// a message whose effects fail (an unknown order number) has them undone and is stored as an
// error with the AE its fail function builds, and the batch goes on — for the first message, by
// rolling the transaction back and trying again (errFirstUndone). A conflict (ErrConflict) ends
// the try, and the transaction is rolled back, unless last is set: then only the message that
// met it is undone and answered AE. Only the commit's outcome decides every ACK.
func (g *GroupCommitter) tryEffects(ctx context.Context, b txBeginner, msgs []*InboundMessage, last bool) (err error) {
	tx, err := b.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	for i, m := range msgs {
		if i > 0 {
			if err := tx.Savepoint(ctx); err != nil {
				return err
			}
		}
		if err := tx.InsertInbound(ctx, m); err != nil {
			return err
		}
		if m.effects == nil || m.Status != StatusAccepted {
			continue
		}
		aerr := m.effects.apply(ctx, tx, m)
		if aerr == nil {
			continue
		}
		if errors.Is(aerr, ErrConflict) && !last {
			return aerr
		}
		if i == 0 {
			m.fail(aerr)
			return errFirstUndone
		}
		if rerr := tx.RollbackToSavepoint(ctx); rerr != nil {
			return rerr
		}
		m.fail(aerr)
		if err := tx.InsertInbound(ctx, m); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	for _, m := range msgs {
		if m.Status == StatusAccepted {
			m.effects.committed()
		}
	}
	return nil
}

// recordLocks are the records (recordKeys) the transactions with effects in flight may change.
// A transaction takes all of its records at once or none, so two never wait for each other.
type recordLocks struct {
	mu   sync.Mutex
	held map[string]chan struct{} // closed when the transaction holding the record ends
}

// lock waits until no transaction holds any of keys, takes them all, and returns the function
// that lets them go.
func (l *recordLocks) lock(ctx context.Context, keys []string) (release func(), err error) {
	if len(keys) == 0 {
		return func() {}, nil
	}
	for {
		l.mu.Lock()
		var busy chan struct{}
		for _, k := range keys {
			if c, ok := l.held[k]; ok {
				busy = c
				break
			}
		}
		if busy == nil {
			break
		}
		l.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if l.held == nil {
		l.held = map[string]chan struct{}{}
	}
	done := make(chan struct{})
	for _, k := range keys {
		l.held[k] = done
	}
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		for _, k := range keys {
			delete(l.held, k)
		}
		l.mu.Unlock()
		close(done)
	}, nil
}
