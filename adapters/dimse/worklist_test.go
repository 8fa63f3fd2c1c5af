package dimse

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/text/encoding/charmap"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/engine"
)

// memoryWorklist is a WorklistSource over a slice. With filter set it applies the
// engine.WorklistFilter as a store would; without, it returns every item (the SCP then matches
// them all).
type memoryWorklist struct {
	items  []*engine.WorklistItem
	filter bool
	err    error
	block  bool // wait for ctx to end, then fail with its cause

	mu      sync.Mutex
	filters []engine.WorklistFilter
}

func (m *memoryWorklist) WorklistItems(ctx context.Context, f engine.WorklistFilter) ([]*engine.WorklistItem, error) {
	m.mu.Lock()
	m.filters = append(m.filters, f)
	m.mu.Unlock()
	if m.block {
		<-ctx.Done()
		return nil, context.Cause(ctx)
	}
	if m.err != nil {
		return nil, m.err
	}
	if !m.filter {
		return m.items, nil
	}
	return filterItems(m.items, f), nil
}

func (m *memoryWorklist) lastFilter() engine.WorklistFilter {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.filters[len(m.filters)-1]
}

// filterItems applies an engine.WorklistFilter the way its doc comment says a store does.
func filterItems(items []*engine.WorklistItem, f engine.WorklistFilter) []*engine.WorklistItem {
	var out []*engine.WorklistItem
	for _, it := range items {
		switch {
		case f.AccessionNumber != "" && it.AccessionNumber != f.AccessionNumber,
			f.PatientID != "" && it.PatientID != f.PatientID,
			f.Modality != "" && it.Modality != f.Modality,
			f.StationAETitle != "" && it.StationAETitle != f.StationAETitle,
			f.StartDateFrom != "" && it.StartDate < f.StartDateFrom,
			f.StartDateTo != "" && it.StartDate > f.StartDateTo:
			continue
		}
		out = append(out, it)
	}
	return out
}

// testWorklist is the worklist the matching tests query: six items chosen so that every rule
// separates some of them.
func testWorklist() []*engine.WorklistItem {
	return []*engine.WorklistItem{
		{ServiceRequestID: "sr1", AccessionNumber: "ACC1", AccessionIssuer: "HOSPACC", RequestedProcedureID: "RP1",
			RequestedProcedureDescription: "CT head without contrast", RequestedProcedureCode: engine.Code{Value: "CT-HEAD", Scheme: "99LOCAL", Meaning: "CT Head"},
			RequestedProcedurePriority: "ROUTINE", ReasonForRequestedProcedure: "headache", StudyInstanceUID: "1.2.3.1",
			ReferringPhysicianName: "Smith^Ann", RequestingPhysician: "Jones^Bob", PlacerOrderNumber: "PL1", FillerOrderNumber: "FL1", AdmissionID: "ADM1",
			Modality: "CT", StationAETitle: "CTAE1", StationName: "CT-ROOM-1", StartDate: "20240105", StartTime: "083000", StepID: "SPS1",
			StepDescription: "Head", StepCode: engine.Code{Value: "P1", Scheme: "99LOCAL", Meaning: "Head protocol"}, PerformingPhysician: "Tech^Tom",
			StepStatus: "SCHEDULED", PatientName: "Doe^John", PatientID: "P1", IssuerOfPatientID: "HOSP", PatientBirthDate: "19700101", PatientSex: "M"},
		{ServiceRequestID: "sr2", AccessionNumber: "ACC2", StudyInstanceUID: "1.2.3.2", Modality: "MR", StationAETitle: "MRAE1",
			StartDate: "20240105", StartTime: "140000", PatientName: "Müller^Hans", PatientID: "P2", PatientBirthDate: "19851231", PatientSex: "M"},
		{ServiceRequestID: "sr3", AccessionNumber: "ACC3", StudyInstanceUID: "1.2.3.3", Modality: "CT", StationAETitle: "CTAE2",
			StartDate: "20240106", StartTime: "0700", PatientName: "DOE^JANE^^^", PatientID: "P3", PatientBirthDate: "19800615", PatientSex: "F"},
		{ServiceRequestID: "sr4", AccessionNumber: "ACC4", StudyInstanceUID: "1.2.3.4", Modality: "CT", StationAETitle: "CTAE1",
			StartDate: "20240106", StartTime: "230000", PatientName: "O'Brien^Seán", PatientID: "P4", PatientSex: "F",
			RequestedProcedureCode: engine.Code{Value: "CT-CHEST", Scheme: "99LOCAL", Meaning: "CT Chest"}},
		{ServiceRequestID: "sr5", AccessionNumber: "ACC5", StudyInstanceUID: "1.2.3.5", Modality: "US", StationAETitle: "USAE",
			StartDate: "20240107", PatientName: "Doe^Johnny", PatientID: "P5", PatientSex: "O"},
		{ServiceRequestID: "sr6", AccessionNumber: "ACC6", StudyInstanceUID: "1.2.3.6", Modality: "CT", StationAETitle: "CTAE1",
			StartDate: "20240104", StartTime: "120000", PatientName: "Ng^李", PatientID: "P1"},
	}
}

// key returns a text key with the dictionary's VR.
func key(tag dicom.Tag, v string) *dicom.Element {
	vr, _, ok := dicom.LookupTag(tag)
	if !ok {
		panic(fmt.Sprintf("key: %s not in the dictionary", tag))
	}
	return dicom.NewString(tag, vr, v)
}

func dataSet(elems ...*dicom.Element) *dicom.DataSet {
	ds := &dicom.DataSet{}
	for _, e := range elems {
		ds.Set(e)
	}
	return ds
}

// seqKey returns a sequence key with one item holding elems.
func seqKey(tag dicom.Tag, elems ...*dicom.Element) *dicom.Element {
	return dicom.NewSequence(tag, dataSet(elems...))
}

