-- +goose Up

-- The outbox, as in migrations/postgres/00008_deliveries.sql: one row per report version and
-- destination; payload as sent on every attempt; control_id stable across retries; one queue_key
-- sent strictly in id order; a lease instead of a held lock. Times are Unix nanoseconds, UTC;
-- lease_until and delivered_at are 0 when not set.

CREATE TABLE deliveries (
    id               INTEGER PRIMARY KEY,
    report_id        TEXT NOT NULL,
    report_version   INTEGER NOT NULL CHECK (report_version >= 1),
    destination      TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('mllp', 'fhir')),
    queue_key        TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    control_id       TEXT NOT NULL,
    payload          BLOB NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_until      INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT NOT NULL DEFAULT '',
    response         TEXT NOT NULL DEFAULT '',
    created_at       INTEGER NOT NULL,
    delivered_at     INTEGER NOT NULL DEFAULT 0,
    UNIQUE (report_id, report_version, destination)
) STRICT;
CREATE INDEX deliveries_pending_queue ON deliveries (queue_key, id) WHERE status = 'pending';
CREATE INDEX deliveries_pending_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_status ON deliveries (status, id);

-- +goose Down
DROP TABLE deliveries;
