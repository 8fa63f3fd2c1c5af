package engine

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrCommitterClosed is returned by Commit after Close.
var ErrCommitterClosed = errors.New("group committer closed")

// GroupCommitter groups inbound messages from concurrent connections into one store transaction,
// so a burst of N connections costs one durable commit instead of N. Each caller of Commit waits
// until the transaction holding its message has committed (or failed): the ACK contract is kept
// per message. A batch closes when no further request is waiting or MaxBatch is reached; there is
// no timer, so a lone message is committed at once and latency stays at one commit.
type GroupCommitter struct {
	store    MessageStore
	maxBatch int
	observe  func(batch int, d time.Duration, err error)

	reqs chan *commitRequest
	// mu orders Commit's send against Close: no request enters reqs after closed is closed, so
	// the workers' final drain sees every queued request.
	mu       sync.RWMutex
	isClosed bool
	closed   chan struct{}
	wg       sync.WaitGroup
}

type commitRequest struct {
	ctx  context.Context
	msg  *InboundMessage
	done chan error
}

// GroupCommitOptions tunes a GroupCommitter. Zero values take the defaults.
type GroupCommitOptions struct {
	// MaxBatch caps the messages in one transaction (default 64).
	MaxBatch int
	// Workers is the number of transactions in flight at once (default 1). PostgreSQL gains from 2
	// (one batch fills while the other fsyncs); SQLite has a single writer, so 1.
	Workers int
	// Observe, if set, is called after each transaction with its size, duration and error.
	Observe func(batch int, d time.Duration, err error)
}

// NewGroupCommitter starts the committer's workers. Call Close to stop them.
func NewGroupCommitter(store MessageStore, opt GroupCommitOptions) *GroupCommitter {
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = 64
	}
	if opt.Workers <= 0 {
		opt.Workers = 1
	}
	g := &GroupCommitter{
		store:    store,
		maxBatch: opt.MaxBatch,
		observe:  opt.Observe,
		reqs:     make(chan *commitRequest, opt.MaxBatch*opt.Workers),
		closed:   make(chan struct{}),
	}
	for range opt.Workers {
		g.wg.Add(1)
		go g.work()
	}
	return g
}

// Commit stores msg durably, batched with whatever other messages are waiting, and returns when
// that transaction has committed (nil) or failed. On success the store may have changed msg
// (ID, and Status/ACK for a duplicate). ctx bounds only the wait to enter a batch: once a
// message is in a transaction, Commit waits for the outcome so the caller never ACKs on a guess.
func (g *GroupCommitter) Commit(ctx context.Context, msg *InboundMessage) error {
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
	}
	return <-req.done
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
	fill:
		for len(batch) < g.maxBatch {
			select {
			case req := <-g.reqs:
				batch = append(batch, req)
			default:
				break fill
			}
		}
		g.commit(batch, msgs[:0])
	}
}

func (g *GroupCommitter) commit(batch []*commitRequest, msgs []*InboundMessage) {
	// A caller that gave up before its message was taken is not committed: it will not ACK.
	live := batch[:0:0]
	for _, req := range batch {
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
	err := g.store.CommitInbound(context.WithoutCancel(live[0].ctx), msgs)
	if g.observe != nil {
		g.observe(len(live), time.Since(start), err)
	}
	for _, req := range live {
		req.done <- err
	}
}
