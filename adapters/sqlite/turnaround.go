package sqlite

import (
	"context"
	"time"

	"github.com/ferryhealth/ferry/engine"
)

var (
	_ engine.TurnaroundReader = (*Store)(nil)
	_ engine.TurnaroundMarker = (*Tx)(nil)
)

// MarkTurnaround records that order srID reached stage at, as engine.TurnaroundMarker
// documents (sqlstore.Store.MarkTurnaround). Times are kept in Unix nanoseconds.
func (t *Tx) MarkTurnaround(ctx context.Context, srID, priority string, stage engine.TurnaroundStage, at time.Time) (*engine.Turnaround, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	ta, err := shared.MarkTurnaround(ctx, t.conn(), srID, priority, stage, at)
	return ta, t.check(err)
}

// Turnaround returns order srID's clocks, or engine.ErrNotFound, from the read-only pool.
func (s *Store) Turnaround(ctx context.Context, srID string) (*engine.Turnaround, error) {
	return shared.Turnaround(ctx, s.conn(), srID)
}

// Overdue returns up to n orders late at now under sla, as engine.TurnaroundReader documents,
// oldest study first (sqlstore.Store.OverdueQuery), from the read-only pool.
func (s *Store) Overdue(ctx context.Context, now time.Time, sla engine.SLAs, n int) ([]*engine.Turnaround, error) {
	return shared.Overdue(ctx, s.conn(), now, sla, n)
}
