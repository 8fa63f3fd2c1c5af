package dicomweb

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/engine"
)

// QIDO-RS, the Search for Studies transaction (PS3.18 10.6): GET /dicomweb/studies with the
// query keys below, answered with the matching studies in the DICOM JSON Model, or 204 when
// none matches. With Config.Identities, a study linked to one of Ferry's patients is found and
// shown under that patient's identity, not the one its modality sent (issue: a viewer finds
// studies under the right patient); without it, or for a study not linked, the patient
// attributes are those the modality sent.

// StudySearcher answers QIDO-RS: engine.InstanceStore implements it.
type StudySearcher interface {
	SearchStudies(ctx context.Context, f engine.StudyFilter) ([]*engine.Study, error)
}

var _ StudySearcher = (engine.InstanceStore)(nil)

// PatientIdentities tells QIDO-RS which of Ferry's patients a study is linked to; *engine.Linker
// implements it. QIDO-RS calls it from the request's goroutine (ctx ends with the request):
// PatientsWithID once per search with a PatientID key, before searching, and LinkedIdentity
// once per study of the page it answers. Any error fails the search (500, the error logged): a
// study is never shown under the modality's identity because its link could not be read.
// Errors must therefore not hold patient data (UIDs and Ferry's ids are fine).
type PatientIdentities interface {
	// PatientsWithID returns Ferry's ids of the patients (survivors of merges) holding patientID
	// as the issuer's rule compares it; issuer is the query's IssuerOfPatientID, "" when none.
	// No patient is an empty result, not an error.
	PatientsWithID(ctx context.Context, issuer, patientID string) ([]string, error)
	// LinkedIdentity returns the identity of the patient (the survivor) a study is linked to, or
	// nil when it is not linked: no decision, or one waiting for a person.
	LinkedIdentity(ctx context.Context, studyInstanceUID string) (*engine.PatientIdentity, error)
	// PatientsWithName returns Ferry's ids of the patients whose name matches a PatientName
	// pattern (engine.NamePattern), once per search with a PatientName key; complete is false
	// when they could not be listed (a pattern starting with a wildcard, too many), and linked
	// studies are then found by the name their modality sent.
	PatientsWithName(ctx context.Context, pattern string) (ids []string, complete bool, err error)
}

var _ PatientIdentities = (*engine.Linker)(nil)

// Study attributes of the response (PS3.18 table 10.6.3-3) and the query keys (table
// 10.6.1-5), by tag; each one's VR in the comment.
const (
	tagSpecificCharacterSet          = "00080005" // CS
	tagStudyDate                     = "00080020" // DA
	tagStudyTime                     = "00080030" // TM
	tagAccessionNumber               = "00080050" // SH
	tagModalitiesInStudy             = "00080061" // CS
	tagReferringPhysicianName        = "00080090" // PN
	tagPatientName                   = "00100010" // PN
	tagPatientID                     = "00100020" // LO
	tagIssuerOfPatientID             = "00100021" // LO
	tagPatientBirthDate              = "00100030" // DA
	tagPatientSex                    = "00100040" // CS
	tagStudyInstanceUID              = "0020000D" // UI
	tagStudyID                       = "00200010" // SH
	tagNumberOfStudyRelatedSeries    = "00201206" // IS
	tagNumberOfStudyRelatedInstances = "00201208" // IS
)

// studyQueryKeys are the matching keys Ferry supports, by keyword, as tags.
var studyQueryKeys = map[string]string{
	"PatientID":         tagPatientID,
	"IssuerOfPatientID": tagIssuerOfPatientID,
	"AccessionNumber":   tagAccessionNumber,
	"StudyDate":         tagStudyDate,
	"ModalitiesInStudy": tagModalitiesInStudy,
	"StudyInstanceUID":  tagStudyInstanceUID,
	"PatientName":       tagPatientName,
}

