package postgres

import (
	"time"

	"github.com/ferryhealth/ferry/adapters/sqlstore"
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

// timestamp returns t as timestamptz keeps it: UTC, to the microsecond.
func timestamp(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// nullTimestamp returns t as timestamp does, or NULL for the zero time (not set).
func nullTimestamp(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return timestamp(t)
}
