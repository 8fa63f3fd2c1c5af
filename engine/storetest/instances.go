package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/engine"
)

// RunInstances runs the contract suite of engine.InstanceStore. open is called once per subtest
// and must return a fresh, migrated, empty store that it closes (and removes) in t.Cleanup;
// subtests run in parallel.
func RunInstances(t *testing.T, open func(t *testing.T) engine.InstanceStore) {
	tests := []struct {
		name string
		run  func(t *testing.T, st engine.InstanceStore)
	}{
		{"InstanceReadBack", testInstanceReadBack},
		{"DuplicateInstanceChangesNothing", testDuplicateInstance},
		{"StudyAssembledFromInstances", testStudyAssembled},
		{"AttributesFromFirstNonEmpty", testAttributesFromFirstNonEmpty},
		{"SeriesAndInstanceOrder", testSeriesAndInstanceOrder},
		{"TextNotUTF8", testInstanceTextNotUTF8},
		{"InvalidInstanceStoresNothing", testInvalidInstance},
		{"InstanceNotFound", testInstanceNotFound},
		{"ConcurrentInstancesOfNewStudy", testConcurrentInstances},
		{"BatchesAllOrNothing", testBatchAllOrNothing},
		{"ConcurrentOverlappingBatches", testConcurrentBatches},
		{"SearchStudiesFilters", testSearchStudiesFilters},
		{"SearchStudiesPaging", testSearchStudiesPaging},
		{"SearchStudiesLinkedIdentity", testSearchStudiesLinkedIdentity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, open(t))
		})
	}
}

// newInstance returns instance n of a CT series of study "1.2.3.<study>", every field set;
// received at baseTime plus n milliseconds (exact at PostgreSQL's microseconds).
func newInstance(study, series, n int) *engine.Instance {
	studyUID := fmt.Sprintf("1.2.826.0.1.3680043.10.1.%d", study)
	seriesUID := fmt.Sprintf("%s.%d", studyUID, series)
	return &engine.Instance{
		Header: dicom.Header{
			SOPInstanceUID:         fmt.Sprintf("%s.%d", seriesUID, n),
			SOPClassUID:            "1.2.840.10008.5.1.4.1.1.2", // CT Image Storage
			SeriesInstanceUID:      seriesUID,
			StudyInstanceUID:       studyUID,
			TransferSyntaxUID:      "1.2.840.10008.1.2.1",
			Modality:               "CT",
			SeriesNumber:           fmt.Sprint(series),
			SeriesDescription:      "AXIAL 5mm",
			InstanceNumber:         fmt.Sprint(n),
			PatientID:              "MRN123",
			IssuerOfPatientID:      "STMARYS",
			PatientName:            "Doe^Jane",
			PatientBirthDate:       "19700101",
			PatientSex:             "F",
			AccessionNumber:        "ACC001",
			StudyDate:              "20260301",
			StudyTime:              "101500",
			StudyDescription:       "CT CHEST W/O CONTRAST",
			StudyID:                "4711",
			ReferringPhysicianName: "Who^Doctor",
			Size:                   int64(524288 + n),
		},
		Path:           fmt.Sprintf("%s/%s/%d.dcm", studyUID, seriesUID, n),
		SHA256:         fmt.Sprintf("%064x", n),
		ReceivedAt:     baseTime.Add(time.Duration(n) * time.Millisecond),
		CallingAETitle: "CT01",
		CalledAETitle:  "FERRY",
		PeerAddr:       "10.0.0.9:40112",
	}
}

func putInstance(t *testing.T, st engine.InstanceStore, inst *engine.Instance, wantAdded bool) {
	t.Helper()
	added, err := st.PutInstance(context.Background(), inst)
	if err != nil {
		t.Fatalf("PutInstance(%s): %v", inst.SOPInstanceUID, err)
	}
	if added != wantAdded {
		t.Fatalf("PutInstance(%s) added = %v, want %v", inst.SOPInstanceUID, added, wantAdded)
	}
}

func readStudy(t *testing.T, st engine.InstanceStore, uid string) *engine.Study {
	t.Helper()
	s, err := st.Study(context.Background(), uid)
	if err != nil {
		t.Fatalf("Study(%s): %v", uid, err)
	}
	return s
}

// studyUIDs returns the Study Instance UIDs of studies, in order.
func studyUIDs(studies []*engine.Study) []string {
	uids := []string{}
	for _, s := range studies {
		uids = append(uids, s.StudyInstanceUID)
	}
	return uids
}

