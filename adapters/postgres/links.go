package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/ferryhealth/ferry/engine"
)

var (
	_ engine.LinkStore       = (*Store)(nil)
	_ engine.LinkWriter      = (*Tx)(nil)
	_ engine.DerivationQueue = (*Store)(nil)
)

// putStudyLinkSQL records a study's decision in one statement: the current decision upserted,
// the decision appended to the study's history, and the study queued for its ImagingStudy to be
// derived again (its change counted, so that a derivation running meanwhile does not take the
// queue entry away: FinishStudyDerivation). The status is checked by the table
// (study_links_status_check), not here.
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

const linkColumns = `study_instance_uid, status, service_request_id, patient_id, rule, score,
	evidence, candidates, decided_at, decided_by, reason`

var (
	studyLinkSQL        = `SELECT ` + linkColumns + ` FROM study_links WHERE study_instance_uid = $1`
	studyLinkHistorySQL = `SELECT ` + linkColumns + ` FROM study_link_history
WHERE study_instance_uid = $1 ORDER BY id`
	openStudyLinksSQL = `SELECT ` + linkColumns + ` FROM study_links
WHERE status IN ('review', 'contradiction', 'unmatched')
ORDER BY decided_at, study_instance_uid LIMIT $1 OFFSET $2`
	studyLinksOfPatientSQL = `SELECT ` + linkColumns + ` FROM study_links
WHERE patient_id = $1 ORDER BY study_instance_uid`
)

// dueStudyDerivationsSQL: the queue in order of last change, quiet ones only
// (study_derivations_changed).
const dueStudyDerivationsSQL = `SELECT study_instance_uid, changed_at, changes FROM study_derivations
WHERE changed_at <= $1 ORDER BY changed_at LIMIT $2`

// finishStudyDerivationSQL takes a study off the queue unless it changed since it was read.
const finishStudyDerivationSQL = `DELETE FROM study_derivations
WHERE study_instance_uid = $1 AND changes = $2`

// PutStudyLink records l in one durable statement (putStudyLinkSQL), as engine.LinkWriter
// documents. Evidence is stored as a JSON object (keys sorted) and candidates as a JSON array;
// text as valid UTF-8 without NULs (storableText); DecidedAt to the microsecond, UTC. A status
// other than the engine.LinkStatus values is rejected by the table's CHECK.
func (s *Store) PutStudyLink(ctx context.Context, l *engine.StudyLink) error {
	return s.putStudyLink(ctx, nil, l)
}

// PutStudyLink records l in the transaction, as engine.LinkWriter documents.
func (t *Tx) PutStudyLink(ctx context.Context, l *engine.StudyLink) error {
	if err := t.usable(); err != nil {
		return err
	}
	return t.check(t.s.putStudyLink(ctx, t.tx, l))
}

func (s *Store) putStudyLink(ctx context.Context, tx *sql.Tx, l *engine.StudyLink) error {
	evidence, candidates, err := l.StorableEvidence()
	if err != nil {
		return err
	}
	stmt, err := s.prepare(ctx, putStudyLinkSQL)
	if err != nil {
		return err
	}
	if tx != nil {
		stmt = tx.StmtContext(ctx, stmt)
	}
	_, err = stmt.ExecContext(ctx, storableText(l.StudyInstanceUID), storableText(string(l.Status)),
		storableText(l.ServiceRequestID), storableText(l.PatientID), storableText(l.Rule), l.Score,
		evidence, l.DecidedAt.UTC().Truncate(time.Microsecond), candidates,
		storableText(l.DecidedByOrLinker()), storableText(l.Reason))
	if err != nil {
		return fmt.Errorf("storing link of study %s: %w", l.StudyInstanceUID, interpretError(err))
	}
	return nil
}

// StudyLink returns a study's decision, or engine.ErrNotFound. Evidence is never nil (an empty
// map when the decision had none).
func (s *Store) StudyLink(ctx context.Context, studyInstanceUID string) (*engine.StudyLink, error) {
	links, err := s.queryLinks(ctx, nil, studyLinkSQL, storableText(studyInstanceUID))
	if err != nil {
		return nil, fmt.Errorf("reading link of study %s: %w", studyInstanceUID, err)
	}
	if len(links) == 0 {
		return nil, fmt.Errorf("reading link of study %s: %w", studyInstanceUID, engine.ErrNotFound)
	}
	return links[0], nil
}

