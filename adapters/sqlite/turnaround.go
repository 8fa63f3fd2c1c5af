package sqlite

import (
	"context"
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

// markTurnaroundSQL creates an order's row (migrations/sqlite/00009_turnaround.sql, 00010) or sets the
// milestones it has not reached (0) yet; the priority is always the latest.
const markTurnaroundSQL = `INSERT INTO turnaround (` + turnaroundColumns + `)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT (service_request_id) DO UPDATE SET priority = excluded.priority,
	ordered_at = coalesce(nullif(turnaround.ordered_at, 0), excluded.ordered_at),
	study_at = coalesce(nullif(turnaround.study_at, 0), excluded.study_at),
	preliminary_at = coalesce(nullif(turnaround.preliminary_at, 0), excluded.preliminary_at),
	final_at = coalesce(nullif(turnaround.final_at, 0), excluded.final_at),
	closed_at = coalesce(nullif(turnaround.closed_at, 0), excluded.closed_at)
RETURNING ` + turnaroundColumns

const turnaroundSQL = `SELECT ` + turnaroundColumns + ` FROM turnaround WHERE service_request_id = ?`

// MarkTurnaround records that order srID reached stage at, as engine.TurnaroundMarker
// documents, in one statement (markTurnaroundSQL), and returns the row as it now stands.
func (t *Tx) MarkTurnaround(ctx context.Context, srID, priority string, stage engine.TurnaroundStage, at time.Time) (*engine.Turnaround, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	if err := engine.ValidateTurnaroundMark(srID, priority, stage, at); err != nil {
		return nil, err
	}
	if err := checkNanos(at); err != nil {
		return nil, fmt.Errorf("marking turnaround of ServiceRequest/%s: %w", srID, err)
	}
	var times [5]int64 // ordered, study, preliminary, final, closed
	switch stage {
	case engine.TurnaroundOrdered:
		times[0] = nanos(at)
	case engine.TurnaroundStudy:
		times[1] = nanos(at)
	case engine.TurnaroundPreliminary:
		times[2] = nanos(at)
	case engine.TurnaroundFinal:
		times[2], times[3] = nanos(at), nanos(at) // a final answers a missing preliminary too
	case engine.TurnaroundClosed:
		times[4] = nanos(at)
	}
	stmt, err := t.stmt(ctx, markTurnaroundSQL)
	if err != nil {
		return nil, err
	}
	ta, err := scanTurnaround(stmt.QueryRowContext(ctx, storableText(srID), priority, times[0], times[1], times[2], times[3], times[4]))
	if err != nil {
		return nil, t.check(fmt.Errorf("marking turnaround %s of ServiceRequest/%s: %w", stage, srID, interpretError(err)))
	}
	return ta, nil
}

// Turnaround returns order srID's clocks, or engine.ErrNotFound.
func (s *Store) Turnaround(ctx context.Context, srID string) (*engine.Turnaround, error) {
	stmt, err := s.prepare(ctx, s.reader, turnaroundSQL)
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
// oldest study first (overdueQuery), from the read-only pool.
func (s *Store) Overdue(ctx context.Context, now time.Time, sla engine.SLAs, n int) ([]*engine.Turnaround, error) {
	if err := checkNanos(now); err != nil {
		return nil, fmt.Errorf("reading overdue turnaround: %w", err)
	}
	out := []*engine.Turnaround{}
	query, args := overdueQuery(now, sla, n)
	if query == "" {
		return out, nil
	}
	stmt, err := s.prepare(ctx, s.reader, query)
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

// overdueQuery is Overdue's query, "" when no priority has an SLA. It reads the partial index
// turnaround_awaiting_final (its WHERE implies the index's): only orders whose study is in and
// final is not. Each priority with an SLA is a term of engine.SLAs.OverdueBounds: its studies
// before the earlier due threshold, kept when they miss their preliminary or are before the
// final's threshold too (NULL when the priority has no final SLA: nothing is before it). The
// text depends only on how many priorities have an SLA, so each shape is prepared once.
func overdueQuery(now time.Time, sla engine.SLAs, n int) (string, []any) {
	var (
		terms []string
		args  []any
	)
	for _, b := range sla.OverdueBounds(now) {
		var finalBefore any // NULL: no final SLA
		if !b.FinalBefore.IsZero() {
			finalBefore = nanos(b.FinalBefore)
		}
		args = append(args, storableText(b.Priority), nanos(b.StudyBefore), finalBefore)
		terms = append(terms, "(priority = ? AND study_at < ? AND (preliminary_at = 0 OR study_at < ?))")
	}
	if len(terms) == 0 {
		return "", nil
	}
	query := `SELECT ` + turnaroundColumns + ` FROM turnaround
WHERE final_at = 0 AND closed_at = 0 AND study_at != 0 AND (` + strings.Join(terms, " OR ") + `)
ORDER BY study_at, service_request_id LIMIT ?`
	return query, append(args, limit(n))
}

// scanTurnaround reads turnaroundColumns; 0 times are the zero time.
func scanTurnaround(row interface{ Scan(dest ...any) error }) (*engine.Turnaround, error) {
	var (
		ta                                             engine.Turnaround
		ordered, study, preliminary, finalized, closed int64
	)
	if err := row.Scan(&ta.ServiceRequestID, &ta.Priority, &ordered, &study, &preliminary, &finalized, &closed); err != nil {
		return nil, err
	}
	ta.OrderedAt, ta.StudyAt, ta.PreliminaryAt = fromNanos(ordered), fromNanos(study), fromNanos(preliminary)
	ta.FinalAt, ta.ClosedAt = fromNanos(finalized), fromNanos(closed)
	return &ta, nil
}
