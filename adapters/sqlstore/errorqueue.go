package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/audit"
)

// The error queue's SQL (engine/errorqueue.go, migrations/*/00090_reprocessing.sql).
const (
	reprocessColumns = `id, message_id, kind, requested_at, requested_by, reason, state, finished_at, mapping_version, error`

	// failedSQL is the partial index inbound_messages_failed's predicate, written as the index
	// writes it so that the planner uses it: processing_error is only ever set on an accepted
	// message whose processing ran.
	failedSQL = `(status = 'error' OR processing_error <> '')`
	// inErrorQueueSQL: failed, and neither dismissed nor reprocessed successfully.
	inErrorQueueSQL = failedSQL + ` AND NOT EXISTS (SELECT 1 FROM message_reprocessing r
WHERE r.message_id = inbound_messages.id AND (r.kind = 'dismiss' OR r.state = 'done'))`
	// requestableSQL: in the queue and with no request still queued or running.
	requestableSQL = inErrorQueueSQL + ` AND NOT EXISTS (SELECT 1 FROM message_reprocessing q
WHERE q.message_id = inbound_messages.id AND q.state IN ('queued', 'running'))`
)

type errorQueueStatements struct {
	reprocessings, errorQueueStats, claimReprocessing, finishReprocessing string
}

func newErrorQueueStatements(rebind func(string) string) errorQueueStatements {
	return errorQueueStatements{
		reprocessings:   rebind(`SELECT ` + reprocessColumns + ` FROM message_reprocessing WHERE message_id = ? ORDER BY id`),
		errorQueueStats: `SELECT count(*), min(received_at) FROM inbound_messages WHERE ` + inErrorQueueSQL,
		// The outer state test makes a second claimer, which waited for the first's row locks
		// on PostgreSQL, skip what the first claimed.
		claimReprocessing: rebind(`UPDATE message_reprocessing SET state = 'running'
WHERE state = 'queued' AND id IN (SELECT id FROM message_reprocessing WHERE state = 'queued'
ORDER BY message_id, id LIMIT ?)
RETURNING ` + reprocessColumns),
		finishReprocessing: rebind(`UPDATE message_reprocessing SET state = ?, finished_at = ?, mapping_version = ?, error = ?
WHERE id = ? AND state = 'running'`),
	}
}

// CountMessages counts the messages f selects; Limit and BeforeID do not apply.
func (s *Store) CountMessages(ctx context.Context, c Conn, f engine.MessageFilter) (int, error) {
	f.BeforeID = 0
	q, err := s.messageConditions(f)
	if err != nil {
		return 0, err
	}
	var n int
	rows, err := c.QueryOnce(ctx, "SELECT count(*) FROM inbound_messages"+q.clause(), q.args...)
	if err := s.scanOne(rows, err, func(r rowScanner) error { return r.Scan(&n) }); err != nil {
		return 0, fmt.Errorf("counting messages: %w", err)
	}
	return n, nil
}

// RequestReprocessing records r for each requestable message r.Filter selects, oldest first, up
// to engine.MaxReprocessBatch, in one statement on c, a transaction's.
func (s *Store) RequestReprocessing(ctx context.Context, c Conn, r engine.ReprocessRequest) (int, error) {
	if err := r.Validate(); err != nil {
		return 0, &InvalidError{err}
	}
	state, finished := engine.ReprocessQueued, time.Time{}
	if r.Kind == engine.ReprocessDismiss {
		state, finished = engine.ReprocessDone, r.At
	}
	ts, err := s.times(r.At, finished)
	if err != nil {
		return 0, err
	}
	q := conditions{d: s.d}
	values := []string{q.arg(string(r.Kind)), q.arg(ts[0]), q.text(r.By), q.text(r.Reason), q.arg(string(state)), q.arg(ts[1])}
	f := r.Filter
	f.InErrorQueue, f.BeforeID = false, 0 // requestableSQL says it, and more
	if err := s.addMessageConditions(&q, f); err != nil {
		return 0, err
	}
	q.add(requestableSQL)
	query := `INSERT INTO message_reprocessing (message_id, kind, requested_at, requested_by, reason, state, finished_at)
SELECT id, ` + strings.Join(values, ", ") + ` FROM inbound_messages` + q.clause() + ` ORDER BY id LIMIT ` + q.arg(engine.MaxReprocessBatch) + `
RETURNING message_id`
	// c is a transaction's (Pool.RequestReprocessing begins one, for the request's audit event):
	// QueryOnce runs the varying text unprepared in it; RETURNING counts what was recorded.
	rows, err := c.QueryOnce(ctx, query, q.args...)
	if err != nil {
		return 0, fmt.Errorf("requesting reprocessing: %w", s.d.InterpretError(err))
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("requesting reprocessing: %w", s.d.InterpretError(err))
	}
	return n, nil
}

// Reprocessings returns the requests about message id, oldest first.
func (s *Store) Reprocessings(ctx context.Context, c Conn, id int64) ([]*engine.Reprocessing, error) {
	rows, err := c.Query(ctx, s.reprocessings, id)
	out, err := scanAll(s, rows, err, scanReprocessing)
	if err != nil {
		return nil, fmt.Errorf("reading the reprocessing of message %d: %w", id, err)
	}
	return out, nil
}

