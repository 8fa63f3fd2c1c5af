package sqlite

import (
	"context"
	"fmt"

	"github.com/ferryhealth/ferry/engine"
)

// PutStudyLink records l in a transaction of its own on the writer connection (sqlstore's three
// statements; it shadows sqlstore.Pool's, which refuses a dialect of more than one), committed
// (the WAL fsynced) before it returns, as engine.LinkWriter documents. DecidedAt is kept in Unix
// nanoseconds.
func (s *Store) PutStudyLink(ctx context.Context, l *engine.StudyLink) error {
	tx, err := s.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := tx.PutStudyLink(ctx, l); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("storing link of study %s: %w", l.StudyInstanceUID, err)
	}
	return nil
}