// testSearchStudiesFilters: each filter alone and combined selects exactly its studies, newest
// first (study date, then time, descending; a study without a date last).
func testSearchStudiesFilters(t *testing.T, st engine.InstanceStore) {
	ctx := context.Background()
	put := func(study, series int, set func(*engine.Instance)) *engine.Instance {
		inst := newInstance(study, series, series)
		set(inst)
		putInstance(t, st, inst, true)
		return inst
	}
	s1 := put(1, 1, func(i *engine.Instance) {
		i.PatientID, i.IssuerOfPatientID, i.AccessionNumber = "MRN1", "STMARYS", "ACC1"
		i.StudyDate, i.StudyTime, i.Modality = "20260301", "101500", "CT"
	})
	s2 := put(2, 1, func(i *engine.Instance) {
		i.PatientID, i.IssuerOfPatientID, i.AccessionNumber = "MRN1", "STJUDES", "ACC2"
		i.StudyDate, i.StudyTime, i.Modality = "20260302", "080000", "CT"
	})
	put(2, 2, func(i *engine.Instance) { // a second series: the study is CT and PT
		i.PatientID, i.IssuerOfPatientID, i.AccessionNumber = "MRN1", "STJUDES", "ACC2"
		i.StudyDate, i.StudyTime, i.Modality = "20260302", "080000", "PT"
	})
	s3 := put(3, 1, func(i *engine.Instance) {
		i.PatientID, i.IssuerOfPatientID, i.AccessionNumber = "MRN2", "STMARYS", "ACC3"
		i.StudyDate, i.StudyTime, i.Modality = "20260302", "120000", "MR"
	})
	s4 := put(4, 1, func(i *engine.Instance) {
		i.PatientID, i.IssuerOfPatientID, i.AccessionNumber = "MRN3", "", "ACC4"
		i.StudyDate, i.StudyTime, i.Modality = "", "", "US"
	})
	u1, u2, u3, u4 := s1.StudyInstanceUID, s2.StudyInstanceUID, s3.StudyInstanceUID, s4.StudyInstanceUID

	tests := []struct {
		name string
		f    engine.StudyFilter
		want []string
	}{
		{"none", engine.StudyFilter{}, []string{u3, u2, u1, u4}},
		{"patient", engine.StudyFilter{PatientID: "MRN1"}, []string{u2, u1}},
		{"patient and issuer", engine.StudyFilter{PatientID: "MRN1", IssuerOfPatientID: "STMARYS"}, []string{u1}},
		{"issuer", engine.StudyFilter{IssuerOfPatientID: "STMARYS"}, []string{u3, u1}},
		{"accession", engine.StudyFilter{AccessionNumber: "ACC3"}, []string{u3}},
		{"accession unknown", engine.StudyFilter{AccessionNumber: "ACC9"}, []string{}},
		{"patient is exact", engine.StudyFilter{PatientID: "mrn1"}, []string{}},
		{"uids", engine.StudyFilter{StudyInstanceUIDs: []string{u4, u1, "1.2.3.999"}}, []string{u1, u4}},
		{"one uid", engine.StudyFilter{StudyInstanceUIDs: []string{u2}}, []string{u2}},
		{"date from", engine.StudyFilter{StudyDateFrom: "20260302"}, []string{u3, u2}},
		{"date to", engine.StudyFilter{StudyDateTo: "20260301"}, []string{u1}},
		{"one date", engine.StudyFilter{StudyDateFrom: "20260301", StudyDateTo: "20260301"}, []string{u1}},
		{"date range", engine.StudyFilter{StudyDateFrom: "20260101", StudyDateTo: "20261231"}, []string{u3, u2, u1}},
		{"modality", engine.StudyFilter{ModalityInStudy: "CT"}, []string{u2, u1}},
		{"modality of a second series", engine.StudyFilter{ModalityInStudy: "PT"}, []string{u2}},
		{"modality none", engine.StudyFilter{ModalityInStudy: "XA"}, []string{}},
		{"combined", engine.StudyFilter{PatientID: "MRN1", ModalityInStudy: "CT", StudyDateTo: "20260301"}, []string{u1}},
	}
	for _, tt := range tests {
		got, err := st.SearchStudies(ctx, tt.f)
		if err != nil {
			t.Errorf("%s: SearchStudies(%+v): %v", tt.name, tt.f, err)
			continue
		}
		if !reflect.DeepEqual(studyUIDs(got), tt.want) {
			t.Errorf("%s: SearchStudies(%+v) = %v, want %v", tt.name, tt.f, studyUIDs(got), tt.want)
		}
	}

	// A study found is the study read by UID, attributes and counts included.
	got, err := st.SearchStudies(ctx, engine.StudyFilter{AccessionNumber: "ACC2"})
	if err != nil || len(got) != 1 {
		t.Fatalf("SearchStudies(ACC2) = %v, %v; want one study", studyUIDs(got), err)
	}
	if want := readStudy(t, st, u2); !reflect.DeepEqual(got[0], want) {
		t.Errorf("SearchStudies study\n got %+v\nwant %+v", got[0], want)
	}
	if got[0].NumberOfSeries != 2 || !reflect.DeepEqual(got[0].ModalitiesInStudy, []string{"CT", "PT"}) {
		t.Errorf("SearchStudies study: %d series, modalities %v; want 2, [CT PT]", got[0].NumberOfSeries, got[0].ModalitiesInStudy)
	}
}

