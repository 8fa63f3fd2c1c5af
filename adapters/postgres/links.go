package postgres

import "github.com/ferryhealth/ferry/adapters/sqlstore"

// putStudyLinkSQL records a study's decision in one statement, in place of sqlstore's portable
// three (dialect.PutStudyLinkSQL): the current decision upserted, the decision appended to the
// study's history, and the study queued for its ImagingStudy to be derived again (its change
// counted, so that a derivation running meanwhile does not take the queue entry away:
// FinishStudyDerivation). The status is checked by the table (study_links_status_check), not here.
const putStudyLinkSQL = `
WITH link AS (
	INSERT INTO study_links (study_instance_uid, status, service_request_id, patient_id, rule,
		score, evidence, decided_at, candidates, decided_by, reason, id_system, id_value)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
	` + sqlstore.StudyLinkUpsert + `
	RETURNING study_instance_uid, decided_at
), history AS (
	INSERT INTO study_link_history (study_instance_uid, status, service_request_id, patient_id,
		rule, score, evidence, decided_at, candidates, decided_by, reason, id_system, id_value)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
)
INSERT INTO study_derivations AS d (study_instance_uid, changed_at)
SELECT study_instance_uid, decided_at FROM link
ON CONFLICT (study_instance_uid) DO UPDATE SET
	changed_at = greatest(d.changed_at, excluded.changed_at),
	changes = d.changes + 1`

// PutStudyLinkSQL makes sqlstore record a study link in one statement, one round trip.
func (dialect) PutStudyLinkSQL() string { return putStudyLinkSQL }
