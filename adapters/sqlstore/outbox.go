package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/outbox"
)

// OutboxDialect supplies the outbox statements each engine was tuned for, measured: the due
// scan, the claim and the postponement name their indexes and spell "not leased" and the busy
// destinations each engine's own way (PostgreSQL: NULL leases and a text[] with = ANY; SQLite:
// INDEXED BY, 0 leases and a JSON array through json_each). Every Dialect of a store with an
// outbox implements it.
type OutboxDialect interface {
	// DueDeliveriesSQL returns the due scan: deliveries pending, due and not leased at parameter
	// 1, not to a destination in parameter 3 (a Dialect.List), first of their queue
	// (HeadOfQueue), longest due first, at most parameter 2 of them; columns are its select list.
	DueDeliveriesSQL(columns, headOfQueue string) string
	// ClaimDeliverySQL returns the claim: delivery parameter 1's attempt counted and its lease
	// set to parameter 3, only if the due scan would return it at parameter 2.
	ClaimDeliverySQL(headOfQueue string) string
	// PostponeDestinationSQL returns the statement that moves destination parameter 1's pending
	// deliveries (queue keys from parameter 2 up to parameter 3), but those leased at parameter
	// 5, to parameter 4 at the earliest.
	PostponeDestinationSQL() string
}

// DeliveryColumns are the deliveries columns every outbox query selects, in the order the
// shared code scans them.
const DeliveryColumns = `id, report_id, report_version, destination, kind, queue_key, status,
	control_id, payload, attempts, next_attempt_at, lease_until, last_error, response, created_at,
	delivered_at, mapping_version`

// HeadOfQueue holds for a pending delivery d when no pending delivery of its queue has a lower id
// (deliveries_pending_queue): one queue is sent strictly in id order, and a dead or delivered
// one does not hold it up.
const HeadOfQueue = `NOT EXISTS (SELECT 1 FROM deliveries e
	WHERE e.status = 'pending' AND e.queue_key = d.queue_key AND e.id < d.id)`

// outboxStatements are the outbox's statements (migrations/*/00008_deliveries.sql).
type outboxStatements struct {
	od                                                           OutboxDialect // nil: the dialect has no outbox
	insertDelivery, dueDeliveries, claimDelivery, finishDelivery string
	replayDelivery, delivery, postponeDestination                string
}

func newOutboxStatements(rebind func(string) string, d Dialect) outboxStatements {
	od, ok := d.(OutboxDialect)
	if !ok {
		return outboxStatements{}
	}
	none := d.TimeNone()
	return outboxStatements{
		od: od,
		// One outbox row; a second delivery of a report version to a destination violates the
		// table's unique key (engine.ErrConflict).
		insertDelivery: rebind(`
INSERT INTO deliveries (report_id, report_version, destination, kind, queue_key, status,
	control_id, payload, attempts, next_attempt_at, lease_until, last_error, response, created_at,
	delivered_at, mapping_version)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING id`),
		dueDeliveries: od.DueDeliveriesSQL(DeliveryColumns, HeadOfQueue),
		claimDelivery: od.ClaimDeliverySQL(HeadOfQueue),
		// An outcome of a pending delivery: next_attempt_at kept unless parameter 2 is set (a
		// retry), delivered_at set only for delivered, the lease ended.
		finishDelivery: rebind(`UPDATE deliveries SET status = ?,
	next_attempt_at = coalesce(?, next_attempt_at), last_error = ?, response = ?,
	delivered_at = ?, lease_until = ` + none + `
WHERE id = ? AND status = 'pending'`),
		// A dead delivery pending again, due at parameter 1, its payload and mapping version
		// replaced when parameter 3 is true. The last error goes (a new attempt will say its
		// own); the receiver's last answer stays until the next one.
		replayDelivery: rebind(`UPDATE deliveries SET status = 'pending', attempts = 0,
	next_attempt_at = ?, lease_until = ` + none + `, last_error = '', payload = coalesce(?, payload),
	mapping_version = CASE WHEN ? THEN ? ELSE mapping_version END
WHERE id = ? AND status = 'dead'`),
		delivery:            rebind(`SELECT ` + DeliveryColumns + ` FROM deliveries d WHERE d.id = ?`),
		postponeDestination: od.PostponeDestinationSQL(),
	}
}

// outboxTxStatements are the outbox's statements a store prepares before a transaction: the
// insert a transaction runs, and the updates the deliverer runs beside transactions (on SQLite's
// one writer, a first update must not wait for a transaction to end to be prepared).
func (s *Store) outboxTxStatements() []string {
	if s.od == nil {
		return nil
	}
	return []string{s.insertDelivery, s.claimDelivery, s.finishDelivery, s.replayDelivery, s.postponeDestination}
}

