package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/ferryhealth/ferry/engine"
)

var (
	_ engine.LinkStore       = (*Store)(nil)
	_ engine.LinkWriter      = (*Tx)(nil)
	_ engine.DerivationQueue = (*Store)(nil)
)

// PutStudyLink records l in a transaction of its own on the writer connection (sqlstore's three
// statements), committed (the WAL fsynced) before it returns, as engine.LinkWriter documents.
// DecidedAt is kept in Unix nanoseconds.
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

// PutStudyLink records l in the transaction, as engine.LinkWriter documents.
func (t *Tx) PutStudyLink(ctx context.Context, l *engine.StudyLink) error {
	if err := t.usable(); err != nil {
		return err
	}
	return t.check(shared.PutStudyLink(ctx, t.conn(), l))
}

// StudyLink returns a study's decision, or engine.ErrNotFound, from the read-only pool.
func (s *Store) StudyLink(ctx context.Context, studyInstanceUID string) (*engine.StudyLink, error) {
	return shared.StudyLink(ctx, s.conn(), studyInstanceUID)
}

// StudyLinkHistory returns every decision made for a study, oldest first.
func (s *Store) StudyLinkHistory(ctx context.Context, studyInstanceUID string) ([]*engine.StudyLink, error) {
	return shared.StudyLinkHistory(ctx, s.conn(), studyInstanceUID)
}

// OpenStudyLinks returns the decisions waiting for a person, oldest first.
func (s *Store) OpenStudyLinks(ctx context.Context, limit, offset int) ([]*engine.StudyLink, error) {
	return shared.OpenStudyLinks(ctx, s.conn(), limit, offset)
}

// StudyLinksOfPatient returns the current decisions naming patientID.
func (s *Store) StudyLinksOfPatient(ctx context.Context, patientID string) ([]*engine.StudyLink, error) {
	return shared.StudyLinksOfPatient(ctx, s.conn(), patientID)
}

// StudyLinksOfPatient returns the current decisions naming patientID, as the transaction sees them.
func (t *Tx) StudyLinksOfPatient(ctx context.Context, patientID string) ([]*engine.StudyLink, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	links, err := shared.StudyLinksOfPatient(ctx, t.conn(), patientID)
	return links, t.check(err)
}

// DueStudyDerivations returns up to limit queued studies whose last change is at or before
// quietSince, longest quiet first.
func (s *Store) DueStudyDerivations(ctx context.Context, quietSince time.Time, limit int) ([]engine.StudyDerivation, error) {
	return shared.DueStudyDerivations(ctx, s.conn(), quietSince, limit)
}

// FinishStudyDerivation takes d's study off the queue unless it changed since d was read.
func (t *Tx) FinishStudyDerivation(ctx context.Context, d engine.StudyDerivation) error {
	if err := t.usable(); err != nil {
		return err
	}
	return t.check(shared.FinishStudyDerivation(ctx, t.conn(), d))
}
