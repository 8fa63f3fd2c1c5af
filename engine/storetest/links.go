package storetest

import (
	"context"
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/engine"
)

// RunLinks runs the contract suite of engine.LinkStore. open is called once per subtest and must
// return a fresh, migrated, empty store that it closes (and removes) in t.Cleanup; subtests run
// in parallel.
func RunLinks(t *testing.T, open func(t *testing.T) engine.LinkStore) {
	tests := []struct {
		name string
		run  func(t *testing.T, st engine.LinkStore)
	}{
		{"LinkReadBack", testLinkReadBack},
		{"LinkReplaced", testLinkReplaced},
		{"LinkNotFound", testLinkNotFound},
		{"LinkWithoutEvidence", testLinkWithoutEvidence},
		{"UnknownStatusRejected", testLinkUnknownStatus},
		{"InvalidLinkStoresNothing", testInvalidLink},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, open(t))
		})
	}
}

// newLink returns an auto-linked decision for study "…<study>", every field set; decided at
// baseTime plus some microseconds (exact at PostgreSQL's precision), in a zone other than UTC.
func newLink(study int) *engine.StudyLink {
	return &engine.StudyLink{
		StudyInstanceUID: newInstance(study, 1, 1).StudyInstanceUID,
		Status:           engine.LinkLinked,
		ServiceRequestID: "sr-4711",
		PatientID:        "pat-0042",
		Rule:             "accession",
		Score:            0.875,
		Evidence: map[string]string{
			"AccessionNumber":   "ACC001 | ACC001 | match",
			"PatientID":         "MRN123 | MRN123 | match",
			"IssuerOfPatientID": "STMARYS | STMARYS | match",
			"StudyDate":         "20260301 | 2026-03-01 | within window",
			"Modality":          "CT | CT — Computed Tomography | match", // not ASCII
		},
		DecidedAt: baseTime.Add(123456 * time.Microsecond).In(time.FixedZone("CET", 3600)),
	}
}

func putLink(t *testing.T, st engine.LinkStore, l *engine.StudyLink) {
	t.Helper()
	if err := st.PutStudyLink(context.Background(), l); err != nil {
		t.Fatalf("PutStudyLink(%s): %v", l.StudyInstanceUID, err)
	}
}

func readLink(t *testing.T, st engine.LinkStore, studyInstanceUID string) *engine.StudyLink {
	t.Helper()
	l, err := st.StudyLink(context.Background(), studyInstanceUID)
	if err != nil {
		t.Fatalf("StudyLink(%s): %v", studyInstanceUID, err)
	}
	return l
}

// checkLink compares got with want, DecidedAt as an instant that must come back in UTC.
func checkLink(t *testing.T, got, want *engine.StudyLink) {
	t.Helper()
	if got.DecidedAt.Location() != time.UTC {
		t.Errorf("DecidedAt %s is not in UTC", got.DecidedAt)
	}
	if !got.DecidedAt.Equal(want.DecidedAt) {
		t.Errorf("DecidedAt = %s, want %s", got.DecidedAt, want.DecidedAt)
	}
	g, w := *got, *want
	g.DecidedAt, w.DecidedAt = time.Time{}, time.Time{}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("StudyLink = %+v,\nwant %+v", g, w)
	}
}

func testLinkReadBack(t *testing.T, st engine.LinkStore) {
	l := newLink(1)
	putLink(t, st, l)
	checkLink(t, readLink(t, st, l.StudyInstanceUID), l)
}

