package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ferryhealth/ferry/engine"
)

var (
	_ engine.Outbox           = (*Store)(nil)
	_ engine.DeliveryInserter = (*Tx)(nil)
)

// insertDeliverySQL writes one outbox row (migrations/sqlite/00008_deliveries.sql); a second
// delivery of a report version to a destination violates the table's UNIQUE constraint.
const insertDeliverySQL = `
INSERT INTO deliveries (report_id, report_version, destination, kind, queue_key, status,
	control_id, payload, attempts, next_attempt_at, lease_until, last_error, response, created_at,
	delivered_at, mapping_version)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING id`

const deliveryColumns = `id, report_id, report_version, destination, kind, queue_key, status,
	control_id, payload, attempts, next_attempt_at, lease_until, last_error, response, created_at,
	delivered_at, mapping_version`

// headOfQueue holds for a pending delivery d when no pending delivery of its queue has a lower id
// (deliveries_pending_queue): one queue is sent strictly in id order, and a dead or delivered
// one does not hold it up.
const headOfQueue = `NOT EXISTS (SELECT 1 FROM deliveries e
	WHERE e.status = 'pending' AND e.queue_key = d.queue_key AND e.id < d.id)`

const (
	// dueDeliveriesSQL: pending, due and not leased at ?1 (lease_until 0: none), not to a
	// destination in the JSON array ?3, first of their queue; longest due first (deliveries_pending_due). INDEXED BY: without statistics SQLite
	// reads every pending delivery through deliveries_status and sorts them all for each pass
	// (24 ms with 5,000 pending, payloads included), where deliveries_pending_due gives them in
	// order (next_attempt_at, then id: the rowid) and the LIMIT stops the walk.
	dueDeliveriesSQL = `SELECT ` + deliveryColumns + ` FROM deliveries d INDEXED BY deliveries_pending_due
WHERE d.status = 'pending' AND d.next_attempt_at <= ?1
	AND (d.lease_until = 0 OR d.lease_until < ?1) AND d.destination NOT IN (SELECT value FROM json_each(?3))
	AND ` + headOfQueue + `
ORDER BY d.next_attempt_at, d.id LIMIT ?2`
	// claimDeliverySQL leases a delivery that dueDeliveriesSQL would return, in one statement
	// on the one writer connection.
	claimDeliverySQL = `UPDATE deliveries AS d SET attempts = d.attempts + 1, lease_until = ?3
WHERE d.id = ?1 AND d.status = 'pending' AND d.next_attempt_at <= ?2
	AND (d.lease_until = 0 OR d.lease_until < ?2) AND ` + headOfQueue
	// finishDeliverySQL records an outcome of a pending delivery: next_attempt_at kept unless ?3
	// is set (a retry), delivered_at set only for delivered (else 0), the lease ended.
	finishDeliverySQL = `UPDATE deliveries SET status = ?2,
	next_attempt_at = coalesce(?3, next_attempt_at), last_error = ?4, response = ?5,
	delivered_at = ?6, lease_until = 0
WHERE id = ?1 AND status = 'pending'`
	// replayDeliverySQL makes a dead delivery pending again, due at ?3, its payload and mapping
	// version (?4) replaced unless ?2 is NULL. The last error goes; the receiver's last answer stays until the next.
	replayDeliverySQL = `UPDATE deliveries SET status = 'pending', attempts = 0,
	next_attempt_at = ?3, lease_until = 0, last_error = '', payload = coalesce(?2, payload),
	mapping_version = CASE WHEN ?2 IS NULL THEN mapping_version ELSE ?4 END
WHERE id = ?1 AND status = 'dead'`
	deliverySQL = `SELECT ` + deliveryColumns + ` FROM deliveries d WHERE d.id = ?`
	// postponeDestinationSQL moves a destination's pending deliveries, but those leased, to ?4
	// at the earliest. Its queues' keys start with the destination and "|" (?2, and ?3 the same
	// with "}", the next character): a range of deliveries_pending_queue, named because the
	// planner, without statistics, would otherwise walk every pending delivery by status.
	postponeDestinationSQL = `UPDATE deliveries INDEXED BY deliveries_pending_queue SET next_attempt_at = ?4
WHERE status = 'pending' AND queue_key >= ?2 AND queue_key < ?3 AND destination = ?1
	AND next_attempt_at < ?4 AND lease_until < ?5`
)

// The outbox's updates run on the writer outside any Tx, from the deliverer's goroutines, while
// other goroutines' transactions hold the writer. Begin prepares them with the Tx's own
// statements, before it takes the connection, so that a sender's first update does not wait for
// a transaction to end before it can even be prepared.
func init() {
	txStatements = append(txStatements, claimDeliverySQL, finishDeliverySQL, replayDeliverySQL, postponeDestinationSQL)
}

