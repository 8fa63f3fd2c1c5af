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

// LinkStore is what the links suite needs of a store: its decisions, the derivation queue that
// instances and decisions feed, and transactions (a merge moves studies in the message's).
type LinkStore interface {
	engine.LinkStore
	engine.DerivationQueue
	engine.InstanceStore
	Begin(ctx context.Context) (engine.Tx, error)
}

// RunLinks runs the contract suite of engine.LinkStore and engine.DerivationQueue. open is called
// once per subtest and must return a fresh, migrated, empty store that it closes (and removes)
// in t.Cleanup; subtests run in parallel.
func RunLinks(t *testing.T, open func(t *testing.T) LinkStore) {
	tests := []struct {
		name string
		run  func(t *testing.T, st LinkStore)
	}{
		{"LinkReadBack", testLinkReadBack},
		{"LinkReplaced", testLinkReplaced},
		{"LinkNotFound", testLinkNotFound},
		{"LinkWithoutEvidence", testLinkWithoutEvidence},
		{"UnknownStatusRejected", testLinkUnknownStatus},
		{"InvalidLinkStoresNothing", testInvalidLink},
		{"InvalidLinkKeepsTransaction", testInvalidLinkKeepsTransaction},
		{"PersonsDecision", testLinkPersonsDecision},
		{"History", testLinkHistory},
		{"OpenLinks", testOpenLinks},
		{"LinksOfPatient", testLinksOfPatient},
		{"LinksWithIdentifier", testLinksWithIdentifier},
		{"LinkInTransaction", testLinkInTransaction},
		{"DerivationQueue", testDerivationQueue},
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
		DecidedAt:  baseTime.Add(123456 * time.Microsecond).In(time.FixedZone("CET", 3600)),
		Identifier: engine.LinkIdentifier{System: "urn:oid:2.16.840.1.113883.3.9999.1", Value: "123"},
	}
}

func putLink(t *testing.T, st LinkStore, l *engine.StudyLink) {
	t.Helper()
	if err := st.PutStudyLink(context.Background(), l); err != nil {
		t.Fatalf("PutStudyLink(%s): %v", l.StudyInstanceUID, err)
	}
}

func readLink(t *testing.T, st LinkStore, studyInstanceUID string) *engine.StudyLink {
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
	if w.DecidedBy == "" {
		w.DecidedBy = engine.DecidedByLinker
	}
	if w.Candidates == nil {
		w.Candidates = []engine.LinkCandidate{}
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("StudyLink = %+v,\nwant %+v", g, w)
	}
}

func testLinkReadBack(t *testing.T, st LinkStore) {
	l := newLink(1)
	putLink(t, st, l)
	checkLink(t, readLink(t, st, l.StudyInstanceUID), l)
}

// testLinkReplaced: a new decision replaces every field of the previous one (evidence keys it no
// longer has are gone); another study's decision is untouched.
func testLinkReplaced(t *testing.T, st LinkStore) {
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

func testLinkNotFound(t *testing.T, st LinkStore) {
	putLink(t, st, newLink(1))
	if l, err := st.StudyLink(context.Background(), newLink(2).StudyInstanceUID); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("StudyLink(unknown) = %+v, %v; want ErrNotFound", l, err)
	}
}