// testSearchStudiesPaging: Limit and Offset page through the order (ties on date and time by
// UID); an offset past the end is an empty page.
func testSearchStudiesPaging(t *testing.T, st engine.InstanceStore) {
	ctx := context.Background()
	var all []string
	for study := 1; study <= 5; study++ {
		inst := newInstance(study, 1, 1)
		inst.StudyTime = "101500" // every study at the same date and time: the UID orders them
		putInstance(t, st, inst, true)
		all = append(all, inst.StudyInstanceUID)
	}
	tests := []struct {
		limit, offset int
		want          []string
	}{
		{0, 0, all}, // default page size
		{2, 0, all[0:2]},
		{2, 2, all[2:4]},
		{2, 4, all[4:5]},
		{2, 5, []string{}},
		{100, 3, all[3:]},
		{-1, -1, all}, // default size, no offset
		{engine.MaxStudyLimit + 1, 1, all[1:]},
	}
	for _, tt := range tests {
		got, err := st.SearchStudies(ctx, engine.StudyFilter{Limit: tt.limit, Offset: tt.offset})
		if err != nil {
			t.Fatalf("SearchStudies(limit %d, offset %d): %v", tt.limit, tt.offset, err)
		}
		if !reflect.DeepEqual(studyUIDs(got), tt.want) {
			t.Errorf("SearchStudies(limit %d, offset %d) = %v, want %v", tt.limit, tt.offset, studyUIDs(got), tt.want)
		}
	}
}

// testSearchStudiesLinkedIdentity: with LinkedIdentity, the link wins. A study linked to a
// listed patient matches whatever Patient ID its modality sent; one linked to another patient
// never matches by the Patient ID its modality sent; one not linked — no decision, or one still
// waiting for a person — matches by what its modality sent, as without LinkedIdentity. Without
// LinkedIdentity, or without PatientID, links change nothing.
func testSearchStudiesLinkedIdentity(t *testing.T, st engine.InstanceStore) {
	ctx := context.Background()
	links, ok := st.(engine.LinkWriter)
	if !ok {
		t.Skip("the store keeps no study links")
	}
	const jane, janeToo, other = "pat-jane", "pat-jane-2", "pat-other"
	uid := map[int]string{}
	// study n, dated 2026-03-0n: the newest, highest n, comes first.
	put := func(n int, patientID, issuer string, status engine.LinkStatus, patient string) {
		inst := newInstance(n, 1, 1)
		inst.PatientID, inst.IssuerOfPatientID = patientID, issuer
		inst.StudyDate, inst.AccessionNumber = fmt.Sprintf("2026030%d", n), fmt.Sprintf("ACC%d", n)
		putInstance(t, st, inst, true)
		uid[n] = inst.StudyInstanceUID
		if status != "" {
			l := &engine.StudyLink{StudyInstanceUID: inst.StudyInstanceUID, Status: status, PatientID: patient,
				Rule: engine.RulePatientID, DecidedAt: baseTime}
			if err := links.PutStudyLink(ctx, l); err != nil {
				t.Fatalf("PutStudyLink(%s): %v", l.StudyInstanceUID, err)
			}
		}
	}
	put(1, "123", "STMARYS", engine.LinkLinked, jane)       // the modality wrote the MRN its own way
	put(2, "MRN1", "STMARYS", engine.LinkLinked, other)     // a person linked it to someone else
	put(3, "MRN1", "STMARYS", "", "")                       // no decision
	put(4, "MRN1", "STMARYS", engine.LinkReview, other)     // a candidate, not a link
	put(5, "MRN1", "STJUDES", "", "")                       // another issuer's MRN1
	put(6, "MRN1", "STMARYS", engine.LinkContradiction, "") // waiting for a person
	put(7, "OTHER", "", engine.LinkLinked, janeToo)         // Jane's second record
	put(8, "MRN1", "STMARYS", engine.LinkUnmatched, "")     // held
	put(9, "MRN1", "STMARYS", engine.LinkLinked, "")        // linked to no patient: not linked
	linked := func(patientID, issuer string, ids ...string) engine.StudyFilter {
		return engine.StudyFilter{PatientID: patientID, IssuerOfPatientID: issuer, LinkedIdentity: true, LinkedPatientIDs: ids}
	}
	tests := []struct {
		name string
		f    engine.StudyFilter
		want []int
	}{
		{"linked or sent", linked("MRN1", "", jane), []int{9, 8, 6, 5, 4, 3, 1}},
		{"linked or sent under the issuer", linked("MRN1", "STMARYS", jane), []int{9, 8, 6, 4, 3, 1}},
		{"two patients", linked("MRN1", "STMARYS", jane, janeToo), []int{9, 8, 7, 6, 4, 3, 1}},
		{"no patient holds the ID: only studies not linked", linked("MRN1", "STMARYS"), []int{9, 8, 6, 4, 3}},
		{"empty ids ignored", linked("MRN1", "STMARYS", ""), []int{9, 8, 6, 4, 3}},
		{"linked to someone else, sent as 123", linked("123", "STMARYS", other), []int{2}},
		{"the other patient", linked("NOPE", "", other), []int{2}},
		{"nothing", linked("NOPE", ""), []int{}},
		{"with other filters", engine.StudyFilter{PatientID: "MRN1", LinkedIdentity: true, LinkedPatientIDs: []string{jane},
			StudyDateFrom: "20260302", StudyDateTo: "20260305", AccessionNumber: "ACC3"}, []int{3}},
		{"paged", engine.StudyFilter{PatientID: "MRN1", LinkedIdentity: true, LinkedPatientIDs: []string{jane},
			Limit: 2, Offset: 5}, []int{3, 1}},
		{"without LinkedIdentity: what the modality sent", engine.StudyFilter{PatientID: "MRN1", LinkedPatientIDs: []string{jane}},
			[]int{9, 8, 6, 5, 4, 3, 2}},
		{"without PatientID: changes nothing", engine.StudyFilter{IssuerOfPatientID: "STJUDES", LinkedIdentity: true,
			LinkedPatientIDs: []string{jane}}, []int{5}},
	}
	uids := func(ns []int) []string {
		out := []string{}
		for _, n := range ns {
			out = append(out, uid[n])
		}
		return out
	}
	for _, tt := range tests {
		got, err := st.SearchStudies(ctx, tt.f)
		if err != nil {
			t.Errorf("%s: SearchStudies(%+v): %v", tt.name, tt.f, err)
			continue
		}
		if want := uids(tt.want); !reflect.DeepEqual(studyUIDs(got), want) {
			t.Errorf("%s: SearchStudies(%+v) = %v, want %v", tt.name, tt.f, studyUIDs(got), want)
		}
	}

	// A new decision replaces the old: study 2 linked to Jane is found by her; study 1 sent
	// back to review is not linked any more, and its modality's 123 is not MRN1.
	for n, l := range map[int]*engine.StudyLink{
		1: {StudyInstanceUID: uid[1], Status: engine.LinkReview, PatientID: jane, DecidedAt: baseTime.Add(time.Hour)},
		2: {StudyInstanceUID: uid[2], Status: engine.LinkLinked, PatientID: jane, Rule: engine.RuleManual, DecidedAt: baseTime.Add(time.Hour)},
	} {
		if err := links.PutStudyLink(ctx, l); err != nil {
			t.Fatalf("PutStudyLink(study %d): %v", n, err)
		}
	}
	got, err := st.SearchStudies(ctx, linked("MRN1", "STMARYS", jane))
	if want := uids([]int{9, 8, 6, 4, 3, 2}); err != nil || !reflect.DeepEqual(studyUIDs(got), want) {
		t.Errorf("after the links changed: SearchStudies = %v, %v; want %v", studyUIDs(got), err, want)
	}
}

