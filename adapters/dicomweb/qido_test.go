package dicomweb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/adapters/sqlite"
	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/patientid"
	"github.com/ferryhealth/ferry/fhir"
	"github.com/ferryhealth/ferry/hl7"
	"github.com/ferryhealth/ferry/mappings"
)

// qidoServer serves the DICOMweb routes over a real, migrated SQLite store holding three
// studies:
//
//	study 1: MRN1/STMARYS, ACC1, 20260301 101500, CT (2 series, 3 instances)
//	study 2: MRN1/STJUDES, ACC2, 20260302 080000, MR (1 series, 1 instance)
//	study 3: MRN2/STMARYS, ACC3, 20260303 090000, CT and PT (2 series, 2 instances)
func qidoServer(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	put := func(study, series, n int, patient, issuer, accession, date, tm, modality string) {
		studyUID := fmt.Sprintf("1.2.826.0.1.3680043.10.2.%d", study)
		seriesUID := fmt.Sprintf("%s.%d", studyUID, series)
		inst := &engine.Instance{
			Header: dicom.Header{
				SOPInstanceUID:         fmt.Sprintf("%s.%d", seriesUID, n),
				SOPClassUID:            "1.2.840.10008.5.1.4.1.1.2",
				SeriesInstanceUID:      seriesUID,
				StudyInstanceUID:       studyUID,
				TransferSyntaxUID:      "1.2.840.10008.1.2.1",
				Modality:               modality,
				SeriesNumber:           fmt.Sprint(series),
				InstanceNumber:         fmt.Sprint(n),
				PatientID:              patient,
				IssuerOfPatientID:      issuer,
				PatientName:            "Yamada^Tarou=山田^太郎=やまだ^たろう",
				PatientBirthDate:       "19700101",
				PatientSex:             "M",
				AccessionNumber:        accession,
				StudyDate:              date,
				StudyTime:              tm,
				StudyID:                "4711",
				ReferringPhysicianName: "Who^Doctor",
				Size:                   1,
			},
			Path:       "x.dcm",
			SHA256:     "00",
			ReceivedAt: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
		}
		if _, err := st.PutInstance(ctx, inst); err != nil {
			t.Fatal(err)
		}
	}
	put(1, 1, 1, "MRN1", "STMARYS", "ACC1", "20260301", "101500", "CT")
	put(1, 1, 2, "MRN1", "STMARYS", "ACC1", "20260301", "101500", "CT")
	put(1, 2, 1, "MRN1", "STMARYS", "ACC1", "20260301", "101500", "CT")
	put(2, 1, 1, "MRN1", "STJUDES", "ACC2", "20260302", "080000", "MR")
	put(3, 1, 1, "MRN2", "STMARYS", "ACC3", "20260303", "090000", "CT")
	put(3, 2, 1, "MRN2", "STMARYS", "ACC3", "20260303", "090000", "PT")

	stow, err := NewSTOW(newFakeSink(), Config{IncomingDir: t.TempDir(), Studies: st})
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	stow.Register(e.Group(BasePath))
	ts := httptest.NewServer(e)
	t.Cleanup(ts.Close)
	return ts.URL
}

const (
	qidoStudy1 = "1.2.826.0.1.3680043.10.2.1"
	qidoStudy2 = "1.2.826.0.1.3680043.10.2.2"
	qidoStudy3 = "1.2.826.0.1.3680043.10.2.3"
)

// search runs GET /dicomweb/studies?query and decodes a 200's DICOM JSON array.
func search(t *testing.T, base, query string) (int, []map[string]jsonAttribute, []byte) {
	t.Helper()
	resp, err := http.Get(base + BasePath + "/studies?" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil, b
	}
	if ct := resp.Header.Get("Content-Type"); ct != MediaTypeDICOMJSON {
		t.Errorf("%s: Content-Type %q, want %s", query, ct, MediaTypeDICOMJSON)
	}
	var out []map[string]jsonAttribute
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s: response is not a DICOM JSON array: %v\n%s", query, err, b)
	}
	return resp.StatusCode, out, b
}