func sps(elems ...*dicom.Element) *dicom.Element {
	return seqKey(dicom.TagScheduledProcedureStepSequence, elems...)
}

// matchAccessions compiles the query and returns the accession numbers of the items it matches.
func matchAccessions(t *testing.T, q *worklistQuery, items []*engine.WorklistItem) []string {
	t.Helper()
	var got []string
	for _, it := range items {
		if q.match(it) {
			got = append(got, it.AccessionNumber)
		}
	}
	return got
}

func TestWorklistMatching(t *testing.T) {
	t.Parallel()
	items := testWorklist()
	tagPatientWeight := dicom.NewTag(0x0010, 0x1030)
	tests := []struct {
		name        string
		query       *dicom.DataSet
		want        string // accession numbers, comma separated
		unsupported bool   // FF01
	}{
		{"universal: empty key", dataSet(key(dicom.TagAccessionNumber, "")), "ACC1,ACC2,ACC3,ACC4,ACC5,ACC6", false},
		{"universal: zero-item sequence", dataSet(dicom.NewSequence(dicom.TagScheduledProcedureStepSequence)), "ACC1,ACC2,ACC3,ACC4,ACC5,ACC6", false},
		{"universal: sequence with an empty item", dataSet(sps()), "ACC1,ACC2,ACC3,ACC4,ACC5,ACC6", false},
		{"universal: only *", dataSet(key(dicom.TagPatientName, "*")), "ACC1,ACC2,ACC3,ACC4,ACC5,ACC6", false},
		{"single value", dataSet(key(dicom.TagAccessionNumber, "ACC3")), "ACC3", false},
		{"single value, padded", dataSet(key(dicom.TagAccessionNumber, "ACC3 ")), "ACC3", false},
		{"single value matching is case-sensitive", dataSet(sps(key(dicom.TagModality, "ct"))), "", false},
		{"single value matching is whole-value", dataSet(key(dicom.TagAccessionNumber, "ACC")), "", false},
		{"PN matches case-insensitively", dataSet(key(dicom.TagPatientName, "doe^john")), "ACC1", false},
		{"PN trailing empty components are not significant", dataSet(key(dicom.TagPatientName, "Doe^Jane")), "ACC3", false},
		{"PN single value is the whole name", dataSet(key(dicom.TagPatientName, "DOE")), "", false},
		{"wildcard *", dataSet(key(dicom.TagPatientName, "doe*")), "ACC1,ACC3,ACC5", false},
		{"wildcard * in the middle", dataSet(key(dicom.TagPatientName, "*^j?h*")), "ACC1,ACC5", false},
		{"wildcard ? is one character", dataSet(key(dicom.TagPatientName, "M?ller^*")), "ACC2", false},
		{"wildcard ? does not match zero characters", dataSet(key(dicom.TagAccessionNumber, "ACC?1")), "", false},
		{"wildcard on CS", dataSet(sps(key(dicom.TagModality, "C?"))), "ACC1,ACC3,ACC4,ACC6", false},
		{"wildcard is case-sensitive outside PN", dataSet(sps(key(tagScheduledStationAETitle, "ctae*"))), "", false},
		{"several values: any matches", dataSet(sps(key(dicom.TagModality, `MR\US`))), "ACC2,ACC5", false},
		{"list of UID matching", dataSet(key(dicom.TagStudyInstanceUID, `1.2.3.1\1.2.3.3\9.9`)), "ACC1,ACC3", false},
		{"single UID", dataSet(key(dicom.TagStudyInstanceUID, "1.2.3.4")), "ACC4", false},
		{"UID is not a wildcard", dataSet(key(dicom.TagStudyInstanceUID, "1.2.3.*")), "", false},
		{"date single value", dataSet(sps(key(tagSPSStartDate, "20240105"))), "ACC1,ACC2", false},
		{"date range", dataSet(sps(key(tagSPSStartDate, "20240105-20240106"))), "ACC1,ACC2,ACC3,ACC4", false},
		{"date range open end", dataSet(sps(key(tagSPSStartDate, "20240106-"))), "ACC3,ACC4,ACC5", false},
		{"date range open start", dataSet(sps(key(tagSPSStartDate, "-20240105"))), "ACC1,ACC2,ACC6", false},
		{"date in ACR-NEMA form", dataSet(sps(key(tagSPSStartDate, "2024.01.05"))), "ACC1,ACC2", false},
		{"date range outside the worklist", dataSet(sps(key(tagSPSStartDate, "20250101-20251231"))), "", false},
		{"birth date range", dataSet(key(tagPatientBirthDate, "19750101-19851231")), "ACC2,ACC3", false},
		{"time range alone", dataSet(sps(key(tagSPSStartTime, "0800-1300"))), "ACC1,ACC6", false},
		{"time range end is the end of its minute", dataSet(sps(key(tagSPSStartTime, "-0830"))), "ACC1,ACC3", false},
		{"time single value by meaning", dataSet(sps(key(tagSPSStartTime, "070000"))), "ACC3", false},
		{"combined date-time range", dataSet(sps(key(tagSPSStartDate, "20240105-20240106"), key(tagSPSStartTime, "1200-0800"))), "ACC2,ACC3", false},
		{"combined date-time range, open end", dataSet(sps(key(tagSPSStartDate, "20240106-"), key(tagSPSStartTime, "2200-"))), "ACC4,ACC5", false},
		{"combined date-time range, open start", dataSet(sps(key(tagSPSStartDate, "-20240105"), key(tagSPSStartTime, "-0900"))), "ACC1,ACC6", false},
		{"single date with a time range", dataSet(sps(key(tagSPSStartDate, "20240105"), key(tagSPSStartTime, "0000-1000"))), "ACC1", false},
		{"date range with a single time: matched apart", dataSet(sps(key(tagSPSStartDate, "20240104-20240106"), key(tagSPSStartTime, "120000"))), "ACC6", false},
		{"sequence matching: every key of the item", dataSet(sps(key(dicom.TagModality, "CT"), key(tagScheduledStationAETitle, "CTAE1"))), "ACC1,ACC4,ACC6", false},
		{"sequence matching: typical modality query", dataSet(key(dicom.TagPatientName, ""), sps(key(dicom.TagModality, "CT"), key(tagScheduledStationAETitle, "CTAE1"),
			key(tagSPSStartDate, "20240105-20240106"), key(tagSPSStartTime, ""))), "ACC1,ACC4", false},
		{"sequence matching: no item matches", dataSet(sps(key(tagScheduledStationAETitle, "NOPE"))), "", false},
		{"code sequence matching", dataSet(seqKey(tagRequestedProcedureCodeSequence, key(tagCodeValue, "CT-HEAD"))), "ACC1", false},
		{"code sequence wildcard", dataSet(seqKey(tagRequestedProcedureCodeSequence, key(tagCodeValue, "CT-*"), key(tagCodingSchemeDesignator, "99LOCAL"))), "ACC1,ACC4", false},
		{"code sequence empty item returns all", dataSet(seqKey(tagRequestedProcedureCodeSequence)), "ACC1,ACC2,ACC3,ACC4,ACC5,ACC6", false},
		{"nested code sequence", dataSet(sps(seqKey(tagScheduledProtocolCodeSequence, key(tagCodeMeaning, "head*")))), "", false},
		{"nested code sequence, case", dataSet(sps(seqKey(tagScheduledProtocolCodeSequence, key(tagCodeMeaning, "Head*")))), "ACC1", false},
		{"issuer of accession number", dataSet(seqKey(tagIssuerOfAccessionNumberSequence, key(tagLocalNamespaceEntityID, "HOSPACC"))), "ACC1", false},
		{"patient ID and issuer", dataSet(key(dicom.TagPatientID, "P1"), key(tagIssuerOfPatientID, "HOSP")), "ACC1", false},
		{"patient ID", dataSet(key(dicom.TagPatientID, "P1")), "ACC1,ACC6", false},
		{"sex", dataSet(key(tagPatientSex, "F")), "ACC3,ACC4", false},
		{"unsupported optional key with a value: ignored, FF01", dataSet(key(tagPatientWeight, "70"), key(dicom.TagAccessionNumber, "ACC2")), "ACC2", true},
		{"unsupported key without a value: returned empty only", dataSet(key(tagPatientWeight, "")), "ACC1,ACC2,ACC3,ACC4,ACC5,ACC6", false},
		{"unsupported key inside the SPS item", dataSet(sps(key(dicom.NewTag(0x0040, 0x0011), "ROOM 2"))), "ACC1,ACC2,ACC3,ACC4,ACC5,ACC6", true},
		{"top-level Modality is not a worklist key", dataSet(key(dicom.TagModality, "MR")), "ACC1,ACC2,ACC3,ACC4,ACC5,ACC6", true},
		{"private attributes are ignored", dataSet(dicom.NewString(dicom.NewTag(0x0029, 0x0010), dicom.VRLO, "ACME"), dicom.NewString(dicom.NewTag(0x0029, 0x1001), dicom.VRLO, "x")), "ACC1,ACC2,ACC3,ACC4,ACC5,ACC6", false},
		{"non-ASCII PN (UTF-8 identifier)", dataSet(key(dicom.TagSpecificCharacterSet, "ISO_IR 192"), key(dicom.TagPatientName, "o'brien^seán")), "ACC4", false},
		{"latin-1 identifier", dataSet(key(dicom.TagSpecificCharacterSet, "ISO_IR 100"), &dicom.Element{Tag: dicom.TagPatientName, VR: dicom.VRPN, Value: []byte("M\xfcller*")}), "ACC2", false},
		{"latin-1 with ISO 2022 escapes", dataSet(key(dicom.TagSpecificCharacterSet, `\ISO 2022 IR 100`), &dicom.Element{Tag: dicom.TagPatientName, VR: dicom.VRPN, Value: []byte("\x1b-AM\xfcller^Hans")}), "ACC2", false},
		{"default repertoire, undeclared latin-1", dataSet(&dicom.Element{Tag: dicom.TagPatientName, VR: dicom.VRPN, Value: []byte("M\xfcller*")}), "ACC2", false},
		{"default repertoire, undeclared UTF-8", dataSet(key(dicom.TagPatientName, "Ng^李")), "ACC6", false},
		{"unsupported character set, ASCII values", dataSet(key(dicom.TagSpecificCharacterSet, `\ISO 2022 IR 166`), key(dicom.TagAccessionNumber, "ACC5")), "ACC5", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q, err := compileWorklistQuery(tc.query)
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			got := matchAccessions(t, q, items)
			if strings.Join(got, ",") != tc.want {
				t.Errorf("matches %v, want %s", got, tc.want)
			}
			if q.unsupported != tc.unsupported {
				t.Errorf("unsupported = %v, want %v", q.unsupported, tc.unsupported)
			}
			// The store filter derived from the query never drops a match.
			if filtered := matchAccessions(t, q, filterItems(items, q.filter)); !slices.Equal(filtered, got) {
				t.Errorf("with the store filter %+v: matches %v, without %v", q.filter, filtered, got)
			}
		})
	}
}