// searchStudies answers one Search for Studies request (PS3.18 10.6.1, 10.6.3).
//
// With Config.Identities the link wins (engine.StudyFilter.LinkedIdentity): PatientID, with
// IssuerOfPatientID when given, finds the studies linked to the patients holding that ID under
// the issuer's rule, and the studies not linked whose modality sent that ID (and issuer); a
// study linked to another patient is not found by the ID its modality sent. Each study linked
// to a patient is answered with that patient's identity.
func (s *STOW) searchStudies(c echo.Context) error {
	ctx := c.Request().Context()
	f, err := studyFilter(c.QueryParams())
	if err != nil {
		return err
	}
	if s.cfg.Identities != nil && f.PatientID != "" {
		ids, err := s.cfg.Identities.PatientsWithID(ctx, f.IssuerOfPatientID, f.PatientID)
		if err != nil {
			return fmt.Errorf("QIDO-RS: finding the patients holding the Patient ID: %w", err)
		}
		f.LinkedIdentity, f.LinkedPatientIDs = true, ids
	}
	if s.cfg.Identities != nil && f.PatientName != "" {
		ids, _, err := s.cfg.Identities.PatientsWithName(ctx, f.PatientName)
		if err != nil {
			return fmt.Errorf("QIDO-RS: finding the patients by name: %w", err)
		}
		f.LinkedIdentity, f.NamePatientIDs = true, ids
	}
	studies, err := s.cfg.Studies.SearchStudies(ctx, f)
	if err != nil {
		return fmt.Errorf("QIDO-RS: %w", err)
	}
	linked := 0
	if s.cfg.Identities != nil {
		for i, st := range studies {
			id, err := s.cfg.Identities.LinkedIdentity(ctx, st.StudyInstanceUID)
			if err != nil {
				return fmt.Errorf("QIDO-RS: the identity study %s is linked to: %w", st.StudyInstanceUID, err)
			}
			if id != nil {
				studies[i] = withIdentity(st, id)
				linked++
			}
		}
		if f.PatientName != "" {
			// A linked study found by the name its modality sent is shown under its patient's
			// name: kept only when that name matches too.
			studies = slices.DeleteFunc(studies, func(st *engine.Study) bool {
				return !engine.NamePattern(f.PatientName).Matches(st.PatientName)
			})
		}
	}
	s.log.Info("QIDO-RS studies", "matches", len(studies), "linked", linked)
	if len(studies) == 0 {
		return c.NoContent(http.StatusNoContent) // PS3.18 10.6.3.2: no match
	}
	base := baseURL(c)
	out := make([]dataset, len(studies))
	for i, st := range studies {
		out[i] = studyDataset(base, st)
	}
	return c.Blob(http.StatusOK, MediaTypeDICOMJSON, encode(out))
}

// withIdentity returns a copy of st whose patient attributes are all the linked patient's,
// empty ones included: the modality's values are never mixed in.
func withIdentity(st *engine.Study, id *engine.PatientIdentity) *engine.Study {
	out := *st
	out.PatientID, out.IssuerOfPatientID = id.PatientID, id.IssuerOfPatientID
	out.PatientName, out.PatientBirthDate, out.PatientSex = id.PatientName, id.PatientBirthDate, id.PatientSex
	return &out
}

