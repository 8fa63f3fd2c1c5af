package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/turnaround"
)

const turnaroundColumns = `service_request_id, priority, ordered_at, study_at, preliminary_at, final_at, closed_at`

// turnaroundStatements are the turnaround clocks' fixed statements
// (migrations/*/00009_turnaround.sql, 00010).
type turnaroundStatements struct {
	markTurnaround, turnaround string
}

// newTurnaroundStatements writes markTurnaround: it creates an order's row or sets the
// milestones it has not reached (no time) yet; the priority is always the latest. Two
// transactions marking one order meet on its row: the second waits for the first, then keeps its
// times.
func newTurnaroundStatements(rebind func(string) string, d Dialect) turnaroundStatements {
	keep := func(column string) string {
		return column + ` = coalesce(` + d.TimeOrNull("turnaround."+column) + `, excluded.` + column + `)`
	}
	return turnaroundStatements{
		markTurnaround: rebind(`INSERT INTO turnaround (` + turnaroundColumns + `)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (service_request_id) DO UPDATE SET priority = excluded.priority,
	` + keep("ordered_at") + `,
	` + keep("study_at") + `,
	` + keep("preliminary_at") + `,
	` + keep("final_at") + `,
	` + keep("closed_at") + `
RETURNING ` + turnaroundColumns),
		turnaround: rebind(`SELECT ` + turnaroundColumns + ` FROM turnaround WHERE service_request_id = ?`),
	}
}

// MarkTurnaround records that order srID reached stage at, on c (a transaction's), as
// turnaround.Marker documents, in one statement, and returns the row as it now stands.
// Times are kept as the dialect keeps them (Dialect.Time).
func (s *Store) MarkTurnaround(ctx context.Context, c Conn, srID, priority string, stage turnaround.Stage, at time.Time) (*turnaround.Clocks, error) {
	if err := turnaround.ValidateMark(srID, priority, stage, at); err != nil {
		return nil, &InvalidError{err}
	}
	t, err := s.d.Time(at)
	if err != nil {
		return nil, &InvalidError{fmt.Errorf("marking turnaround of ServiceRequest/%s: %w", srID, err)}
	}
	unset, _ := s.d.Time(time.Time{})
	times := [5]any{unset, unset, unset, unset, unset} // ordered, study, preliminary, final, closed
	switch stage {
	case turnaround.Ordered:
		times[0] = t
	case turnaround.Study:
		times[1] = t
	case turnaround.Preliminary:
		times[2] = t
	case turnaround.Final:
		times[2], times[3] = t, t // a final answers a missing preliminary too
	case turnaround.Closed:
		times[4] = t
	}
	rows, err := c.Query(ctx, s.markTurnaround, engine.StorableText(srID), priority,
		times[0], times[1], times[2], times[3], times[4])
	ta, err := scanRow(s, rows, err, scanTurnaround)
	if err != nil {
		return nil, fmt.Errorf("marking turnaround %s of ServiceRequest/%s: %w", stage, srID, err)
	}
	return ta, nil
}

// Turnaround returns order srID's clocks, or engine.ErrNotFound.
func (s *Store) Turnaround(ctx context.Context, c Conn, srID string) (*turnaround.Clocks, error) {
	rows, err := c.Query(ctx, s.turnaround, engine.StorableText(srID))
	ta, err := scanRow(s, rows, err, scanTurnaround)
	if err != nil {
		return nil, fmt.Errorf("reading turnaround of ServiceRequest/%s: %w", srID, err)
	}
	return ta, nil
}

// Overdue returns up to n orders late at now under sla, as turnaround.Reader documents,
// oldest study first (OverdueQuery).
func (s *Store) Overdue(ctx context.Context, c Conn, now time.Time, sla turnaround.SLAs, n int) ([]*turnaround.Clocks, error) {
	out := []*turnaround.Clocks{}
	query, args, err := s.OverdueQuery(now, sla, n)
	if err != nil {
		return nil, fmt.Errorf("reading overdue turnaround: %w", err)
	}
	if query == "" {
		return out, nil
	}
	rows, err := c.QueryShape(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("reading overdue turnaround: %w", s.d.InterpretError(err))
	}
	defer rows.Close()
	for rows.Next() {
		ta, err := scanTurnaround(rows)
		if err != nil {
			return nil, fmt.Errorf("reading overdue turnaround: %w", s.d.InterpretError(err))
		}
		out = append(out, ta)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading overdue turnaround: %w", s.d.InterpretError(err))
	}
	return out, nil
}

// OverdueQuery is Overdue's query and arguments, "" when no priority has an SLA. It reads the
// partial index turnaround_awaiting_final (its WHERE implies the index's): only orders whose study
// is in and final is not. Each priority with an SLA is a term of turnaround.SLAs.OverdueBounds: its
// studies before the earlier due threshold, kept when they miss their preliminary or are before
// the final's threshold too (NULL when the priority has no final SLA: nothing is before it). The
// text depends only on how many priorities have an SLA, so each shape is prepared once.
func (s *Store) OverdueQuery(now time.Time, sla turnaround.SLAs, n int) (string, []any, error) {
	if _, err := s.d.Time(now); err != nil {
		return "", nil, err
	}
	var (
		terms []string
		args  []any
	)
	for _, b := range sla.OverdueBounds(now) {
		var finalBefore any // NULL: no final SLA
		if !b.FinalBefore.IsZero() {
			t, err := s.d.Time(b.FinalBefore)
			if err != nil {
				return "", nil, err
			}
			finalBefore = t
		}
		studyBefore, err := s.d.Time(b.StudyBefore)
		if err != nil {
			return "", nil, err
		}
		args = append(args, engine.StorableText(b.Priority), studyBefore, finalBefore)
		i := len(args)
		terms = append(terms, "(priority = "+s.d.Placeholder(i-2)+" AND study_at < "+s.d.Placeholder(i-1)+
			" AND ("+s.d.TimeUnset("preliminary_at")+" OR study_at < "+s.d.Placeholder(i)+"))")
	}
	if len(terms) == 0 {
		return "", nil, nil
	}
	args = append(args, Limit(n))
	query := `SELECT ` + turnaroundColumns + ` FROM turnaround
WHERE ` + s.d.TimeUnset("final_at") + ` AND ` + s.d.TimeUnset("closed_at") + ` AND ` + s.d.TimeSet("study_at") +
		` AND (` + strings.Join(terms, " OR ") + `)
ORDER BY study_at, service_request_id LIMIT ` + s.d.Placeholder(len(args))
	return query, args, nil
}

// scanTurnaround reads turnaroundColumns; unset times are the zero time, the others UTC.
func scanTurnaround(row interface{ Scan(dest ...any) error }) (*turnaround.Clocks, error) {
	var ta turnaround.Clocks
	if err := row.Scan(&ta.ServiceRequestID, &ta.Priority, scanTime{&ta.OrderedAt}, scanTime{&ta.StudyAt},
		scanTime{&ta.PreliminaryAt}, scanTime{&ta.FinalAt}, scanTime{&ta.ClosedAt}); err != nil {
		return nil, err
	}
	return &ta, nil
}