// InsertDelivery records d (pending or dead) on c (a transaction's) and sets d.ID, as
// outbox.Inserter documents: text as valid UTF-8 without NULs, times as the dialect keeps
// them, the payload byte for byte. A second delivery of the same report version to the same
// destination is engine.ErrConflict.
func (s *Store) InsertDelivery(ctx context.Context, c Conn, d *outbox.Delivery) error {
	if err := d.Validate(); err != nil {
		return &InvalidError{err}
	}
	var times [4]any
	for i, at := range []time.Time{d.NextAttemptAt, d.LeaseUntil, d.CreatedAt, d.DeliveredAt} {
		t, err := s.d.Time(at)
		if err != nil {
			return &InvalidError{fmt.Errorf("storing delivery of DiagnosticReport/%s: %w", d.ReportID, err)}
		}
		times[i] = t
	}
	var id int64
	rows, err := c.Query(ctx, s.insertDelivery, engine.StorableText(d.ReportID), d.ReportVersion,
		engine.StorableText(d.Destination), d.Kind, engine.StorableText(d.QueueKey), string(d.Status),
		engine.StorableText(d.ControlID), NonNil(d.Payload), d.Attempts, times[0], times[1],
		engine.StorableText(d.LastError), engine.StorableText(d.Response), times[2], times[3],
		engine.StorableText(d.MappingVersion))
	if err := s.scanOne(rows, err, func(r rowScanner) error { return r.Scan(&id) }); err != nil {
		return fmt.Errorf("storing delivery of DiagnosticReport/%s/_history/%d to %s: %w",
			d.ReportID, d.ReportVersion, d.Destination, err)
	}
	d.ID = id
	return nil
}

// DueDeliveries returns up to limit (1 to 1000) deliveries that may be sent at now, as
// outbox.Store documents (OutboxDialect.DueDeliveriesSQL).
func (s *Store) DueDeliveries(ctx context.Context, c Conn, now time.Time, limit int, busy []string) ([]*outbox.Delivery, error) {
	at, err := s.d.Time(now)
	if err != nil {
		return nil, fmt.Errorf("reading due deliveries: %w", err)
	}
	skip := make([]string, len(busy))
	for i, b := range busy {
		skip[i] = engine.StorableText(b)
	}
	out, err := s.queryDeliveries(ctx, c.Query, s.dueDeliveries, at, min(max(limit, 1), 1000), s.d.List(skip))
	if err != nil {
		return nil, fmt.Errorf("reading due deliveries: %w", err)
	}
	return out, nil
}

// ClaimDelivery leases delivery id until leaseUntil and counts the attempt, in one conditional
// statement (OutboxDialect.ClaimDeliverySQL); false when it is not, at now, a pending, due,
// unleased delivery first of its queue.
func (s *Store) ClaimDelivery(ctx context.Context, c Conn, id int64, now, leaseUntil time.Time) (bool, error) {
	at, err := s.d.Time(now)
	if err != nil {
		return false, fmt.Errorf("claiming delivery %d: %w", id, err)
	}
	until, err := s.d.Time(leaseUntil)
	if err != nil {
		return false, fmt.Errorf("claiming delivery %d: %w", id, err)
	}
	n, err := s.execDelivery(ctx, c, s.claimDelivery, id, at, until)
	if err != nil {
		return false, fmt.Errorf("claiming delivery %d: %w", id, err)
	}
	return n == 1, nil
}

// FinishDelivery records the outcome of an attempt at delivery id and ends its lease:
// NextAttemptAt for pending, DeliveredAt (o.At) for delivered. engine.ErrNotFound when id is not
// a pending delivery, so that a sender whose lease ran out cannot undo the outcome another
// sender recorded meanwhile.
func (s *Store) FinishDelivery(ctx context.Context, c Conn, id int64, o outbox.Outcome) error {
	var nextAttemptAt any // NULL keeps next_attempt_at
	deliveredAt, _ := s.d.Time(time.Time{})
	switch o.Status {
	case outbox.Pending:
		if o.NextAttemptAt.IsZero() {
			return fmt.Errorf("finishing delivery %d: a retry needs NextAttemptAt", id)
		}
		t, err := s.d.Time(o.NextAttemptAt)
		if err != nil {
			return fmt.Errorf("finishing delivery %d: %w", id, err)
		}
		nextAttemptAt = t
	case outbox.Delivered:
		if o.At.IsZero() {
			return fmt.Errorf("finishing delivery %d: a delivery needs At", id)
		}
		t, err := s.d.Time(o.At)
		if err != nil {
			return fmt.Errorf("finishing delivery %d: %w", id, err)
		}
		deliveredAt = t
	case outbox.Dead:
	default:
		return fmt.Errorf("finishing delivery %d: status %q is not pending, delivered or dead", id, o.Status)
	}
	n, err := s.execDelivery(ctx, c, s.finishDelivery, string(o.Status), nextAttemptAt,
		engine.StorableText(o.LastError), engine.StorableText(o.Response), deliveredAt, id)
	if err == nil && n == 0 {
		err = engine.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("finishing delivery %d: %w", id, err)
	}
	return nil
}

