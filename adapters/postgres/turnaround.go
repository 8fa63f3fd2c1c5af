package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/ferryhealth/ferry/engine"
)

var (
	_ engine.TurnaroundReader = (*Store)(nil)
	_ engine.TurnaroundMarker = (*Tx)(nil)
)

const turnaroundColumns = `service_request_id, priority, ordered_at, study_at, preliminary_at, final_at, closed_at`

// markTurnaroundSQL creates an order's row (migrations/postgres/00009_turnaround.sql, 00010) or sets the
// milestones it has not reached (NULL) yet; the priority is always the latest. Two transactions
// marking one order meet on its row: the second waits for the first, then keeps its times.
const markTurnaroundSQL = `INSERT INTO turnaround AS t (` + turnaroundColumns + `)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (service_request_id) DO UPDATE SET priority = excluded.priority,
	ordered_at = coalesce(t.ordered_at, excluded.ordered_at),
	study_at = coalesce(t.study_at, excluded.study_at),
	preliminary_at = coalesce(t.preliminary_at, excluded.preliminary_at),
	final_at = coalesce(t.final_at, excluded.final_at),
	closed_at = coalesce(t.closed_at, excluded.closed_at)
RETURNING ` + turnaroundColumns

const turnaroundSQL = `SELECT ` + turnaroundColumns + ` FROM turnaround WHERE service_request_id = $1`

// MarkTurnaround records that order srID reached stage at, as engine.TurnaroundMarker
// documents, in one statement (markTurnaroundSQL), and returns the row as it now stands. Times
// are kept to the microsecond.
func (t *Tx) MarkTurnaround(ctx context.Context, srID, priority string, stage engine.TurnaroundStage, at time.Time) (*engine.Turnaround, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	if err := engine.ValidateTurnaroundMark(srID, priority, stage, at); err != nil {
		return nil, err
	}
	var times [5]any // ordered, study, preliminary, final, closed: NULL but the stage's
	switch stage {
	case engine.TurnaroundOrdered:
		times[0] = timestamp(at)
	case engine.TurnaroundStudy:
		times[1] = timestamp(at)
	case engine.TurnaroundPreliminary:
		times[2] = timestamp(at)
	case engine.TurnaroundFinal:
		times[2], times[3] = timestamp(at), timestamp(at) // a final answers a missing preliminary too
	case engine.TurnaroundClosed:
		times[4] = timestamp(at)
	}
	stmt, err := t.s.prepare(ctx, markTurnaroundSQL)
	if err != nil {
		return nil, err
	}
	ta, err := scanTurnaround(t.tx.StmtContext(ctx, stmt).QueryRowContext(ctx, storableText(srID), priority,
		times[0], times[1], times[2], times[3], times[4]))
	if err != nil {
		return nil, t.check(fmt.Errorf("marking turnaround %s of ServiceRequest/%s: %w", stage, srID, interpretError(err)))
	}
	return ta, nil
}

// Turnaround returns order srID's clocks, or engine.ErrNotFound.
func (s *Store) Turnaround(ctx context.Context, srID string) (*engine.Turnaround, error) {
	stmt, err := s.prepare(ctx, turnaroundSQL)
	if err != nil {
		return nil, err
	}
	ta, err := scanTurnaround(stmt.QueryRowContext(ctx, storableText(srID)))
	if err != nil {
		return nil, fmt.Errorf("reading turnaround of ServiceRequest/%s: %w", srID, interpretError(err))
	}
	return ta, nil
}

// Overdue returns up to n orders late at now under sla, as engine.TurnaroundReader documents,
// oldest study first. Each priority with an SLA is one term of engine.SLAs.OverdueBounds: its
// studies before the earlier due threshold (turnaround_awaiting_final: priority = $ AND
// study_at < $), kept when they miss their preliminary or are before the final's threshold too
// (NULL when the priority has no final SLA: nothing is before it). The query's text depends only
// on how many priorities have an SLA, so each shape is prepared once.
func (s *Store) Overdue(ctx context.Context, now time.Time, sla engine.SLAs, n int) ([]*engine.Turnaround, error) {
	var (
		terms []string
		args  []any
	)
	for _, b := range sla.OverdueBounds(now) {
		var finalBefore any // NULL: no final SLA
		if !b.FinalBefore.IsZero() {
			finalBefore = timestamp(b.FinalBefore)
		}
		args = append(args, storableText(b.Priority), timestamp(b.StudyBefore), finalBefore)
		i := len(args)
		terms = append(terms, fmt.Sprintf("(priority = $%d AND study_at < $%d AND (preliminary_at IS NULL OR study_at < $%d))", i-2, i-1, i))
	}
	out := []*engine.Turnaround{}
	if len(terms) == 0 {
		return out, nil
	}
	args = append(args, limit(n))
	query := `SELECT ` + turnaroundColumns + ` FROM turnaround
WHERE final_at IS NULL AND closed_at IS NULL AND study_at IS NOT NULL AND (` + strings.Join(terms, " OR ") + `)
ORDER BY study_at, service_request_id LIMIT $` + fmt.Sprint(len(args))
	stmt, err := s.prepare(ctx, query)
	if err != nil {
		return nil, err
	}
	rows, err := stmt.QueryContext(ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("reading overdue turnaround: %w", interpretError(err))
	}
	defer rows.Close()
	for rows.Next() {
		ta, err := scanTurnaround(rows)
		if err != nil {
			return nil, fmt.Errorf("reading overdue turnaround: %w", interpretError(err))
		}
		out = append(out, ta)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading overdue turnaround: %w", interpretError(err))
	}
	return out, nil
}

// scanTurnaround reads turnaroundColumns; NULL times are the zero time, the others UTC.
func scanTurnaround(row interface{ Scan(dest ...any) error }) (*engine.Turnaround, error) {
	var (
		ta    engine.Turnaround
		times [5]sql.NullTime
	)
	if err := row.Scan(&ta.ServiceRequestID, &ta.Priority, &times[0], &times[1], &times[2], &times[3], &times[4]); err != nil {
		return nil, err
	}
	for i, dst := range []*time.Time{&ta.OrderedAt, &ta.StudyAt, &ta.PreliminaryAt, &ta.FinalAt, &ta.ClosedAt} {
		if times[i].Valid {
			*dst = times[i].Time.UTC()
		}
	}
	return &ta, nil
}
