-- +goose Up

-- As migrations/postgres/00012_deliveries_due_order.sql: the due index in the due query's order.
-- (SQLite's index on next_attempt_at already ended in the rowid, the id: this states it.)

DROP INDEX deliveries_pending_due;
CREATE INDEX deliveries_pending_due ON deliveries (next_attempt_at, id) WHERE status = 'pending';

-- +goose Down
DROP INDEX deliveries_pending_due;
CREATE INDEX deliveries_pending_due ON deliveries (next_attempt_at) WHERE status = 'pending';
