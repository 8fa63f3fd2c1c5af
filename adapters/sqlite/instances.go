package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ferryhealth/ferry/engine"
)

var _ engine.InstanceStore = (*Store)(nil)

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

// PutInstance records inst and updates its series and study in one transaction on the writer
// connection, committed (the WAL fsynced) before it returns, as engine.InstanceStore documents.
// added is false when an instance with its SOP Instance UID is stored already; then nothing
// changed. Text is stored as valid UTF-8 without NULs (storableText), as adapters/postgres
// must store it.
func (s *Store) PutInstance(ctx context.Context, inst *engine.Instance) (added bool, err error) {
	if err := inst.Validate(); err != nil {
		return false, err
	}
	if inst.ReceivedAt.Year() < 1678 || inst.ReceivedAt.Year() > 2261 {
		// Stored as Unix nanoseconds, which an int64 holds for these years.
		return false, fmt.Errorf("storing instance %s: ReceivedAt %s is out of range", inst.SOPInstanceUID, inst.ReceivedAt)
	}
	// Prepared before the transaction takes the writer's one connection (see Store.prepare).
	var stmts [4]*sql.Stmt
	for i, query := range []string{insertInstanceSQL, upsertSeriesSQL, upsertStudySQL, shared.QueueDerivationSQL()} {
		if stmts[i], err = s.prepare(ctx, s.writer, query); err != nil {
			return false, err
		}
	}
	in := inst.Storable()
	modalities := "[]"
	if in.Modality != "" {
		b, _ := json.Marshal([]string{in.Modality}) // a []string always encodes
		modalities = string(b)
	}
	receivedAt := in.ReceivedAt.UnixNano()

	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("storing instance %s: %w", in.SOPInstanceUID, interpretError(err))
	}
	defer func() {
		if err != nil || !added {
			tx.Rollback()
		}
		if err != nil {
			err = fmt.Errorf("storing instance %s: %w", in.SOPInstanceUID, err)
		}
	}()
	res, err := tx.StmtContext(ctx, stmts[0]).ExecContext(ctx, in.SOPInstanceUID, in.SOPClassUID,
		in.SeriesInstanceUID, in.StudyInstanceUID, in.TransferSyntaxUID, in.Modality,
		in.SeriesNumber, in.SeriesDescription, in.InstanceNumber, numberValue(in.InstanceNumber),
		in.PatientID, in.IssuerOfPatientID, in.PatientName, in.PatientBirthDate, in.PatientSex,
		in.AccessionNumber, in.StudyDate, in.StudyTime, in.StudyDescription, in.StudyID,
		in.ReferringPhysicianName, in.Path, in.Size, in.SHA256, receivedAt, in.CallingAETitle,
		in.CalledAETitle, in.PeerAddr)
	if err != nil {
		return false, fmt.Errorf("inserting instance: %w", interpretError(err))
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, interpretError(err) // stored already: the first copy is kept
	}
	var seriesCount int
	err = tx.StmtContext(ctx, stmts[1]).QueryRowContext(ctx, in.SeriesInstanceUID,
		in.StudyInstanceUID, in.Modality, in.SeriesNumber, numberValue(in.SeriesNumber),
		in.SeriesDescription).Scan(&seriesCount)
	if err != nil {
		return false, fmt.Errorf("updating series %s: %w", in.SeriesInstanceUID, interpretError(err))
	}
	newSeries := 0
	if seriesCount == 1 {
		newSeries = 1
	}
	_, err = tx.StmtContext(ctx, stmts[2]).ExecContext(ctx, in.StudyInstanceUID, in.PatientID,
		in.IssuerOfPatientID, in.PatientName, in.PatientBirthDate, in.PatientSex,
		in.AccessionNumber, in.StudyDate, in.StudyTime, in.StudyDescription, in.StudyID,
		in.ReferringPhysicianName, modalities, newSeries, receivedAt, receivedAt)
	if err != nil {
		return false, fmt.Errorf("updating study %s: %w", in.StudyInstanceUID, interpretError(err))
	}
	// Its ImagingStudy is derived again once the study is quiet (engine.DerivationQueue).
	if _, err = tx.StmtContext(ctx, stmts[3]).ExecContext(ctx, in.StudyInstanceUID, receivedAt); err != nil {
		return false, fmt.Errorf("queueing study %s: %w", in.StudyInstanceUID, interpretError(err))
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("committing: %w", interpretError(err))
	}
	return true, nil
}

