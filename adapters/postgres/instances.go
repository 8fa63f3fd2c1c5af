package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/ferryhealth/ferry/engine"
)

var _ engine.InstanceStore = (*Store)(nil)

// putInstanceSQL records one instance and updates its series and study in one autocommit
// statement (one round trip; committed, and flushed under synchronous_commit, before PostgreSQL
// answers; on any error nothing of it is kept). Its data-modifying CTEs run in order, each
// reading the one before:
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
// statement locks instance, series, study, queue entry in that order, so two never wait for each other in a
// cycle. It returns one row when the instance went in, none when it was stored already.
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

// PutInstance records inst and updates its series and study in one durable statement
// (putInstanceSQL), as engine.InstanceStore documents. added is false when an instance with its
// SOP Instance UID is stored already; then nothing changed. Text is stored as valid UTF-8 without
// NULs (storableText), as the message log's header fields are.
func (s *Store) PutInstance(ctx context.Context, inst *engine.Instance) (added bool, err error) {
	if err := inst.Validate(); err != nil {
		return false, err
	}
	stmt, err := s.prepare(ctx, putInstanceSQL)
	if err != nil {
		return false, err
	}
	in := inst.Storable()
	args := []any{in.SOPInstanceUID, in.SOPClassUID, in.SeriesInstanceUID, in.StudyInstanceUID,
		in.TransferSyntaxUID, in.Modality, in.SeriesNumber, in.SeriesDescription, in.InstanceNumber,
		numberValue(in.InstanceNumber), in.PatientID, in.IssuerOfPatientID, in.PatientName,
		in.PatientBirthDate, in.PatientSex, in.AccessionNumber, in.StudyDate, in.StudyTime,
		in.StudyDescription, in.StudyID, in.ReferringPhysicianName, in.Path, in.Size, in.SHA256,
		in.ReceivedAt.UTC().Truncate(time.Microsecond), in.CallingAETitle, in.CalledAETitle, in.PeerAddr,
		numberValue(in.SeriesNumber)}
	for attempt := 1; ; attempt++ {
		var ok bool
		err = stmt.QueryRowContext(ctx, args...).Scan(&ok)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, sql.ErrNoRows):
			return false, nil // stored already: the first copy is kept
		}
		// A deadlock (none is expected: every statement locks in one order) aborted the
		// statement and kept nothing of it: run it again.
		err = interpretError(err)
		if !errors.Is(err, errRetry) || attempt == commitAttempts {
			return false, fmt.Errorf("storing instance %s: %w", inst.SOPInstanceUID, err)
		}
	}
}

// The columns of dicom_instances in the order scanInstance reads them.
const instanceColumns = `sop_instance_uid, sop_class_uid, series_instance_uid, study_instance_uid,
	transfer_syntax_uid, modality, series_number, series_description, instance_number, patient_id,
	issuer_of_patient_id, patient_name, patient_birth_date, patient_sex, accession_number,
	study_date, study_time, study_description, study_id, referring_physician_name, path, size,
	sha256, received_at, calling_ae_title, called_ae_title, peer_addr`

const instanceSQL = `SELECT ` + instanceColumns + ` FROM dicom_instances WHERE sop_instance_uid = $1`

// seriesInstancesSQL: by instance number (NULL, no number, last), then UID; the order of
// dicom_instances_series.
const seriesInstancesSQL = `SELECT ` + instanceColumns + ` FROM dicom_instances
WHERE series_instance_uid = $1
ORDER BY instance_number_value ASC NULLS LAST, sop_instance_uid`

const studySQL = `SELECT ` + studyColumns + ` FROM dicom_studies WHERE study_instance_uid = $1`

// studySeriesSQL: by series number (NULL last), then UID; the order of dicom_series_study.
const studySeriesSQL = `SELECT series_instance_uid, study_instance_uid, modality, series_number,
	series_description, number_of_instances
FROM dicom_series WHERE study_instance_uid = $1
ORDER BY series_number_value ASC NULLS LAST, series_instance_uid`

// Instance returns the instance with sopInstanceUID, or engine.ErrNotFound.
func (s *Store) Instance(ctx context.Context, sopInstanceUID string) (*engine.Instance, error) {
	stmt, err := s.prepare(ctx, instanceSQL)
	if err != nil {
		return nil, err
	}
	inst, err := scanInstance(stmt.QueryRowContext(ctx, storableText(sopInstanceUID)))
	if err != nil {
		return nil, fmt.Errorf("reading instance %s: %w", sopInstanceUID, interpretError(err))
	}
	return inst, nil
}

