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
	nudge := w.wake.C()
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
			n, err := w.ProcessBatch(ctx)
			if err != nil && ctx.Err() == nil {
				w.logger().Error("processing pending messages", "err", err)
				break
			}
			if n < w.Batch {
				break
			}
		}
		t.Reset(w.Poll)
	}
}

// ProcessBatch claims and processes up to Batch pending messages in one transaction and returns
// how many it processed.
func (w *PendingWorker) ProcessBatch(ctx context.Context) (n int, err error) {
	batch := w.Batch
	if batch <= 0 {
		batch = 32
	}
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

func (w *PendingWorker) logger() *slog.Logger {
	if w.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Logger
}
