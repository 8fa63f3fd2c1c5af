package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ferryhealth/ferry/engine"
)

var _ engine.LinkStore = (*Store)(nil)

// putStudyLinkSQL records a study's decision, replacing the previous one. The status is checked
// by the table's CHECK, not here.
const putStudyLinkSQL = `
INSERT INTO study_links (study_instance_uid, status, service_request_id, patient_id, rule, score,
	evidence, decided_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (study_instance_uid) DO UPDATE SET
	status = excluded.status,
	service_request_id = excluded.service_request_id,
	patient_id = excluded.patient_id,
	rule = excluded.rule,
	score = excluded.score,
	evidence = excluded.evidence,
	decided_at = excluded.decided_at`

const studyLinkSQL = `SELECT study_instance_uid, status, service_request_id, patient_id, rule,
	score, evidence, decided_at
FROM study_links WHERE study_instance_uid = ?`

// PutStudyLink records l, replacing the study's previous decision, in one autocommit statement
// on the writer connection, committed (the WAL fsynced) before it returns. Evidence is stored as
// a JSON object, keys sorted; text as valid UTF-8 without NULs (storableText), as
// adapters/postgres must store it; DecidedAt in Unix nanoseconds. A status other than the three
// engine.LinkStatus values is rejected by the table's CHECK.
func (s *Store) PutStudyLink(ctx context.Context, l *engine.StudyLink) error {
	evidence, err := linkEvidence(l)
	if err != nil {
		return err
	}
	stmt, err := s.prepare(ctx, s.writer, putStudyLinkSQL)
	if err != nil {
		return err
	}
	_, err = stmt.ExecContext(ctx, storableText(l.StudyInstanceUID), storableText(string(l.Status)),
		storableText(l.ServiceRequestID), storableText(l.PatientID), storableText(l.Rule), l.Score,
		evidence, l.DecidedAt.UnixNano())
	if err != nil {
		return fmt.Errorf("storing link of study %s: %w", l.StudyInstanceUID, interpretError(err))
	}
	return nil
}

// StudyLink returns a study's decision, or engine.ErrNotFound. Evidence is never nil (an empty
// map when the decision had none).
func (s *Store) StudyLink(ctx context.Context, studyInstanceUID string) (*engine.StudyLink, error) {
	stmt, err := s.prepare(ctx, s.reader, studyLinkSQL)
	if err != nil {
		return nil, err
	}
	var (
		l         engine.StudyLink
		evidence  string
		decidedAt int64
	)
	err = stmt.QueryRowContext(ctx, storableText(studyInstanceUID)).Scan(&l.StudyInstanceUID,
		&l.Status, &l.ServiceRequestID, &l.PatientID, &l.Rule, &l.Score, &evidence, &decidedAt)
	if err != nil {
		return nil, fmt.Errorf("reading link of study %s: %w", studyInstanceUID, interpretError(err))
	}
	if err := json.Unmarshal([]byte(evidence), &l.Evidence); err != nil {
		return nil, fmt.Errorf("reading link of study %s: evidence: %w", studyInstanceUID, err)
	}
	if l.Evidence == nil {
		l.Evidence = map[string]string{}
	}
	l.DecidedAt = time.Unix(0, decidedAt).UTC()
	return &l, nil
}

// linkEvidence is engine.StudyLink.StorableEvidence, with the range this store can hold.
func linkEvidence(l *engine.StudyLink) (string, error) {
	if l != nil && !l.DecidedAt.IsZero() && (l.DecidedAt.Year() < 1678 || l.DecidedAt.Year() > 2261) {
		// Stored as Unix nanoseconds, which an int64 holds for these years.
		return "", fmt.Errorf("storing link of study %s: DecidedAt %s is out of range", l.StudyInstanceUID, l.DecidedAt)
	}
	return l.StorableEvidence()
}