// InsertDelivery records d (pending or dead) in the transaction and sets d.ID, as
// engine.DeliveryInserter documents: text as valid UTF-8 without NULs (storableText), times in
// Unix nanoseconds (0 for a zero LeaseUntil or DeliveredAt), the payload byte for byte. A second
// delivery of the same report version to the same destination is engine.ErrConflict.
func (t *Tx) InsertDelivery(ctx context.Context, d *engine.Delivery) error {
	if err := t.usable(); err != nil {
		return err
	}
	if err := d.Validate(); err != nil {
		return err
	}
	for _, at := range []time.Time{d.NextAttemptAt, d.LeaseUntil, d.CreatedAt, d.DeliveredAt} {
		if err := checkNanos(at); err != nil {
			return fmt.Errorf("storing delivery of DiagnosticReport/%s: %w", d.ReportID, err)
		}
	}
	stmt, err := t.stmt(ctx, insertDeliverySQL)
	if err != nil {
		return err
	}
	var id int64
	err = stmt.QueryRowContext(ctx, storableText(d.ReportID), d.ReportVersion,
		storableText(d.Destination), d.Kind, storableText(d.QueueKey), string(d.Status),
		storableText(d.ControlID), nonNil(d.Payload), d.Attempts, nanos(d.NextAttemptAt),
		nanos(d.LeaseUntil), storableText(d.LastError), storableText(d.Response),
		nanos(d.CreatedAt), nanos(d.DeliveredAt), storableText(d.MappingVersion)).Scan(&id)
	if err != nil {
		return t.check(fmt.Errorf("storing delivery of DiagnosticReport/%s/_history/%d to %s: %w",
			d.ReportID, d.ReportVersion, d.Destination, interpretError(err)))
	}
	d.ID = id
	return nil
}

// DueDeliveries returns up to limit (1 to 1000) deliveries that may be sent at now, as
// engine.Outbox documents (dueDeliveriesSQL), from the read-only pool.
func (s *Store) DueDeliveries(ctx context.Context, now time.Time, limit int, busy []string) ([]*engine.Delivery, error) {
	skip := make([]string, len(busy))
	for i, b := range busy {
		skip[i] = storableText(b)
	}
	b, _ := json.Marshal(skip) // a []string always encodes
	out, err := s.queryDeliveries(ctx, dueDeliveriesSQL, nanos(now), min(max(limit, 1), 1000), string(b))
	if err != nil {
		return nil, fmt.Errorf("reading due deliveries: %w", err)
	}
	return out, nil
}

// ClaimDelivery leases delivery id until leaseUntil and counts the attempt, in one conditional
// statement (claimDeliverySQL); false when it is not, at now, a pending, due, unleased delivery
// first of its queue.
func (s *Store) ClaimDelivery(ctx context.Context, id int64, now, leaseUntil time.Time) (bool, error) {
	if err := checkNanos(leaseUntil); err != nil {
		return false, fmt.Errorf("claiming delivery %d: %w", id, err)
	}
	n, err := s.execDelivery(ctx, claimDeliverySQL, id, nanos(now), nanos(leaseUntil))
	if err != nil {
		return false, fmt.Errorf("claiming delivery %d: %w", id, err)
	}
	return n == 1, nil
}

