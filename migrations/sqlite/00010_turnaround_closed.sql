-- +goose Up

-- As migrations/postgres/00010_turnaround_closed.sql: closed_at, Unix nanoseconds, 0 while the
-- order is open; a closed order is never overdue.

ALTER TABLE turnaround ADD COLUMN closed_at INTEGER NOT NULL DEFAULT 0;
DROP INDEX turnaround_awaiting_final;
CREATE INDEX turnaround_awaiting_final ON turnaround (priority, study_at)
    WHERE final_at = 0 AND closed_at = 0 AND study_at != 0;

-- +goose Down
DROP INDEX turnaround_awaiting_final;
CREATE INDEX turnaround_awaiting_final ON turnaround (priority, study_at)
    WHERE final_at = 0 AND study_at != 0;
ALTER TABLE turnaround DROP COLUMN closed_at;