// The columns of dicom_instances in the order scanInstance reads them.
const instanceColumns = `sop_instance_uid, sop_class_uid, series_instance_uid, study_instance_uid,
	transfer_syntax_uid, modality, series_number, series_description, instance_number, patient_id,
	issuer_of_patient_id, patient_name, patient_birth_date, patient_sex, accession_number,
	study_date, study_time, study_description, study_id, referring_physician_name, path, size,
	sha256, received_at, calling_ae_title, called_ae_title, peer_addr`

const instanceSQL = `SELECT ` + instanceColumns + ` FROM dicom_instances WHERE sop_instance_uid = ?`

// seriesInstancesSQL: by instance number (NULL, no number, last), then UID.
const seriesInstancesSQL = `SELECT ` + instanceColumns + ` FROM dicom_instances
WHERE series_instance_uid = ?
ORDER BY instance_number_value ASC NULLS LAST, sop_instance_uid`

const studySQL = `SELECT ` + studyColumns + ` FROM dicom_studies WHERE study_instance_uid = ?`

// studySeriesSQL: by series number (NULL last), then UID.
const studySeriesSQL = `SELECT series_instance_uid, study_instance_uid, modality, series_number,
	series_description, number_of_instances
FROM dicom_series WHERE study_instance_uid = ?
ORDER BY series_number_value ASC NULLS LAST, series_instance_uid`

// Instance returns the instance with sopInstanceUID, or engine.ErrNotFound.
func (s *Store) Instance(ctx context.Context, sopInstanceUID string) (*engine.Instance, error) {
	stmt, err := s.prepare(ctx, s.reader, instanceSQL)
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
	stmt, err := s.prepare(ctx, s.reader, seriesInstancesSQL)
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
	stmt, err := s.prepare(ctx, s.reader, studySQL)
	if err != nil {
		return nil, err
	}
	st, err := scanStudy(stmt.QueryRowContext(ctx, storableText(studyInstanceUID)))
	if err != nil {
		return nil, fmt.Errorf("reading study %s: %w", studyInstanceUID, err)
	}
	return st, nil
}

