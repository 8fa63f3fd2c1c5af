package postgres

import (
	"context"

	"github.com/ferryhealth/ferry/engine"
)

// PutWorklistItem inserts or replaces the worklist item of item.ServiceRequestID.
func (t *Tx) PutWorklistItem(ctx context.Context, item *engine.WorklistItem) error {
	if err := t.usable(); err != nil {
		return err
	}
	return t.check(shared.PutWorklistItem(ctx, t.conn(), item))
}

// DeleteWorklistItem removes the worklist item of a ServiceRequest; none is not an error.
func (t *Tx) DeleteWorklistItem(ctx context.Context, serviceRequestID string) error {
	if err := t.usable(); err != nil {
		return err
	}
	return t.check(shared.DeleteWorklistItem(ctx, t.conn(), serviceRequestID))
}

// WorklistItems returns the items matching f, by StartDate, StartTime, then ServiceRequestID.
func (s *Store) WorklistItems(ctx context.Context, f engine.WorklistFilter) ([]*engine.WorklistItem, error) {
	return shared.WorklistItems(ctx, s.conn(), f)
}

// WorklistItems returns the items matching f as the transaction sees them, its own changes
// included.
func (t *Tx) WorklistItems(ctx context.Context, f engine.WorklistFilter) ([]*engine.WorklistItem, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	items, err := shared.WorklistItems(ctx, t.conn(), f)
	return items, t.check(err)
}