// SeriesInstances returns the instances of a series by instance number, then UID, or
// engine.ErrNotFound when no instance of the series is stored (a series exists only through its
// instances).
func (s *Store) SeriesInstances(ctx context.Context, seriesInstanceUID string) ([]*engine.Instance, error) {
	stmt, err := s.prepare(ctx, seriesInstancesSQL)
	if err != nil {
		return nil, err
	}
	rows, err := stmt.QueryContext(ctx, storableText(seriesInstanceUID))
	if err != nil {
		return nil, fmt.Errorf("reading instances of series %s: %w", seriesInstanceUID, interpretError(err))
	}
	defer rows.Close()
	var out []*engine.Instance
	for rows.Next() {
		inst, err := scanInstance(rows)
		if err != nil {
			return nil, fmt.Errorf("reading instances of series %s: %w", seriesInstanceUID, interpretError(err))
		}
		out = append(out, inst)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading instances of series %s: %w", seriesInstanceUID, interpretError(err))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("reading instances of series %s: %w", seriesInstanceUID, engine.ErrNotFound)
	}
	return out, nil
}

// Study returns the study with studyInstanceUID, or engine.ErrNotFound.
func (s *Store) Study(ctx context.Context, studyInstanceUID string) (*engine.Study, error) {
	stmt, err := s.prepare(ctx, studySQL)
	if err != nil {
		return nil, err
	}
	st, err := scanStudy(stmt.QueryRowContext(ctx, storableText(studyInstanceUID)))
	if err != nil {
		return nil, fmt.Errorf("reading study %s: %w", studyInstanceUID, interpretError(err))
	}
	return st, nil
}

// StudySeries returns the series of a study by series number, then UID, or engine.ErrNotFound
// when the study is not stored (a stored study has at least one series).
func (s *Store) StudySeries(ctx context.Context, studyInstanceUID string) ([]*engine.Series, error) {
	stmt, err := s.prepare(ctx, studySeriesSQL)
	if err != nil {
		return nil, err
	}
	rows, err := stmt.QueryContext(ctx, storableText(studyInstanceUID))
	if err != nil {
		return nil, fmt.Errorf("reading series of study %s: %w", studyInstanceUID, interpretError(err))
	}
	defer rows.Close()
	var out []*engine.Series
	for rows.Next() {
		var se engine.Series
		if err := rows.Scan(&se.SeriesInstanceUID, &se.StudyInstanceUID, &se.Modality,
			&se.SeriesNumber, &se.SeriesDescription, &se.NumberOfInstances); err != nil {
			return nil, fmt.Errorf("reading series of study %s: %w", studyInstanceUID, interpretError(err))
		}
		out = append(out, &se)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading series of study %s: %w", studyInstanceUID, interpretError(err))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("reading series of study %s: %w", studyInstanceUID, engine.ErrNotFound)
	}
	return out, nil
}

func scanInstance(row interface{ Scan(...any) error }) (*engine.Instance, error) {
	var inst engine.Instance
	err := row.Scan(&inst.SOPInstanceUID, &inst.SOPClassUID, &inst.SeriesInstanceUID,
		&inst.StudyInstanceUID, &inst.TransferSyntaxUID, &inst.Modality, &inst.SeriesNumber,
		&inst.SeriesDescription, &inst.InstanceNumber, &inst.PatientID, &inst.IssuerOfPatientID,
		&inst.PatientName, &inst.PatientBirthDate, &inst.PatientSex, &inst.AccessionNumber,
		&inst.StudyDate, &inst.StudyTime, &inst.StudyDescription, &inst.StudyID,
		&inst.ReferringPhysicianName, &inst.Path, &inst.Size, &inst.SHA256, &inst.ReceivedAt,
		&inst.CallingAETitle, &inst.CalledAETitle, &inst.PeerAddr)
	if err != nil {
		return nil, err
	}
	inst.ReceivedAt = inst.ReceivedAt.UTC()
	return &inst, nil
}

// numberValue is engine.IntegerString as a column value: NULL when there is no number, so
// that series and instances without one sort last.
func numberValue(is string) sql.NullInt64 {
	n, ok := engine.IntegerString(is)
	return sql.NullInt64{Int64: n, Valid: ok}
}

// studyColumns are the columns of dicom_studies in the order scanStudy reads them.
const studyColumns = `study_instance_uid, patient_id, issuer_of_patient_id, patient_name,
	patient_birth_date, patient_sex, accession_number, study_date, study_time, study_description,
	study_id, referring_physician_name, modalities_in_study, number_of_series, number_of_instances,
	first_received, last_received`