func TestWorklistFilter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		query *dicom.DataSet
		want  engine.WorklistFilter
	}{
		{"typical modality query", dataSet(key(dicom.TagPatientName, ""), sps(key(dicom.TagModality, "CT"), key(tagScheduledStationAETitle, "CTAE1"), key(tagSPSStartDate, "20240105-20240106"))),
			engine.WorklistFilter{Modality: "CT", StationAETitle: "CTAE1", StartDateFrom: "20240105", StartDateTo: "20240106"}},
		{"accession and patient ID", dataSet(key(dicom.TagAccessionNumber, "ACC1"), key(dicom.TagPatientID, "P1")), engine.WorklistFilter{AccessionNumber: "ACC1", PatientID: "P1"}},
		{"single date", dataSet(sps(key(tagSPSStartDate, "2024.01.05"))), engine.WorklistFilter{StartDateFrom: "20240105", StartDateTo: "20240105"}},
		{"open date ranges", dataSet(sps(key(tagSPSStartDate, "-20240105"))), engine.WorklistFilter{StartDateTo: "20240105"}},
		{"combined date-time keeps the date bounds", dataSet(sps(key(tagSPSStartDate, "20240105-"), key(tagSPSStartTime, "0800-"))), engine.WorklistFilter{StartDateFrom: "20240105"}},
		{"wildcards do not filter", dataSet(key(dicom.TagAccessionNumber, "ACC*"), key(dicom.TagPatientID, "P?"), sps(key(dicom.TagModality, "C*"))), engine.WorklistFilter{}},
		{"several values do not filter", dataSet(sps(key(dicom.TagModality, `CT\MR`), key(tagSPSStartDate, `20240105\20240106`))), engine.WorklistFilter{}},
		{"top-level Modality does not filter", dataSet(key(dicom.TagModality, "CT")), engine.WorklistFilter{}},
		{"universal keys do not filter", dataSet(key(dicom.TagAccessionNumber, ""), sps(key(dicom.TagModality, ""))), engine.WorklistFilter{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q, err := compileWorklistQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			if q.filter != tc.want {
				t.Errorf("filter %+v, want %+v", q.filter, tc.want)
			}
		})
	}
}

func TestWorklistQueryErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		query   *dicom.DataSet
		wantTag dicom.Tag // the offending element of a *keyError
		charset bool      // ErrUnsupportedCharacterSet instead
	}{
		{"date not a date", dataSet(sps(key(tagSPSStartDate, "2024-13-01"))), tagSPSStartDate, false},
		{"date month 13", dataSet(sps(key(tagSPSStartDate, "20241301"))), tagSPSStartDate, false},
		{"date range backwards", dataSet(sps(key(tagSPSStartDate, "20240106-20240105"))), tagSPSStartDate, false},
		{"date range without ends", dataSet(sps(key(tagSPSStartDate, "-"))), tagSPSStartDate, false},
		{"time hour 25", dataSet(sps(key(tagSPSStartTime, "2500"))), tagSPSStartTime, false},
		{"time range backwards", dataSet(sps(key(tagSPSStartTime, "1200-0800"))), tagSPSStartTime, false},
		{"combined range backwards", dataSet(sps(key(tagSPSStartDate, "20240105"), key(tagSPSStartTime, "1200-0800"))), tagSPSStartTime, false},
		{"sequence key with two items", dataSet(dicom.NewSequence(dicom.TagScheduledProcedureStepSequence, dataSet(key(dicom.TagModality, "CT")), dataSet(key(dicom.TagModality, "MR")))), dicom.TagScheduledProcedureStepSequence, false},
		{"sequence key sent as text", dataSet(dicom.NewString(dicom.TagScheduledProcedureStepSequence, dicom.VRCS, "CT")), dicom.TagScheduledProcedureStepSequence, false},
		{"text key sent as a sequence", dataSet(dicom.NewSequence(dicom.TagPatientName, dataSet(key(dicom.TagPatientID, "")))), dicom.TagPatientName, false},
		{"Query/Retrieve level", dataSet(key(dicom.TagQueryRetrieveLevel, "STUDY"), key(dicom.TagPatientID, "")), dicom.TagQueryRetrieveLevel, false},
		{"invalid UTF-8 under ISO_IR 192", dataSet(key(dicom.TagSpecificCharacterSet, "ISO_IR 192"), &dicom.Element{Tag: dicom.TagPatientName, VR: dicom.VRPN, Value: []byte("M\xfcller")}), dicom.TagPatientName, false},
		{"unknown escape under ISO 2022", dataSet(key(dicom.TagSpecificCharacterSet, `\ISO 2022 IR 100`), &dicom.Element{Tag: dicom.TagPatientName, VR: dicom.VRPN, Value: []byte("\x1b$B\x30\x21")}), dicom.TagPatientName, false},
		{"unsupported character set, non-ASCII value", dataSet(key(dicom.TagSpecificCharacterSet, `\ISO 2022 IR 166`), &dicom.Element{Tag: dicom.TagPatientName, VR: dicom.VRPN, Value: []byte("\xa1\xa2")}), 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := compileWorklistQuery(tc.query)
			if tc.charset {
				if !errors.Is(err, dicom.ErrUnsupportedCharacterSet) {
					t.Fatalf("error %v, want ErrUnsupportedCharacterSet", err)
				}
				return
			}
			var ke *keyError
			if !errors.As(err, &ke) {
				t.Fatalf("error %v, want a *keyError", err)
			}
			if ke.Tag != tc.wantTag {
				t.Errorf("offending element %s, want %s (%v)", ke.Tag, tc.wantTag, err)
			}
			if len(ke.Msg) > 64 {
				t.Errorf("message longer than an Error Comment: %q", ke.Msg)
			}
		})
	}
}

func TestCompileKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		vr     dicom.VR
		key    string
		stored string
		want   bool
	}{
		{"empty key is universal", dicom.VRLO, "", "anything", true},
		{"* alone is universal even for an empty value", dicom.VRSH, "*", "", true},
		{"exact", dicom.VRSH, "ABC", "ABC", true},
		{"exact, empty stored value", dicom.VRSH, "ABC", "", false},
		{"case matters", dicom.VRCS, "ABC", "abc", false},
		{"* matches nothing", dicom.VRLO, "AB*", "AB", true},
		{"* backtracks", dicom.VRLO, "a*b*c", "axxbyybzc", true},
		{"* backtracks to failure", dicom.VRLO, "a*b*c", "axxbyyb", false},
		{"? is exactly one", dicom.VRLO, "a?c", "ac", false},
		{"? is a character, not a byte", dicom.VRLO, "?ber", "Über", true},
		{"trailing *s", dicom.VRLO, "a**", "a", true},
		{"PN fold", dicom.VRPN, "müller^hans", "MÜLLER^HANS", true},
		{"PN fold with wildcard", dicom.VRPN, "MÜL*", "müller^hans", true},
		{"PN trailing components", dicom.VRPN, "DOE^JOHN^^^", "DOE^JOHN", true},
		{"PN groups", dicom.VRPN, "Yamada^Tarou=山田^太郎", "Yamada^Tarou=山田^太郎==", true},
		{"DA single", dicom.VRDA, "20240105", "20240105", true},
		{"DA range inclusive start", dicom.VRDA, "20240105-20240106", "20240105", true},
		{"DA range inclusive end", dicom.VRDA, "20240105-20240106", "20240106", true},
		{"DA range outside", dicom.VRDA, "20240105-20240106", "20240107", false},
		{"DA stored invalid", dicom.VRDA, "20240105-", "garbage", false},
		{"DA legacy stored", dicom.VRDA, "20240105", "2024.01.05", true},
		{"TM by meaning", dicom.VRTM, "2230", "223000", true},
		{"TM single is the instant", dicom.VRTM, "2230", "223030", false},
		{"TM range end covers its precision", dicom.VRTM, "1000-12", "125959.5", true},
		{"TM range start", dicom.VRTM, "1000-", "095959", false},
		{"TM with fraction", dicom.VRTM, "101010.5-101010.6", "101010.55", true},
		{"TM legacy", dicom.VRTM, "10:00-11:00", "10:30:00", true},
		{"UI list", dicom.VRUI, `1.2\1.3`, "1.3", true},
		{"UI prefix is not a match", dicom.VRUI, "1.2", "1.2.3", false},
		{"values OR", dicom.VRCS, `CT\MR`, "MR", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			values := (&dicom.Element{VR: tc.vr, Value: []byte(tc.key)}).Strings()
			m, err := compileKey(0x00100010, tc.vr, values)
			if err != nil {
				t.Fatal(err)
			}
			if got := m == nil || m(tc.stored); got != tc.want {
				t.Errorf("key %q against %q: %v, want %v", tc.key, tc.stored, got, tc.want)
			}
		})
	}
}

// dumpDataSet renders a data set as one line per element, nested items indented: what the
// response tests compare.
func dumpDataSet(ds *dicom.DataSet) string {
	var b strings.Builder
	var walk func(ds *dicom.DataSet, indent string)
	walk = func(ds *dicom.DataSet, indent string) {
		for _, e := range ds.Elements {
			if e.VR == dicom.VRSQ {
				fmt.Fprintf(&b, "%s%s SQ %d items\n", indent, e.Tag, len(e.Items))
				for _, it := range e.Items {
					walk(it, indent+"  ")
				}
				continue
			}
			fmt.Fprintf(&b, "%s%s %s %q\n", indent, e.Tag, e.VR, e.Value)
		}
	}
	walk(ds, "")
	return b.String()
}

