package sqlite

import (
	"fmt"
	"time"
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
