package sqlite

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

// PutStudyLink's three statements, in one transaction (as adapters/postgres' one statement):
// the current decision upserted, the decision appended to the study's history, the study queued
// for its ImagingStudy (its change counted). The status is checked by the table's CHECK.
const (
	upsertLinkSQL = `
INSERT INTO study_links (study_instance_uid, status, service_request_id, patient_id, rule, score,
	evidence, decided_at, candidates, decided_by, reason)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
	reason = excluded.reason`
	insertLinkHistorySQL = `
INSERT INTO study_link_history (study_instance_uid, status, service_request_id, patient_id, rule,
	score, evidence, decided_at, candidates, decided_by, reason)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	// queueDerivationSQL is also PutInstance's last step.
	queueDerivationSQL = `
INSERT INTO study_derivations (study_instance_uid, changed_at) VALUES (?, ?)
ON CONFLICT (study_instance_uid) DO UPDATE SET
	changed_at = max(study_derivations.changed_at, excluded.changed_at),
	changes = study_derivations.changes + 1`
)

const linkColumns = `study_instance_uid, status, service_request_id, patient_id, rule, score,
	evidence, candidates, decided_at, decided_by, reason`

const (
	studyLinkSQL        = `SELECT ` + linkColumns + ` FROM study_links WHERE study_instance_uid = ?`
	studyLinkHistorySQL = `SELECT ` + linkColumns + ` FROM study_link_history
WHERE study_instance_uid = ? ORDER BY id`
	openStudyLinksSQL = `SELECT ` + linkColumns + ` FROM study_links
WHERE status IN ('review', 'contradiction', 'unmatched')
ORDER BY decided_at, study_instance_uid LIMIT ? OFFSET ?`
	studyLinksOfPatientSQL = `SELECT ` + linkColumns + ` FROM study_links
WHERE patient_id = ? ORDER BY study_instance_uid`
	dueStudyDerivationsSQL = `SELECT study_instance_uid, changed_at, changes FROM study_derivations
WHERE changed_at <= ? ORDER BY changed_at LIMIT ?`
	finishStudyDerivationSQL = `DELETE FROM study_derivations
WHERE study_instance_uid = ? AND changes = ?`
)

// PutStudyLink records l in one transaction on the writer connection, committed (the WAL
// fsynced) before it returns, as engine.LinkWriter documents. Evidence is stored as a JSON
// object (keys sorted), candidates as a JSON array; text as valid UTF-8 without NULs
// (storableText); DecidedAt in Unix nanoseconds.
func (s *Store) PutStudyLink(ctx context.Context, l *engine.StudyLink) (err error) {
	args, err := linkArgs(l)
	if err != nil {
		return err
	}
	// Prepared before the transaction takes the writer's one connection (see Store.prepare).
	for _, query := range []string{upsertLinkSQL, insertLinkHistorySQL, queueDerivationSQL} {
		if _, err = s.prepare(ctx, s.writer, query); err != nil {
			return err
		}
	}
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("storing link of study %s: %w", l.StudyInstanceUID, interpretError(err))
	}
	defer tx.Rollback()
	if err := putStudyLink(ctx, func(query string) (*sql.Stmt, error) {
		stmt, err := s.prepared(s.writer, query)
		if err != nil {
			return nil, err
		}
		return tx.StmtContext(ctx, stmt), nil
	}, args); err != nil {
		return fmt.Errorf("storing link of study %s: %w", l.StudyInstanceUID, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("storing link of study %s: %w", l.StudyInstanceUID, interpretError(err))
	}
	return nil
}

// PutStudyLink records l in the transaction, as engine.LinkWriter documents.
func (t *Tx) PutStudyLink(ctx context.Context, l *engine.StudyLink) error {
	if err := t.usable(); err != nil {
		return err
	}
	args, err := linkArgs(l)
	if err != nil {
		return err
	}
	err = putStudyLink(ctx, func(query string) (*sql.Stmt, error) { return t.stmt(ctx, query) }, args)
	if err != nil {
		return t.check(fmt.Errorf("storing link of study %s: %w", l.StudyInstanceUID, err))
	}
	return nil
}

// linkArgs checks l and returns the arguments of upsertLinkSQL and insertLinkHistorySQL.
func linkArgs(l *engine.StudyLink) ([]any, error) {
	if l != nil && !l.DecidedAt.IsZero() && (l.DecidedAt.Year() < 1678 || l.DecidedAt.Year() > 2261) {
		// Stored as Unix nanoseconds, which an int64 holds for these years.
		return nil, fmt.Errorf("storing link of study %s: DecidedAt %s is out of range", l.StudyInstanceUID, l.DecidedAt)
	}
	evidence, candidates, err := l.StorableEvidence()
	if err != nil {
		return nil, err
	}
	return []any{storableText(l.StudyInstanceUID), storableText(string(l.Status)),
		storableText(l.ServiceRequestID), storableText(l.PatientID), storableText(l.Rule), l.Score,
		evidence, l.DecidedAt.UnixNano(), candidates, storableText(l.DecidedByOrLinker()),
		storableText(l.Reason)}, nil
}

// putStudyLink runs PutStudyLink's statements, each bound by stmt to the transaction.
func putStudyLink(ctx context.Context, stmt func(query string) (*sql.Stmt, error), args []any) error {
	for _, step := range []struct {
		query string
		args  []any
	}{
		{upsertLinkSQL, args},
		{insertLinkHistorySQL, args},
		{queueDerivationSQL, []any{args[0], args[7]}}, // study UID, decided at
	} {
		s, err := stmt(step.query)
		if err != nil {
			return err
		}
		if _, err := s.ExecContext(ctx, step.args...); err != nil {
			return interpretError(err)
		}
	}
	return nil
}

// StudyLink returns a study's decision, or engine.ErrNotFound. Evidence is never nil.
func (s *Store) StudyLink(ctx context.Context, studyInstanceUID string) (*engine.StudyLink, error) {
	links, err := s.queryLinks(ctx, studyLinkSQL, storableText(studyInstanceUID))
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
	links, err := s.queryLinks(ctx, studyLinkHistorySQL, storableText(studyInstanceUID))
	if err != nil {
		return nil, fmt.Errorf("reading link history of study %s: %w", studyInstanceUID, err)
	}
	return links, nil
}

// OpenStudyLinks returns the decisions waiting for a person, oldest first.
func (s *Store) OpenStudyLinks(ctx context.Context, limit, offset int) ([]*engine.StudyLink, error) {
	links, err := s.queryLinks(ctx, openStudyLinksSQL, min(max(limit, 1), 1000), max(offset, 0))
	if err != nil {
		return nil, fmt.Errorf("reading open study links: %w", err)
	}
	return links, nil
}

// StudyLinksOfPatient returns the current decisions naming patientID.
func (s *Store) StudyLinksOfPatient(ctx context.Context, patientID string) ([]*engine.StudyLink, error) {
	links, err := s.queryLinks(ctx, studyLinksOfPatientSQL, storableText(patientID))
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
	stmt, err := t.stmt(ctx, studyLinksOfPatientSQL)
	if err != nil {
		return nil, err
	}
	links, err := scanLinks(stmt.QueryContext(ctx, storableText(patientID)))
	if err != nil {
		return nil, t.check(fmt.Errorf("reading study links of Patient/%s: %w", patientID, err))
	}
	return links, nil
}

// queryLinks runs a query returning linkColumns on the read-only pool.
func (s *Store) queryLinks(ctx context.Context, query string, args ...any) ([]*engine.StudyLink, error) {
	stmt, err := s.prepare(ctx, s.reader, query)
	if err != nil {
		return nil, err
	}
	return scanLinks(stmt.QueryContext(ctx, args...))
}

func scanLinks(rows *sql.Rows, err error) ([]*engine.StudyLink, error) {
	if err != nil {
		return nil, interpretError(err)
	}
	defer rows.Close()
	links := []*engine.StudyLink{}
	for rows.Next() {
		var (
			l                    engine.StudyLink
			evidence, candidates string
			decidedAt            int64
		)
		if err := rows.Scan(&l.StudyInstanceUID, &l.Status, &l.ServiceRequestID, &l.PatientID,
			&l.Rule, &l.Score, &evidence, &candidates, &decidedAt, &l.DecidedBy, &l.Reason); err != nil {
			return nil, interpretError(err)
		}
		l.DecidedAt = time.Unix(0, decidedAt)
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
	stmt, err := s.prepare(ctx, s.reader, dueStudyDerivationsSQL)
	if err != nil {
		return nil, err
	}
	rows, err := stmt.QueryContext(ctx, quietSince.UnixNano(), min(max(limit, 1), 1000))
	if err != nil {
		return nil, fmt.Errorf("reading the study derivation queue: %w", interpretError(err))
	}
	defer rows.Close()
	var due []engine.StudyDerivation
	for rows.Next() {
		var (
			d       engine.StudyDerivation
			changed int64
		)
		if err := rows.Scan(&d.StudyInstanceUID, &changed, &d.Changes); err != nil {
			return nil, fmt.Errorf("reading the study derivation queue: %w", interpretError(err))
		}
		d.ChangedAt = time.Unix(0, changed).UTC()
		due = append(due, d)
	}
	return due, interpretError(rows.Err())
}

// FinishStudyDerivation takes d's study off the queue unless it changed since d was read.
func (t *Tx) FinishStudyDerivation(ctx context.Context, d engine.StudyDerivation) error {
	if err := t.usable(); err != nil {
		return err
	}
	if err := t.exec(ctx, finishStudyDerivationSQL, storableText(d.StudyInstanceUID), d.Changes); err != nil {
		return t.check(fmt.Errorf("finishing derivation of study %s: %w", d.StudyInstanceUID, err))
	}
	return nil
}