func TestSearchStudiesFilters(t *testing.T) {
	t.Parallel()
	base := qidoServer(t)
	tests := []struct {
		name, query string
		want        []string
	}{
		{"all", "", []string{qidoStudy3, qidoStudy2, qidoStudy1}},
		{"PatientID", "PatientID=MRN1", []string{qidoStudy2, qidoStudy1}},
		{"PatientID by tag", "00100020=MRN2", []string{qidoStudy3}},
		{"PatientID and issuer", "PatientID=MRN1&IssuerOfPatientID=STJUDES", []string{qidoStudy2}},
		{"AccessionNumber", "AccessionNumber=ACC1", []string{qidoStudy1}},
		{"AccessionNumber by tag", "00080050=ACC2", []string{qidoStudy2}},
		{"StudyDate", "StudyDate=20260302", []string{qidoStudy2}},
		{"StudyDate range", "StudyDate=20260301-20260302", []string{qidoStudy2, qidoStudy1}},
		{"StudyDate from", "StudyDate=20260302-", []string{qidoStudy3, qidoStudy2}},
		{"StudyDate to", "00080020=-20260301", []string{qidoStudy1}},
		{"ModalitiesInStudy", "ModalitiesInStudy=CT", []string{qidoStudy3, qidoStudy1}},
		{"ModalitiesInStudy by tag", "00080061=PT", []string{qidoStudy3}},
		{"StudyInstanceUID list", "StudyInstanceUID=" + qidoStudy1 + "," + qidoStudy3, []string{qidoStudy3, qidoStudy1}},
		{"StudyInstanceUID backslash", "0020000d=" + qidoStudy1 + `%5C` + qidoStudy2, []string{qidoStudy2, qidoStudy1}},
		{"limit", "limit=2", []string{qidoStudy3, qidoStudy2}},
		{"offset", "limit=1&offset=1", []string{qidoStudy2}},
		{"universal and ignored", "PatientID=*&includefield=all&includefield=00081030&fuzzymatching=false", []string{qidoStudy3, qidoStudy2, qidoStudy1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, studies, b := search(t, base, tt.query)
			if code != http.StatusOK {
				t.Fatalf("status %d, want 200\n%s", code, b)
			}
			var got []string
			for _, ds := range studies {
				got = append(got, str(t, ds, tagStudyInstanceUID, "UI"))
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("studies %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSearchStudiesNoMatch(t *testing.T) {
	t.Parallel()
	base := qidoServer(t)
	for _, q := range []string{"AccessionNumber=NOPE", "StudyDate=19990101", "ModalitiesInStudy=US", "offset=3", "PatientName=Yamada", "00100010=y*a"} {
		code, _, b := search(t, base, q)
		if code != http.StatusNoContent || len(b) != 0 {
			t.Errorf("%s: status %d with %d bytes, want 204 and no body", q, code, len(b))
		}
	}
}

func TestSearchStudiesBadQuery(t *testing.T) {
	t.Parallel()
	base := qidoServer(t)
	for _, q := range []string{
		`PatientName=Yamada\Tanaka`, "PatientName=" + strings.Repeat("A", 200), "bogus=1", "patientid=MRN1",
		"StudyDate=2026", "StudyDate=20261301", "StudyDate=-", "StudyDate=20260302-20260301",
		"StudyInstanceUID=abc", "limit=-1", "limit=x", "offset=-2", "fuzzymatching=true",
		"PatientID=MRN*", "PatientID=A&PatientID=B", "ModalitiesInStudy=CT,MR",
	} {
		code, _, b := search(t, base, q)
		if code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400\n%s", q, code, b)
			continue
		}
		var e map[string]any
		if err := json.Unmarshal(b, &e); err != nil || len(e) == 0 {
			t.Errorf("%s: error body is not a JSON object: %s", q, b)
		}
	}
}

// TestSearchStudiesAttributes: every study attribute with its VR and value as the DICOM JSON
// Model writes it: numbers for IS, PN as component groups.
func TestSearchStudiesAttributes(t *testing.T) {
	t.Parallel()
	base := qidoServer(t)
	code, studies, b := search(t, base, "StudyInstanceUID="+qidoStudy1)
	if code != http.StatusOK || len(studies) != 1 {
		t.Fatalf("status %d, want 200 and one study\n%s", code, b)
	}
	ds := studies[0]
	for _, a := range []struct{ tag, vr, want string }{
		{tagSpecificCharacterSet, "CS", "ISO_IR 192"},
		{tagStudyDate, "DA", "20260301"},
		{tagStudyTime, "TM", "101500"},
		{tagAccessionNumber, "SH", "ACC1"},
		{tagModalitiesInStudy, "CS", "CT"},
		{tagPatientID, "LO", "MRN1"},
		{tagIssuerOfPatientID, "LO", "STMARYS"},
		{tagPatientBirthDate, "DA", "19700101"},
		{tagPatientSex, "CS", "M"},
		{tagStudyInstanceUID, "UI", qidoStudy1},
		{tagStudyID, "SH", "4711"},
		{tagRetrieveURL, "UR", base + BasePath + "/studies/" + qidoStudy1},
	} {
		if got := str(t, ds, a.tag, a.vr); got != a.want {
			t.Errorf("%s = %q, want %q", a.tag, got, a.want)
		}
	}
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for tag, want := range map[string]string{
		tagNumberOfStudyRelatedSeries:    `{"vr":"IS","Value":[2]}`,
		tagNumberOfStudyRelatedInstances: `{"vr":"IS","Value":[3]}`,
		tagReferringPhysicianName:        `{"vr":"PN","Value":[{"Alphabetic":"Who^Doctor"}]}`,
		tagPatientName:                   `{"vr":"PN","Value":[{"Alphabetic":"Yamada^Tarou","Ideographic":"山田^太郎","Phonetic":"やまだ^たろう"}]}`,
	} {
		if got := string(raw[0][tag]); got != want {
			t.Errorf("%s = %s, want %s", tag, got, want)
		}
	}
	if len(ds) != 16 {
		t.Errorf("%d attributes, want 16: %s", len(ds), b)
	}

	// Two modalities: one multi-valued CS.
	_, studies, b = search(t, base, "StudyInstanceUID="+qidoStudy3)
	if err := json.Unmarshal(b, &raw); err != nil || len(studies) != 1 {
		t.Fatalf("study 3: %v\n%s", err, b)
	}
	if got, want := string(raw[0][tagModalitiesInStudy]), `{"vr":"CS","Value":["CT","PT"]}`; got != want {
		t.Errorf("ModalitiesInStudy = %s, want %s", got, want)
	}
}

// linkedHarness is QIDO-RS over the real pieces of linking: a migrated SQLite store, patients
// registered by ADT^A04 through engine.Inbound with the shipped mappings (so the Patient
// resources and their index entries are the ones production writes), and an engine.Linker
// with STMARYS's issuer rule.
type linkedHarness struct {
	t      *testing.T
	st     *sqlite.Store
	in     *engine.Inbound
	linker *engine.Linker
	seq    int
}

const linkedMRN = "urn:oid:2.16.840.1.113883.3.9999.1" // STMARYS in mappings/shipped/tables/authorities.yaml

func newLinkedHarness(t *testing.T) *linkedHarness {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	set, err := mappings.Load(mappings.Source{Base: []fs.FS{mappings.Shipped()}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	gc := engine.NewGroupCommitter(st, engine.GroupCommitOptions{})
	t.Cleanup(func() { gc.Close(); st.Close() })
	in := engine.NewInbound("mllp", gc, nil, nil)
	in.Processor = &engine.Processor{Mappings: func() engine.MappingSource { return set }, Validator: v}
	linker := &engine.Linker{Resources: st, Links: st, Match: engine.MatchConfig{Identifiers: []*patientid.Rules{{
		Authorities: []patientid.Authority{{Name: "St Mary's MRN", System: linkedMRN,
			Issuers: []string{"STMARYS"}, Steps: []patientid.Step{{DropLeadingZeros: true}}}}}}}}
	return &linkedHarness{t: t, st: st, in: in, linker: linker}
}

// register sends an ADT^A04 for the patient with MRN mrn (assigning authority STMARYS) and
// returns Ferry's Patient id.
func (h *linkedHarness) register(mrn, name, birth, sex string) string {
	h.t.Helper()
	h.seq++
	raw := strings.Join([]string{
		fmt.Sprintf(`MSH|^~\&|ADT|STMARYS|FERRY|FERRY|20261127083000-0500||ADT^A04^ADT_A01|ADT%04d|P|2.5.1`, h.seq),
		"EVN|A04|20261127083000-0500",
		"PID|1||" + mrn + "^^^STMARYS^MR||" + name + "||" + birth + "|" + sex,
		"PV1|1|O",
	}, "\r") + "\r"
	ack, err := hl7.Parse(h.in.Receive(context.Background(), engine.Received{Data: []byte(raw), ReceivedAt: time.Now()}))
	if err != nil {
		h.t.Fatalf("ACK does not parse: %v", err)
	}
	if code := ack.Value("MSA-1"); code != "AA" {
		h.t.Fatalf("ADT^A04 for %s: %s %s", mrn, code, ack.Value("ERR-8"))
	}
	rs, err := h.st.SearchResources(context.Background(), engine.ResourceQuery{Type: "Patient", Filters: []engine.SearchFilter{
		{Param: "identifier", Op: engine.SearchEq, Values: []engine.SearchValue{{System: linkedMRN, Value: mrn}}}}})
	if err != nil || len(rs) != 1 {
		h.t.Fatalf("Patient with MRN %s: %d found, %v", mrn, len(rs), err)
	}
	return rs[0].ID
}

// receive stores one instance of a study as its modality sent it and returns the study.
func (h *linkedHarness) receive(studyUID, patientID, issuer, name, birth, sex, date string) *engine.Study {
	h.t.Helper()
	ctx := context.Background()
	inst := &engine.Instance{
		Header: dicom.Header{
			SOPInstanceUID:    studyUID + ".1.1",
			SOPClassUID:       "1.2.840.10008.5.1.4.1.1.2",
			SeriesInstanceUID: studyUID + ".1",
			StudyInstanceUID:  studyUID,
			TransferSyntaxUID: "1.2.840.10008.1.2.1",
			Modality:          "CT",
			SeriesNumber:      "1",
			InstanceNumber:    "1",
			PatientID:         patientID,
			IssuerOfPatientID: issuer,
			PatientName:       name,
			PatientBirthDate:  birth,
			PatientSex:        sex,
			StudyDate:         date,
			StudyTime:         "101500",
			Size:              1,
		},
		Path:       "x.dcm",
		SHA256:     "00",
		ReceivedAt: time.Now(),
	}
	if _, err := h.st.PutInstance(ctx, inst); err != nil {
		h.t.Fatal(err)
	}
	s, err := h.st.Study(ctx, studyUID)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

// serve returns the URL of the DICOMweb routes over the harness's store, with identities.
func (h *linkedHarness) serve(identities PatientIdentities) string {
	h.t.Helper()
	stow, err := NewSTOW(newFakeSink(), Config{IncomingDir: h.t.TempDir(), Studies: h.st, Identities: identities})
	if err != nil {
		h.t.Fatal(err)
	}
	e := echo.New()
	stow.Register(e.Group(BasePath))
	ts := httptest.NewServer(e)
	h.t.Cleanup(ts.Close)
	return ts.URL
}

// alphabetic returns the Alphabetic group of a single-valued PN attribute; "" when it has no value.
func alphabetic(t *testing.T, ds map[string]jsonAttribute, tag string) string {
	t.Helper()
	a := ds[tag]
	if a.VR != "PN" {
		t.Errorf("%s: vr %q, want PN", tag, a.VR)
	}
	if len(a.Value) == 0 {
		return ""
	}
	var pn struct{ Alphabetic string }
	if err := json.Unmarshal(a.Value[0], &pn); err != nil {
		t.Fatalf("%s: %v", tag, err)
	}
	return pn.Alphabetic
}

// TestSearchStudiesLinkedIdentity: with the linker, a viewer finds a study under the patient it
// is linked to, shown with that patient's identity; the link wins over what the modality sent.
//
//	study A: sent as 123/STMARYS "DOE^J", linked by the linker (patient ID rule, zeros dropped)
//	         to Jane, MRN 000123
//	study B: sent as 000123 with no issuer, linked by a person to Rita, MRN 000555
//	study C: sent as 777/STMARYS, no patient holds it: unmatched, not linked
func TestSearchStudiesLinkedIdentity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newLinkedHarness(t)
	jane := h.register("000123", "Doe^Jane", "19800102", "F")
	rita := h.register("000555", "Roe^Rita", "19750505", "F")
	const (
		studyA = "1.2.826.0.1.3680043.10.3.1"
		studyB = "1.2.826.0.1.3680043.10.3.2"
		studyC = "1.2.826.0.1.3680043.10.3.3"
	)
	if l, err := h.linker.LinkStudy(ctx, h.receive(studyA, "123", "STMARYS", "DOE^J", "19800102", "F", "20260303")); err != nil ||
		l.Status != engine.LinkLinked || l.PatientID != jane {
		t.Fatalf("study A: link %+v, %v; want linked to Patient/%s", l, err, jane)
	}
	h.receive(studyB, "000123", "", "ROE^R", "19750505", "F", "20260302")
	if err := h.st.PutStudyLink(ctx, &engine.StudyLink{StudyInstanceUID: studyB, Status: engine.LinkLinked, PatientID: rita,
		Rule: engine.RuleManual, DecidedAt: time.Now(), DecidedBy: "radiologist", Reason: "wrong MRN typed at the console"}); err != nil {
		t.Fatal(err)
	}
	if l, err := h.linker.LinkStudy(ctx, h.receive(studyC, "777", "STMARYS", "BLOGGS^FRED", "19991231", "M", "20260301")); err != nil ||
		l.Status == engine.LinkLinked {
		t.Fatalf("study C: link %+v, %v; want not linked", l, err)
	}

	type identity struct{ id, issuer, name, birth, sex string }
	var (
		asJane = identity{"000123", "STMARYS", "Doe^Jane", "19800102", "F"}
		asRita = identity{"000555", "STMARYS", "Roe^Rita", "19750505", "F"}
		asSent = identity{"777", "STMARYS", "BLOGGS^FRED", "19991231", "M"} // C as its modality sent it
	)
	base := h.serve(h.linker)
	tests := []struct {
		name, query string
		want        map[string]identity // by study, newest first
		order       []string
	}{
		{"the MRN finds the linked study", "PatientID=000123",
			map[string]identity{studyA: asJane}, []string{studyA}},
		{"the MRN under its issuer", "PatientID=000123&IssuerOfPatientID=STMARYS",
			map[string]identity{studyA: asJane}, []string{studyA}},
		{"the issuer's rule drops zeros", "PatientID=123&IssuerOfPatientID=STMARYS",
			map[string]identity{studyA: asJane}, []string{studyA}},
		// No rule for issuer "": 123 is compared exactly and nobody holds it. Study A's modality
		// sent 123, but A is linked to Jane, whose MRN is 000123: the link wins.
		{"the modality's 123 without issuer: the link wins", "PatientID=123", nil, nil},
		{"the person's link wins over the modality's 000123", "PatientID=000555",
			map[string]identity{studyB: asRita}, []string{studyB}},
		{"not linked: what the modality sent", "PatientID=777",
			map[string]identity{studyC: asSent}, []string{studyC}},
		{"an issuer no rule names: only studies not linked", "PatientID=000123&IssuerOfPatientID=ELSEWHERE", nil, nil},
		{"all", "",
			map[string]identity{studyA: asJane, studyB: asRita, studyC: asSent}, []string{studyA, studyB, studyC}},
		// PatientName (PS3.4 C.2.2.2.4): wildcards, any case, the name Ferry holds for a linked
		// study (study A's modality sent DOE^J), the sent one for a study not linked.
		{"the linked patient's name", "PatientName=doe%5Ejane", map[string]identity{studyA: asJane}, []string{studyA}},
		{"a wildcard", "PatientName=*O?^*", map[string]identity{studyA: asJane, studyB: asRita}, []string{studyA, studyB}},
		{"not linked: the name the modality sent", "PatientName=bloggs%5Ef*", map[string]identity{studyC: asSent}, []string{studyC}},
		// Study B's modality sent ROE^R, but it is shown as Roe^Rita: ROE^R alone does not match.
		{"a sent name the linked study is not shown under", "PatientName=ROE%5ER", nil, nil},
		{"with the MRN", "PatientName=Doe*&PatientID=000123", map[string]identity{studyA: asJane}, []string{studyA}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, studies, b := search(t, base, tt.query)
			if tt.order == nil {
				if code != http.StatusNoContent {
					t.Fatalf("status %d, want 204\n%s", code, b)
				}
				return
			}
			if code != http.StatusOK {
				t.Fatalf("status %d, want 200\n%s", code, b)
			}
			var got []string
			for _, ds := range studies {
				uid := str(t, ds, tagStudyInstanceUID, "UI")
				got = append(got, uid)
				want := tt.want[uid]
				if g := (identity{str(t, ds, tagPatientID, "LO"), str(t, ds, tagIssuerOfPatientID, "LO"),
					alphabetic(t, ds, tagPatientName), str(t, ds, tagPatientBirthDate, "DA"),
					str(t, ds, tagPatientSex, "CS")}); g != want {
					t.Errorf("study %s shown as %+v, want %+v", uid, g, want)
				}
			}
			if !reflect.DeepEqual(got, tt.order) {
				t.Errorf("studies %v, want %v", got, tt.order)
			}
		})
	}

	// Without Identities, QIDO-RS matches and shows what the modality sent, links or not.
	plain := h.serve(nil)
	code, studies, b := search(t, plain, "PatientID=123")
	if code != http.StatusOK || len(studies) != 1 {
		t.Fatalf("without identities, PatientID=123: status %d, want 200 and study A\n%s", code, b)
	}
	if id, name := str(t, studies[0], tagPatientID, "LO"), alphabetic(t, studies[0], tagPatientName); id != "123" || name != "DOE^J" {
		t.Errorf("without identities, study A shown as %s %s, want 123 DOE^J", id, name)
	}
}

// failingIdentities fails one of the calls QIDO-RS makes.
type failingIdentities struct{ patients, identity error }

func (f failingIdentities) PatientsWithID(context.Context, string, string) ([]string, error) {
	return nil, f.patients
}

func (f failingIdentities) PatientsWithName(context.Context, string) ([]string, bool, error) {
	return nil, false, f.patients
}

func (f failingIdentities) LinkedIdentity(context.Context, string) (*engine.PatientIdentity, error) {
	return nil, f.identity
}

// TestSearchStudiesIdentityFails: when the linked identity cannot be read, the search fails
// rather than show a study under the identity its modality sent.
func TestSearchStudiesIdentityFails(t *testing.T) {
	t.Parallel()
	h := newLinkedHarness(t)
	h.receive("1.2.826.0.1.3680043.10.3.9", "MRN1", "STMARYS", "DOE^J", "19800102", "F", "20260301")
	boom := errors.New("store unavailable")
	for _, tt := range []struct {
		name  string
		ids   failingIdentities
		query string
	}{
		{"PatientsWithID", failingIdentities{patients: boom}, "PatientID=MRN1"},
		{"LinkedIdentity", failingIdentities{identity: boom}, "StudyDate=20260301"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if code, _, b := search(t, h.serve(tt.ids), tt.query); code != http.StatusInternalServerError {
				t.Errorf("status %d, want 500\n%s", code, b)
			}
		})
	}
}

// TestSearchStudiesOnlyAPhysiciansPatients: behind access.Studies (as cmd/ferry wires it),
// QIDO-RS finds for a physician only the studies linked to its patients — also when it names
// another patient's study by UID, the lookup WADO-RS makes — and everything for an admin.
func TestSearchStudiesOnlyAPhysiciansPatients(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newLinkedHarness(t)
	jane := h.register("000123", "Doe^Jane", "19800102", "F")
	rita := h.register("000555", "Roe^Rita", "19750505", "F")
	const (
		studyJane = "1.2.826.0.1.3680043.10.4.1"
		studyRita = "1.2.826.0.1.3680043.10.4.2"
		studyNone = "1.2.826.0.1.3680043.10.4.3"
	)
	for _, s := range []struct{ uid, patient string }{{studyJane, jane}, {studyRita, rita}} {
		h.receive(s.uid, "x", "", "X^Y", "19800102", "F", "20260303")
		if err := h.st.PutStudyLink(ctx, &engine.StudyLink{StudyInstanceUID: s.uid, Status: engine.LinkLinked, PatientID: s.patient,
			Rule: engine.RuleManual, DecidedAt: time.Now(), DecidedBy: "ana", Reason: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	h.receive(studyNone, "777", "STMARYS", "BLOGGS^FRED", "19991231", "M", "20260301")
	tx, err := h.st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.AddPatientAccess(ctx, []engine.PatientAccess{{PatientID: jane, Facility: "STMARYS", Value: "REF1"},
		{PatientID: rita, Facility: "STMARYS", Value: "OTHER"}}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	patients := &access.Patients{Store: h.st, Resources: h.st}
	stow, err := NewSTOW(newFakeSink(), Config{IncomingDir: t.TempDir(), Studies: &access.Studies{Patients: patients, Studies: h.st}})
	if err != nil {
		t.Fatal(err)
	}
	var who atomic.Pointer[access.Identity] // the gate's part: the request's identity
	e := echo.New()
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if id := who.Load(); id != nil {
				c.SetRequest(c.Request().WithContext(access.WithIdentity(c.Request().Context(), id)))
			}
			return next(c)
		}
	})
	stow.Register(e.Group(BasePath))
	ts := httptest.NewServer(e)
	t.Cleanup(ts.Close)

	doc := &access.Identity{User: "doc", Role: access.RolePhysician, Practitioners: []access.Practitioner{{Value: "REF1"}}}
	adm := &access.Identity{User: "adm", Role: access.RoleAdmin}
	for _, tc := range []struct {
		name  string
		id    *access.Identity
		query string
		want  []string
	}{
		{"physician, all", doc, "", []string{studyJane}},
		{"physician, another's study by UID", doc, "StudyInstanceUID=" + studyRita, nil},
		{"physician, own study by UID", doc, "StudyInstanceUID=" + studyJane, []string{studyJane}},
		{"admin, all", adm, "", []string{studyJane, studyRita, studyNone}},
	} {
		who.Store(tc.id)
		code, studies, body := search(t, ts.URL, tc.query)
		var got []string
		for _, s := range studies {
			var uid string
			if err := json.Unmarshal(s[tagStudyInstanceUID].Value[0], &uid); err != nil {
				t.Fatal(err)
			}
			got = append(got, uid)
		}
		slices.Sort(got)
		want := slices.Clone(tc.want)
		slices.Sort(want)
		if wantCode := map[bool]int{true: http.StatusOK, false: http.StatusNoContent}[len(want) > 0]; code != wantCode || !slices.Equal(got, want) {
			t.Errorf("%s: %d %v, want %d %v (%s)", tc.name, code, got, wantCode, want, body)
		}
	}
	who.Store(nil)
	if code, _, _ := search(t, ts.URL, ""); code != http.StatusInternalServerError {
		t.Errorf("no identity: %d, want 500 (refused, never everyone's studies)", code)
	}
}
