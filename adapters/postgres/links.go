package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ferryhealth/ferry/engine"
)

var _ engine.LinkStore = (*Store)(nil)

// putStudyLinkSQL records a study's decision, replacing the previous one, in one autocommit
// statement (committed, and flushed under synchronous_commit, before PostgreSQL answers). The
// status is checked by the table (study_links_status_check), not here.
const putStudyLinkSQL = `
INSERT INTO study_links (study_instance_uid, status, service_request_id, patient_id, rule, score,
	evidence, decided_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
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
FROM study_links WHERE study_instance_uid = $1`

// PutStudyLink records l, replacing the study's previous decision, in one durable statement
// (putStudyLinkSQL). Evidence is stored as a JSON object, keys sorted; text as valid UTF-8
// without NULs (storableText); DecidedAt to the microsecond, UTC. A status other than the three
// engine.LinkStatus values is rejected by the table's CHECK.
func (s *Store) PutStudyLink(ctx context.Context, l *engine.StudyLink) error {
	evidence, err := l.StorableEvidence()
	if err != nil {
		return err
	}
	stmt, err := s.prepare(ctx, putStudyLinkSQL)
	if err != nil {
		return err
	}
	_, err = stmt.ExecContext(ctx, storableText(l.StudyInstanceUID), storableText(string(l.Status)),
		storableText(l.ServiceRequestID), storableText(l.PatientID), storableText(l.Rule), l.Score,
		evidence, l.DecidedAt.UTC().Truncate(time.Microsecond))
	if err != nil {
		return fmt.Errorf("storing link of study %s: %w", l.StudyInstanceUID, interpretError(err))
	}
	return nil
}

// StudyLink returns a study's decision, or engine.ErrNotFound. Evidence is never nil (an empty
// map when the decision had none).
func (s *Store) StudyLink(ctx context.Context, studyInstanceUID string) (*engine.StudyLink, error) {
	stmt, err := s.prepare(ctx, studyLinkSQL)
	if err != nil {
		return nil, err
	}
	var (
		l        engine.StudyLink
		evidence string
	)
	err = stmt.QueryRowContext(ctx, storableText(studyInstanceUID)).Scan(&l.StudyInstanceUID,
		&l.Status, &l.ServiceRequestID, &l.PatientID, &l.Rule, &l.Score, &evidence, &l.DecidedAt)
	if err != nil {
		return nil, fmt.Errorf("reading link of study %s: %w", studyInstanceUID, interpretError(err))
	}
	if err := json.Unmarshal([]byte(evidence), &l.Evidence); err != nil {
		return nil, fmt.Errorf("reading link of study %s: evidence: %w", studyInstanceUID, err)
	}
	if l.Evidence == nil {
		l.Evidence = map[string]string{}
	}
	l.DecidedAt = l.DecidedAt.UTC()
	return &l, nil
}
