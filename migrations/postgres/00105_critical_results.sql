-- +goose Up

-- Critical results (docs/reports.md, "Critical results"): a report stored with the
-- critical-finding extension must be acknowledged by its ordering physician (ACR practice
-- parameter on communication of diagnostic imaging findings). The row is written in the
-- transaction that stores the first critical version of the report; the acknowledgement (who,
-- when, which version was read) is recorded on it once, by the first physician who
-- acknowledges; notified_at is when the overdue webhook was answered 2xx (once per report).
CREATE TABLE critical_results (
    report_id            text PRIMARY KEY,
    report_version       bigint NOT NULL,
    patient_id           text NOT NULL,
    service_request_id   text NOT NULL,
    reported_at          timestamptz NOT NULL,
    acknowledged_by      text NOT NULL DEFAULT '',
    acknowledged_at      timestamptz,
    acknowledged_version bigint NOT NULL DEFAULT 0,
    -- The webhook: notify_after holds off another attempt (a node's claim, or a retry's
    -- backoff); notify_attempts counts them.
    notify_after         timestamptz,
    notify_attempts      integer NOT NULL DEFAULT 0,
    notified_at          timestamptz
);
-- The unacknowledged few among many: the metrics' and the alerter's scan.
CREATE INDEX critical_results_unacknowledged ON critical_results (reported_at) WHERE acknowledged_by = '';

-- +goose Down
DROP TABLE critical_results;