func testInstanceReadBack(t *testing.T, st engine.InstanceStore) {
	ctx := context.Background()
	inst := newInstance(1, 1, 1)
	putInstance(t, st, inst, true)

	got, err := st.Instance(ctx, inst.SOPInstanceUID)
	if err != nil {
		t.Fatalf("Instance: %v", err)
	}
	if !reflect.DeepEqual(got, inst) {
		t.Errorf("Instance read back\n got %+v\nwant %+v", got, inst)
	}
	if got.ReceivedAt.Location() != time.UTC {
		t.Errorf("ReceivedAt in %s, want UTC", got.ReceivedAt.Location())
	}

	want := &engine.Study{
		StudyInstanceUID: inst.StudyInstanceUID, PatientID: "MRN123", IssuerOfPatientID: "STMARYS",
		PatientName: "Doe^Jane", PatientBirthDate: "19700101", PatientSex: "F",
		AccessionNumber: "ACC001", StudyDate: "20260301", StudyTime: "101500",
		StudyDescription: "CT CHEST W/O CONTRAST", StudyID: "4711", ReferringPhysicianName: "Who^Doctor",
		ModalitiesInStudy: []string{"CT"}, NumberOfSeries: 1, NumberOfInstances: 1,
		FirstReceived: inst.ReceivedAt, LastReceived: inst.ReceivedAt,
	}
	if s := readStudy(t, st, inst.StudyInstanceUID); !reflect.DeepEqual(s, want) {
		t.Errorf("Study\n got %+v\nwant %+v", s, want)
	}

	series, err := st.StudySeries(ctx, inst.StudyInstanceUID)
	if err != nil {
		t.Fatalf("StudySeries: %v", err)
	}
	wantSeries := []*engine.Series{{SeriesInstanceUID: inst.SeriesInstanceUID, StudyInstanceUID: inst.StudyInstanceUID,
		Modality: "CT", SeriesNumber: "1", SeriesDescription: "AXIAL 5mm", NumberOfInstances: 1}}
	if !reflect.DeepEqual(series, wantSeries) {
		t.Errorf("StudySeries = %+v, want %+v", series, wantSeries)
	}
	instances, err := st.SeriesInstances(ctx, inst.SeriesInstanceUID)
	if err != nil {
		t.Fatalf("SeriesInstances: %v", err)
	}
	if len(instances) != 1 || !reflect.DeepEqual(instances[0], inst) {
		t.Errorf("SeriesInstances = %+v, want [%+v]", instances, inst)
	}
}

