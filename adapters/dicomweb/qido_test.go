package dicomweb

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/adapters/sqlite"
	"github.com/ferryhealth/ferry/engine"
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
			SOPInstanceUID: fmt.Sprintf("%s.%d", seriesUID, n), SOPClassUID: "1.2.840.10008.5.1.4.1.1.2",
			SeriesInstanceUID: seriesUID, StudyInstanceUID: studyUID, TransferSyntaxUID: "1.2.840.10008.1.2.1",
			Modality: modality, SeriesNumber: fmt.Sprint(series), InstanceNumber: fmt.Sprint(n),
			PatientID: patient, IssuerOfPatientID: issuer, PatientName: "Yamada^Tarou=山田^太郎=やまだ^たろう",
			PatientBirthDate: "19700101", PatientSex: "M", AccessionNumber: accession,
			StudyDate: date, StudyTime: tm, StudyID: "4711", ReferringPhysicianName: "Who^Doctor",
			Path: "x.dcm", Size: 1, SHA256: "00", ReceivedAt: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
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
	for _, q := range []string{"AccessionNumber=NOPE", "StudyDate=19990101", "ModalitiesInStudy=US", "offset=3"} {
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
		"PatientName=Yamada", "00100010=Yamada", "bogus=1", "patientid=MRN1",
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
