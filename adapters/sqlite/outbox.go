package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ferryhealth/ferry/adapters/sqlstore"
	"github.com/ferryhealth/ferry/engine"
)

var (
	_ engine.Outbox           = (*Store)(nil)
	_ engine.DeliveryInserter = (*Tx)(nil)
	_ sqlstore.OutboxDialect  = dialect{}
)

// DueDeliveriesSQL: pending, due and not leased at ?1 (lease_until 0: none), not to a
// destination in the JSON array ?3, first of their queue; longest due first
// (deliveries_pending_due). INDEXED BY: without statistics SQLite reads every pending delivery
// through deliveries_status and sorts them all for each pass (24 ms with 5,000 pending, payloads
// included), where deliveries_pending_due gives them in order (next_attempt_at, then id: the
// rowid) and the LIMIT stops the walk.
func (dialect) DueDeliveriesSQL(columns, headOfQueue string) string {
	return `SELECT ` + columns + ` FROM deliveries d INDEXED BY deliveries_pending_due
WHERE d.status = 'pending' AND d.next_attempt_at <= ?1
	AND (d.lease_until = 0 OR d.lease_until < ?1) AND d.destination NOT IN (SELECT value FROM json_each(?3))
	AND ` + headOfQueue + `
ORDER BY d.next_attempt_at, d.id LIMIT ?2`
}

// ClaimDeliverySQL leases a delivery the due scan would return, in one statement on the one
// writer connection.
func (dialect) ClaimDeliverySQL(headOfQueue string) string {
	return `UPDATE deliveries AS d SET attempts = d.attempts + 1, lease_until = ?3
WHERE d.id = ?1 AND d.status = 'pending' AND d.next_attempt_at <= ?2
	AND (d.lease_until = 0 OR d.lease_until < ?2) AND ` + headOfQueue
}

// PostponeDestinationSQL: a range of deliveries_pending_queue, named because the planner, without
// statistics, would otherwise walk every pending delivery by status.
func (dialect) PostponeDestinationSQL() string {
	return `UPDATE deliveries INDEXED BY deliveries_pending_queue SET next_attempt_at = ?4
WHERE status = 'pending' AND queue_key >= ?2 AND queue_key < ?3 AND destination = ?1
	AND next_attempt_at < ?4 AND lease_until < ?5`
}

// BusyDestinations returns destinations as a JSON array, for json_each.
func (dialect) BusyDestinations(destinations []string) any {
	b, _ := json.Marshal(destinations) // a []string always encodes
	return string(b)
}

// InsertDelivery records d (pending or dead) in the transaction and sets d.ID, as
// engine.DeliveryInserter documents (sqlstore.Store.InsertDelivery); times in Unix nanoseconds
// (0 for a zero LeaseUntil or DeliveredAt).
func (t *Tx) InsertDelivery(ctx context.Context, d *engine.Delivery) error {
	if err := t.usable(); err != nil {
		return err
	}
	return t.check(shared.InsertDelivery(ctx, t.conn(), d))
}

// DueDeliveries returns up to limit (1 to 1000) deliveries that may be sent at now, as
// engine.Outbox documents, from the read-only pool.
func (s *Store) DueDeliveries(ctx context.Context, now time.Time, limit int, busy []string) ([]*engine.Delivery, error) {
	return shared.DueDeliveries(ctx, s.conn(), now, limit, busy)
}

// ClaimDelivery leases delivery id until leaseUntil and counts the attempt, on the writer. The
// outbox's updates run outside any Tx, from the deliverer's goroutines, while other goroutines'
// transactions hold the writer: Begin prepares them with a Tx's own statements
// (sqlstore.Store.TxStatements), so that a sender's first update does not wait for a
// transaction to end before it can even be prepared.
func (s *Store) ClaimDelivery(ctx context.Context, id int64, now, leaseUntil time.Time) (bool, error) {
	return shared.ClaimDelivery(ctx, s.conn(), id, now, leaseUntil)
}

// FinishDelivery records the outcome of an attempt at delivery id and ends its lease, as
// engine.Outbox documents, on the writer.
func (s *Store) FinishDelivery(ctx context.Context, id int64, o engine.DeliveryOutcome) error {
	return shared.FinishDelivery(ctx, s.conn(), id, o)
}

// ReplayDelivery makes dead delivery id pending again, as engine.Outbox documents, on the writer.
func (s *Store) ReplayDelivery(ctx context.Context, id int64, payload []byte, mappingVersion string, now time.Time) error {
	return shared.ReplayDelivery(ctx, s.conn(), id, payload, mappingVersion, now)
}

// PostponeDestination makes destination's pending deliveries due at until at the earliest, but
// those leased at now, on the writer.
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