// studyFilter reads the query (PS3.18 10.6.1.2): attribute keys by keyword or tag, and the
// limit, offset, includefield and fuzzymatching parameters. Any other key, a key given twice
// or a value Ferry cannot match is a 400 that names it.
func studyFilter(q url.Values) (engine.StudyFilter, error) {
	var f engine.StudyFilter
	bad := func(format string, a ...any) error {
		return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf(format, a...))
	}
	for key, values := range q {
		switch key {
		case "includefield":
			continue // every attribute Ferry has is returned; asking for others is no error
		case "fuzzymatching":
			if len(values) != 1 || values[0] != "false" {
				return f, bad("fuzzymatching: only false is supported")
			}
			continue
		case "limit", "offset":
			if len(values) != 1 {
				return f, bad("%s: given more than once", key)
			}
			n, err := strconv.Atoi(values[0])
			if err != nil || n < 0 {
				return f, bad("%s: want a non-negative integer", key)
			}
			if key == "limit" {
				f.Limit = n
			} else {
				f.Offset = n
			}
			continue
		}
		tag := studyQueryKeys[key]
		if tag == "" && len(key) == 8 {
			for _, t := range studyQueryKeys {
				if strings.EqualFold(key, t) {
					tag = t
				}
			}
		}
		if tag == "" {
			return f, bad("%s: not a supported query key (supported: PatientID, IssuerOfPatientID, PatientName, AccessionNumber, StudyDate, ModalitiesInStudy, StudyInstanceUID, limit, offset, includefield, fuzzymatching)", key)
		}
		if tag == tagStudyInstanceUID {
			// UID list matching (PS3.18 8.3.4.1): comma or backslash separated, and the key
			// may be repeated.
			for _, v := range values {
				for uid := range strings.FieldsFuncSeq(v, func(r rune) bool { return r == ',' || r == '\\' }) {
					if !dicom.ValidUID(uid) {
						return f, bad("StudyInstanceUID: %q is not a UID", uid)
					}
					f.StudyInstanceUIDs = append(f.StudyInstanceUIDs, uid)
				}
			}
			if len(f.StudyInstanceUIDs) == 0 {
				return f, bad("StudyInstanceUID: no UID given")
			}
			continue
		}
		if len(values) != 1 {
			return f, bad("%s: given more than once", key)
		}
		v := values[0]
		if v == "*" || v == "" {
			continue // universal matching (PS3.4 C.2.2.2.3)
		}
		if tag == tagPatientName {
			// Wild card matching (PS3.4 C.2.2.2.4): * and ?; no value list (\).
			if strings.Contains(v, `\`) || len(v) > engine.MaxNamePattern {
				return f, bad("PatientName: one name of at most %d characters (no multiple values)", engine.MaxNamePattern)
			}
			f.PatientName = v
			continue
		}
		if strings.ContainsAny(v, `*?\`) {
			return f, bad("%s: wildcard and multiple-value matching are not supported", key)
		}
		switch tag {
		case tagPatientID:
			f.PatientID = v
		case tagIssuerOfPatientID:
			f.IssuerOfPatientID = v
		case tagAccessionNumber:
			f.AccessionNumber = v
		case tagModalitiesInStudy:
			if strings.Contains(v, ",") {
				return f, bad("ModalitiesInStudy: one modality only")
			}
			f.ModalityInStudy = v
		case tagStudyDate:
			var err error
			if f.StudyDateFrom, f.StudyDateTo, err = dateRange(v); err != nil {
				return f, bad("StudyDate: %v", err)
			}
		}
	}
	return f, nil
}

// dateRange reads a DA query value (PS3.4 C.2.2.2.5): a date, or a range A-B, A- or -B of
// YYYYMMDD dates, inclusive.
func dateRange(v string) (from, to string, err error) {
	from, to, isRange := strings.Cut(v, "-")
	if !isRange {
		to = from
	}
	if from == "" && to == "" {
		return "", "", fmt.Errorf("%q: want YYYYMMDD, or a range A-B, A- or -B", v)
	}
	for _, d := range []string{from, to} {
		if _, err := time.Parse("20060102", d); d != "" && (err != nil || len(d) != 8) {
			return "", "", fmt.Errorf("%q: want YYYYMMDD, or a range A-B, A- or -B", v)
		}
	}
	if from != "" && to != "" && from > to {
		return "", "", fmt.Errorf("%q: the range ends before it starts", v)
	}
	return from, to, nil
}

// studyDataset is one study of the response, the attributes of PS3.18 table 10.6.3-3 that
// Ferry keeps; empty ones present without a value. Text is UTF-8: ISO_IR 192.
func studyDataset(base string, st *engine.Study) dataset {
	modalities := make([]any, len(st.ModalitiesInStudy))
	for i, m := range st.ModalitiesInStudy {
		modalities[i] = m
	}
	return dataset{
		tagSpecificCharacterSet:          text("CS", "ISO_IR 192"),
		tagStudyDate:                     text("DA", st.StudyDate),
		tagStudyTime:                     text("TM", st.StudyTime),
		tagAccessionNumber:               text("SH", st.AccessionNumber),
		tagModalitiesInStudy:             attribute{VR: "CS", Value: modalities},
		tagReferringPhysicianName:        personName(st.ReferringPhysicianName),
		tagPatientName:                   personName(st.PatientName),
		tagPatientID:                     text("LO", st.PatientID),
		tagIssuerOfPatientID:             text("LO", st.IssuerOfPatientID),
		tagPatientBirthDate:              text("DA", st.PatientBirthDate),
		tagPatientSex:                    text("CS", st.PatientSex),
		tagStudyInstanceUID:              text("UI", st.StudyInstanceUID),
		tagStudyID:                       text("SH", st.StudyID),
		tagNumberOfStudyRelatedSeries:    attribute{VR: "IS", Value: []any{st.NumberOfSeries}},
		tagNumberOfStudyRelatedInstances: attribute{VR: "IS", Value: []any{st.NumberOfInstances}},
		tagRetrieveURL:                   text("UR", base+"/studies/"+st.StudyInstanceUID),
	}
}

// personName is a PN attribute in the DICOM JSON Model (PS3.18 F.2.2): its component groups,
// separated by "=" in the value, as Alphabetic, Ideographic and Phonetic; empty groups left out.
func personName(pn string) attribute {
	if pn == "" {
		return attribute{VR: "PN"}
	}
	groups := strings.SplitN(pn, "=", 3)
	name := map[string]string{}
	for i, key := range []string{"Alphabetic", "Ideographic", "Phonetic"} {
		if i < len(groups) && groups[i] != "" {
			name[key] = groups[i]
		}
	}
	return attribute{VR: "PN", Value: []any{name}}
}
