package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/ferryhealth/ferry/engine"
)

// StudyLinkStatement is implemented by a Dialect that records a study's decision in one
// statement in place of the portable three (PostgreSQL: a data-modifying WITH, one round trip).
// The statement takes the portable upsert's thirteen arguments, in its order.
type StudyLinkStatement interface {
	PutStudyLinkSQL() string
}

// StudyLinkUpsert is the conflict clause of the insert of a study's current decision: the new
// decision replaces the old one whole.
const StudyLinkUpsert = `ON CONFLICT (study_instance_uid) DO UPDATE SET
	status = excluded.status,
	service_request_id = excluded.service_request_id,
	patient_id = excluded.patient_id,
	rule = excluded.rule,
	score = excluded.score,
	evidence = excluded.evidence,
	decided_at = excluded.decided_at,
	candidates = excluded.candidates,
	decided_by = excluded.decided_by,
	reason = excluded.reason,
	id_system = excluded.id_system,
	id_value = excluded.id_value`

const linkColumns = `study_instance_uid, status, service_request_id, patient_id, rule, score,
	evidence, candidates, decided_at, decided_by, reason, id_system, id_value`

// linkStatements are the study links' and the derivation queue's statements
// (migrations/*/00006_study_links.sql, 00007_reconciliation.sql).
type linkStatements struct {
	// putStudyLink are PutStudyLink's statements, run in order in one transaction; queueDerivation
	// (the last of the portable three) takes the study and the decision's time alone.
	putStudyLink                                                     []string
	queueDerivation                                                  string
	studyLink, studyLinkHistory, openStudyLinks, studyLinksOfPatient string
	studyLinksWithIdentifier                                         string
	dueStudyDerivations, finishStudyDerivation                       string
}

