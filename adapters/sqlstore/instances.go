package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/ferryhealth/ferry/engine"
)

// instanceStatements are the reads of DICOM instances, series and studies
// (migrations/*/00005_dicom_studies.sql). Writing an instance (PutInstance) is each store's own:
// the DICOM intake's hot path, one statement on PostgreSQL, a transaction on SQLite.
type instanceStatements struct {
	instance, seriesInstances, study, studySeries string
}

// instanceColumns are the columns of dicom_instances in the order scanInstance reads them.
const instanceColumns = `sop_instance_uid, sop_class_uid, series_instance_uid, study_instance_uid,
	transfer_syntax_uid, modality, series_number, series_description, instance_number, patient_id,
	issuer_of_patient_id, patient_name, patient_birth_date, patient_sex, accession_number,
	study_date, study_time, study_description, study_id, referring_physician_name, path, size,
	sha256, received_at, calling_ae_title, called_ae_title, peer_addr`

// studyColumns are the columns of dicom_studies in the order scanStudy reads them.
const studyColumns = `study_instance_uid, patient_id, issuer_of_patient_id, patient_name,
	patient_birth_date, patient_sex, accession_number, study_date, study_time, study_description,
	study_id, referring_physician_name, modalities_in_study, number_of_series, number_of_instances,
	first_received, last_received`

func newInstanceStatements(rebind func(string) string) instanceStatements {
	return instanceStatements{
		instance: rebind(`SELECT ` + instanceColumns + ` FROM dicom_instances WHERE sop_instance_uid = ?`),
		// By instance number (NULL, no number, last), then UID: the order of dicom_instances_series.
		seriesInstances: rebind(`SELECT ` + instanceColumns + ` FROM dicom_instances
WHERE series_instance_uid = ?
ORDER BY instance_number_value ASC NULLS LAST, sop_instance_uid`),
		study: rebind(`SELECT ` + studyColumns + ` FROM dicom_studies WHERE study_instance_uid = ?`),
		// By series number (NULL last), then UID: the order of dicom_series_study.
		studySeries: rebind(`SELECT series_instance_uid, study_instance_uid, modality, series_number,
	series_description, number_of_instances
FROM dicom_series WHERE study_instance_uid = ?
ORDER BY series_number_value ASC NULLS LAST, series_instance_uid`),
	}
}

// InstanceRow returns the values of a new dicom_instances row for in (engine.Instance.Storable),
// in the order of the columns a store's PutInstance inserts: instanceColumns with
// instance_number_value after instance_number. The time is the dialect's (Dialect.Time).
func (s *Store) InstanceRow(in *engine.Instance) ([]any, error) {
	receivedAt, err := s.d.Time(in.ReceivedAt)
	if err != nil {
		return nil, &InvalidError{fmt.Errorf("storing instance %s: ReceivedAt: %w", in.SOPInstanceUID, err)}
	}
	return []any{in.SOPInstanceUID, in.SOPClassUID, in.SeriesInstanceUID, in.StudyInstanceUID,
		in.TransferSyntaxUID, in.Modality, in.SeriesNumber, in.SeriesDescription, in.InstanceNumber,
		NumberValue(in.InstanceNumber), in.PatientID, in.IssuerOfPatientID, in.PatientName,
		in.PatientBirthDate, in.PatientSex, in.AccessionNumber, in.StudyDate, in.StudyTime,
		in.StudyDescription, in.StudyID, in.ReferringPhysicianName, in.Path, in.Size, in.SHA256,
		receivedAt, in.CallingAETitle, in.CalledAETitle, in.PeerAddr}, nil
}

// NumberValue is engine.IntegerString as a column value: NULL when there is no number, so that
// series and instances without one sort last.
func NumberValue(is string) sql.NullInt64 {
	n, ok := engine.IntegerString(is)
	return sql.NullInt64{Int64: n, Valid: ok}
}

// Instance returns the instance with sopInstanceUID, or engine.ErrNotFound.
func (s *Store) Instance(ctx context.Context, c Conn, sopInstanceUID string) (*engine.Instance, error) {
	rows, err := c.Query(ctx, s.instance, engine.StorableText(sopInstanceUID))
	inst, err := scanRow(s, rows, err, scanInstance)
	if err != nil {
		return nil, fmt.Errorf("reading instance %s: %w", sopInstanceUID, err)
	}
	return inst, nil
}