// StudyLinkHistory returns every decision made for a study, oldest first.
func (s *Store) StudyLinkHistory(ctx context.Context, studyInstanceUID string) ([]*engine.StudyLink, error) {
	links, err := s.queryLinks(ctx, nil, studyLinkHistorySQL, storableText(studyInstanceUID))
	if err != nil {
		return nil, fmt.Errorf("reading link history of study %s: %w", studyInstanceUID, err)
	}
	return links, nil
}

// OpenStudyLinks returns the decisions waiting for a person, oldest first (study_links_status).
func (s *Store) OpenStudyLinks(ctx context.Context, limit, offset int) ([]*engine.StudyLink, error) {
	limit, offset = min(max(limit, 1), 1000), max(offset, 0)
	links, err := s.queryLinks(ctx, nil, openStudyLinksSQL, limit, offset)
	if err != nil {
		return nil, fmt.Errorf("reading open study links: %w", err)
	}
	return links, nil
}

// StudyLinksOfPatient returns the current decisions naming patientID (study_links_patient).
func (s *Store) StudyLinksOfPatient(ctx context.Context, patientID string) ([]*engine.StudyLink, error) {
	links, err := s.queryLinks(ctx, nil, studyLinksOfPatientSQL, storableText(patientID))
	if err != nil {
		return nil, fmt.Errorf("reading study links of Patient/%s: %w", patientID, err)
	}
	return links, nil
}

// StudyLinksOfPatient returns the current decisions naming patientID, as the transaction sees them.
func (t *Tx) StudyLinksOfPatient(ctx context.Context, patientID string) ([]*engine.StudyLink, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	links, err := t.s.queryLinks(ctx, t.tx, studyLinksOfPatientSQL, storableText(patientID))
	if err != nil {
		return nil, t.check(fmt.Errorf("reading study links of Patient/%s: %w", patientID, err))
	}
	return links, nil
}

// queryLinks runs a query returning linkColumns, on tx when it is not nil.
func (s *Store) queryLinks(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]*engine.StudyLink, error) {
	stmt, err := s.prepare(ctx, query)
	if err != nil {
		return nil, err
	}
	if tx != nil {
		stmt = tx.StmtContext(ctx, stmt)
	}
	rows, err := stmt.QueryContext(ctx, args...)
	if err != nil {
		return nil, interpretError(err)
	}
	defer rows.Close()
	links := []*engine.StudyLink{}
	for rows.Next() {
		var (
			l                    engine.StudyLink
			evidence, candidates string
		)
		if err := rows.Scan(&l.StudyInstanceUID, &l.Status, &l.ServiceRequestID, &l.PatientID,
			&l.Rule, &l.Score, &evidence, &candidates, &l.DecidedAt, &l.DecidedBy, &l.Reason); err != nil {
			return nil, interpretError(err)
		}
		if err := l.ParseStoredLink(evidence, candidates); err != nil {
			return nil, err
		}
		links = append(links, &l)
	}
	return links, interpretError(rows.Err())
}

// DueStudyDerivations returns up to limit queued studies whose last change is at or before
// quietSince, longest quiet first.
func (s *Store) DueStudyDerivations(ctx context.Context, quietSince time.Time, limit int) ([]engine.StudyDerivation, error) {
	stmt, err := s.prepare(ctx, dueStudyDerivationsSQL)
	if err != nil {
		return nil, err
	}
	rows, err := stmt.QueryContext(ctx, quietSince.UTC(), min(max(limit, 1), 1000))
	if err != nil {
		return nil, fmt.Errorf("reading the study derivation queue: %w", interpretError(err))
	}
	defer rows.Close()
	var due []engine.StudyDerivation
	for rows.Next() {
		var d engine.StudyDerivation
		if err := rows.Scan(&d.StudyInstanceUID, &d.ChangedAt, &d.Changes); err != nil {
			return nil, fmt.Errorf("reading the study derivation queue: %w", interpretError(err))
		}
		d.ChangedAt = d.ChangedAt.UTC()
		due = append(due, d)
	}
	return due, interpretError(rows.Err())
}

// FinishStudyDerivation takes d's study off the queue unless it changed since d was read.
func (t *Tx) FinishStudyDerivation(ctx context.Context, d engine.StudyDerivation) error {
	if err := t.usable(); err != nil {
		return err
	}
	stmt, err := t.s.prepare(ctx, finishStudyDerivationSQL)
	if err != nil {
		return err
	}
	if _, err := t.tx.StmtContext(ctx, stmt).ExecContext(ctx, storableText(d.StudyInstanceUID), d.Changes); err != nil {
		return t.check(fmt.Errorf("finishing derivation of study %s: %w", d.StudyInstanceUID, interpretError(err)))
	}
	return nil
}