func TestWorklistResponse(t *testing.T) {
	t.Parallel()
	items := testWorklist()
	tagPatientWeight := dicom.NewTag(0x0010, 0x1030)
	tagSPSLocation := dicom.NewTag(0x0040, 0x0011)
	full := dataSet(
		key(dicom.TagAccessionNumber, ""),
		seqKey(tagIssuerOfAccessionNumberSequence),
		key(dicom.TagPatientName, ""),
		key(tagPatientWeight, ""),
		dicom.NewSequence(tagRequestedProcedureCodeSequence),
		dicom.NewSequence(dicom.NewTag(0x0040, 0x100A)), // not in the model: an empty sequence back
		sps(key(dicom.TagModality, "CT"), key(tagScheduledStationAETitle, ""), key(tagSPSStartDate, ""),
			seqKey(tagScheduledProtocolCodeSequence, key(tagCodeValue, "")), key(tagSPSLocation, "")),
	)
	tests := []struct {
		name  string
		query *dicom.DataSet
		item  int
		want  string
	}{
		{"requested keys only, in tag order", full, 0, `(0008,0050) SH "ACC1"
(0008,0051) SQ 1 items
  (0040,0031) UT "HOSPACC"
(0010,0010) PN "Doe^John"
(0010,1030) DS ""
(0032,1064) SQ 1 items
  (0008,0100) SH "CT-HEAD"
  (0008,0102) SH "99LOCAL"
  (0008,0104) LO "CT Head"
(0040,0100) SQ 1 items
  (0008,0060) CS "CT"
  (0040,0001) AE "CTAE1"
  (0040,0002) DA "20240105"
  (0040,0008) SQ 1 items
    (0008,0100) SH "P1"
  (0040,0011) SH ""
(0040,100A) SQ 0 items
`},
		{"absent values and codes come back empty", full, 2, `(0008,0050) SH "ACC3"
(0008,0051) SQ 0 items
(0010,0010) PN "DOE^JANE^^^"
(0010,1030) DS ""
(0032,1064) SQ 0 items
(0040,0100) SQ 1 items
  (0008,0060) CS "CT"
  (0040,0001) AE "CTAE2"
  (0040,0002) DA "20240106"
  (0040,0008) SQ 0 items
  (0040,0011) SH ""
(0040,100A) SQ 0 items
`},
		{"empty sequence item returns the whole step", dataSet(key(dicom.TagAccessionNumber, "ACC1"), sps()), 0, `(0008,0050) SH "ACC1"
(0040,0100) SQ 1 items
  (0008,0060) CS "CT"
  (0040,0001) AE "CTAE1"
  (0040,0002) DA "20240105"
  (0040,0003) TM "083000"
  (0040,0006) PN "Tech^Tom"
  (0040,0007) LO "Head"
  (0040,0008) SQ 1 items
    (0008,0100) SH "P1"
    (0008,0102) SH "99LOCAL"
    (0008,0104) LO "Head protocol"
  (0040,0009) SH "SPS1"
  (0040,0010) SH "CT-ROOM-1"
  (0040,0020) CS "SCHEDULED"
`},
		{"UTF-8 answer for non-ASCII text", dataSet(key(dicom.TagPatientName, ""), key(dicom.TagPatientID, "P2")), 1, `(0008,0005) CS "ISO_IR 192"
(0010,0010) PN "Müller^Hans"
(0010,0020) LO "P2"
`},
		{"answer in the query's Latin-1", dataSet(key(dicom.TagSpecificCharacterSet, "ISO_IR 100"), key(dicom.TagPatientName, ""), key(dicom.TagPatientID, "P2")), 1, `(0008,0005) CS "ISO_IR 100"
(0010,0010) PN "M\xfcller^Hans"
(0010,0020) LO "P2"
`},
		{"ISO 2022 query answered without escapes", dataSet(key(dicom.TagSpecificCharacterSet, `ISO 2022 IR 6\ISO 2022 IR 100`), key(dicom.TagPatientName, ""), key(dicom.TagPatientID, "P2")), 1, `(0008,0005) CS "ISO_IR 100"
(0010,0010) PN "M\xfcller^Hans"
(0010,0020) LO "P2"
`},
		{"UTF-8 when Latin-1 cannot hold the text", dataSet(key(dicom.TagSpecificCharacterSet, "ISO_IR 100"), key(dicom.TagPatientName, "")), 5, `(0008,0005) CS "ISO_IR 192"
(0010,0010) PN "Ng^李"
`},
		{"no Specific Character Set for ASCII text", dataSet(key(dicom.TagSpecificCharacterSet, "ISO_IR 100"), key(dicom.TagPatientName, "")), 0, `(0010,0010) PN "Doe^John"
`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q, err := compileWorklistQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			if got := dumpDataSet(q.response(items[tc.item])); got != tc.want {
				t.Errorf("response:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestWorklistCyrillic(t *testing.T) {
	t.Parallel()
	enc := func(s string) []byte {
		b, err := charmap.ISO8859_5.NewEncoder().String(s)
		if err != nil {
			t.Fatal(err)
		}
		return []byte(b)
	}
	items := []*engine.WorklistItem{{AccessionNumber: "A1", PatientName: "Иванов^Иван"}, {AccessionNumber: "A2", PatientName: "Petrov^Petr"}}
	q, err := compileWorklistQuery(dataSet(key(dicom.TagSpecificCharacterSet, "ISO_IR 144"), &dicom.Element{Tag: dicom.TagPatientName, VR: dicom.VRPN, Value: enc("иванов*")}))
	if err != nil {
		t.Fatal(err)
	}
	if got := matchAccessions(t, q, items); !slices.Equal(got, []string{"A1"}) {
		t.Fatalf("matches %v", got)
	}
	rsp := q.response(items[0])
	if cs := rsp.String(dicom.TagSpecificCharacterSet); cs != "ISO_IR 144" {
		t.Errorf("answered in %q", cs)
	}
	if name := rsp.Get(dicom.TagPatientName).Value; !bytes.Equal(name, enc("Иванов^Иван")) {
		t.Errorf("name bytes %x", name)
	}
}

// worklistClient associates with the server proposing the worklist (in the transfer syntax ts,
// or the defaults) and Verification.
func worklistClient(t testing.TB, addr string, ts ...string) *Client {
	t.Helper()
	return dial(t, addr, ClientConfig{CallingAETitle: "CT01", Contexts: []ProposedContext{
		{SOPClass: ModalityWorklistFindSOPClass, TransferSyntaxes: ts}, {SOPClass: VerificationSOPClass}}})
}

// find runs a C-FIND with the Client and returns the accession numbers of the matches, the
// pending statuses and the final response.
func find(t testing.TB, c *Client, q *dicom.DataSet) (accessions []string, matches []*dicom.DataSet, pending []dicom.Status, final *Command) {
	t.Helper()
	final, err := c.Find(testCtx(t), ModalityWorklistFindSOPClass, q, func(rsp *Command, match *dicom.DataSet) bool {
		pending = append(pending, rsp.Status)
		matches = append(matches, match)
		accessions = append(accessions, match.String(dicom.TagAccessionNumber))
		return true
	})
	if err != nil {
		t.Fatalf("Find: %v", err)
	}
	return accessions, matches, pending, final
}

// typicalModalityQuery is what a CT scanner asks: today's steps for its modality and AE title,
// with the attributes it puts in its images.
func typicalModalityQuery(date string) *dicom.DataSet {
	return dataSet(
		key(dicom.TagAccessionNumber, ""), key(dicom.TagPatientName, ""), key(dicom.TagPatientID, ""), key(tagPatientBirthDate, ""),
		key(tagPatientSex, ""), key(dicom.TagStudyInstanceUID, ""), key(tagRequestedProcedureID, ""),
		key(tagRequestedProcedureDescription, ""), dicom.NewSequence(tagRequestedProcedureCodeSequence),
		sps(key(dicom.TagModality, "CT"), key(tagScheduledStationAETitle, "CTAE1"), key(tagSPSStartDate, date),
			key(tagSPSStartTime, ""), key(tagSPSID, ""), key(tagSPSDescription, ""), dicom.NewSequence(tagScheduledProtocolCodeSequence)),
	)
}

func TestWorklistFind(t *testing.T) {
	t.Parallel()
	src := &memoryWorklist{items: testWorklist(), filter: true}
	addr := startServer(t, &Server{Services: []Service{WorklistService(src, testLogger(t))}})
	for _, ts := range []string{dicom.ImplicitVRLittleEndian, dicom.ExplicitVRLittleEndian} {
		t.Run(ts, func(t *testing.T) {
			c := worklistClient(t, addr, ts)
			accs, matches, pending, final := find(t, c, typicalModalityQuery("20240105-20240106"))
			if final.Status != dicom.StatusSuccess || strings.Join(accs, ",") != "ACC1,ACC4" {
				t.Fatalf("final %v, matches %v", final.Status, accs)
			}
			for i, st := range pending {
				if st != dicom.StatusPending {
					t.Errorf("match %d: status %v, want FF00", i, st)
				}
			}
			if want := (engine.WorklistFilter{Modality: "CT", StationAETitle: "CTAE1", StartDateFrom: "20240105", StartDateTo: "20240106"}); src.lastFilter() != want {
				t.Errorf("store filter %+v, want %+v", src.lastFilter(), want)
			}
			m := matches[0]
			if got := m.String(dicom.TagPatientName); got != "Doe^John" {
				t.Errorf("patient name %q", got)
			}
			step := m.Get(dicom.TagScheduledProcedureStepSequence)
			if step == nil || len(step.Items) != 1 || step.Items[0].String(tagSPSID) != "SPS1" || step.Items[0].String(tagSPSStartTime) != "083000" {
				t.Fatalf("scheduled procedure step %+v", step)
			}
			if code := step.Items[0].Get(tagScheduledProtocolCodeSequence); code == nil || len(code.Items) != 1 || code.Items[0].String(tagCodeMeaning) != "Head protocol" {
				t.Errorf("protocol code %+v", code)
			}
			if m.Get(dicom.TagSpecificCharacterSet) != nil {
				t.Errorf("Specific Character Set on an ASCII response")
			}

			// An optional key Ferry cannot match on: FF01.
			_, _, pending, final = find(t, c, dataSet(key(dicom.TagAccessionNumber, "ACC2"), key(dicom.NewTag(0x0010, 0x1030), "70")))
			if final.Status != dicom.StatusSuccess || !slices.Equal(pending, []dicom.Status{dicom.StatusPendingWarning}) {
				t.Errorf("unsupported key: pending %v, final %v", pending, final.Status)
			}
			// Nothing matches: success alone.
			accs, _, _, final = find(t, c, dataSet(key(dicom.TagAccessionNumber, "NONE")))
			if final.Status != dicom.StatusSuccess || len(accs) != 0 {
				t.Errorf("no match: %v %v", accs, final.Status)
			}
			if err := c.Release(testCtx(t)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestWorklistFindCancel(t *testing.T) {
	t.Parallel()
	t.Run("between matches", func(t *testing.T) {
		t.Parallel()
		items := make([]*engine.WorklistItem, 20000)
		for i := range items {
			items[i] = &engine.WorklistItem{AccessionNumber: fmt.Sprintf("A%05d", i), Modality: "CT"}
		}
		addr := startServer(t, &Server{Services: []Service{WorklistService(&memoryWorklist{items: items}, nil)}})
		c := worklistClient(t, addr)
		seen := 0
		final, err := c.Find(testCtx(t), ModalityWorklistFindSOPClass, dataSet(key(dicom.TagAccessionNumber, "")), func(*Command, *dicom.DataSet) bool {
			seen++
			return false
		})
		if err != nil {
			t.Fatal(err)
		}
		if final.Status != dicom.StatusCancel || seen != 1 {
			t.Errorf("final %v after %d matches seen, want Cancel after 1", final.Status, seen)
		}
		if st, err := c.Echo(testCtx(t)); err != nil || st != dicom.StatusSuccess {
			t.Fatalf("echo after cancel: %v %v", st, err)
		}
		accs, _, _, final := find(t, c, dataSet(key(dicom.TagAccessionNumber, "A00042")))
		if final.Status != dicom.StatusSuccess || !slices.Equal(accs, []string{"A00042"}) {
			t.Errorf("query after cancel: %v %v", accs, final.Status)
		}
	})
	t.Run("while the store reads", func(t *testing.T) {
		t.Parallel()
		addr := startServer(t, &Server{Services: []Service{WorklistService(&memoryWorklist{block: true}, nil)}})
		c := worklistClient(t, addr)
		id, ts, _ := c.Context(ModalityWorklistFindSOPClass)
		body, err := dicom.EncodeDataSet(dataSet(key(dicom.TagAccessionNumber, "")), ts)
		if err != nil {
			t.Fatal(err)
		}
		msgID := c.NewMessageID()
		if err := c.Send(testCtx(t), id, &Command{Field: CFindRQ, MessageID: msgID, AffectedSOPClassUID: ModalityWorklistFindSOPClass}, bytes.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		if err := c.Send(testCtx(t), id, &Command{Field: CCancelRQ, MessageIDBeingRespondedTo: msgID}, nil); err != nil {
			t.Fatal(err)
		}
		msg, err := c.Receive(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if msg.Command.Field != CFindRSP || msg.Command.Status != dicom.StatusCancel {
			t.Errorf("response %s %v, want C-FIND-RSP Cancel", msg.Command.Field, msg.Command.Status)
		}
	})
}

// rawFind sends a C-FIND-RQ with data as its identifier bytes (nil: none) and returns the
// response, which must be final.
func rawFind(t *testing.T, c *Client, data []byte) *Command {
	t.Helper()
	id, _, _ := c.Context(ModalityWorklistFindSOPClass)
	var r *bytes.Reader
	cmd := &Command{Field: CFindRQ, MessageID: c.NewMessageID(), AffectedSOPClassUID: ModalityWorklistFindSOPClass}
	var err error
	if data != nil {
		r = bytes.NewReader(data)
		err = c.Send(testCtx(t), id, cmd, r)
	} else {
		err = c.Send(testCtx(t), id, cmd, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	msg, err := c.Receive(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Command.Field != CFindRSP || msg.Command.MessageIDBeingRespondedTo != cmd.MessageID || msg.Command.Status.IsPending() {
		t.Fatalf("response %s to %d, status %v", msg.Command.Field, msg.Command.MessageIDBeingRespondedTo, msg.Command.Status)
	}
	return msg.Command
}

func TestWorklistFindFailures(t *testing.T) {
	t.Parallel()
	good := &memoryWorklist{items: testWorklist()}
	broken := &memoryWorklist{err: errors.New("database is down")}
	addr := startServer(t, &Server{Services: []Service{WorklistService(good, nil)}})
	brokenAddr := startServer(t, &Server{Services: []Service{WorklistService(broken, nil)}})
	encode := func(ds *dicom.DataSet) []byte {
		b, err := dicom.EncodeDataSet(ds, dicom.ExplicitVRLittleEndian)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name      string
		addr      string
		data      []byte
		want      dicom.Status
		offending dicom.Tag
	}{
		{"identifier does not decode", addr, []byte{0x10, 0x00, 0x10, 0x00, 'P', 'N', 0xFF, 0x00, 'x'}, dicom.StatusCannotUnderstand, dicom.TagPatientName},
		{"identifier is a few stray bytes", addr, []byte{1, 2, 3}, dicom.StatusCannotUnderstand, 0},
		{"no identifier", addr, nil, dicom.StatusIdentifierDoesNotMatchClass, 0},
		{"Query/Retrieve level", addr, encode(dataSet(key(dicom.TagQueryRetrieveLevel, "STUDY"), key(dicom.TagStudyInstanceUID, ""))), dicom.StatusIdentifierDoesNotMatchClass, dicom.TagQueryRetrieveLevel},
		{"bad date range", addr, encode(dataSet(sps(key(tagSPSStartDate, "20240107-20240101")))), dicom.StatusIdentifierDoesNotMatchClass, tagSPSStartDate},
		{"unsupported character set", addr, encode(dataSet(key(dicom.TagSpecificCharacterSet, "ISO 2022 IR 166"), &dicom.Element{Tag: dicom.TagPatientName, VR: dicom.VRPN, Value: []byte("\xa1\xa2")})), dicom.StatusCannotUnderstand, dicom.TagSpecificCharacterSet},
		{"store fails", brokenAddr, encode(dataSet(key(dicom.TagAccessionNumber, ""))), dicom.StatusCannotUnderstand, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := worklistClient(t, tc.addr, dicom.ExplicitVRLittleEndian)
			rsp := rawFind(t, c, tc.data)
			if rsp.Status != tc.want || rsp.ErrorComment == "" {
				t.Errorf("status %v comment %q, want %v with a comment", rsp.Status, rsp.ErrorComment, tc.want)
			}
			var offending dicom.Tag
			for _, e := range rsp.Other {
				if e.Tag == dicom.TagOffendingElement && len(e.Value) == 4 {
					offending = dicom.NewTag(binary.LittleEndian.Uint16(e.Value), binary.LittleEndian.Uint16(e.Value[2:]))
				}
			}
			if offending != tc.offending {
				t.Errorf("offending element %s, want %s", offending, tc.offending)
			}
			if strings.Contains(rsp.ErrorComment, "database") {
				t.Errorf("error comment leaks the store's error: %q", rsp.ErrorComment)
			}
			// The association goes on, and so does the SCP for a new one.
			if st, err := c.Echo(testCtx(t)); err != nil || st != dicom.StatusSuccess {
				t.Fatalf("echo after the failure: %v %v", st, err)
			}
			if tc.addr == addr {
				if accs, _, _, final := find(t, c, dataSet(key(dicom.TagAccessionNumber, "ACC2"))); final.Status != dicom.StatusSuccess || len(accs) != 1 {
					t.Errorf("query on the same association: %v %v", accs, final.Status)
				}
			}
			c2 := worklistClient(t, addr)
			if accs, _, _, final := find(t, c2, dataSet(key(dicom.TagAccessionNumber, "ACC3"))); final.Status != dicom.StatusSuccess || !slices.Equal(accs, []string{"ACC3"}) {
				t.Errorf("query on a new association: %v %v", accs, final.Status)
			}
		})
	}
}

func TestWorklistCalledAETitle(t *testing.T) {
	t.Parallel()
	addr := startServer(t, &Server{AETitle: "FERRY", Services: []Service{WorklistService(&memoryWorklist{items: testWorklist()}, nil)}})
	ctx := testCtx(t)
	_, err := Dial(ctx, addr, ClientConfig{CalledAETitle: "PACS", Contexts: []ProposedContext{{SOPClass: ModalityWorklistFindSOPClass}}})
	var rj *AssociateRejectError
	if !errors.As(err, &rj) || rj.RJ.Reason != 7 {
		t.Fatalf("Dial to an unknown called AE title: %v, want A-ASSOCIATE-RJ reason 7", err)
	}
	c := worklistClient(t, addr)
	if accs, _, _, final := find(t, c, dataSet(key(dicom.TagAccessionNumber, ""), key(dicom.TagPatientID, "P1"))); final.Status != dicom.StatusSuccess || strings.Join(accs, ",") != "ACC1,ACC6" {
		t.Errorf("query after the rejection: %v %v", accs, final.Status)
	}
}