// SeriesInstances returns the instances of a series by instance number, then UID, or
// engine.ErrNotFound when no instance of the series is stored (a series exists only through its
// instances).
func (s *Store) SeriesInstances(ctx context.Context, c Conn, seriesInstanceUID string) ([]*engine.Instance, error) {
	rows, err := c.Query(ctx, s.seriesInstances, engine.StorableText(seriesInstanceUID))
	out, err := scanAll(s, rows, err, scanInstance)
	if err == nil && len(out) == 0 {
		err = engine.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading instances of series %s: %w", seriesInstanceUID, err)
	}
	return out, nil
}

// Study returns the study with studyInstanceUID, or engine.ErrNotFound.
func (s *Store) Study(ctx context.Context, c Conn, studyInstanceUID string) (*engine.Study, error) {
	rows, err := c.Query(ctx, s.study, engine.StorableText(studyInstanceUID))
	st, err := scanRow(s, rows, err, s.scanStudy)
	if err != nil {
		return nil, fmt.Errorf("reading study %s: %w", studyInstanceUID, err)
	}
	return st, nil
}

// StudySeries returns the series of a study by series number, then UID, or engine.ErrNotFound
// when the study is not stored (a stored study has at least one series).
func (s *Store) StudySeries(ctx context.Context, c Conn, studyInstanceUID string) ([]*engine.Series, error) {
	rows, err := c.Query(ctx, s.studySeries, engine.StorableText(studyInstanceUID))
	out, err := scanAll(s, rows, err, func(r rowScanner) (*engine.Series, error) {
		var se engine.Series
		return &se, r.Scan(&se.SeriesInstanceUID, &se.StudyInstanceUID, &se.Modality,
			&se.SeriesNumber, &se.SeriesDescription, &se.NumberOfInstances)
	})
	if err == nil && len(out) == 0 {
		err = engine.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading series of study %s: %w", studyInstanceUID, err)
	}
	return out, nil
}

// SearchStudies returns the studies matching f, newest first, as engine.InstanceStore documents.
// The WHERE clause holds a condition for each filter given, every value a parameter; the query
// is not prepared (QueryOnce), so PostgreSQL plans it for its values (an accession number or a
// patient ID takes its index, a date range dicom_studies_study_date).
//
// With f.LinkedIdentity and a PatientID, the patient condition is the union of the studies
// linked to f.LinkedPatientIDs (study_links_patient) and those the modality sent under the
// Patient ID (dicom_studies_patient) that are not linked (study_links' primary key), each branch
// able to take its index (one OR across the two tables could only be filtered).
func (s *Store) SearchStudies(ctx context.Context, c Conn, f engine.StudyFilter) ([]*engine.Study, error) {
	q := conditions{d: s.d}
	switch {
	case f.LinkedIdentity && f.PatientID != "":
		var (
			branches []string
			ids      []string
		)
		for _, id := range f.LinkedPatientIDs {
			if id != "" { // an empty patient_id is a link to no patient
				ids = append(ids, engine.StorableText(id))
			}
		}
		if len(ids) > 0 {
			branches = append(branches, `SELECT l.study_instance_uid FROM study_links l
				WHERE l.status = 'linked' AND `+s.d.InList("l.patient_id", q.arg(s.d.List(ids))))
		}
		sent := "s.patient_id = " + q.text(f.PatientID)
		if f.IssuerOfPatientID != "" {
			sent += " AND s.issuer_of_patient_id = " + q.text(f.IssuerOfPatientID)
		}
		// Linked as engine.Linker.LinkedIdentity reads a link: status linked, naming a patient.
		branches = append(branches, `SELECT s.study_instance_uid FROM dicom_studies s WHERE `+sent+`
				AND NOT EXISTS (SELECT 1 FROM study_links l WHERE l.study_instance_uid = s.study_instance_uid
					AND l.status = 'linked' AND l.patient_id <> '')`)
		q.add("study_instance_uid IN (" + strings.Join(branches, " UNION ALL ") + ")")
	default:
		if f.PatientID != "" {
			q.add("patient_id = " + q.text(f.PatientID))
		}
		if f.IssuerOfPatientID != "" {
			q.add("issuer_of_patient_id = " + q.text(f.IssuerOfPatientID))
		}
	}
	if f.Within {
		ids := make([]string, len(f.WithinPatients))
		for i, id := range f.WithinPatients {
			ids[i] = engine.StorableText(id)
		}
		q.add(`study_instance_uid IN (SELECT l.study_instance_uid FROM study_links l
				WHERE l.status = 'linked' AND ` + s.d.InList("l.patient_id", q.arg(s.d.List(ids))) + `)`)
	}
	if f.AccessionNumber != "" {
		q.add("accession_number = " + q.text(f.AccessionNumber))
	}
	if f.PatientName != "" {
		// PS3.4 C.2.2.2.4: the sent name's alphabetic group (or the whole, if the pattern has
		// groups), trailing ^ and spaces dropped, without case (ASCII letters).
		like := engine.NamePattern(f.PatientName).LikePattern()
		cond := `(lower(rtrim(patient_name, '^ ')) LIKE ` + q.text(like) + ` ESCAPE '\'`
		if !strings.Contains(f.PatientName, "=") {
			cond += ` OR lower(patient_name) LIKE ` + q.text(like+"=%") + ` ESCAPE '\'`
		}
		cond += ")"
		var ids []string
		for _, id := range f.NamePatientIDs {
			if id != "" {
				ids = append(ids, engine.StorableText(id))
			}
		}
		if f.LinkedIdentity && len(ids) > 0 {
			cond = "(" + cond + ` OR study_instance_uid IN (SELECT l.study_instance_uid FROM study_links l
				WHERE l.status = 'linked' AND ` + s.d.InList("l.patient_id", q.arg(s.d.List(ids))) + "))"
		}
		q.add(cond)
	}
	if len(f.StudyInstanceUIDs) > 0 {
		uids := make([]string, len(f.StudyInstanceUIDs))
		for i, u := range f.StudyInstanceUIDs {
			uids[i] = engine.StorableText(u)
		}
		q.add(s.d.InList("study_instance_uid", q.arg(s.d.List(uids))))
	}
	if f.StudyDateFrom != "" || f.StudyDateTo != "" {
		q.add("study_date <> ''")
	}
	if f.StudyDateFrom != "" {
		q.add("study_date >= " + q.text(f.StudyDateFrom))
	}
	if f.StudyDateTo != "" {
		q.add("study_date <= " + q.text(f.StudyDateTo))
	}
	if f.ModalityInStudy != "" {
		q.add(s.d.ListHas("modalities_in_study", q.text(f.ModalityInStudy)))
	}
	query := `SELECT ` + studyColumns + ` FROM dicom_studies` + q.clause() +
		` ORDER BY study_date DESC, study_time DESC, study_instance_uid LIMIT ` + q.arg(f.PageLimit()) +
		` OFFSET ` + q.arg(f.PageOffset())
	rows, err := c.QueryOnce(ctx, query, q.args...)
	out, err := scanAll(s, rows, err, s.scanStudy)
	if err != nil {
		return nil, fmt.Errorf("searching studies: %w", err)
	}
	return out, nil
}

