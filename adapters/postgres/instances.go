package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ferryhealth/ferry/adapters/sqlstore"
	"github.com/ferryhealth/ferry/engine"
)

// putInstanceSQL records one instance and updates its series and study in one statement (one
// round trip; PutInstances runs one per instance of a batch, in one transaction). Its
// data-modifying CTEs run in order, each reading the one before:
//
//  1. new_instance inserts the instance, or nothing when its SOP Instance UID is stored (the
//     primary key): then no row flows on and nothing else changes. A racing transaction inserting
//     the same UID makes it wait for that one's outcome.
//  2. new_series upserts the series, counting the instance; its count is 1 exactly when this
//     instance created the series (counts only grow, by one per new instance), which the study
//     takes as "one more series".
//  3. new_study upserts the study: counts added to, the modality merged into the distinct sorted
//     set, first/last received widened, and each patient or study attribute kept unless it is
//     empty, so that it comes from the first instance that gives it;
//  4. the study is queued for its ImagingStudy to be derived again (study_derivations), its
//     change counted.
//
// ON CONFLICT DO UPDATE locks the existing row and, under READ COMMITTED, updates its latest
// committed version: concurrent instances of one series, on any node, add up exactly. Every
// statement locks instance, series, study, queue entry in that order, and a batch runs its
// statements in the order of study, series and instance UID (engine.InstanceLockOrder), so two
// transactions never wait for each other in a cycle. It returns one row when the instance went in, none when it was stored already.
const putInstanceSQL = `
WITH new_instance AS (
	INSERT INTO dicom_instances (sop_instance_uid, sop_class_uid, series_instance_uid,
		study_instance_uid, transfer_syntax_uid, modality, series_number, series_description,
		instance_number, instance_number_value, patient_id, issuer_of_patient_id, patient_name,
		patient_birth_date, patient_sex, accession_number, study_date, study_time,
		study_description, study_id, referring_physician_name, path, size, sha256, received_at,
		calling_ae_title, called_ae_title, peer_addr)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
		$20, $21, $22, $23, $24, $25, $26, $27, $28)
	ON CONFLICT (sop_instance_uid) DO NOTHING
	RETURNING series_instance_uid, study_instance_uid, modality, series_number,
		series_description, patient_id, issuer_of_patient_id, patient_name, patient_birth_date,
		patient_sex, accession_number, study_date, study_time, study_description, study_id,
		referring_physician_name, received_at
),
new_series AS (
	INSERT INTO dicom_series AS s (series_instance_uid, study_instance_uid, modality,
		series_number, series_number_value, series_description, number_of_instances)
	SELECT series_instance_uid, study_instance_uid, modality, series_number, $29::bigint,
		series_description, 1
	FROM new_instance
	ON CONFLICT (series_instance_uid) DO UPDATE SET
		modality = coalesce(nullif(s.modality, ''), excluded.modality),
		series_number = coalesce(nullif(s.series_number, ''), excluded.series_number),
		series_number_value = CASE WHEN s.series_number = '' THEN excluded.series_number_value
			ELSE s.series_number_value END,
		series_description = coalesce(nullif(s.series_description, ''), excluded.series_description),
		number_of_instances = s.number_of_instances + 1
	RETURNING number_of_instances = 1 AS first_of_series
),
new_study AS (
INSERT INTO dicom_studies AS st (study_instance_uid, patient_id, issuer_of_patient_id,
	patient_name, patient_birth_date, patient_sex, accession_number, study_date, study_time,
	study_description, study_id, referring_physician_name, modalities_in_study, number_of_series,
	number_of_instances, first_received, last_received)
SELECT i.study_instance_uid, i.patient_id, i.issuer_of_patient_id, i.patient_name,
	i.patient_birth_date, i.patient_sex, i.accession_number, i.study_date, i.study_time,
	i.study_description, i.study_id, i.referring_physician_name,
	CASE WHEN i.modality = '' THEN '{}'::text[] ELSE ARRAY[i.modality] END,
	CASE WHEN s.first_of_series THEN 1 ELSE 0 END, 1, i.received_at, i.received_at
FROM new_instance i CROSS JOIN new_series s
ON CONFLICT (study_instance_uid) DO UPDATE SET
	patient_id = coalesce(nullif(st.patient_id, ''), excluded.patient_id),
	issuer_of_patient_id = coalesce(nullif(st.issuer_of_patient_id, ''), excluded.issuer_of_patient_id),
	patient_name = coalesce(nullif(st.patient_name, ''), excluded.patient_name),
	patient_birth_date = coalesce(nullif(st.patient_birth_date, ''), excluded.patient_birth_date),
	patient_sex = coalesce(nullif(st.patient_sex, ''), excluded.patient_sex),
	accession_number = coalesce(nullif(st.accession_number, ''), excluded.accession_number),
	study_date = coalesce(nullif(st.study_date, ''), excluded.study_date),
	study_time = coalesce(nullif(st.study_time, ''), excluded.study_time),
	study_description = coalesce(nullif(st.study_description, ''), excluded.study_description),
	study_id = coalesce(nullif(st.study_id, ''), excluded.study_id),
	referring_physician_name = coalesce(nullif(st.referring_physician_name, ''), excluded.referring_physician_name),
	modalities_in_study = CASE WHEN excluded.modalities_in_study <@ st.modalities_in_study
		THEN st.modalities_in_study
		ELSE ARRAY(SELECT DISTINCT m FROM unnest(st.modalities_in_study || excluded.modalities_in_study) m ORDER BY m)
		END,
	number_of_series = st.number_of_series + excluded.number_of_series,
	number_of_instances = st.number_of_instances + 1,
	first_received = least(st.first_received, excluded.first_received),
	last_received = greatest(st.last_received, excluded.last_received)
RETURNING study_instance_uid, last_received
)
INSERT INTO study_derivations AS d (study_instance_uid, changed_at)
SELECT study_instance_uid, last_received FROM new_study
ON CONFLICT (study_instance_uid) DO UPDATE SET
	changed_at = greatest(d.changed_at, excluded.changed_at),
	changes = d.changes + 1
RETURNING true`