// testLinkWithoutEvidence: nil evidence reads back as an empty map, never nil.
func testLinkWithoutEvidence(t *testing.T, st LinkStore) {
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
func testLinkUnknownStatus(t *testing.T, st LinkStore) {
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

func testInvalidLink(t *testing.T, st LinkStore) {
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

// testInvalidLinkKeepsTransaction: a link refused before anything is sent (no DecidedAt) leaves
// the transaction usable, on both stores, as a refused worklist item or turnaround mark does; the
// valid link after it commits.
func testInvalidLinkKeepsTransaction(t *testing.T, st LinkStore) {
	ctx := context.Background()
	tx, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	bad := newLink(1)
	bad.DecidedAt = time.Time{}
	if err := tx.PutStudyLink(ctx, bad); err == nil {
		t.Fatal("PutStudyLink without DecidedAt: nil error, want a validation error")
	}
	good := newLink(2)
	if err := tx.PutStudyLink(ctx, good); err != nil {
		t.Fatalf("the transaction is not usable after a refused link: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	checkLink(t, readLink(t, st, good.StudyInstanceUID), good)
	if _, err := st.StudyLink(ctx, bad.StudyInstanceUID); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("the refused link: %v, want ErrNotFound", err)
	}
}

// testLinkPersonsDecision: who decided, why, and the ranked candidates with their evidence come
// back as stored.
func testLinkPersonsDecision(t *testing.T, st LinkStore) {
	l := newLink(1)
	l.Status, l.Rule, l.Score = engine.LinkReview, "demographics", 7.5
	l.Candidates = []engine.LinkCandidate{
		{PatientID: "pat-0042", ServiceRequestID: "sr-4711", Score: 7.5, Evidence: map[string]string{"family": "MÜLLER | Muller | agrees"}},
		{PatientID: "pat-0043", Score: 6.25},
	}
	putLink(t, st, l)
	got := readLink(t, st, l.StudyInstanceUID)
	checkLink(t, got, l)

	l.Status, l.DecidedBy, l.Reason = engine.LinkLinked, "ana.analyst", "called the site: twin A"
	l.DecidedAt = l.DecidedAt.Add(time.Hour)
	putLink(t, st, l)
	checkLink(t, readLink(t, st, l.StudyInstanceUID), l)
}

// testLinkHistory: every decision is kept, oldest first, whatever replaced it.
func testLinkHistory(t *testing.T, st LinkStore) {
	ctx := context.Background()
	var want []*engine.StudyLink
	for i, status := range []engine.LinkStatus{engine.LinkUnmatched, engine.LinkReview, engine.LinkLinked} {
		l := newLink(1)
		l.Status, l.DecidedAt = status, l.DecidedAt.Add(time.Duration(i)*time.Minute)
		if status == engine.LinkLinked {
			l.DecidedBy, l.Reason = "ana.analyst", "same MRN after stripping zeros"
		}
		putLink(t, st, l)
		want = append(want, l)
	}
	putLink(t, st, newLink(2))
	got, err := st.StudyLinkHistory(ctx, want[0].StudyInstanceUID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("history has %d decisions, want %d", len(got), len(want))
	}
	for i := range want {
		checkLink(t, got[i], want[i])
	}
	none, err := st.StudyLinkHistory(ctx, newLink(3).StudyInstanceUID)
	if err != nil || len(none) != 0 {
		t.Errorf("history of an unknown study = %v, %v; want empty", none, err)
	}
}

// testOpenLinks: review, contradiction and unmatched wait for a person, oldest first; linked
// ones do not; limit and offset page.
func testOpenLinks(t *testing.T, st LinkStore) {
	ctx := context.Background()
	statuses := []engine.LinkStatus{engine.LinkLinked, engine.LinkUnmatched, engine.LinkReview,
		engine.LinkContradiction, engine.LinkLinked}
	for i, status := range statuses {
		l := newLink(i + 1)
		// Decided in reverse order: the last study waits longest.
		l.Status, l.DecidedAt = status, l.DecidedAt.Add(-time.Duration(i)*time.Minute)
		putLink(t, st, l)
	}
	uids := func(links []*engine.StudyLink) []string {
		var out []string
		for _, l := range links {
			out = append(out, l.StudyInstanceUID)
		}
		return out
	}
	open, err := st.OpenStudyLinks(ctx, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{newLink(4).StudyInstanceUID, newLink(3).StudyInstanceUID, newLink(2).StudyInstanceUID}
	if got := uids(open); !reflect.DeepEqual(got, want) {
		t.Errorf("OpenStudyLinks = %v, want %v", got, want)
	}
	page, err := st.OpenStudyLinks(ctx, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := uids(page); !reflect.DeepEqual(got, want[1:2]) {
		t.Errorf("OpenStudyLinks(limit 1, offset 1) = %v, want %v", got, want[1:2])
	}
}

// testLinksOfPatient: the current decisions naming a patient, from the store and in a
// transaction (which sees its own writes).
func testLinksOfPatient(t *testing.T, st LinkStore) {
	ctx := context.Background()
	a, b, other := newLink(1), newLink(2), newLink(3)
	other.PatientID = "pat-0099"
	for _, l := range []*engine.StudyLink{a, b, other} {
		putLink(t, st, l)
	}
	got, err := st.StudyLinksOfPatient(ctx, "pat-0042")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].StudyInstanceUID != a.StudyInstanceUID || got[1].StudyInstanceUID != b.StudyInstanceUID {
		t.Errorf("StudyLinksOfPatient = %+v, want studies 1 and 2", got)
	}
	tx, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	moved := newLink(2)
	moved.PatientID, moved.DecidedBy, moved.Rule = "pat-0099", engine.DecidedByADT, "merge"
	if err := tx.PutStudyLink(ctx, moved); err != nil {
		t.Fatal(err)
	}
	inTx, err := tx.StudyLinksOfPatient(ctx, "pat-0099")
	if err != nil {
		t.Fatal(err)
	}
	if len(inTx) != 2 {
		t.Errorf("in the transaction, Patient pat-0099 has %d links, want 2", len(inTx))
	}
}

// testLinksWithIdentifier: the cross-reference's learned identifiers are the linked decisions'
// identifiers, oldest first; a decision that is not linked, or has no identifier, teaches
// nothing, and a new decision for a study takes back what its previous one taught (also in its
// history, which keeps the identifier).
func testLinksWithIdentifier(t *testing.T, st LinkStore) {
	ctx := context.Background()
	const system = "urn:ferry:issuer:OUTSIDE"
	a, b, review, other, none := newLink(1), newLink(2), newLink(3), newLink(4), newLink(5)
	a.Identifier = engine.LinkIdentifier{System: system, Value: "77"}
	b.Identifier, b.DecidedAt = a.Identifier, a.DecidedAt.Add(time.Second)
	review.Identifier, review.Status, review.PatientID = a.Identifier, engine.LinkReview, ""
	other.Identifier = engine.LinkIdentifier{System: system, Value: "78"}
	none.Identifier = engine.LinkIdentifier{}
	for _, l := range []*engine.StudyLink{b, a, review, other, none} {
		putLink(t, st, l)
	}
	uids := func(value string) []string {
		t.Helper()
		got, err := st.StudyLinksWithIdentifier(ctx, system, value, 10)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range got {
			out = append(out, l.StudyInstanceUID)
		}
		return out
	}
	if got := uids("77"); !reflect.DeepEqual(got, []string{a.StudyInstanceUID, b.StudyInstanceUID}) {
		t.Errorf("StudyLinksWithIdentifier(77) = %v, want the linked studies 1 and 2, oldest first", got)
	}
	if got := uids(""); len(got) != 0 {
		t.Errorf("StudyLinksWithIdentifier(\"\") = %v: a decision without an identifier teaches nothing", got)
	}
	undone := newLink(1)
	undone.Status, undone.PatientID, undone.Rule, undone.DecidedBy = engine.LinkUnmatched, "", "manual", "dr.rivera"
	undone.Identifier = a.Identifier
	putLink(t, st, undone)
	if got := uids("77"); !reflect.DeepEqual(got, []string{b.StudyInstanceUID}) {
		t.Errorf("after study 1 was unlinked, StudyLinksWithIdentifier(77) = %v, want study 2 only", got)
	}
	hist, err := st.StudyLinkHistory(ctx, a.StudyInstanceUID)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || hist[0].Identifier != a.Identifier || hist[1].Identifier != a.Identifier {
		t.Errorf("history of study 1 = %+v, want both decisions with the identifier", hist)
	}
}

// testLinkInTransaction: a decision put in a transaction exists only once it commits, with its
// history entry.
func testLinkInTransaction(t *testing.T, st LinkStore) {
	ctx := context.Background()
	l := newLink(1)
	tx, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.PutStudyLink(ctx, l); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.StudyLink(ctx, l.StudyInstanceUID); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("after rollback, StudyLink: %v, want ErrNotFound", err)
	}
	if tx, err = st.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tx.PutStudyLink(ctx, l); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	checkLink(t, readLink(t, st, l.StudyInstanceUID), l)
	if h, err := st.StudyLinkHistory(ctx, l.StudyInstanceUID); err != nil || len(h) != 1 {
		t.Errorf("history after commit: %d decisions, %v; want 1", len(h), err)
	}
}

// testDerivationQueue: a new instance and a new decision queue their study, counting changes; a
// study is due once quiet; finishing with a stale count leaves it queued, with the current one
// takes it off.
func testDerivationQueue(t *testing.T, st LinkStore) {
	ctx := context.Background()
	due := func(quietSince time.Time) []engine.StudyDerivation {
		t.Helper()
		d, err := st.DueStudyDerivations(ctx, quietSince, 10)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	finish := func(d engine.StudyDerivation) {
		t.Helper()
		tx, err := st.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.FinishStudyDerivation(ctx, d); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	first := newInstance(1, 1, 1)
	if _, err := st.PutInstance(ctx, first); err != nil {
		t.Fatal(err)
	}
	if got := due(first.ReceivedAt.Add(-time.Second)); len(got) != 0 {
		t.Errorf("due before the study was quiet: %+v", got)
	}
	got := due(first.ReceivedAt)
	if len(got) != 1 || got[0].StudyInstanceUID != first.StudyInstanceUID || got[0].Changes != 1 ||
		!got[0].ChangedAt.Equal(first.ReceivedAt) {
		t.Fatalf("due = %+v, want study 1 with one change at %s", got, first.ReceivedAt)
	}
	stale := got[0]

	second := newInstance(1, 1, 2)
	second.ReceivedAt = first.ReceivedAt.Add(time.Second)
	if _, err := st.PutInstance(ctx, second); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutInstance(ctx, second); err != nil { // a copy changes nothing
		t.Fatal(err)
	}
	finish(stale) // a derivation that started before the second instance
	got = due(second.ReceivedAt)
	if len(got) != 1 || got[0].Changes != 2 || !got[0].ChangedAt.Equal(second.ReceivedAt) {
		t.Fatalf("after a second instance and a stale finish, due = %+v; want 2 changes at %s", got, second.ReceivedAt)
	}
	finish(got[0])
	if got := due(second.ReceivedAt.Add(time.Hour)); len(got) != 0 {
		t.Errorf("after finishing, due = %+v", got)
	}

	l := newLink(1)
	l.DecidedAt = second.ReceivedAt.Add(time.Minute)
	putLink(t, st, l)
	if got := due(l.DecidedAt); len(got) != 1 || got[0].StudyInstanceUID != l.StudyInstanceUID {
		t.Errorf("after a new decision, due = %+v, want the study", got)
	}
}
