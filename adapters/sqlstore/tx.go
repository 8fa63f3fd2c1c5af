package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ferryhealth/ferry/engine"
)

// ErrTxFailed is returned by a step of a transaction after an earlier step failed.
var ErrTxFailed = errors.New("transaction refused after an earlier error: roll back to the savepoint, or roll back")

// ErrTxDone is returned by a step of a transaction after Commit or Rollback.
var ErrTxDone = errors.New("transaction already committed or rolled back")

// savepointName is the one savepoint a transaction keeps.
const savepointName = "ferry_step"

// TxState is the part of engine.Tx both stores share, to embed in a store's Tx: its one savepoint,
// Commit and Rollback, and the rule that after a failed step the transaction takes only
// RollbackToSavepoint and Rollback. PostgreSQL refuses every statement after a failed one until
// a rollback to a savepoint; TxState keeps to that on both stores, and says so before sending
// anything, so that the engine handles a failure alike on either and a step that failed half
// way is always undone.
type TxState struct {
	tx *sql.Tx
	d  Dialect
	// savepoint: a Savepoint is set, so the next one releases it first and RollbackToSavepoint
	// has somewhere to go.
	savepoint bool
	// failed is the error after which the transaction takes only RollbackToSavepoint and
	// Rollback; nil while it is usable.
	failed error
	done   bool // committed or rolled back
}

// Tx is what a store's engine.Tx shares with the other store, to embed: TxState, and the shared
// steps (TxSteps) guarded by it. A store's Tx adds what it writes its own way (the message log,
// resource versions).
type Tx struct {
	TxState
	TxSteps
}

// NewTx returns the shared part of tx, just begun, whose steps run on c (tx, as the store
// prepares its statements).
func (s *Store) NewTx(tx *sql.Tx, c Conn) *Tx {
	t := &Tx{TxState: NewTxState(s.d, tx)}
	t.TxSteps = TxSteps{S: s, C: c, G: &t.TxState}
	return t
}

// NewTxState returns the state of tx, just begun, whose errors d interprets.
func NewTxState(d Dialect, tx *sql.Tx) TxState { return TxState{tx: tx, d: d} }

// Usable returns nil when the transaction takes another step.
func (t *TxState) Usable() error {
	switch {
	case t.done:
		return ErrTxDone
	case t.failed != nil:
		return fmt.Errorf("%w (it failed with: %v)", ErrTxFailed, t.failed)
	}
	return nil
}

// Check records err, if it is a failure, as the reason the transaction refuses further steps,
// and returns it. Not found is an answer, not a failure (PostgreSQL keeps the transaction going
// after it); an InvalidError sent nothing.
func (t *TxState) Check(err error) error {
	if err != nil && !errors.Is(err, engine.ErrNotFound) && !Invalid(err) {
		t.failed = err
	}
	return err
}

// Savepoint sets the savepoint, releasing the previous one in the same round trip (one query
// without arguments: both drivers run its two statements in turn): a transaction keeps one,
// whatever the number of steps.
func (t *TxState) Savepoint(ctx context.Context) error {
	if err := t.Usable(); err != nil {
		return err
	}
	query := "SAVEPOINT " + savepointName
	if t.savepoint {
		query = "RELEASE SAVEPOINT " + savepointName + "; " + query
	}
	if _, err := t.tx.ExecContext(ctx, query); err != nil {
		return t.Check(fmt.Errorf("setting savepoint: %w", t.d.InterpretError(err)))
	}
	t.savepoint = true
	return nil
}

// RollbackToSavepoint undoes everything since the savepoint, a failed statement included, and
// makes the transaction usable again. The savepoint stays set.
func (t *TxState) RollbackToSavepoint(ctx context.Context) error {
	switch {
	case t.done:
		return ErrTxDone
	case !t.savepoint:
		return errors.New("rolling back to savepoint: no savepoint set")
	}
	if _, err := t.tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+savepointName); err != nil {
		t.failed = err
		return fmt.Errorf("rolling back to savepoint: %w", t.d.InterpretError(err))
	}
	t.failed = nil
	return nil
}

// Commit commits and returns once the commit is durable (each store's settings). A transaction
// that failed is rolled back instead, and Commit says so.
func (t *TxState) Commit() error {
	if t.done {
		return ErrTxDone
	}
	t.done = true
	if t.failed != nil {
		t.tx.Rollback()
		return fmt.Errorf("committing: %w (it failed with: %v); rolled back", ErrTxFailed, t.failed)
	}
	if err := t.tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", t.d.InterpretError(err))
	}
	return nil
}

// Rollback abandons the transaction; after Commit or Rollback it does nothing.
func (t *TxState) Rollback() error {
	if t.done {
		return nil
	}
	t.done = true
	if err := t.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("rolling back: %w", t.d.InterpretError(err))
	}
	return nil
}
