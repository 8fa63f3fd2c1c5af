package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/ferryhealth/ferry/engine"
)

var (
	_ engine.Outbox           = (*Store)(nil)
	_ engine.DeliveryInserter = (*Tx)(nil)
)

// insertDeliverySQL writes one outbox row (migrations/postgres/00008_deliveries.sql); a second
// delivery of a report version to a destination violates deliveries_report_destination_key.
const insertDeliverySQL = `
INSERT INTO deliveries (report_id, report_version, destination, kind, queue_key, status,
	control_id, payload, attempts, next_attempt_at, lease_until, last_error, response, created_at,
	delivered_at, mapping_version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
RETURNING id`

const deliveryColumns = `id, report_id, report_version, destination, kind, queue_key, status,
	control_id, payload, attempts, next_attempt_at, lease_until, last_error, response, created_at,
	delivered_at, mapping_version`

// headOfQueue holds for a pending delivery d when no pending delivery of its queue has a lower id
// (deliveries_pending_queue): one queue is sent strictly in id order, and a dead or delivered
// one does not hold it up.
const headOfQueue = `NOT EXISTS (SELECT 1 FROM deliveries e
	WHERE e.status = 'pending' AND e.queue_key = d.queue_key AND e.id < d.id)`

// dueDeliveriesSQL: pending, due and not leased at $1, not to a destination in $3, first of their
// queue; longest due first (deliveries_pending_due).
var dueDeliveriesSQL = `SELECT ` + deliveryColumns + ` FROM deliveries d
WHERE d.status = 'pending' AND d.next_attempt_at <= $1
	AND (d.lease_until IS NULL OR d.lease_until < $1) AND NOT d.destination = ANY($3) AND ` + headOfQueue + `
ORDER BY d.next_attempt_at, d.id LIMIT $2`

// claimDeliverySQL leases a delivery that dueDeliveriesSQL would return, in one statement: of
// two senders racing for it, the second waits for the first's update, then finds the row leased
// (READ COMMITTED re-checks the WHERE on the updated row) and changes nothing.
const claimDeliverySQL = `UPDATE deliveries d SET attempts = d.attempts + 1, lease_until = $3
WHERE d.id = $1 AND d.status = 'pending' AND d.next_attempt_at <= $2
	AND (d.lease_until IS NULL OR d.lease_until < $2) AND ` + headOfQueue

// finishDeliverySQL records an outcome of a pending delivery: next_attempt_at kept unless $3 is
// set (a retry), delivered_at set only for delivered, the lease ended.
const finishDeliverySQL = `UPDATE deliveries SET status = $2,
	next_attempt_at = coalesce($3, next_attempt_at), last_error = $4, response = $5,
	delivered_at = $6, lease_until = NULL
WHERE id = $1 AND status = 'pending'`

// replayDeliverySQL makes a dead delivery pending again, due at $3, its payload and mapping
// version ($4) replaced unless $2 is NULL. The last error goes (a new attempt will say its own); the receiver's last answer
// stays until the next one.
const replayDeliverySQL = `UPDATE deliveries SET status = 'pending', attempts = 0,
	next_attempt_at = $3, lease_until = NULL, last_error = '', payload = coalesce($2, payload),
	mapping_version = CASE WHEN $2::bytea IS NULL THEN mapping_version ELSE $4 END
WHERE id = $1 AND status = 'dead'`

var deliverySQL = `SELECT ` + deliveryColumns + ` FROM deliveries d WHERE d.id = $1`

// postponeDestinationSQL moves a destination's pending deliveries, but those leased, to $4 at the
// earliest. Its queues' keys start with the destination and "|" ($2, and $3 the same with "}",
// the next character): a range of deliveries_pending_queue.
const postponeDestinationSQL = `UPDATE deliveries SET next_attempt_at = $4
WHERE status = 'pending' AND queue_key >= $2 AND queue_key < $3 AND destination = $1
	AND next_attempt_at < $4 AND (lease_until IS NULL OR lease_until < $5)`

// InsertDelivery records d (pending or dead) in the transaction and sets d.ID, as
// engine.DeliveryInserter documents: text as valid UTF-8 without NULs (storableText), times to the
// microsecond, UTC, the payload byte for byte. A second delivery of the same report version to
// the same destination is engine.ErrConflict.
func (t *Tx) InsertDelivery(ctx context.Context, d *engine.Delivery) error {
	if err := t.usable(); err != nil {
		return err
	}
	if err := d.Validate(); err != nil {
		return err
	}
	stmt, err := t.s.prepare(ctx, insertDeliverySQL)
	if err != nil {
		return err
	}
	var id int64
	err = t.tx.StmtContext(ctx, stmt).QueryRowContext(ctx, storableText(d.ReportID), d.ReportVersion,
		storableText(d.Destination), d.Kind, storableText(d.QueueKey), string(d.Status),
		storableText(d.ControlID), nonNil(d.Payload), d.Attempts, timestamp(d.NextAttemptAt),
		nullTimestamp(d.LeaseUntil), storableText(d.LastError), storableText(d.Response),
		timestamp(d.CreatedAt), nullTimestamp(d.DeliveredAt), storableText(d.MappingVersion)).Scan(&id)
	if err != nil {
		return t.check(fmt.Errorf("storing delivery of DiagnosticReport/%s/_history/%d to %s: %w",
			d.ReportID, d.ReportVersion, d.Destination, interpretError(err)))
	}
	d.ID = id
	return nil
}