// StudySeries returns the series of a study by series number, then UID, or engine.ErrNotFound
// when the study is not stored (a stored study has at least one series).
func (s *Store) StudySeries(ctx context.Context, studyInstanceUID string) ([]*engine.Series, error) {
	stmt, err := s.prepare(ctx, s.reader, studySeriesSQL)
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
	var (
		inst       engine.Instance
		receivedAt int64
	)
	err := row.Scan(&inst.SOPInstanceUID, &inst.SOPClassUID, &inst.SeriesInstanceUID,
		&inst.StudyInstanceUID, &inst.TransferSyntaxUID, &inst.Modality, &inst.SeriesNumber,
		&inst.SeriesDescription, &inst.InstanceNumber, &inst.PatientID, &inst.IssuerOfPatientID,
		&inst.PatientName, &inst.PatientBirthDate, &inst.PatientSex, &inst.AccessionNumber,
		&inst.StudyDate, &inst.StudyTime, &inst.StudyDescription, &inst.StudyID,
		&inst.ReferringPhysicianName, &inst.Path, &inst.Size, &inst.SHA256, &receivedAt,
		&inst.CallingAETitle, &inst.CalledAETitle, &inst.PeerAddr)
	if err != nil {
		return nil, err
	}
	inst.ReceivedAt = time.Unix(0, receivedAt).UTC()
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
// The WHERE clause holds a condition for each filter given, every value a placeholder; lists
// (UIDs, patient ids) are bound as one JSON array and read with json_each.
//
// With f.LinkedIdentity and a PatientID, the patient condition is the union of the studies
// linked to f.LinkedPatientIDs (study_links_patient) and those the modality sent under the
// Patient ID (dicom_studies_patient) that are not linked (study_links' primary key), each
// branch able to take its index (one OR across the two tables could only be filtered).
func (s *Store) SearchStudies(ctx context.Context, f engine.StudyFilter) ([]*engine.Study, error) {
	var (
		where []string
		args  []any
	)
	cond := func(c string, v any) {
		where = append(where, c)
		args = append(args, v)
	}
	switch {
	case f.LinkedIdentity && f.PatientID != "":
		var (
			branches []string
			ids      []string
		)
		for _, id := range f.LinkedPatientIDs {
			if id != "" { // an empty patient_id is a link to no patient
				ids = append(ids, storableText(id))
			}
		}
		if len(ids) > 0 {
			b, _ := json.Marshal(ids) // a []string always encodes
			branches = append(branches, `SELECT l.study_instance_uid FROM study_links l
				WHERE l.status = 'linked' AND l.patient_id IN (SELECT value FROM json_each(?))`)
			args = append(args, string(b))
		}
		sent := "s.patient_id = ?"
		args = append(args, storableText(f.PatientID))
		if f.IssuerOfPatientID != "" {
			sent += " AND s.issuer_of_patient_id = ?"
			args = append(args, storableText(f.IssuerOfPatientID))
		}
		// Linked as engine.Linker.LinkedIdentity reads a link: status linked, naming a patient.
		branches = append(branches, `SELECT s.study_instance_uid FROM dicom_studies s WHERE `+sent+`
				AND NOT EXISTS (SELECT 1 FROM study_links l WHERE l.study_instance_uid = s.study_instance_uid
					AND l.status = 'linked' AND l.patient_id <> '')`)
		where = append(where, "study_instance_uid IN ("+strings.Join(branches, " UNION ALL ")+")")
	default:
		if f.PatientID != "" {
			cond("patient_id = ?", storableText(f.PatientID))
		}
		if f.IssuerOfPatientID != "" {
			cond("issuer_of_patient_id = ?", storableText(f.IssuerOfPatientID))
		}
	}
	if f.AccessionNumber != "" {
		cond("accession_number = ?", storableText(f.AccessionNumber))
	}
	if len(f.StudyInstanceUIDs) > 0 {
		uids := make([]string, len(f.StudyInstanceUIDs))
		for i, u := range f.StudyInstanceUIDs {
			uids[i] = storableText(u)
		}
		b, _ := json.Marshal(uids) // a []string always encodes
		cond("study_instance_uid IN (SELECT value FROM json_each(?))", string(b))
	}
	if f.StudyDateFrom != "" || f.StudyDateTo != "" {
		where = append(where, "study_date <> ''")
	}
	if f.StudyDateFrom != "" {
		cond("study_date >= ?", storableText(f.StudyDateFrom))
	}
	if f.StudyDateTo != "" {
		cond("study_date <= ?", storableText(f.StudyDateTo))
	}
	if f.ModalityInStudy != "" {
		cond("EXISTS (SELECT 1 FROM json_each(modalities_in_study) WHERE value = ?)", storableText(f.ModalityInStudy))
	}
	query := `SELECT ` + studyColumns + ` FROM dicom_studies`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	query += ` ORDER BY study_date DESC, study_time DESC, study_instance_uid LIMIT ? OFFSET ?`
	args = append(args, f.PageLimit(), f.PageOffset())

	rows, err := s.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("searching studies: %w", interpretError(err))
	}
	defer rows.Close()
	out := []*engine.Study{}
	for rows.Next() {
		st, err := scanStudy(rows)
		if err != nil {
			return nil, fmt.Errorf("searching studies: %w", err)
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("searching studies: %w", interpretError(err))
	}
	return out, nil
}

func scanStudy(row interface{ Scan(...any) error }) (*engine.Study, error) {
	var (
		st                          engine.Study
		modalities                  string
		firstReceived, lastReceived int64
	)
	err := row.Scan(&st.StudyInstanceUID, &st.PatientID, &st.IssuerOfPatientID, &st.PatientName,
		&st.PatientBirthDate, &st.PatientSex, &st.AccessionNumber, &st.StudyDate, &st.StudyTime,
		&st.StudyDescription, &st.StudyID, &st.ReferringPhysicianName, &modalities,
		&st.NumberOfSeries, &st.NumberOfInstances, &firstReceived, &lastReceived)
	if err != nil {
		return nil, interpretError(err)
	}
	if err := json.Unmarshal([]byte(modalities), &st.ModalitiesInStudy); err != nil {
		return nil, fmt.Errorf("modalities in study of %s: %w", st.StudyInstanceUID, err)
	}
	if st.ModalitiesInStudy == nil {
		st.ModalitiesInStudy = []string{}
	}
	st.FirstReceived = time.Unix(0, firstReceived).UTC()
	st.LastReceived = time.Unix(0, lastReceived).UTC()
	return &st, nil
}