// ErrorQueueStats counts the error queue and says when its oldest message arrived.
func (s *Store) ErrorQueueStats(ctx context.Context, c Conn) (n int, oldest time.Time, err error) {
	rows, err := c.Query(ctx, s.errorQueueStats)
	if err := s.scanOne(rows, err, func(r rowScanner) error { return r.Scan(&n, scanTime{&oldest}) }); err != nil {
		return 0, time.Time{}, fmt.Errorf("reading the error queue: %w", err)
	}
	return n, oldest, nil
}

// ClaimReprocessing marks up to limit queued requests running, in the order their messages
// arrived, and returns them with their messages; in transaction c.
func (s *Store) ClaimReprocessing(ctx context.Context, c Conn, limit int) ([]*engine.Reprocessing, []*engine.InboundMessage, error) {
	rows, err := c.Query(ctx, s.claimReprocessing, limit)
	reqs, err := scanAll(s, rows, err, scanReprocessing)
	if err != nil {
		return nil, nil, fmt.Errorf("claiming reprocessing: %w", err)
	}
	// RETURNING gives no order: run them as their messages arrived.
	sort.Slice(reqs, func(i, j int) bool {
		if reqs[i].MessageID != reqs[j].MessageID {
			return reqs[i].MessageID < reqs[j].MessageID
		}
		return reqs[i].ID < reqs[j].ID
	})
	msgs := make([]*engine.InboundMessage, len(reqs))
	for i, r := range reqs {
		if msgs[i], err = s.Message(ctx, c, r.MessageID); err != nil {
			return nil, nil, fmt.Errorf("claiming reprocessing: %w", err)
		}
	}
	return reqs, msgs, nil
}

// FinishReprocessing records a claimed request's outcome.
func (s *Store) FinishReprocessing(ctx context.Context, c Conn, r *engine.Reprocessing) error {
	ts, err := s.times(r.FinishedAt)
	if err != nil {
		return err
	}
	return s.execOne(ctx, c, fmt.Sprintf("finishing reprocessing %d", r.ID), s.finishReprocessing,
		string(r.State), ts[0], engine.StorableText(r.MappingVersion), engine.StorableText(r.Error), r.ID)
}

func scanReprocessing(r rowScanner) (*engine.Reprocessing, error) {
	var (
		p           engine.Reprocessing
		kind, state string
	)
	if err := r.Scan(&p.ID, &p.MessageID, &kind, scanTime{&p.RequestedAt}, &p.RequestedBy, &p.Reason, &state,
		scanTime{&p.FinishedAt}, &p.MappingVersion, &p.Error); err != nil {
		return nil, err
	}
	p.Kind, p.State = engine.ReprocessKind(kind), engine.ReprocessState(state)
	return &p, nil
}

func (p Pool) CountMessages(ctx context.Context, f engine.MessageFilter) (int, error) {
	return p.S.CountMessages(ctx, p.C, f)
}

// RequestReprocessing runs in a transaction of its own, which also appends the audit event
// pending in ctx for the request (a person's reprocess or dismissal, audit.PendingIn).
func (p Pool) RequestReprocessing(ctx context.Context, r engine.ReprocessRequest) (int, error) {
	var n int
	err := p.inTx(ctx, audit.PendingIn(ctx), "", func(tx engine.Tx) error {
		rtx, ok := tx.(reprocessRequester)
		if !ok {
			return errors.New("requesting reprocessing: the store's transactions cannot")
		}
		var err error
		if n, err = rtx.RequestReprocessing(ctx, r); err == nil && n == 0 {
			err = errNoChange
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// reprocessRequester is a transaction that records reprocessing requests (TxSteps).
type reprocessRequester interface {
	RequestReprocessing(ctx context.Context, r engine.ReprocessRequest) (int, error)
}

// RequestReprocessing records r in the transaction, as Store.RequestReprocessing documents.
func (t TxSteps) RequestReprocessing(ctx context.Context, r engine.ReprocessRequest) (int, error) {
	if err := t.G.Usable(); err != nil {
		return 0, err
	}
	n, err := t.S.RequestReprocessing(ctx, t.C, r)
	return n, t.G.Check(err)
}

func (p Pool) Reprocessings(ctx context.Context, id int64) ([]*engine.Reprocessing, error) {
	return p.S.Reprocessings(ctx, p.C, id)
}

func (p Pool) ErrorQueueStats(ctx context.Context) (int, time.Time, error) {
	return p.S.ErrorQueueStats(ctx, p.C)
}

func (t TxSteps) ClaimReprocessing(ctx context.Context, limit int) ([]*engine.Reprocessing, []*engine.InboundMessage, error) {
	if err := t.G.Usable(); err != nil {
		return nil, nil, err
	}
	reqs, msgs, err := t.S.ClaimReprocessing(ctx, t.C, limit)
	return reqs, msgs, t.G.Check(err)
}

func (t TxSteps) FinishReprocessing(ctx context.Context, r *engine.Reprocessing) error {
	if err := t.G.Usable(); err != nil {
		return err
	}
	return t.G.Check(t.S.FinishReprocessing(ctx, t.C, r))
}