// testLinkReplaced: a new decision replaces every field of the previous one (evidence keys it no
// longer has are gone); another study's decision is untouched.
func testLinkReplaced(t *testing.T, st engine.LinkStore) {
	first, other := newLink(1), newLink(2)
	putLink(t, st, first)
	putLink(t, st, other)

	second := &engine.StudyLink{
		StudyInstanceUID: first.StudyInstanceUID,
		Status:           engine.LinkContradiction,
		ServiceRequestID: "sr-4712",
		PatientID:        "pat-0043",
		Rule:             "study-uid",
		Score:            0.25,
		Evidence:         map[string]string{"PatientID": "MRN123 | MRN999 | differs"},
		DecidedAt:        first.DecidedAt.Add(time.Hour),
	}
	putLink(t, st, second)
	checkLink(t, readLink(t, st, first.StudyInstanceUID), second)
	checkLink(t, readLink(t, st, other.StudyInstanceUID), other)

	// Decided again as unmatched: no order, no patient, no rule.
	third := &engine.StudyLink{StudyInstanceUID: first.StudyInstanceUID, Status: engine.LinkUnmatched,
		Evidence: map[string]string{"AccessionNumber": "ACC001 |  | no order"}, DecidedAt: second.DecidedAt.Add(time.Minute)}
	putLink(t, st, third)
	checkLink(t, readLink(t, st, first.StudyInstanceUID), third)
}

func testLinkNotFound(t *testing.T, st engine.LinkStore) {
	putLink(t, st, newLink(1))
	if l, err := st.StudyLink(context.Background(), newLink(2).StudyInstanceUID); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("StudyLink(unknown) = %+v, %v; want ErrNotFound", l, err)
	}
}

// testLinkWithoutEvidence: nil evidence reads back as an empty map, never nil.
func testLinkWithoutEvidence(t *testing.T, st engine.LinkStore) {
	l := newLink(1)
	l.Status, l.ServiceRequestID, l.PatientID, l.Rule, l.Score = engine.LinkUnmatched, "", "", "", 0
	l.Evidence = nil
	putLink(t, st, l)
	got := readLink(t, st, l.StudyInstanceUID)
	if got.Evidence == nil || len(got.Evidence) != 0 {
		t.Errorf("Evidence = %#v, want an empty map", got.Evidence)
	}
	l.Evidence = map[string]string{}
	checkLink(t, got, l)
}

// testLinkUnknownStatus: the store (its CHECK) rejects a status that is not one of the three;
// nothing is stored, and a study's previous decision is kept.
func testLinkUnknownStatus(t *testing.T, st engine.LinkStore) {
	ctx := context.Background()
	for _, status := range []engine.LinkStatus{"", "LINKED", "maybe"} {
		l := newLink(1)
		l.Status = status
		if err := st.PutStudyLink(ctx, l); err == nil {
			t.Errorf("PutStudyLink with status %q: no error", status)
		}
	}
	if _, err := st.StudyLink(ctx, newLink(1).StudyInstanceUID); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("after rejected links, StudyLink: %v, want ErrNotFound", err)
	}

	kept := newLink(2)
	putLink(t, st, kept)
	bad := newLink(2)
	bad.Status, bad.Rule = "rejected", "other"
	if err := st.PutStudyLink(ctx, bad); err == nil {
		t.Errorf("replacing with status %q: no error", bad.Status)
	}
	checkLink(t, readLink(t, st, kept.StudyInstanceUID), kept)
}

func testInvalidLink(t *testing.T, st engine.LinkStore) {
	ctx := context.Background()
	for name, change := range map[string]func(*engine.StudyLink){
		"no Study Instance UID": func(l *engine.StudyLink) { l.StudyInstanceUID = "" },
		"no DecidedAt":          func(l *engine.StudyLink) { l.DecidedAt = time.Time{} },
		"NaN score":             func(l *engine.StudyLink) { l.Score = math.NaN() },
	} {
		l := newLink(1)
		change(l)
		if err := st.PutStudyLink(ctx, l); err == nil {
			t.Errorf("%s: PutStudyLink succeeded, want an error", name)
		}
	}
	if err := st.PutStudyLink(ctx, nil); err == nil {
		t.Error("PutStudyLink(nil) succeeded, want an error")
	}
	if _, err := st.StudyLink(ctx, newLink(1).StudyInstanceUID); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("after invalid links, StudyLink: %v, want ErrNotFound", err)
	}
}
