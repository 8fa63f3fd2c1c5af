package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/ferryhealth/ferry/adapters/sqlstore"
	"github.com/ferryhealth/ferry/engine"
)

// insertInstanceSQL inserts an instance, or nothing when its SOP Instance UID is stored (the
// primary key): then PutInstance changes nothing else.
const insertInstanceSQL = `
INSERT INTO dicom_instances (sop_instance_uid, sop_class_uid, series_instance_uid,
	study_instance_uid, transfer_syntax_uid, modality, series_number, series_description,
	instance_number, instance_number_value, patient_id, issuer_of_patient_id, patient_name,
	patient_birth_date, patient_sex, accession_number, study_date, study_time, study_description,
	study_id, referring_physician_name, path, size, sha256, received_at, calling_ae_title,
	called_ae_title, peer_addr)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (sop_instance_uid) DO NOTHING`

// upsertSeriesSQL counts a new instance in its series, creating the series with the first; each
// attribute is kept unless empty, so it comes from the first instance that gives it. The count
// it returns is 1 exactly when this instance created the series.
const upsertSeriesSQL = `
INSERT INTO dicom_series (series_instance_uid, study_instance_uid, modality, series_number,
	series_number_value, series_description, number_of_instances)
VALUES (?, ?, ?, ?, ?, ?, 1)
ON CONFLICT (series_instance_uid) DO UPDATE SET
	modality = coalesce(nullif(dicom_series.modality, ''), excluded.modality),
	series_number = coalesce(nullif(dicom_series.series_number, ''), excluded.series_number),
	series_number_value = CASE WHEN dicom_series.series_number = '' THEN excluded.series_number_value
		ELSE dicom_series.series_number_value END,
	series_description = coalesce(nullif(dicom_series.series_description, ''), excluded.series_description),
	number_of_instances = dicom_series.number_of_instances + 1
RETURNING number_of_instances`

// upsertStudySQL counts a new instance (and, when it created its series, a new series) in its
// study, creating the study with the first: the modality merged into the distinct sorted set,
// first/last received widened, each attribute kept unless empty.
const upsertStudySQL = `
INSERT INTO dicom_studies (study_instance_uid, patient_id, issuer_of_patient_id, patient_name,
	patient_birth_date, patient_sex, accession_number, study_date, study_time, study_description,
	study_id, referring_physician_name, modalities_in_study, number_of_series, number_of_instances,
	first_received, last_received)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)
ON CONFLICT (study_instance_uid) DO UPDATE SET
	patient_id = coalesce(nullif(dicom_studies.patient_id, ''), excluded.patient_id),
	issuer_of_patient_id = coalesce(nullif(dicom_studies.issuer_of_patient_id, ''), excluded.issuer_of_patient_id),
	patient_name = coalesce(nullif(dicom_studies.patient_name, ''), excluded.patient_name),
	patient_birth_date = coalesce(nullif(dicom_studies.patient_birth_date, ''), excluded.patient_birth_date),
	patient_sex = coalesce(nullif(dicom_studies.patient_sex, ''), excluded.patient_sex),
	accession_number = coalesce(nullif(dicom_studies.accession_number, ''), excluded.accession_number),
	study_date = coalesce(nullif(dicom_studies.study_date, ''), excluded.study_date),
	study_time = coalesce(nullif(dicom_studies.study_time, ''), excluded.study_time),
	study_description = coalesce(nullif(dicom_studies.study_description, ''), excluded.study_description),
	study_id = coalesce(nullif(dicom_studies.study_id, ''), excluded.study_id),
	referring_physician_name = coalesce(nullif(dicom_studies.referring_physician_name, ''), excluded.referring_physician_name),
	modalities_in_study = CASE WHEN excluded.modalities_in_study = '[]'
		THEN dicom_studies.modalities_in_study
		ELSE (SELECT json_group_array(value ORDER BY value) FROM (
			SELECT value FROM json_each(dicom_studies.modalities_in_study)
			UNION SELECT value FROM json_each(excluded.modalities_in_study)))
		END,
	number_of_series = dicom_studies.number_of_series + excluded.number_of_series,
	number_of_instances = dicom_studies.number_of_instances + 1,
	first_received = min(dicom_studies.first_received, excluded.first_received),
	last_received = max(dicom_studies.last_received, excluded.last_received)`

