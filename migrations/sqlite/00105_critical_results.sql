-- +goose Up

-- Critical results, as in migrations/postgres/00105_critical_results.sql. Times are Unix
-- nanoseconds, UTC; acknowledged_at, notify_after and notified_at 0 until they happen.
CREATE TABLE critical_results (
    report_id            TEXT PRIMARY KEY,
    report_version       INTEGER NOT NULL,
    patient_id           TEXT NOT NULL,
    service_request_id   TEXT NOT NULL,
    reported_at          INTEGER NOT NULL,
    acknowledged_by      TEXT NOT NULL DEFAULT '',
    acknowledged_at      INTEGER NOT NULL DEFAULT 0,
    acknowledged_version INTEGER NOT NULL DEFAULT 0,
    notify_after         INTEGER NOT NULL DEFAULT 0,
    notify_attempts      INTEGER NOT NULL DEFAULT 0,
    notified_at          INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX critical_results_unacknowledged ON critical_results (reported_at) WHERE acknowledged_by = '';

-- +goose Down
DROP TABLE critical_results;
