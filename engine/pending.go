package engine

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/ferryhealth/ferry/hl7"
	"github.com/ferryhealth/ferry/internal/wake"
)

// PendingWorker processes the messages a channel with ack: on_receipt acknowledged on storage
// (docs/orders.md): it claims them from the store in batches, maps and applies each in the
// transaction that marks it processed, and records a failure on the message (for the analyst and
// for replay) — the sender already has its AA. Any node may run one: claims skip rows another
// transaction holds, so each message is processed once.
type PendingWorker struct {
	Store     Store
	Processor *Processor
	Logger    *slog.Logger
	Metrics   *Metrics
	// Batch is how many messages one transaction processes (default 32).
	Batch int
	// Poll is how long the worker sleeps when nothing is pending (default 200ms); Nudge wakes it
	// sooner.
	Poll time.Duration
	// Timeout bounds one batch's transaction (default DefaultWorkTimeout): its context ends
	// then, and Run stops waiting for a batch the database does not answer (issue 18).
	Timeout time.Duration

	wake wake.Signal
}

// Nudge tells the worker that a message was just stored pending. It never blocks.
func (w *PendingWorker) Nudge() { w.wake.Nudge() }

// Run processes pending messages until ctx ends.
func (w *PendingWorker) Run(ctx context.Context) {
	if w.Batch <= 0 {
		w.Batch = 32
	}
	if w.Poll <= 0 {
		w.Poll = 200 * time.Millisecond
	}
	runBatches(ctx, &w.wake, w.Poll, w.Batch, w.timeout(), w.logger(), "processing pending messages", w.ProcessBatch)
}

// runBatches is a background worker's loop (the pending worker's, the Reprocessor's): when
// nudged, or every poll, it runs batch — each under runBounded — until one does less than a
// full batch of size or fails (logged unless ctx ended); until ctx ends.
func runBatches(ctx context.Context, sig *wake.Signal, poll time.Duration, size int, timeout time.Duration,
	log *slog.Logger, what string, batch func(context.Context) (int, error)) {
	nudge := sig.C()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-nudge:
		case <-t.C:
		}
		for {
			var n int
			err := runBounded(ctx, timeout, log, what, func(ctx context.Context) (err error) {
				n, err = batch(ctx)
				return err
			})
			if err != nil {
				if ctx.Err() == nil {
					log.Error(what, "err", err)
				}
				break
			}
			if n < size {
				break
			}
		}
		t.Reset(poll)
	}
}

// ProcessBatch claims and processes up to Batch pending messages in one transaction, under a
// context that ends after Timeout, and returns how many it processed.
func (w *PendingWorker) ProcessBatch(ctx context.Context) (n int, err error) {
	batch := w.Batch
	if batch <= 0 {
		batch = 32
	}
	ctx, cancel := context.WithTimeout(ctx, w.timeout())
	defer cancel()
	tx, err := w.Store.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	msgs, err := tx.ClaimPending(ctx, batch)
	if err != nil {
		return 0, err
	}
	if len(msgs) == 0 {
		return 0, tx.Rollback()
	}
	var done []*plan
	for _, m := range msgs {
		pl, version, perr := w.process(ctx, tx, m)
		if perr != nil {
			d := errorDetail(perr)
			w.logger().Warn("acknowledged message not processed", "id", m.ID, "control_id", m.ControlID,
				"mapping", version, "err", d.Text, "location", d.Segment, "field", d.Field, "code", int(d.Code))
			if w.Metrics != nil {
				w.Metrics.Rejects.WithLabelValues(m.Channel, "processing").Inc()
			}
			if err := tx.FinishPending(ctx, m.ID, version, processingErrorText(d)); err != nil {
				return 0, err
			}
			continue
		}
		if err := tx.FinishPending(ctx, m.ID, version, ""); err != nil {
			return 0, err
		}
		done = append(done, pl)
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	for _, pl := range done {
		pl.committed()
	}
	return len(msgs), nil
}

// process maps and applies one message inside its own savepoint; an error undoes its effects.
// It returns the plan applied (nil when the message has nothing to apply) for committed.
func (w *PendingWorker) process(ctx context.Context, tx Tx, m *InboundMessage) (pl *plan, version string, err error) {
	msg, err := hl7.Parse(m.Raw)
	if err != nil {
		return nil, "", errors.New("the stored message no longer parses")
	}
	pl, err = w.Processor.Plan(msg)
	if pl == nil {
		return nil, "", nil
	}
	version = pl.mappingVersion
	if err != nil {
		return nil, version, err
	}
	if err := tx.Savepoint(ctx); err != nil {
		return nil, version, err
	}
	if aerr := pl.apply(ctx, tx, m); aerr != nil {
		if err := tx.RollbackToSavepoint(ctx); err != nil {
			return nil, version, err
		}
		return nil, version, aerr
	}
	return pl, version, nil
}

// processingErrorText is an ERR detail as one line for the message log: code, location, text.
func processingErrorText(d hl7.ErrorDetail) string {
	loc := ""
	if d.Segment != "" {
		loc = d.Segment + "-" + strconv.Itoa(d.Field) + ": "
	}
	return loc + d.Text + " (ERR " + strconv.Itoa(int(d.Code)) + ")"
}

func (w *PendingWorker) timeout() time.Duration {
	if w.Timeout > 0 {
		return w.Timeout
	}
	return DefaultWorkTimeout
}

// DefaultWorkTimeout bounds one store transaction or read of a background worker (the pending
// worker's batch, the study deriver's derivation): far more than one takes on a working
// database, so that only a database that stopped answering reaches it.
const DefaultWorkTimeout = 30 * time.Second

// runBounded runs pass on its own goroutine and returns its error, or ctx's error as soon as ctx
// ends while pass is still running: a worker's shutdown never waits for a database that does not
// answer. pass's own store calls carry deadlines (a worker's Timeout); a driver that does not
// return when its context ends (lib/pq waits for a frozen server's answer to its cancel) leaves
// pass running past them, so once timeout has passed runBounded says so, once, and keeps waiting:
// the next pass starts only after this one ended, and none piles up behind a frozen database.
func runBounded(ctx context.Context, timeout time.Duration, log *slog.Logger, what string, pass func(context.Context) error) error {
	done := make(chan error, 1)
	go func() { done <- pass(ctx) }()
	late := time.NewTimer(timeout)
	defer late.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-late.C:
			log.Warn(what+": still running past its timeout; is the database answering?", "timeout", timeout)
		}
	}
}

func (w *PendingWorker) logger() *slog.Logger {
	if w.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Logger
}