// SearchStudies returns the studies matching f, newest first, as engine.InstanceStore documents.
// The WHERE clause holds a condition for each filter given, every value a placeholder; the
// query is not prepared, so PostgreSQL plans it for its values (an accession number or a patient
// ID takes its index, a date range dicom_studies_study_date).
//
// With f.LinkedIdentity and a PatientID, the patient condition is the union of the studies
// linked to f.LinkedPatientIDs (study_links_patient) and those the modality sent under the
// Patient ID (dicom_studies_patient) that are not linked (study_links_pkey), each branch on its
// index (one OR across the two tables could only be filtered).
func (s *Store) SearchStudies(ctx context.Context, f engine.StudyFilter) ([]*engine.Study, error) {
	var (
		where []string
		args  []any
	)
	cond := func(format string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(format, len(args)))
	}
	arg := func(v any) int {
		args = append(args, v)
		return len(args)
	}
	switch {
	case f.LinkedIdentity && f.PatientID != "":
		var branches []string
		if ids := linkedPatientIDs(f.LinkedPatientIDs); len(ids) > 0 {
			branches = append(branches, fmt.Sprintf(`SELECT l.study_instance_uid FROM study_links l
				WHERE l.status = 'linked' AND l.patient_id = ANY($%d::text[])`, arg(ids)))
		}
		sent := fmt.Sprintf("s.patient_id = $%d", arg(storableText(f.PatientID)))
		if f.IssuerOfPatientID != "" {
			sent += fmt.Sprintf(" AND s.issuer_of_patient_id = $%d", arg(storableText(f.IssuerOfPatientID)))
		}
		// Linked as engine.Linker.LinkedIdentity reads a link: status linked, naming a patient.
		branches = append(branches, `SELECT s.study_instance_uid FROM dicom_studies s WHERE `+sent+`
				AND NOT EXISTS (SELECT 1 FROM study_links l WHERE l.study_instance_uid = s.study_instance_uid
					AND l.status = 'linked' AND l.patient_id <> '')`)
		where = append(where, "study_instance_uid IN ("+strings.Join(branches, " UNION ALL ")+")")
	default:
		if f.PatientID != "" {
			cond("patient_id = $%d", storableText(f.PatientID))
		}
		if f.IssuerOfPatientID != "" {
			cond("issuer_of_patient_id = $%d", storableText(f.IssuerOfPatientID))
		}
	}
	if f.AccessionNumber != "" {
		cond("accession_number = $%d", storableText(f.AccessionNumber))
	}
	if len(f.StudyInstanceUIDs) > 0 {
		uids := make(pq.StringArray, len(f.StudyInstanceUIDs))
		for i, u := range f.StudyInstanceUIDs {
			uids[i] = storableText(u)
		}
		cond("study_instance_uid = ANY($%d::text[])", uids)
	}
	if f.StudyDateFrom != "" || f.StudyDateTo != "" {
		where = append(where, "study_date <> ''")
	}
	if f.StudyDateFrom != "" {
		cond("study_date >= $%d", storableText(f.StudyDateFrom))
	}
	if f.StudyDateTo != "" {
		cond("study_date <= $%d", storableText(f.StudyDateTo))
	}
	if f.ModalityInStudy != "" {
		cond("$%d = ANY(modalities_in_study)", storableText(f.ModalityInStudy))
	}
	query := `SELECT ` + studyColumns + ` FROM dicom_studies`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	args = append(args, f.PageLimit(), f.PageOffset())
	query += fmt.Sprintf(` ORDER BY study_date DESC, study_time DESC, study_instance_uid LIMIT $%d OFFSET $%d`,
		len(args)-1, len(args))

	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("searching studies: %w", interpretError(err))
	}
	defer rows.Close()
	out := []*engine.Study{}
	for rows.Next() {
		st, err := scanStudy(rows)
		if err != nil {
			return nil, fmt.Errorf("searching studies: %w", interpretError(err))
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("searching studies: %w", interpretError(err))
	}
	return out, nil
}

// linkedPatientIDs is engine.StudyFilter.LinkedPatientIDs as a text[] parameter, without empty
// ids (an empty patient_id is a link to no patient).
func linkedPatientIDs(ids []string) pq.StringArray {
	out := make(pq.StringArray, 0, len(ids))
	for _, id := range ids {
		if id != "" {
			out = append(out, storableText(id))
		}
	}
	return out
}

func scanStudy(row interface{ Scan(...any) error }) (*engine.Study, error) {
	var (
		st         engine.Study
		modalities pq.StringArray
	)
	err := row.Scan(&st.StudyInstanceUID, &st.PatientID, &st.IssuerOfPatientID, &st.PatientName,
		&st.PatientBirthDate, &st.PatientSex, &st.AccessionNumber, &st.StudyDate, &st.StudyTime,
		&st.StudyDescription, &st.StudyID, &st.ReferringPhysicianName, &modalities,
		&st.NumberOfSeries, &st.NumberOfInstances, &st.FirstReceived, &st.LastReceived)
	if err != nil {
		return nil, err
	}
	st.ModalitiesInStudy = []string(modalities)
	if st.ModalitiesInStudy == nil {
		st.ModalitiesInStudy = []string{}
	}
	st.FirstReceived, st.LastReceived = st.FirstReceived.UTC(), st.LastReceived.UTC()
	return &st, nil
}
