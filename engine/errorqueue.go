package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferryhealth/ferry/internal/wake"
)

// The error queue (docs/orders.md, "The error queue") is every inbound message whose processing
// failed — answered AE (StatusError), or acknowledged on receipt and failed later
// (ProcessingError) — until an analyst reprocesses it successfully or dismisses it with a reason.
// It closes a hole: such a message cannot come back by itself (the sender had its AA, and
// sending it again is a duplicate), so without the queue an order whose code table lacked a code
// was silently never placed. A message in the queue is found with MessageFilter.InErrorQueue.

// ReprocessKind is what an analyst asked of a message in the error queue.
type ReprocessKind string

const (
	// ReprocessRun runs the message again with the mappings and tables in force.
	ReprocessRun ReprocessKind = "reprocess"
	// ReprocessDismiss takes it off the queue without running it (a reason is required).
	ReprocessDismiss ReprocessKind = "dismiss"
)

// ReprocessState is where a request stands.
type ReprocessState string

const (
	ReprocessQueued  ReprocessState = "queued"  // waiting for the Reprocessor
	ReprocessRunning ReprocessState = "running" // claimed, inside the transaction that runs it
	ReprocessDone    ReprocessState = "done"    // ran and applied (or dismissed): off the queue
	ReprocessFailed  ReprocessState = "failed"  // ran and failed again: still in the queue
)

// Reprocessing is one request about a message of the error queue and, once run, its outcome.
// The message itself is never changed: requests are kept beside it, oldest first.
type Reprocessing struct {
	ID          int64
	MessageID   int64
	Kind        ReprocessKind
	RequestedAt time.Time
	RequestedBy string // the user who asked (audited as well)
	Reason      string
	State       ReprocessState
	FinishedAt  time.Time // zero until it has an outcome
	// MappingVersion is the mapping it ran with; Error why it failed again (safe to show: no PHI).
	MappingVersion string
	Error          string
}

// ReprocessRequest asks for every message of the error queue that Filter selects (its
// InErrorQueue is implied) to be reprocessed or dismissed.
type ReprocessRequest struct {
	Filter MessageFilter
	Kind   ReprocessKind
	By     string
	Reason string
	At     time.Time
}

// MaxReprocessBatch caps the messages one request may queue, so that a filter written too
// widely cannot queue the whole log at once; the analyst repeats it for more.
const MaxReprocessBatch = 10000

// Validate checks what every request needs.
func (r ReprocessRequest) Validate() error {
	switch {
	case r.Kind != ReprocessRun && r.Kind != ReprocessDismiss:
		return fmt.Errorf("reprocessing: kind %q is not reprocess or dismiss", r.Kind)
	case r.By == "":
		return errors.New("reprocessing: who asks is required")
	case r.Kind == ReprocessDismiss && r.Reason == "":
		return errors.New("reprocessing: a dismissal needs a reason")
	case r.At.IsZero():
		return errors.New("reprocessing: the time of the request is required")
	}
	return nil
}

// ErrorQueue is the error queue's store. Implementations: adapters/postgres, adapters/sqlite.
type ErrorQueue interface {
	// CountMessages counts the messages f selects (f.Limit and f.BeforeID ignored): "N messages
	// match" before a bulk action.
	CountMessages(ctx context.Context, f MessageFilter) (int, error)
	// RequestReprocessing records r for each message of the error queue r.Filter selects, up to
	// MaxReprocessBatch, oldest first, skipping those with a request still queued or running,
	// and returns how many it recorded. A dismissal is done at once; a reprocess is queued for
	// the Reprocessor.
	RequestReprocessing(ctx context.Context, r ReprocessRequest) (int, error)
	// Reprocessings returns the requests about message id, oldest first.
	Reprocessings(ctx context.Context, id int64) ([]*Reprocessing, error)
	// ErrorQueueStats counts the messages in the error queue and says when the oldest arrived
	// (zero when the queue is empty), for the metrics.
	ErrorQueueStats(ctx context.Context) (n int, oldest time.Time, err error)
}

// ReprocessTx is a store transaction that runs queued requests: the Reprocessor's Begin
// returns one (both stores' transactions are).
type ReprocessTx interface {
	Tx
	// ClaimReprocessing marks up to limit queued requests running, in the order their messages
	// arrived (so a patient's messages are run in their order), and returns them with their
	// messages (Raw filled). A claim whose transaction rolls back is queued again.
	ClaimReprocessing(ctx context.Context, limit int) ([]*Reprocessing, []*InboundMessage, error)
	// FinishReprocessing records r's outcome (State, FinishedAt, MappingVersion, Error).
	FinishReprocessing(ctx context.Context, r *Reprocessing) error
}