// testDuplicateInstance: an instance received again (even with other contents) is not counted
// and changes nothing; the first copy is kept.
func testDuplicateInstance(t *testing.T, st engine.InstanceStore) {
	ctx := context.Background()
	first := newInstance(1, 1, 1)
	putInstance(t, st, first, true)
	before := readStudy(t, st, first.StudyInstanceUID)

	again := newInstance(1, 1, 1)
	again.Path, again.SHA256, again.Size = "elsewhere.dcm", "ff", 1
	again.Modality, again.AccessionNumber = "MR", "OTHER"
	again.ReceivedAt = baseTime.Add(time.Hour)
	putInstance(t, st, again, false)

	got, err := st.Instance(ctx, first.SOPInstanceUID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, first) {
		t.Errorf("after a duplicate, Instance = %+v, want the first copy %+v", got, first)
	}
	if after := readStudy(t, st, first.StudyInstanceUID); !reflect.DeepEqual(after, before) {
		t.Errorf("a duplicate changed the study:\nbefore %+v\n after %+v", before, after)
	}
	series, err := st.StudySeries(ctx, first.StudyInstanceUID)
	if err != nil {
		t.Fatal(err)
	}
	if len(series) != 1 || series[0].NumberOfInstances != 1 || series[0].Modality != "CT" {
		t.Errorf("after a duplicate, StudySeries = %+v, want one CT series of one instance", series)
	}
}

// testStudyAssembled: counts, distinct sorted modalities (no empty one) and first/last received
// from instances that arrive out of order.
func testStudyAssembled(t *testing.T, st engine.InstanceStore) {
	ctx := context.Background()
	var instances []*engine.Instance
	for series, modality := range map[int]string{1: "PT", 2: "CT", 3: "CT", 4: "", 5: "SR"} {
		for n := range 3 {
			inst := newInstance(7, series, series*10+n)
			inst.Modality = modality
			instances = append(instances, inst)
		}
	}
	// Received times out of arrival order: the latest goes in first.
	instances[0].ReceivedAt, instances[len(instances)-1].ReceivedAt = baseTime.Add(time.Hour), baseTime.Add(-time.Hour)
	for _, inst := range instances {
		putInstance(t, st, inst, true)
	}
	s := readStudy(t, st, instances[0].StudyInstanceUID)
	if want := []string{"CT", "PT", "SR"}; !reflect.DeepEqual(s.ModalitiesInStudy, want) {
		t.Errorf("ModalitiesInStudy = %q, want %q", s.ModalitiesInStudy, want)
	}
	if s.NumberOfSeries != 5 || s.NumberOfInstances != 15 {
		t.Errorf("study has %d series, %d instances; want 5, 15", s.NumberOfSeries, s.NumberOfInstances)
	}
	if want := baseTime.Add(-time.Hour); !s.FirstReceived.Equal(want) {
		t.Errorf("FirstReceived = %s, want %s", s.FirstReceived, want)
	}
	if want := baseTime.Add(time.Hour); !s.LastReceived.Equal(want) {
		t.Errorf("LastReceived = %s, want %s", s.LastReceived, want)
	}
	series, err := st.StudySeries(ctx, s.StudyInstanceUID)
	if err != nil {
		t.Fatal(err)
	}
	if len(series) != 5 {
		t.Fatalf("StudySeries returned %d series, want 5", len(series))
	}
	for _, se := range series {
		if se.NumberOfInstances != 3 {
			t.Errorf("series %s has %d instances, want 3", se.SeriesInstanceUID, se.NumberOfInstances)
		}
	}
	// Another study keeps its own counts.
	other := newInstance(8, 1, 1)
	putInstance(t, st, other, true)
	if o := readStudy(t, st, other.StudyInstanceUID); o.NumberOfSeries != 1 || o.NumberOfInstances != 1 {
		t.Errorf("other study has %d series, %d instances; want 1, 1", o.NumberOfSeries, o.NumberOfInstances)
	}
}