// newLinkStatements writes PutStudyLink's portable statements: the current decision upserted,
// the decision appended to the study's history, and the study queued for its ImagingStudy to be
// derived again (its change counted, so that a derivation running meanwhile does not take the
// queue entry away: FinishStudyDerivation). The status is checked by the table
// (study_links_status_check), not here.
func newLinkStatements(rebind func(string) string, d Dialect) linkStatements {
	ls := linkStatements{
		queueDerivation: rebind(`
INSERT INTO study_derivations (study_instance_uid, changed_at) VALUES (?, ?)
ON CONFLICT (study_instance_uid) DO UPDATE SET
	changed_at = CASE WHEN excluded.changed_at > study_derivations.changed_at
		THEN excluded.changed_at ELSE study_derivations.changed_at END,
	changes = study_derivations.changes + 1`),
		studyLink: rebind(`SELECT ` + linkColumns + ` FROM study_links WHERE study_instance_uid = ?`),
		studyLinkHistory: rebind(`SELECT ` + linkColumns + ` FROM study_link_history
WHERE study_instance_uid = ? ORDER BY id`),
		openStudyLinks: rebind(`SELECT ` + linkColumns + ` FROM study_links
WHERE status IN ('review', 'contradiction', 'unmatched')
ORDER BY decided_at, study_instance_uid LIMIT ? OFFSET ?`),
		studyLinksOfPatient: rebind(`SELECT ` + linkColumns + ` FROM study_links
WHERE patient_id = ? ORDER BY study_instance_uid`),
		// The cross-reference: linked studies carrying an identifier (study_links_identifier).
		studyLinksWithIdentifier: rebind(`SELECT ` + linkColumns + ` FROM study_links
WHERE id_system = ? AND id_value = ? AND status = 'linked' AND id_value <> ''
ORDER BY decided_at, study_instance_uid LIMIT ?`),
		// The queue in order of last change, quiet ones only (study_derivations_changed).
		dueStudyDerivations: rebind(`SELECT study_instance_uid, changed_at, changes FROM study_derivations
WHERE changed_at <= ? ORDER BY changed_at LIMIT ?`),
		// Takes a study off the queue unless it changed since it was read.
		finishStudyDerivation: rebind(`DELETE FROM study_derivations
WHERE study_instance_uid = ? AND changes = ?`),
	}
	if one, ok := d.(StudyLinkStatement); ok {
		ls.putStudyLink = []string{one.PutStudyLinkSQL()}
		return ls
	}
	ls.putStudyLink = []string{
		rebind(`
INSERT INTO study_links (study_instance_uid, status, service_request_id, patient_id, rule, score,
	evidence, decided_at, candidates, decided_by, reason, id_system, id_value)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
` + StudyLinkUpsert),
		rebind(`
INSERT INTO study_link_history (study_instance_uid, status, service_request_id, patient_id, rule,
	score, evidence, decided_at, candidates, decided_by, reason, id_system, id_value)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		ls.queueDerivation,
	}
	return ls
}

// QueueDerivationSQL is the statement that queues a study for its ImagingStudy to be derived
// again, its change counted, with the study's UID and the change's time (Dialect.Time): for a
// store that runs it apart from PutStudyLink (when it stores an instance).
func (s *Store) QueueDerivationSQL() string { return s.queueDerivation }

// PutStudyLink records l on c, as engine.LinkWriter documents; c must be a transaction's when the
// dialect takes more than one statement (StudyLinkStatement). Evidence is stored as a JSON object
// (keys sorted) and candidates as a JSON array; text as valid UTF-8 without NULs; DecidedAt as the
// dialect keeps times.
func (s *Store) PutStudyLink(ctx context.Context, c Conn, l *engine.StudyLink) error {
	evidence, candidates, err := l.StorableEvidence()
	if err != nil {
		return &InvalidError{err}
	}
	decidedAt, err := s.d.Time(l.DecidedAt)
	if err != nil {
		return &InvalidError{fmt.Errorf("storing link of study %s: DecidedAt: %w", l.StudyInstanceUID, err)}
	}
	args := []any{engine.StorableText(l.StudyInstanceUID), engine.StorableText(string(l.Status)),
		engine.StorableText(l.ServiceRequestID), engine.StorableText(l.PatientID),
		engine.StorableText(l.Rule), l.Score, evidence, decidedAt, candidates,
		engine.StorableText(l.DecidedByOrLinker()), engine.StorableText(l.Reason),
		engine.StorableText(l.Identifier.System), engine.StorableText(l.Identifier.Value)}
	for _, query := range s.putStudyLink {
		stepArgs := args
		if query == s.queueDerivation {
			stepArgs = []any{args[0], args[7]} // study UID, decided at
		}
		if _, err := c.Exec(ctx, query, stepArgs...); err != nil {
			return fmt.Errorf("storing link of study %s: %w", l.StudyInstanceUID, s.d.InterpretError(err))
		}
	}
	return nil
}

// StudyLink returns a study's decision, or engine.ErrNotFound. Evidence is never nil (an empty
// map when the decision had none).
func (s *Store) StudyLink(ctx context.Context, c Conn, studyInstanceUID string) (*engine.StudyLink, error) {
	links, err := s.queryLinks(ctx, c, s.studyLink, engine.StorableText(studyInstanceUID))
	if err != nil {
		return nil, fmt.Errorf("reading link of study %s: %w", studyInstanceUID, err)
	}
	if len(links) == 0 {
		return nil, fmt.Errorf("reading link of study %s: %w", studyInstanceUID, engine.ErrNotFound)
	}
	return links[0], nil
}

// StudyLinkHistory returns every decision made for a study, oldest first.
func (s *Store) StudyLinkHistory(ctx context.Context, c Conn, studyInstanceUID string) ([]*engine.StudyLink, error) {
	links, err := s.queryLinks(ctx, c, s.studyLinkHistory, engine.StorableText(studyInstanceUID))
	if err != nil {
		return nil, fmt.Errorf("reading link history of study %s: %w", studyInstanceUID, err)
	}
	return links, nil
}

// OpenStudyLinks returns the decisions waiting for a person, oldest first (study_links_status);
// limit is kept to 1…1000.
func (s *Store) OpenStudyLinks(ctx context.Context, c Conn, limit, offset int) ([]*engine.StudyLink, error) {
	links, err := s.queryLinks(ctx, c, s.openStudyLinks, min(max(limit, 1), 1000), max(offset, 0))
	if err != nil {
		return nil, fmt.Errorf("reading open study links: %w", err)
	}
	return links, nil
}

// StudyLinksOfPatient returns the current decisions naming patientID (study_links_patient).
func (s *Store) StudyLinksOfPatient(ctx context.Context, c Conn, patientID string) ([]*engine.StudyLink, error) {
	links, err := s.queryLinks(ctx, c, s.studyLinksOfPatient, engine.StorableText(patientID))
	if err != nil {
		return nil, fmt.Errorf("reading study links of Patient/%s: %w", patientID, err)
	}
	return links, nil
}

// StudyLinksWithIdentifier returns the linked decisions whose study carried the identifier
// system|value (study_links_identifier), oldest first, at most limit (1…1000).
func (s *Store) StudyLinksWithIdentifier(ctx context.Context, c Conn, system, value string, limit int) ([]*engine.StudyLink, error) {
	links, err := s.queryLinks(ctx, c, s.studyLinksWithIdentifier, engine.StorableText(system), engine.StorableText(value), min(max(limit, 1), 1000))
	if err != nil {
		return nil, fmt.Errorf("reading the studies carrying an identifier: %w", err)
	}
	return links, nil
}

// queryLinks runs a query returning linkColumns.
func (s *Store) queryLinks(ctx context.Context, c Conn, query string, args ...any) ([]*engine.StudyLink, error) {
	rows, err := c.Query(ctx, query, args...)
	if err != nil {
		return nil, s.d.InterpretError(err)
	}
	defer rows.Close()
	links := []*engine.StudyLink{}
	for rows.Next() {
		var (
			l                    engine.StudyLink
			evidence, candidates string
		)
		if err := rows.Scan(&l.StudyInstanceUID, &l.Status, &l.ServiceRequestID, &l.PatientID,
			&l.Rule, &l.Score, &evidence, &candidates, scanTime{&l.DecidedAt}, &l.DecidedBy, &l.Reason,
			&l.Identifier.System, &l.Identifier.Value); err != nil {
			return nil, s.d.InterpretError(err)
		}
		if err := l.ParseStoredLink(evidence, candidates); err != nil {
			return nil, err
		}
		links = append(links, &l)
	}
	return links, s.d.InterpretError(rows.Err())
}

// DueStudyDerivations returns up to limit (1…1000) queued studies whose last change is at or
// before quietSince, longest quiet first.
func (s *Store) DueStudyDerivations(ctx context.Context, c Conn, quietSince time.Time, limit int) ([]engine.StudyDerivation, error) {
	since, err := s.d.Time(quietSince)
	if err != nil {
		return nil, fmt.Errorf("reading the study derivation queue: %w", err)
	}
	rows, err := c.Query(ctx, s.dueStudyDerivations, since, min(max(limit, 1), 1000))
	if err != nil {
		return nil, fmt.Errorf("reading the study derivation queue: %w", s.d.InterpretError(err))
	}
	defer rows.Close()
	var due []engine.StudyDerivation
	for rows.Next() {
		var d engine.StudyDerivation
		if err := rows.Scan(&d.StudyInstanceUID, scanTime{&d.ChangedAt}, &d.Changes); err != nil {
			return nil, fmt.Errorf("reading the study derivation queue: %w", s.d.InterpretError(err))
		}
		due = append(due, d)
	}
	return due, s.d.InterpretError(rows.Err())
}

// FinishStudyDerivation takes d's study off the queue unless it changed since d was read.
func (s *Store) FinishStudyDerivation(ctx context.Context, c Conn, d engine.StudyDerivation) error {
	if _, err := c.Exec(ctx, s.finishStudyDerivation, engine.StorableText(d.StudyInstanceUID), d.Changes); err != nil {
		return fmt.Errorf("finishing derivation of study %s: %w", d.StudyInstanceUID, s.d.InterpretError(err))
	}
	return nil
}