// DueDeliveries returns up to limit (1 to 1000) deliveries that may be sent at now, as
// engine.Outbox documents (dueDeliveriesSQL).
func (s *Store) DueDeliveries(ctx context.Context, now time.Time, limit int, busy []string) ([]*engine.Delivery, error) {
	skip := make([]string, len(busy))
	for i, b := range busy {
		skip[i] = storableText(b)
	}
	out, err := s.queryDeliveries(ctx, dueDeliveriesSQL, timestamp(now), min(max(limit, 1), 1000), pq.StringArray(skip))
	if err != nil {
		return nil, fmt.Errorf("reading due deliveries: %w", err)
	}
	return out, nil
}

// ClaimDelivery leases delivery id until leaseUntil and counts the attempt, in one conditional
// statement (claimDeliverySQL); false when it is not, at now, a pending, due, unleased delivery
// first of its queue.
func (s *Store) ClaimDelivery(ctx context.Context, id int64, now, leaseUntil time.Time) (bool, error) {
	n, err := s.execDelivery(ctx, claimDeliverySQL, id, timestamp(now), timestamp(leaseUntil))
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
	var nextAttemptAt, deliveredAt any
	switch o.Status {
	case engine.DeliveryPending:
		if o.NextAttemptAt.IsZero() {
			return fmt.Errorf("finishing delivery %d: a retry needs NextAttemptAt", id)
		}
		nextAttemptAt = timestamp(o.NextAttemptAt)
	case engine.DeliveryDelivered:
		if o.At.IsZero() {
			return fmt.Errorf("finishing delivery %d: a delivery needs At", id)
		}
		deliveredAt = timestamp(o.At)
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
	var p any // NULL keeps the payload
	if payload != nil {
		p = payload
	}
	n, err := s.execDelivery(ctx, replayDeliverySQL, id, p, timestamp(now), storableText(mappingVersion))
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
	dest := storableText(destination)
	n, err := s.execDelivery(ctx, postponeDestinationSQL, dest, dest+"|", dest+"}", timestamp(until), timestamp(now))
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
		where = append(where, fmt.Sprintf("d.%s = $%d", column, len(args)))
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
	args = append(args, limit(f.Limit), max(f.Offset, 0))
	query += fmt.Sprintf(" ORDER BY d.id DESC LIMIT $%d OFFSET $%d", len(args)-1, len(args))
	out, err := s.queryDeliveries(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("listing deliveries: %w", err)
	}
	return out, nil
}

// execDelivery runs one of the outbox's updates on the pool and returns the rows it changed.
func (s *Store) execDelivery(ctx context.Context, query string, args ...any) (int64, error) {
	stmt, err := s.prepare(ctx, query)
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

// queryDeliveries runs a query returning deliveryColumns, prepared, on the pool.
func (s *Store) queryDeliveries(ctx context.Context, query string, args ...any) ([]*engine.Delivery, error) {
	stmt, err := s.prepare(ctx, query)
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
			d                       engine.Delivery
			status                  string
			leaseUntil, deliveredAt sql.NullTime
		)
		if err := rows.Scan(&d.ID, &d.ReportID, &d.ReportVersion, &d.Destination, &d.Kind,
			&d.QueueKey, &status, &d.ControlID, &d.Payload, &d.Attempts, &d.NextAttemptAt,
			&leaseUntil, &d.LastError, &d.Response, &d.CreatedAt, &deliveredAt, &d.MappingVersion); err != nil {
			return nil, interpretError(err)
		}
		d.Status = engine.DeliveryStatus(status)
		d.Payload = nonNil(d.Payload)
		d.NextAttemptAt, d.CreatedAt = d.NextAttemptAt.UTC(), d.CreatedAt.UTC()
		if leaseUntil.Valid {
			d.LeaseUntil = leaseUntil.Time.UTC()
		}
		if deliveredAt.Valid {
			d.DeliveredAt = deliveredAt.Time.UTC()
		}
		out = append(out, &d)
	}
	return out, interpretError(rows.Err())
}

// timestamp returns t as timestamptz keeps it: UTC, to the microsecond.
func timestamp(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// nullTimestamp returns t as timestamp does, or NULL for the zero time (not set).
func nullTimestamp(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return timestamp(t)
}
