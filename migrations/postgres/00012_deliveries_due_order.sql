-- +goose Up

-- The due query orders by (next_attempt_at, id). Many deliveries share one due time — those of a
-- destination found down are all postponed to its retry time (engine.Outbox.PostponeDestination),
-- a bulk import — and with next_attempt_at alone the planner sorted them all, or scanned the
-- table: 126–168 ms per pass with 100,000 pending at one time, 1.0–2.6 ms with this index
-- (docs/performance.md, "Report delivery").

DROP INDEX deliveries_pending_due;
CREATE INDEX deliveries_pending_due ON deliveries (next_attempt_at, id) WHERE status = 'pending';

-- +goose Down
DROP INDEX deliveries_pending_due;
CREATE INDEX deliveries_pending_due ON deliveries (next_attempt_at) WHERE status = 'pending';