// testAttributesFromFirstNonEmpty: each patient and study attribute comes from the first instance
// that gives it; a later, different value does not replace it.
func testAttributesFromFirstNonEmpty(t *testing.T, st engine.InstanceStore) {
	ctx := context.Background()
	first := newInstance(2, 1, 1)
	first.AccessionNumber, first.PatientName, first.StudyDescription = "", "", ""
	first.SeriesDescription, first.SeriesNumber, first.Modality = "", "", ""
	second := newInstance(2, 1, 2)
	second.AccessionNumber, second.PatientName, second.PatientID = "ACC-SECOND", "Doe^Jane^Q", "MRN-SECOND"
	second.StudyDescription = "" // still none: the third gives it
	second.SeriesDescription, second.SeriesNumber, second.Modality = "SCOUT", "7", "CT"
	third := newInstance(2, 1, 3)
	third.AccessionNumber, third.StudyDescription = "ACC-THIRD", "DESCRIPTION-THIRD"
	third.SeriesDescription, third.SeriesNumber, third.Modality = "OTHER", "8", "MR"
	for _, inst := range []*engine.Instance{first, second, third} {
		putInstance(t, st, inst, true)
	}
	s := readStudy(t, st, first.StudyInstanceUID)
	for _, c := range []struct{ field, got, want string }{
		{"AccessionNumber", s.AccessionNumber, "ACC-SECOND"},
		{"PatientName", s.PatientName, "Doe^Jane^Q"},
		{"PatientID", s.PatientID, "MRN123"}, // the first gave one
		{"StudyDescription", s.StudyDescription, "DESCRIPTION-THIRD"},
	} {
		if c.got != c.want {
			t.Errorf("study %s = %q, want %q", c.field, c.got, c.want)
		}
	}
	if want := []string{"CT", "MR"}; !reflect.DeepEqual(s.ModalitiesInStudy, want) {
		t.Errorf("ModalitiesInStudy = %q, want %q", s.ModalitiesInStudy, want)
	}
	series, err := st.StudySeries(ctx, first.StudyInstanceUID)
	if err != nil {
		t.Fatal(err)
	}
	want := []*engine.Series{{SeriesInstanceUID: first.SeriesInstanceUID, StudyInstanceUID: first.StudyInstanceUID,
		Modality: "CT", SeriesNumber: "7", SeriesDescription: "SCOUT", NumberOfInstances: 3}}
	if !reflect.DeepEqual(series, want) {
		t.Errorf("StudySeries = %+v, want %+v", series[0], want[0])
	}
}

// testSeriesAndInstanceOrder: series by series number and instances by instance number, as
// numbers (IS, spaces allowed), then by UID; those without a number (or with text that is not
// one) last.
func testSeriesAndInstanceOrder(t *testing.T, st engine.InstanceStore) {
	ctx := context.Background()
	for i, number := range []string{"10", "2", "", " 1 ", "x", "2"} {
		inst := newInstance(3, 100+i, 1000+i)
		inst.SeriesNumber = number
		putInstance(t, st, inst, true)
	}
	series, err := st.StudySeries(ctx, newInstance(3, 0, 0).StudyInstanceUID)
	if err != nil {
		t.Fatal(err)
	}
	var numbers []string
	for _, se := range series {
		numbers = append(numbers, se.SeriesNumber)
	}
	// Ties (the two 2s, then "" and "x") by series UID, which ends in 101, 105 and 102, 104.
	if want := []string{" 1 ", "2", "2", "10", "", "x"}; !reflect.DeepEqual(numbers, want) {
		t.Errorf("series numbers in order %q, want %q", numbers, want)
	}

	seriesUID := newInstance(4, 1, 0).SeriesInstanceUID
	for i, number := range []string{"3", "", "20", "-1", "100", "3"} {
		inst := newInstance(4, 1, 10+i)
		inst.InstanceNumber = number
		putInstance(t, st, inst, true)
	}
	instances, err := st.SeriesInstances(ctx, seriesUID)
	if err != nil {
		t.Fatal(err)
	}
	numbers = numbers[:0]
	for _, inst := range instances {
		numbers = append(numbers, inst.InstanceNumber)
	}
	if want := []string{"-1", "3", "3", "20", "100", ""}; !reflect.DeepEqual(numbers, want) {
		t.Errorf("instance numbers in order %q, want %q", numbers, want)
	}
	if instances[1].SOPInstanceUID > instances[2].SOPInstanceUID {
		t.Errorf("equal instance numbers not ordered by UID: %s before %s", instances[1].SOPInstanceUID, instances[2].SOPInstanceUID)
	}
}

// testInstanceTextNotUTF8: text that is not valid UTF-8 or holds a NUL is stored with U+FFFD in
// place of each bad byte, as both stores store header text, rather than failing the C-STORE.
func testInstanceTextNotUTF8(t *testing.T, st engine.InstanceStore) {
	inst := newInstance(5, 1, 1)
	inst.PatientName = "Doe^J\xe9r\x00me"
	putInstance(t, st, inst, true)
	got, err := st.Instance(context.Background(), inst.SOPInstanceUID)
	if err != nil {
		t.Fatal(err)
	}
	if want := "Doe^J\uFFFDr\uFFFDme"; got.PatientName != want {
		t.Errorf("PatientName = %q, want %q", got.PatientName, want)
	}
	if s := readStudy(t, st, inst.StudyInstanceUID); s.PatientName != "Doe^J\uFFFDr\uFFFDme" {
		t.Errorf("study PatientName = %q", s.PatientName)
	}
}