// Reprocessor runs the queued reprocessing requests: each message is mapped again with the
// mappings and code tables in force and applied in the transaction that records the outcome,
// exactly as the pending worker processes a message acknowledged on receipt. Any node may run
// one; claims are row updates, so each request runs once.
type Reprocessor struct {
	Store     Store
	Processor *Processor
	Logger    *slog.Logger
	// Batch is how many requests one transaction runs (default 32); Poll how long it waits when
	// none is queued (default 1s; Nudge wakes it sooner).
	Batch int
	Poll  time.Duration

	wake wake.Signal
}

// Nudge tells the Reprocessor a request was just queued. It never blocks.
func (r *Reprocessor) Nudge() { r.wake.Nudge() }

// Run runs queued requests until ctx ends; each batch under DefaultWorkTimeout, as the pending
// worker's (a frozen database holds no shutdown).
func (r *Reprocessor) Run(ctx context.Context) {
	if r.Poll <= 0 {
		r.Poll = time.Second
	}
	runBatches(ctx, &r.wake, r.Poll, r.batch(), DefaultWorkTimeout, r.logger(), "reprocessing messages", r.RunBatch)
}

func (r *Reprocessor) batch() int {
	if r.Batch <= 0 {
		return 32
	}
	return r.Batch
}

// RunBatch claims and runs up to Batch queued requests in one transaction and returns how many
// it ran.
func (r *Reprocessor) RunBatch(ctx context.Context) (n int, err error) {
	begun, err := r.Store.Begin(ctx)
	if err != nil {
		return 0, err
	}
	tx, ok := begun.(ReprocessTx)
	if !ok {
		_ = begun.Rollback()
		return 0, fmt.Errorf("reprocessing: the store's transaction (%T) cannot run requests", begun)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	reqs, msgs, err := tx.ClaimReprocessing(ctx, r.batch())
	if err != nil {
		return 0, err
	}
	if len(reqs) == 0 {
		return 0, tx.Rollback()
	}
	var done []*plan
	for i, req := range reqs {
		// Mapped and applied in its own savepoint exactly as the pending worker does.
		pl, version, perr := (&PendingWorker{Processor: r.Processor}).process(ctx, tx, msgs[i])
		req.MappingVersion, req.FinishedAt = version, time.Now().UTC()
		req.State, req.Error = ReprocessDone, ""
		if perr != nil {
			d := errorDetail(perr)
			req.State, req.Error = ReprocessFailed, processingErrorText(d)
			r.logger().Warn("reprocessed message failed again", "id", req.MessageID, "request", req.ID,
				"mapping", version, "err", d.Text, "location", d.Segment, "field", d.Field, "code", int(d.Code))
		} else if pl != nil {
			done = append(done, pl)
		}
		if err := tx.FinishReprocessing(ctx, req); err != nil {
			return 0, err
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	for _, pl := range done {
		pl.committed()
	}
	return len(reqs), nil
}

func (r *Reprocessor) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

// ErrorQueueStats is what the error queue's metrics read: ErrorQueue.ErrorQueueStats.
type ErrorQueueStats interface {
	ErrorQueueStats(ctx context.Context) (n int, oldest time.Time, err error)
}

// errorQueueCollector reads the error queue's size and age from the store at each scrape: the
// queue is the store's, shared by every node, so a counter kept in one process would be wrong.
type errorQueueCollector struct {
	store       ErrorQueueStats
	logger      *slog.Logger
	size, age   *prometheus.Desc
	now         func() time.Time
	scrapeLimit time.Duration
}

// NewErrorQueueCollector returns the collector of ferry_error_queue_messages and
// ferry_error_queue_oldest_age_seconds; the shipped alert rule fires on a queue not empty for
// longer than its for: (deploy/prometheus/ferry-rules.yml).
func NewErrorQueueCollector(store ErrorQueueStats, logger *slog.Logger) prometheus.Collector {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &errorQueueCollector{
		store: store, logger: logger, now: time.Now, scrapeLimit: 2 * time.Second,
		size: prometheus.NewDesc("ferry_error_queue_messages",
			"Inbound messages whose processing failed, neither reprocessed successfully nor dismissed.", nil, nil),
		age: prometheus.NewDesc("ferry_error_queue_oldest_age_seconds",
			"How long the oldest message of the error queue has waited (0 when the queue is empty).", nil, nil),
	}
}

func (c *errorQueueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.size; ch <- c.age }

func (c *errorQueueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.scrapeLimit)
	defer cancel()
	n, oldest, err := c.store.ErrorQueueStats(ctx)
	if err != nil {
		// No sample rather than a wrong one: the alert on the queue then does not resolve
		// falsely, and /readyz reports the store.
		c.logger.Warn("reading the error queue for metrics", "err", err)
		return
	}
	age := 0.0
	if n > 0 && !oldest.IsZero() {
		age = max(0, c.now().Sub(oldest).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, age)
}
