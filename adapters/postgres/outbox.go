package postgres

import (
	"context"
	"time"

	"github.com/lib/pq"

	"github.com/ferryhealth/ferry/adapters/sqlstore"
	"github.com/ferryhealth/ferry/engine"
)

var (
	_ engine.Outbox           = (*Store)(nil)
	_ engine.DeliveryInserter = (*Tx)(nil)
	_ sqlstore.OutboxDialect  = dialect{}
)

// The outbox's tuned statements (sqlstore.OutboxDialect), built on sqlstore's select list and
// head-of-queue condition.
var (
	// dueDeliveriesSQL: pending, due and not leased at $1, not to a destination in $3, first of
	// their queue; longest due first (deliveries_pending_due).
	dueDeliveriesSQL = dialect{}.DueDeliveriesSQL(sqlstore.DeliveryColumns, sqlstore.HeadOfQueue)
	// postponeDestinationSQL: a range of deliveries_pending_queue.
	postponeDestinationSQL = dialect{}.PostponeDestinationSQL()
)

func (dialect) DueDeliveriesSQL(columns, headOfQueue string) string {
	return `SELECT ` + columns + ` FROM deliveries d
WHERE d.status = 'pending' AND d.next_attempt_at <= $1
	AND (d.lease_until IS NULL OR d.lease_until < $1) AND NOT d.destination = ANY($3) AND ` + headOfQueue + `
ORDER BY d.next_attempt_at, d.id LIMIT $2`
}

// ClaimDeliverySQL leases a delivery the due scan would return, in one statement: of two senders
// racing for it, the second waits for the first's update, then finds the row leased (READ
// COMMITTED re-checks the WHERE on the updated row) and changes nothing.
func (dialect) ClaimDeliverySQL(headOfQueue string) string {
	return `UPDATE deliveries d SET attempts = d.attempts + 1, lease_until = $3
WHERE d.id = $1 AND d.status = 'pending' AND d.next_attempt_at <= $2
	AND (d.lease_until IS NULL OR d.lease_until < $2) AND ` + headOfQueue
}

func (dialect) PostponeDestinationSQL() string {
	return `UPDATE deliveries SET next_attempt_at = $4
WHERE status = 'pending' AND queue_key >= $2 AND queue_key < $3 AND destination = $1
	AND next_attempt_at < $4 AND (lease_until IS NULL OR lease_until < $5)`
}

func (dialect) BusyDestinations(destinations []string) any { return pq.StringArray(destinations) }

// InsertDelivery records d (pending or dead) in the transaction and sets d.ID, as
// engine.DeliveryInserter documents (sqlstore.Store.InsertDelivery); times to the microsecond.
func (t *Tx) InsertDelivery(ctx context.Context, d *engine.Delivery) error {
	if err := t.usable(); err != nil {
		return err
	}
	return t.check(shared.InsertDelivery(ctx, t.conn(), d))
}

// DueDeliveries returns up to limit (1 to 1000) deliveries that may be sent at now, as
// engine.Outbox documents (dueDeliveriesSQL).
func (s *Store) DueDeliveries(ctx context.Context, now time.Time, limit int, busy []string) ([]*engine.Delivery, error) {
	return shared.DueDeliveries(ctx, s.conn(), now, limit, busy)
}

// ClaimDelivery leases delivery id until leaseUntil and counts the attempt (ClaimDeliverySQL).
func (s *Store) ClaimDelivery(ctx context.Context, id int64, now, leaseUntil time.Time) (bool, error) {
	return shared.ClaimDelivery(ctx, s.conn(), id, now, leaseUntil)
}

// FinishDelivery records the outcome of an attempt at delivery id and ends its lease, as
// engine.Outbox documents.
func (s *Store) FinishDelivery(ctx context.Context, id int64, o engine.DeliveryOutcome) error {
	return shared.FinishDelivery(ctx, s.conn(), id, o)
}

// ReplayDelivery makes dead delivery id pending again, as engine.Outbox documents.
func (s *Store) ReplayDelivery(ctx context.Context, id int64, payload []byte, mappingVersion string, now time.Time) error {
	return shared.ReplayDelivery(ctx, s.conn(), id, payload, mappingVersion, now)
}

// PostponeDestination makes destination's pending deliveries due at until at the earliest, but
// those leased at now (postponeDestinationSQL).
func (s *Store) PostponeDestination(ctx context.Context, destination string, now, until time.Time) (int64, error) {
	return shared.PostponeDestination(ctx, s.conn(), destination, now, until)
}

// Delivery returns delivery id with its payload, or engine.ErrNotFound.
func (s *Store) Delivery(ctx context.Context, id int64) (*engine.Delivery, error) {
	return shared.Delivery(ctx, s.conn(), id)
}

// Deliveries lists the deliveries matching f, newest (highest ID) first, with their payloads.
func (s *Store) Deliveries(ctx context.Context, f engine.DeliveryFilter) ([]*engine.Delivery, error) {
	return shared.Deliveries(ctx, s.conn(), f)
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