func testInvalidInstance(t *testing.T, st engine.InstanceStore) {
	ctx := context.Background()
	for name, change := range map[string]func(*engine.Instance){
		"no SOP Instance UID":    func(i *engine.Instance) { i.SOPInstanceUID = "" },
		"no Series Instance UID": func(i *engine.Instance) { i.SeriesInstanceUID = "" },
		"no Study Instance UID":  func(i *engine.Instance) { i.StudyInstanceUID = "" },
		"no ReceivedAt":          func(i *engine.Instance) { i.ReceivedAt = time.Time{} },
	} {
		inst := newInstance(6, 1, 1)
		change(inst)
		if added, err := st.PutInstance(ctx, inst); err == nil || added {
			t.Errorf("%s: PutInstance = %v, %v; want an error", name, added, err)
		}
	}
	if added, err := st.PutInstance(ctx, nil); err == nil || added {
		t.Errorf("PutInstance(nil) = %v, %v; want an error", added, err)
	}
	if _, err := st.Study(ctx, newInstance(6, 1, 1).StudyInstanceUID); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("after invalid instances, Study: %v, want ErrNotFound", err)
	}
}

func testInstanceNotFound(t *testing.T, st engine.InstanceStore) {
	ctx := context.Background()
	putInstance(t, st, newInstance(1, 1, 1), true)
	const unknown = "1.2.3.999"
	if _, err := st.Instance(ctx, unknown); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Instance(unknown): %v, want ErrNotFound", err)
	}
	if _, err := st.Study(ctx, unknown); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Study(unknown): %v, want ErrNotFound", err)
	}
	if _, err := st.StudySeries(ctx, unknown); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("StudySeries(unknown): %v, want ErrNotFound", err)
	}
	if _, err := st.SeriesInstances(ctx, unknown); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("SeriesInstances(unknown): %v, want ErrNotFound", err)
	}
}

// testConcurrentInstances: 8 goroutines store 25 instances each of one new study, over 3 series,
// at once (several associations, or several nodes, receiving one study); every instance is also
// sent by a second goroutine. The counts are exact and each instance is added exactly once.
func testConcurrentInstances(t *testing.T, st engine.InstanceStore) {
	const workers, perWorker, seriesCount = 8, 25, 3
	var (
		added atomic.Int64
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	instance := func(n int) *engine.Instance {
		inst := newInstance(9, 1+n%seriesCount, n)
		inst.Modality = []string{"CT", "PT", "SR"}[n%seriesCount]
		return inst
	}
	for w := range workers {
		wg.Go(func() {
			<-start
			for i := range perWorker {
				// Its own instance, then the one the next worker stores as its own.
				for _, n := range []int{w*perWorker + i, ((w+1)%workers)*perWorker + i} {
					ok, err := st.PutInstance(context.Background(), instance(n))
					if err != nil {
						t.Errorf("PutInstance(%d): %v", n, err)
						return
					}
					if ok {
						added.Add(1)
					}
				}
			}
		})
	}
	close(start)
	wg.Wait()
	const total = workers * perWorker
	if got := added.Load(); got != total {
		t.Errorf("%d instances reported added, want %d", got, total)
	}
	s := readStudy(t, st, instance(0).StudyInstanceUID)
	if s.NumberOfInstances != total || s.NumberOfSeries != seriesCount {
		t.Errorf("study has %d series, %d instances; want %d, %d", s.NumberOfSeries, s.NumberOfInstances, seriesCount, total)
	}
	if want := []string{"CT", "PT", "SR"}; !reflect.DeepEqual(s.ModalitiesInStudy, want) {
		t.Errorf("ModalitiesInStudy = %q, want %q", s.ModalitiesInStudy, want)
	}
	series, err := st.StudySeries(context.Background(), s.StudyInstanceUID)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for _, se := range series {
		sum += se.NumberOfInstances
		instances, err := st.SeriesInstances(context.Background(), se.SeriesInstanceUID)
		if err != nil {
			t.Fatal(err)
		}
		if len(instances) != se.NumberOfInstances {
			t.Errorf("series %s counts %d instances, holds %d", se.SeriesInstanceUID, se.NumberOfInstances, len(instances))
		}
	}
	if len(series) != seriesCount || sum != total {
		t.Errorf("%d series holding %d instances, want %d holding %d", len(series), sum, seriesCount, total)
	}
}

// testBatchAllOrNothing: PutInstances reports each instance's added, an instance twice in a
// batch counts once, and a batch with an invalid instance stores none of it.
func testBatchAllOrNothing(t *testing.T, st engine.InstanceStore) {
	ctx := context.Background()
	putInstance(t, st, newInstance(11, 1, 1), true)
	batch := []*engine.Instance{newInstance(12, 1, 1), newInstance(11, 1, 1), newInstance(11, 2, 2), newInstance(12, 1, 1)}
	added, err := st.PutInstances(ctx, batch)
	if err != nil {
		t.Fatalf("PutInstances: %v", err)
	}
	if want := []bool{true, false, true, false}; !reflect.DeepEqual(added, want) {
		t.Errorf("added = %v, want %v (stored before, or earlier in the batch: false)", added, want)
	}
	if s := readStudy(t, st, newInstance(11, 1, 1).StudyInstanceUID); s.NumberOfInstances != 2 || s.NumberOfSeries != 2 {
		t.Errorf("study 11: %d series, %d instances; want 2, 2", s.NumberOfSeries, s.NumberOfInstances)
	}
	if s := readStudy(t, st, newInstance(12, 1, 1).StudyInstanceUID); s.NumberOfInstances != 1 {
		t.Errorf("study 12: %d instances, want 1", s.NumberOfInstances)
	}
	bad := newInstance(13, 1, 2)
	bad.SOPInstanceUID = ""
	if _, err := st.PutInstances(ctx, []*engine.Instance{newInstance(13, 1, 1), bad}); err == nil {
		t.Fatal("a batch with an instance without SOP Instance UID was stored")
	}
	if _, err := st.Study(ctx, newInstance(13, 1, 1).StudyInstanceUID); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("after a refused batch, its valid instance's study: %v, want ErrNotFound", err)
	}
}