// ReplayDelivery makes dead delivery id pending again, due at now, its attempts and last error
// cleared and its payload and mapping version replaced when payload is not nil;
// engine.ErrNotFound when id is not a dead delivery.
func (s *Store) ReplayDelivery(ctx context.Context, c Conn, id int64, payload []byte, mappingVersion string, now time.Time) error {
	at, err := s.d.Time(now)
	if err != nil {
		return fmt.Errorf("replaying delivery %d: %w", id, err)
	}
	var p any // NULL keeps the payload
	if payload != nil {
		p = payload
	}
	n, err := s.execDelivery(ctx, c, s.replayDelivery, at, p, payload != nil, engine.StorableText(mappingVersion), id)
	if err == nil && n == 0 {
		err = engine.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("replaying delivery %d: %w", id, err)
	}
	return nil
}

// PostponeDestination makes destination's pending deliveries due at until at the earliest, but
// those leased at now, as outbox.Store documents (OutboxDialect.PostponeDestinationSQL). Its
// queues' keys start with the destination and "|": the range up to the destination and "}", the
// next character.
func (s *Store) PostponeDestination(ctx context.Context, c Conn, destination string, now, until time.Time) (int64, error) {
	at, err := s.d.Time(now)
	if err != nil {
		return 0, fmt.Errorf("postponing deliveries to %s: %w", destination, err)
	}
	to, err := s.d.Time(until)
	if err != nil {
		return 0, fmt.Errorf("postponing deliveries to %s: %w", destination, err)
	}
	dest := engine.StorableText(destination)
	n, err := s.execDelivery(ctx, c, s.postponeDestination, dest, dest+"|", dest+"}", to, at)
	if err != nil {
		return 0, fmt.Errorf("postponing deliveries to %s: %w", destination, err)
	}
	return n, nil
}

// Delivery returns delivery id with its payload, or engine.ErrNotFound.
func (s *Store) Delivery(ctx context.Context, c Conn, id int64) (*outbox.Delivery, error) {
	out, err := s.queryDeliveries(ctx, c.Query, s.delivery, id)
	if err == nil && len(out) == 0 {
		err = engine.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading delivery %d: %w", id, err)
	}
	return out[0], nil
}

// Deliveries lists the deliveries matching f, newest (highest ID) first, with their payloads.
// The query's text depends only on which filters are set (QueryShape).
func (s *Store) Deliveries(ctx context.Context, c Conn, f outbox.Filter) ([]*outbox.Delivery, error) {
	q := conditions{d: s.d}
	if f.Status != "" {
		q.add("d.status = " + q.arg(string(f.Status)))
	}
	if f.ReportID != "" {
		q.add("d.report_id = " + q.text(f.ReportID))
	}
	if f.Destination != "" {
		q.add("d.destination = " + q.text(f.Destination))
	}
	query := "SELECT " + DeliveryColumns + " FROM deliveries d" + q.clause() +
		" ORDER BY d.id DESC LIMIT " + q.arg(Limit(f.Limit)) + " OFFSET " + q.arg(max(f.Offset, 0))
	out, err := s.queryDeliveries(ctx, c.QueryShape, query, q.args...)
	if err != nil {
		return nil, fmt.Errorf("listing deliveries: %w", err)
	}
	return out, nil
}

// execDelivery runs one of the outbox's updates on c and returns the rows it changed.
func (s *Store) execDelivery(ctx context.Context, c Conn, query string, args ...any) (int64, error) {
	res, err := c.Exec(ctx, query, args...)
	if err != nil {
		return 0, s.d.InterpretError(err)
	}
	n, err := res.RowsAffected()
	return n, s.d.InterpretError(err)
}

// queryDeliveries runs a query returning DeliveryColumns with run (Conn.Query or QueryShape).
func (s *Store) queryDeliveries(ctx context.Context, run func(context.Context, string, ...any) (*sql.Rows, error), query string, args ...any) ([]*outbox.Delivery, error) {
	rows, err := run(ctx, query, args...)
	if err != nil {
		return nil, s.d.InterpretError(err)
	}
	defer rows.Close()
	out := []*outbox.Delivery{}
	for rows.Next() {
		var (
			d      outbox.Delivery
			status string
		)
		if err := rows.Scan(&d.ID, &d.ReportID, &d.ReportVersion, &d.Destination, &d.Kind,
			&d.QueueKey, &status, &d.ControlID, &d.Payload, &d.Attempts, scanTime{&d.NextAttemptAt},
			scanTime{&d.LeaseUntil}, &d.LastError, &d.Response, scanTime{&d.CreatedAt},
			scanTime{&d.DeliveredAt}, &d.MappingVersion); err != nil {
			return nil, s.d.InterpretError(err)
		}
		d.Status = outbox.Status(status)
		d.Payload = NonNil(d.Payload)
		out = append(out, &d)
	}
	return out, s.d.InterpretError(rows.Err())
}
