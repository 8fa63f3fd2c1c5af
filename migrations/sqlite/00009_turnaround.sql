-- +goose Up

-- Turnaround clocks, as in migrations/postgres/00009_turnaround.sql: one row per order with the
-- time each milestone was first reached. Times are Unix nanoseconds, UTC; 0 until reached.

CREATE TABLE turnaround (
    service_request_id  TEXT NOT NULL PRIMARY KEY,
    priority            TEXT NOT NULL CHECK (priority IN ('routine', 'urgent', 'asap', 'stat')),
    ordered_at          INTEGER NOT NULL DEFAULT 0,
    study_at            INTEGER NOT NULL DEFAULT 0,
    preliminary_at      INTEGER NOT NULL DEFAULT 0,
    final_at            INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;
CREATE INDEX turnaround_awaiting_final ON turnaround (priority, study_at)
    WHERE final_at = 0 AND study_at != 0;

-- +goose Down
DROP TABLE turnaround;