func scanInstance(row rowScanner) (*engine.Instance, error) {
	var inst engine.Instance
	err := row.Scan(&inst.SOPInstanceUID, &inst.SOPClassUID, &inst.SeriesInstanceUID,
		&inst.StudyInstanceUID, &inst.TransferSyntaxUID, &inst.Modality, &inst.SeriesNumber,
		&inst.SeriesDescription, &inst.InstanceNumber, &inst.PatientID, &inst.IssuerOfPatientID,
		&inst.PatientName, &inst.PatientBirthDate, &inst.PatientSex, &inst.AccessionNumber,
		&inst.StudyDate, &inst.StudyTime, &inst.StudyDescription, &inst.StudyID,
		&inst.ReferringPhysicianName, &inst.Path, &inst.Size, &inst.SHA256, scanTime{&inst.ReceivedAt},
		&inst.CallingAETitle, &inst.CalledAETitle, &inst.PeerAddr)
	if err != nil {
		return nil, err
	}
	return &inst, nil
}

func (s *Store) scanStudy(row rowScanner) (*engine.Study, error) {
	var st engine.Study
	err := row.Scan(&st.StudyInstanceUID, &st.PatientID, &st.IssuerOfPatientID, &st.PatientName,
		&st.PatientBirthDate, &st.PatientSex, &st.AccessionNumber, &st.StudyDate, &st.StudyTime,
		&st.StudyDescription, &st.StudyID, &st.ReferringPhysicianName, s.d.ListScanner(&st.ModalitiesInStudy),
		&st.NumberOfSeries, &st.NumberOfInstances, scanTime{&st.FirstReceived}, scanTime{&st.LastReceived})
	if err != nil {
		return nil, err
	}
	if st.ModalitiesInStudy == nil {
		st.ModalitiesInStudy = []string{}
	}
	return &st, nil
}

// StudySeriesSQL and SeriesInstancesSQL are the reads whose plans a store's tests check (each
// must walk its index in order, not sort).
func (s *Store) StudySeriesSQL() string     { return s.studySeries }
func (s *Store) SeriesInstancesSQL() string { return s.seriesInstances }
