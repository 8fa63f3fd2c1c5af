package storetest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/fhir"
)

// PatientAccessStore is what the patient-access suite needs of a store: who may see which
// patient and break-glass grants (access.PatientStore), users (a grant names one), studies and
// their links (a physician's study search), and transactions (rows are written in the order's).
type PatientAccessStore interface {
	access.PatientStore
	access.Store
	engine.InstanceStore
	engine.LinkStore
	Begin(ctx context.Context) (engine.Tx, error)
}

// RunPatientAccess runs the contract suite of access.PatientStore, engine.PatientAccessWriter
// and StudyFilter.Within. open is called once per subtest and must return a fresh, migrated,
// empty store that it closes in t.Cleanup; subtests run in parallel.
func RunPatientAccess(t *testing.T, open func(t *testing.T) PatientAccessStore) {
	tests := []struct {
		name string
		run  func(t *testing.T, st PatientAccessStore)
	}{
		{"RowsByPatientPractitionerFacility", testPatientAccessRows},
		{"MergeSharesBothWays", testPatientAccessShared},
		{"BreakGlassGrants", testBreakGlassGrants},
		{"StudiesWithinPatients", testStudiesWithin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, open(t))
		})
	}
}

func addAccess(t *testing.T, st PatientAccessStore, rows ...engine.PatientAccess) {
	t.Helper()
	ctx := context.Background()
	tx, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if err := tx.AddPatientAccess(ctx, rows); err != nil {
		t.Fatalf("AddPatientAccess: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func sortedAccess(rows []engine.PatientAccess) []engine.PatientAccess {
	slices.SortFunc(rows, func(a, b engine.PatientAccess) int {
		for _, c := range [][2]string{{a.PatientID, b.PatientID}, {a.Facility, b.Facility}, {a.System, b.System}, {a.Value, b.Value}} {
			if c[0] != c[1] {
				if c[0] < c[1] {
					return -1
				}
				return 1
			}
		}
		return 0
	})
	return rows
}

func testPatientAccessRows(t *testing.T, st PatientAccessStore) {
	ctx := context.Background()
	lee := engine.PatientAccess{PatientID: "p1", Facility: "STMARYS", System: "urn:npi", Value: "1234567893"}
	leeLocal := engine.PatientAccess{PatientID: "p1", Facility: "STMARYS", System: "STMARYS", Value: "LEE01"}
	other := engine.PatientAccess{PatientID: "p2", Facility: "NORTH", System: "urn:npi", Value: "1234567893"}
	none := engine.PatientAccess{PatientID: "p3", Facility: "NORTH"}
	addAccess(t, st, lee, leeLocal, other, none)
	addAccess(t, st, lee) // again: no error, still one row

	got, err := st.PatientAccessOf(ctx, []string{"p1", "p3", "p9"})
	if want := []engine.PatientAccess{lee, leeLocal, none}; err != nil || !slices.Equal(sortedAccess(got), sortedAccess(want)) {
		t.Errorf("PatientAccessOf(p1, p3, p9) = %v, %v; want %v", got, err, want)
	}
	got, err = st.PatientsByPractitioner(ctx, []string{"1234567893", "NOBODY"})
	if want := []engine.PatientAccess{lee, other}; err != nil || !slices.Equal(sortedAccess(got), sortedAccess(want)) {
		t.Errorf("PatientsByPractitioner = %v, %v; want %v (any system)", got, err, want)
	}
	if got, err := st.PatientsByPractitioner(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("PatientsByPractitioner(none) = %v, %v; want nothing", got, err)
	}
	ids, err := st.PatientsOfFacilities(ctx, []string{"NORTH"})
	slices.Sort(ids)
	if want := []string{"p2", "p3"}; err != nil || !slices.Equal(ids, want) {
		t.Errorf("PatientsOfFacilities(NORTH) = %v, %v; want %v, each once", ids, err, want)
	}
}

func testPatientAccessShared(t *testing.T, st PatientAccessStore) {
	ctx := context.Background()
	a := engine.PatientAccess{PatientID: "old", Facility: "STMARYS", System: "urn:npi", Value: "A"}
	b := engine.PatientAccess{PatientID: "new", Facility: "STMARYS", System: "urn:npi", Value: "B"}
	untouched := engine.PatientAccess{PatientID: "else", Facility: "STMARYS", System: "urn:npi", Value: "C"}
	addAccess(t, st, a, b, untouched)
	tx, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if err := tx.SharePatientAccess(ctx, "old", "new"); err != nil {
		t.Fatalf("SharePatientAccess: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []string{"old", "new"} {
		got, err := st.PatientAccessOf(ctx, []string{pid})
		var values []string
		for _, r := range got {
			values = append(values, r.Value)
		}
		slices.Sort(values)
		if err != nil || !slices.Equal(values, []string{"A", "B"}) {
			t.Errorf("after the merge, %s is seen by %v (%v), want A and B", pid, values, err)
		}
	}
	if got, _ := st.PatientAccessOf(ctx, []string{"else"}); len(got) != 1 {
		t.Errorf("a third patient's rows changed: %v", got)
	}
}

func testBreakGlassGrants(t *testing.T, st PatientAccessStore) {
	ctx := context.Background()
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	if err := st.PutUser(ctx, &access.User{Name: "dr.lee", Role: access.RolePhysician, CreatedAt: at,
		Practitioners: []access.Practitioner{{Value: "LEE01"}}}); err != nil {
		t.Fatal(err)
	}
	early := &access.BreakGlass{User: "dr.lee", PatientID: "p1", Reason: "ED", GrantedAt: at, ExpiresAt: at.Add(time.Hour)}
	late := &access.BreakGlass{User: "dr.lee", PatientID: "p2", Reason: "on call, \x00 bad bytes", GrantedAt: at.Add(30 * time.Minute), ExpiresAt: at.Add(90 * time.Minute)}
	for _, g := range []*access.BreakGlass{early, late} {
		if err := st.PutBreakGlass(ctx, g); err != nil {
			t.Fatalf("PutBreakGlass: %v", err)
		}
	}
	for _, tc := range []struct {
		now  time.Time
		want []string
	}{
		{at.Add(10 * time.Minute), []string{"p1", "p2"}},
		{at.Add(time.Hour), []string{"p2"}}, // expires_at is the end: not after it
		{at.Add(2 * time.Hour), nil},
	} {
		gs, err := st.BreakGlassGrants(ctx, "dr.lee", tc.now)
		var got []string
		for _, g := range gs {
			got = append(got, g.PatientID)
			if g.User != "dr.lee" || g.Reason == "" || !g.ExpiresAt.After(g.GrantedAt) || g.GrantedAt.Location() != time.UTC {
				t.Errorf("grant read back as %+v", g)
			}
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("BreakGlassGrants at %s = %v, %v; want %v, oldest first", tc.now.Format(time.Kitchen), got, err, tc.want)
		}
	}
	if gs, err := st.BreakGlassGrants(ctx, "someone", at); err != nil || len(gs) != 0 {
		t.Errorf("another user's grants: %v, %v", gs, err)
	}
}

// testStudiesWithinPatients: with Within, only studies linked to one of the patients match;
// a study not linked, or waiting for a person, never does.
func testStudiesWithin(t *testing.T, st PatientAccessStore) {
	ctx := context.Background()
	linked, other, review, unlinked := newInstance(1, 1, 1), newInstance(2, 1, 1), newInstance(3, 1, 1), newInstance(4, 1, 1)
	for _, inst := range []*engine.Instance{linked, other, review, unlinked} {
		putInstance(t, st, inst, true)
	}
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for _, l := range []*engine.StudyLink{
		{StudyInstanceUID: linked.StudyInstanceUID, Status: engine.LinkLinked, PatientID: "p1", Rule: "accession", Score: 1, DecidedAt: at},
		{StudyInstanceUID: other.StudyInstanceUID, Status: engine.LinkLinked, PatientID: "p2", Rule: "accession", Score: 1, DecidedAt: at},
		{StudyInstanceUID: review.StudyInstanceUID, Status: engine.LinkReview, PatientID: "p1", Score: 0.5, DecidedAt: at},
	} {
		if err := st.PutStudyLink(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		f    engine.StudyFilter
		want []string
	}{
		{"p1", engine.StudyFilter{Within: true, WithinPatients: []string{"p1"}}, []string{linked.StudyInstanceUID}},
		{"p1 and p2", engine.StudyFilter{Within: true, WithinPatients: []string{"p1", "p2"}}, []string{linked.StudyInstanceUID, other.StudyInstanceUID}},
		{"none", engine.StudyFilter{Within: true}, nil},
		{"with another key", engine.StudyFilter{Within: true, WithinPatients: []string{"p1", "p2"}, StudyInstanceUIDs: []string{other.StudyInstanceUID}}, []string{other.StudyInstanceUID}},
		{"not within", engine.StudyFilter{}, []string{linked.StudyInstanceUID, other.StudyInstanceUID, review.StudyInstanceUID, unlinked.StudyInstanceUID}},
	} {
		found, err := st.SearchStudies(ctx, tc.f)
		got := studyUIDs(found)
		slices.Sort(got)
		want := slices.Clone(tc.want)
		slices.Sort(want)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: SearchStudies = %v, %v; want %v", tc.name, got, err, want)
		}
	}
}

// PhysicianBenchStore is what BenchPhysicianReads needs: resources and who may see them.
type PhysicianBenchStore interface {
	engine.Store
	access.PatientStore
}

// BenchPhysicianReads measures a FHIR read and a search through access.Reader for a physician
// with 10,000 patients (each with a DiagnosticReport) among 15,000, against the same read and
// search by an admin (not limited): the price of the limit. A read costs one lookup of the
// patient's rows (and one of the Patient to follow merges), not a scan; a search adds the
// physician's patients as one list filter. open must return a fresh, migrated store.
func BenchPhysicianReads(b *testing.B, open func(b *testing.B) PhysicianBenchStore) {
	const own, others = 10_000, 5_000
	st := open(b)
	ctx := context.Background()
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for start := 0; start < own+others; start += 500 {
		tx, err := st.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		var rows []engine.PatientAccess
		for i := start; i < start+500; i++ {
			pid, rid := fmt.Sprintf("p%05d", i), fmt.Sprintf("r%05d", i)
			for _, r := range []struct{ typ, id, extra string }{
				{"Patient", pid, `,"gender":"female"`},
				{"DiagnosticReport", rid, `,"status":"final","code":{"text":"CT"},"subject":{"reference":"Patient/` + pid + `"}`},
			} {
				body := fmt.Sprintf(`{"resourceType":%q,"id":%q,"meta":{"versionId":"1","lastUpdated":"2026-03-01T10:00:00.000Z"}%s}`, r.typ, r.id, r.extra)
				index, err := fhir.Index(r.typ, []byte(body))
				if err != nil {
					b.Fatal(err)
				}
				if err := tx.PutResource(ctx, &engine.Resource{Type: r.typ, ID: r.id, VersionID: 1, LastUpdated: at, JSON: []byte(body), Index: index}); err != nil {
					b.Fatal(err)
				}
			}
			doctor := "DOC"
			if i >= own {
				doctor = "OTHER"
			}
			rows = append(rows, engine.PatientAccess{PatientID: pid, Facility: "STMARYS", System: "urn:npi", Value: doctor})
		}
		if err := tx.AddPatientAccess(ctx, rows); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	// The planner's statistics, as a store that has run a while has them.
	if db, ok := st.(interface{ DB() *sql.DB }); ok {
		if _, err := db.DB().ExecContext(ctx, "ANALYZE"); err != nil {
			b.Fatal(err)
		}
	}
	rd := &access.Reader{Patients: &access.Patients{Store: st, Resources: st}, Resources: st}
	for _, who := range []*access.Identity{
		{User: "adm", Role: access.RoleAdmin},
		{User: "doc", Role: access.RolePhysician, Practitioners: []access.Practitioner{{System: "urn:npi", Value: "DOC"}}},
	} {
		ctx := access.WithIdentity(ctx, who)
		b.Run("read/"+string(who.Role), func(b *testing.B) {
			i := 0
			for b.Loop() {
				i = (i + 7919) % own
				if _, err := rd.Resource(ctx, "DiagnosticReport", fmt.Sprintf("r%05d", i)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("search/"+string(who.Role), func(b *testing.B) {
			for b.Loop() {
				found, err := rd.SearchResources(ctx, engine.ResourceQuery{Type: "DiagnosticReport", Count: 20,
					Filters: []engine.SearchFilter{{Param: "status", Op: engine.SearchEq, Values: []engine.SearchValue{{Value: "final"}}}}})
				if err != nil || len(found) != 20 {
					b.Fatalf("search: %d found, %v", len(found), err)
				}
			}
		})
	}
	// A physician reading another physician's patient is refused as cheaply.
	doc := access.WithIdentity(ctx, &access.Identity{User: "doc", Role: access.RolePhysician, Practitioners: []access.Practitioner{{Value: "DOC"}}})
	if _, err := rd.Resource(doc, "DiagnosticReport", fmt.Sprintf("r%05d", own)); !errors.Is(err, engine.ErrNotFound) {
		b.Fatalf("another physician's report: %v, want ErrNotFound", err)
	}
}
