package audit

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferryhealth/ferry/engine"
)

// Recorder records events that belong to no other change (a read, a search, a login, a refusal)
// in a transaction of their own. A change records its event in its own transaction, through the
// transaction's Appender, so that both commit or neither does.
type Recorder struct {
	// Begin begins a store transaction; the store's Tx must be an Appender (adapters/sqlstore's
	// TxSteps make both stores' so).
	Begin func(ctx context.Context) (engine.Tx, error)
}

// Record appends e and returns once it is committed.
func (r *Recorder) Record(ctx context.Context, e *Event) error {
	tx, err := r.Begin(ctx)
	if err != nil {
		return fmt.Errorf("recording audit event: %w", err)
	}
	app, ok := tx.(Appender)
	if !ok {
		tx.Rollback()
		return errors.New("recording audit event: the store's transactions cannot append to the audit trail")
	}
	if err := app.AppendAudit(ctx, e); err != nil {
		tx.Rollback()
		return fmt.Errorf("recording audit event: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("recording audit event: %w", err)
	}
	return nil
}