// testConcurrentOverlappingBatches: batches committed at once (several nodes' group commits)
// over the same two studies, in opposite orders and sharing instances, never deadlock into an
// error, and every instance counts once.
func testConcurrentBatches(t *testing.T, st engine.InstanceStore) {
	const workers, batches, perBatch = 6, 5, 8
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			<-start
			for b := range batches {
				batch := make([]*engine.Instance, perBatch)
				for i := range batch {
					// Workers w and w+1 share every instance; half of each batch is in each study.
					n := (w/2)*batches*perBatch + b*perBatch + i
					batch[i] = newInstance(14+i%2, 1, n)
				}
				if w%2 == 1 {
					slices.Reverse(batch)
				}
				if _, err := st.PutInstances(context.Background(), batch); err != nil {
					t.Errorf("PutInstances (worker %d, batch %d): %v", w, b, err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	total := 0
	for _, study := range []int{14, 15} {
		total += readStudy(t, st, newInstance(study, 1, 0).StudyInstanceUID).NumberOfInstances
	}
	if want := workers / 2 * batches * perBatch; total != want {
		t.Errorf("the studies count %d instances, want %d", total, want)
	}
}

// BenchPutInstance measures PutInstance of new instances (studies of 3 series × 100 instances):
// from one goroutine; from eight at once into the same studies (one study sent over several
// associations, or to several nodes: every instance updates the one study row); from eight at once
// each into its own studies (several modalities sending); and of instances already stored (a PACS
// resending a study). It reports instances/s. open must return a fresh, migrated store.
func BenchPutInstance(b *testing.B, open func(b *testing.B) engine.InstanceStore) {
	for _, bc := range []struct {
		name       string
		workers    int
		ownStudies bool
	}{
		{"new/workers=1", 1, false},
		{"new/workers=8/same_study", 8, false},
		{"new/workers=8/own_studies", 8, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			st := open(b)
			var seq atomic.Int64
			seqs := make([]atomic.Int64, bc.workers)
			benchPut(b, bc.workers, func(worker int) *engine.Instance {
				if bc.ownStudies {
					n := int(seqs[worker].Add(1))
					return newInstance(1000000*(worker+1)+n/300, 1+n/100%3, n)
				}
				n := int(seq.Add(1))
				return newInstance(n/300, 1+n/100%3, n)
			}, st, true)
		})
	}
	b.Run("resent", func(b *testing.B) {
		st := open(b)
		const stored = 300
		for n := range stored {
			if _, err := st.PutInstance(context.Background(), newInstance(1, 1+n/100, n)); err != nil {
				b.Fatal(err)
			}
		}
		var seq atomic.Int64
		benchPut(b, 1, func(int) *engine.Instance {
			n := int(seq.Add(1)) % stored
			return newInstance(1, 1+n/100, n)
		}, st, false)
	})
}

// benchPut runs PutInstance of next(worker) from workers goroutines, once per benchmark op.
func benchPut(b *testing.B, workers int, next func(worker int) *engine.Instance, st engine.InstanceStore, wantAdded bool) {
	work := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range work {
				inst := next(w)
				added, err := st.PutInstance(context.Background(), inst)
				if err != nil || added != wantAdded {
					b.Errorf("PutInstance(%s) = %v, %v; want added %v", inst.SOPInstanceUID, added, err, wantAdded)
				}
			}
		})
	}
	for b.Loop() {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "instances/s")
}