// PutInstance records one instance: PutInstances of one.
func (s *Store) PutInstance(ctx context.Context, inst *engine.Instance) (added bool, err error) {
	a, err := s.PutInstances(ctx, []*engine.Instance{inst})
	if err != nil {
		return false, err
	}
	return a[0], nil
}

// PutInstances records insts and updates their series and studies in one transaction, one
// putInstanceSQL each, committed (one WAL flush for all) before it returns, as
// engine.InstanceStore documents. added[i] is false when an instance with insts[i]'s SOP Instance
// UID was stored already (or earlier in insts); then nothing of it changed. Text is stored as
// valid UTF-8 without NULs (Instance.Storable). The statements run in the order of study, series
// and SOP Instance UID whatever the order of insts, so two batches (on two nodes) lock their
// rows in one order; a deadlock or serialization failure nonetheless reruns the transaction.
func (s *Store) PutInstances(ctx context.Context, insts []*engine.Instance) (added []bool, err error) {
	rows := make([][]any, len(insts))
	for i, inst := range insts {
		if err := inst.Validate(); err != nil {
			return nil, err
		}
		in := inst.Storable()
		if rows[i], err = shared.InstanceRow(&in); err != nil {
			return nil, err
		}
		rows[i] = append(rows[i], sqlstore.NumberValue(in.SeriesNumber))
	}
	stmt, err := s.prepare(ctx, putInstanceSQL)
	if err != nil {
		return nil, err
	}
	order := engine.InstanceLockOrder(insts)
	added = make([]bool, len(insts))
	for attempt := 1; ; attempt++ {
		err = s.putInstances(ctx, stmt, rows, order, added)
		if err == nil {
			return added, nil
		}
		// A deadlock (none is expected: every transaction locks in one order) aborted the
		// transaction and kept nothing of it: run it again.
		err = interpretError(err)
		if !errors.Is(err, errRetry) || attempt == commitAttempts {
			return nil, fmt.Errorf("storing %d instances (first %s): %w", len(insts), insts[order[0]].SOPInstanceUID, err)
		}
	}
}

// putInstances runs one transaction of PutInstances: rows[i] in the order order gives.
func (s *Store) putInstances(ctx context.Context, stmt *sql.Stmt, rows [][]any, order []int, added []bool) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // after Commit, a no-op
	st := tx.StmtContext(ctx, stmt)
	for _, i := range order {
		var ok bool
		switch err := st.QueryRowContext(ctx, rows[i]...).Scan(&ok); {
		case err == nil:
			added[i] = true
		case errors.Is(err, sql.ErrNoRows):
			added[i] = false // stored already: the first copy is kept
		default:
			return err
		}
	}
	return tx.Commit()
}