// PutInstance records one instance: PutInstances of one.
func (s *Store) PutInstance(ctx context.Context, inst *engine.Instance) (added bool, err error) {
	a, err := s.PutInstances(ctx, []*engine.Instance{inst})
	if err != nil {
		return false, err
	}
	return a[0], nil
}

// PutInstances records insts and updates their series and studies in one transaction on the
// writer connection, committed (one WAL fsync for all) before it returns, as
// engine.InstanceStore documents. added[i] is false when an instance with insts[i]'s SOP Instance
// UID was stored already (or earlier in insts); then nothing of it changed. Text is stored as
// valid UTF-8 without NULs (Instance.Storable), as adapters/postgres must store it.
func (s *Store) PutInstances(ctx context.Context, insts []*engine.Instance) (added []bool, err error) {
	for _, inst := range insts {
		if err := inst.Validate(); err != nil {
			return nil, err
		}
	}
	// Prepared before the transaction takes the writer's one connection (see Store.prepare).
	var stmts [4]*sql.Stmt
	for i, query := range []string{insertInstanceSQL, upsertSeriesSQL, upsertStudySQL, shared.QueueDerivationSQL()} {
		if stmts[i], err = s.prepare(ctx, s.writer, query); err != nil {
			return nil, err
		}
	}
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("storing %d instances: %w", len(insts), interpretError(err))
	}
	defer tx.Rollback() // after Commit, a no-op
	for i, st := range stmts {
		stmts[i] = tx.StmtContext(ctx, st)
	}
	added = make([]bool, len(insts))
	for _, i := range engine.InstanceLockOrder(insts) {
		in := insts[i].Storable()
		if added[i], err = putInstance(ctx, &stmts, &in); err != nil {
			return nil, fmt.Errorf("storing instance %s: %w", in.SOPInstanceUID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("storing %d instances: committing: %w", len(insts), interpretError(err))
	}
	return added, nil
}

// putInstance runs PutInstances' statements (on its transaction) for one instance.
func putInstance(ctx context.Context, stmts *[4]*sql.Stmt, in *engine.Instance) (added bool, err error) {
	row, err := shared.InstanceRow(in) // ReceivedAt in Unix nanoseconds, which an int64 holds for 1678–2261
	if err != nil {
		return false, err
	}
	modalities := "[]"
	if in.Modality != "" {
		b, _ := json.Marshal([]string{in.Modality}) // a []string always encodes
		modalities = string(b)
	}
	receivedAt := in.ReceivedAt.UnixNano()
	res, err := stmts[0].ExecContext(ctx, row...)
	if err != nil {
		return false, fmt.Errorf("inserting instance: %w", interpretError(err))
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, interpretError(err) // stored already: the first copy is kept
	}
	var seriesCount int
	err = stmts[1].QueryRowContext(ctx, in.SeriesInstanceUID,
		in.StudyInstanceUID, in.Modality, in.SeriesNumber, sqlstore.NumberValue(in.SeriesNumber),
		in.SeriesDescription).Scan(&seriesCount)
	if err != nil {
		return false, fmt.Errorf("updating series %s: %w", in.SeriesInstanceUID, interpretError(err))
	}
	newSeries := 0
	if seriesCount == 1 {
		newSeries = 1
	}
	_, err = stmts[2].ExecContext(ctx, in.StudyInstanceUID, in.PatientID,
		in.IssuerOfPatientID, in.PatientName, in.PatientBirthDate, in.PatientSex,
		in.AccessionNumber, in.StudyDate, in.StudyTime, in.StudyDescription, in.StudyID,
		in.ReferringPhysicianName, modalities, newSeries, receivedAt, receivedAt)
	if err != nil {
		return false, fmt.Errorf("updating study %s: %w", in.StudyInstanceUID, interpretError(err))
	}
	// Its ImagingStudy is derived again once the study is quiet (engine.DerivationQueue).
	if _, err = stmts[3].ExecContext(ctx, in.StudyInstanceUID, receivedAt); err != nil {
		return false, fmt.Errorf("queueing study %s: %w", in.StudyInstanceUID, interpretError(err))
	}
	return true, nil
}
