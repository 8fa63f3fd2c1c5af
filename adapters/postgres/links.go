package postgres

import (
	"context"
	"time"

	"github.com/ferryhealth/ferry/engine"
)

var (
	_ engine.LinkStore       = (*Store)(nil)
	_ engine.LinkWriter      = (*Tx)(nil)
	_ engine.DerivationQueue = (*Store)(nil)
)

// putStudyLinkSQL records a study's decision in one statement, in place of sqlstore's portable
// three (dialect.PutStudyLinkSQL): the current decision upserted, the decision appended to the
// study's history, and the study queued for its ImagingStudy to be derived again (its change
// counted, so that a derivation running meanwhile does not take the queue entry away:
// FinishStudyDerivation). The status is checked by the table (study_links_status_check), not here.
const putStudyLinkSQL = `
WITH link AS (
	INSERT INTO study_links (study_instance_uid, status, service_request_id, patient_id, rule,
		score, evidence, decided_at, candidates, decided_by, reason)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
	ON CONFLICT (study_instance_uid) DO UPDATE SET
		status = excluded.status,
		service_request_id = excluded.service_request_id,
		patient_id = excluded.patient_id,
		rule = excluded.rule,
		score = excluded.score,
		evidence = excluded.evidence,
		decided_at = excluded.decided_at,
		candidates = excluded.candidates,
		decided_by = excluded.decided_by,
		reason = excluded.reason
	RETURNING study_instance_uid, decided_at
), history AS (
	INSERT INTO study_link_history (study_instance_uid, status, service_request_id, patient_id,
		rule, score, evidence, decided_at, candidates, decided_by, reason)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
)
INSERT INTO study_derivations AS d (study_instance_uid, changed_at)
SELECT study_instance_uid, decided_at FROM link
ON CONFLICT (study_instance_uid) DO UPDATE SET
	changed_at = greatest(d.changed_at, excluded.changed_at),
	changes = d.changes + 1`

// PutStudyLinkSQL makes sqlstore record a study link in one statement, one round trip.
func (dialect) PutStudyLinkSQL() string { return putStudyLinkSQL }

// PutStudyLink records l in one durable statement (putStudyLinkSQL), as engine.LinkWriter
// documents (sqlstore.Store.PutStudyLink). DecidedAt is kept to the microsecond.
func (s *Store) PutStudyLink(ctx context.Context, l *engine.StudyLink) error {
	return shared.PutStudyLink(ctx, s.conn(), l)
}

// PutStudyLink records l in the transaction, as engine.LinkWriter documents.
func (t *Tx) PutStudyLink(ctx context.Context, l *engine.StudyLink) error {
	if err := t.usable(); err != nil {
		return err
	}
	return t.check(shared.PutStudyLink(ctx, t.conn(), l))
}

// StudyLink returns a study's decision, or engine.ErrNotFound.
func (s *Store) StudyLink(ctx context.Context, studyInstanceUID string) (*engine.StudyLink, error) {
	return shared.StudyLink(ctx, s.conn(), studyInstanceUID)
}

// StudyLinkHistory returns every decision made for a study, oldest first.
func (s *Store) StudyLinkHistory(ctx context.Context, studyInstanceUID string) ([]*engine.StudyLink, error) {
	return shared.StudyLinkHistory(ctx, s.conn(), studyInstanceUID)
}

// OpenStudyLinks returns the decisions waiting for a person, oldest first (study_links_status).
func (s *Store) OpenStudyLinks(ctx context.Context, limit, offset int) ([]*engine.StudyLink, error) {
	return shared.OpenStudyLinks(ctx, s.conn(), limit, offset)
}

// StudyLinksOfPatient returns the current decisions naming patientID (study_links_patient).
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
