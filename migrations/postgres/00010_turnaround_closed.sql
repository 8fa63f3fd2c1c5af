-- +goose Up

-- An order's clocks stop when it is closed without needing a report (engine.TurnaroundClosed:
-- cancelled or discontinued, or its report cancelled): closed_at, NULL while it is open. A closed
-- order is never overdue, so the overdue query's index leaves it out.

ALTER TABLE turnaround ADD COLUMN closed_at timestamptz;
DROP INDEX turnaround_awaiting_final;
CREATE INDEX turnaround_awaiting_final ON turnaround (priority, study_at)
    WHERE final_at IS NULL AND closed_at IS NULL AND study_at IS NOT NULL;

-- +goose Down
DROP INDEX turnaround_awaiting_final;
CREATE INDEX turnaround_awaiting_final ON turnaround (priority, study_at)
    WHERE final_at IS NULL AND study_at IS NOT NULL;
ALTER TABLE turnaround DROP COLUMN closed_at;