// FinishDelivery records the outcome of an attempt at delivery id and ends its lease:
// NextAttemptAt for pending, DeliveredAt (o.At) for delivered. engine.ErrNotFound when id is not
// a pending delivery, so that a sender whose lease ran out cannot undo the outcome another
// sender recorded meanwhile.
func (s *Store) FinishDelivery(ctx context.Context, id int64, o engine.DeliveryOutcome) error {
	var (
		nextAttemptAt any   // NULL keeps next_attempt_at
		deliveredAt   int64 // 0: not delivered
	)
	switch o.Status {
	case engine.DeliveryPending:
		if o.NextAttemptAt.IsZero() {
			return fmt.Errorf("finishing delivery %d: a retry needs NextAttemptAt", id)
		}
		if err := checkNanos(o.NextAttemptAt); err != nil {
			return fmt.Errorf("finishing delivery %d: %w", id, err)
		}
		nextAttemptAt = nanos(o.NextAttemptAt)
	case engine.DeliveryDelivered:
		if o.At.IsZero() {
			return fmt.Errorf("finishing delivery %d: a delivery needs At", id)
		}
		if err := checkNanos(o.At); err != nil {
			return fmt.Errorf("finishing delivery %d: %w", id, err)
		}
		deliveredAt = nanos(o.At)
	case engine.DeliveryDead:
	default:
		return fmt.Errorf("finishing delivery %d: status %q is not pending, delivered or dead", id, o.Status)
	}
	n, err := s.execDelivery(ctx, finishDeliverySQL, id, string(o.Status), nextAttemptAt,
		storableText(o.LastError), storableText(o.Response), deliveredAt)
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
func (s *Store) ReplayDelivery(ctx context.Context, id int64, payload []byte, mappingVersion string, now time.Time) error {
	if err := checkNanos(now); err != nil {
		return fmt.Errorf("replaying delivery %d: %w", id, err)
	}
	var p any // NULL keeps the payload
	if payload != nil {
		p = payload
	}
	n, err := s.execDelivery(ctx, replayDeliverySQL, id, p, nanos(now), storableText(mappingVersion))
	if err == nil && n == 0 {
		err = engine.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("replaying delivery %d: %w", id, err)
	}
	return nil
}

// PostponeDestination makes destination's pending deliveries due at until at the earliest, but
// those leased at now, as engine.Outbox documents (postponeDestinationSQL).
func (s *Store) PostponeDestination(ctx context.Context, destination string, now, until time.Time) (int64, error) {
	if err := checkNanos(until); err != nil {
		return 0, fmt.Errorf("postponing deliveries to %s: %w", destination, err)
	}
	dest := storableText(destination)
	n, err := s.execDelivery(ctx, postponeDestinationSQL, dest, dest+"|", dest+"}", nanos(until), nanos(now))
	if err != nil {
		return 0, fmt.Errorf("postponing deliveries to %s: %w", destination, err)
	}
	return n, nil
}

// Delivery returns delivery id with its payload, or engine.ErrNotFound.
func (s *Store) Delivery(ctx context.Context, id int64) (*engine.Delivery, error) {
	out, err := s.queryDeliveries(ctx, deliverySQL, id)
	if err == nil && len(out) == 0 {
		err = engine.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading delivery %d: %w", id, err)
	}
	return out[0], nil
}

// Deliveries lists the deliveries matching f, newest (highest ID) first, with their payloads.
// The query's text depends only on which filters are set, so each shape is prepared once.
func (s *Store) Deliveries(ctx context.Context, f engine.DeliveryFilter) ([]*engine.Delivery, error) {
	var (
		where []string
		args  []any
	)
	add := func(column, value string) {
		args = append(args, value)
		where = append(where, "d."+column+" = ?")
	}
	if f.Status != "" {
		add("status", string(f.Status))
	}
	if f.ReportID != "" {
		add("report_id", storableText(f.ReportID))
	}
	if f.Destination != "" {
		add("destination", storableText(f.Destination))
	}
	query := "SELECT " + deliveryColumns + " FROM deliveries d"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY d.id DESC LIMIT ? OFFSET ?"
	args = append(args, limit(f.Limit), max(f.Offset, 0))
	out, err := s.queryDeliveries(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("listing deliveries: %w", err)
	}
	return out, nil
}

// execDelivery runs one of the outbox's updates on the writer, committed on its own, and returns
// the rows it changed. Not to be called inside a Tx, which holds the writer.
func (s *Store) execDelivery(ctx context.Context, query string, args ...any) (int64, error) {
	stmt, err := s.prepare(ctx, s.writer, query)
	if err != nil {
		return 0, err
	}
	res, err := stmt.ExecContext(ctx, args...)
	if err != nil {
		return 0, interpretError(err)
	}
	n, err := res.RowsAffected()
	return n, interpretError(err)
}

// queryDeliveries runs a query returning deliveryColumns, prepared, on the read-only pool.
func (s *Store) queryDeliveries(ctx context.Context, query string, args ...any) ([]*engine.Delivery, error) {
	stmt, err := s.prepare(ctx, s.reader, query)
	if err != nil {
		return nil, err
	}
	rows, err := stmt.QueryContext(ctx, args...)
	if err != nil {
		return nil, interpretError(err)
	}
	defer rows.Close()
	out := []*engine.Delivery{}
	for rows.Next() {
		var (
			d                                                 engine.Delivery
			status                                            string
			nextAttemptAt, leaseUntil, createdAt, deliveredAt int64
		)
		if err := rows.Scan(&d.ID, &d.ReportID, &d.ReportVersion, &d.Destination, &d.Kind,
			&d.QueueKey, &status, &d.ControlID, &d.Payload, &d.Attempts, &nextAttemptAt,
			&leaseUntil, &d.LastError, &d.Response, &createdAt, &deliveredAt, &d.MappingVersion); err != nil {
			return nil, interpretError(err)
		}
		d.Status = engine.DeliveryStatus(status)
		d.Payload = nonNil(d.Payload)
		d.NextAttemptAt, d.LeaseUntil = fromNanos(nextAttemptAt), fromNanos(leaseUntil)
		d.CreatedAt, d.DeliveredAt = fromNanos(createdAt), fromNanos(deliveredAt)
		out = append(out, &d)
	}
	return out, interpretError(rows.Err())
}

// checkNanos rejects a time that Unix nanoseconds in an int64 cannot hold.
func checkNanos(t time.Time) error {
	if !t.IsZero() && (t.Year() < 1678 || t.Year() > 2261) {
		return fmt.Errorf("time %s is out of range", t)
	}
	return nil
}

// nanos returns t in Unix nanoseconds, 0 for the zero time (not set).
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromNanos returns Unix nanoseconds n as a time in UTC, the zero time for 0.
func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
