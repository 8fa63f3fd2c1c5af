package access

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/engine"
)

// fakeResources holds resources by type/id (a unit boundary: the stores' own behaviour is
// engine/storetest's and the access matrix's).
type fakeResources map[string]*engine.Resource

func (f fakeResources) Resource(_ context.Context, typ, id string) (*engine.Resource, error) {
	if r, ok := f[typ+"/"+id]; ok {
		return r, nil
	}
	return nil, engine.ErrNotFound
}

func (f fakeResources) ResourceVersion(ctx context.Context, typ, id string, _ int64) (*engine.Resource, error) {
	return f.Resource(ctx, typ, id)
}

func (f fakeResources) ResourceHistory(ctx context.Context, typ, id string) ([]*engine.Resource, error) {
	r, err := f.Resource(ctx, typ, id)
	if err != nil {
		return nil, err
	}
	return []*engine.Resource{r}, nil
}

func (f fakeResources) SearchResources(context.Context, engine.ResourceQuery) ([]*engine.Resource, error) {
	return nil, errors.New("not searched in these tests")
}

type fakePatients struct{ rows []engine.PatientAccess }

func (f *fakePatients) PatientAccessOf(_ context.Context, ids []string) ([]engine.PatientAccess, error) {
	var out []engine.PatientAccess
	for _, r := range f.rows {
		for _, id := range ids {
			if r.PatientID == id {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

func (f *fakePatients) PatientsByPractitioner(context.Context, []string) ([]engine.PatientAccess, error) {
	return f.rows, nil
}

func (f *fakePatients) PatientsOfFacilities(context.Context, []string) ([]string, error) {
	return nil, nil
}
func (f *fakePatients) PutBreakGlass(context.Context, *BreakGlass) error { return nil }
func (f *fakePatients) BreakGlassGrants(context.Context, string, time.Time) ([]*BreakGlass, error) {
	return nil, nil
}

// TestReaderLimits: a physician reads its patient's records and records of no patient, is
// refused another's as not found (noted for the audit), and nothing is read without an identity.
func TestReaderLimits(t *testing.T) {
	t.Parallel()
	res := fakeResources{
		"Patient/p1":          {Type: "Patient", ID: "p1", JSON: []byte(`{"resourceType":"Patient","id":"p1"}`)},
		"DiagnosticReport/r2": {Type: "DiagnosticReport", ID: "r2", JSON: []byte(`{"resourceType":"DiagnosticReport","id":"r2","subject":{"reference":"Patient/p2"}}`)},
		"DiagnosticReport/r0": {Type: "DiagnosticReport", ID: "r0", JSON: []byte(`{"resourceType":"DiagnosticReport","id":"r0"}`)},
		"Practitioner/d1":     {Type: "Practitioner", ID: "d1", JSON: []byte(`{"resourceType":"Practitioner","id":"d1"}`)},
	}
	rd := &Reader{Patients: &Patients{Store: &fakePatients{rows: []engine.PatientAccess{{PatientID: "p1", Facility: "F", Value: "DOC"}}}, Resources: res}, Resources: res}
	doc := &Identity{User: "doc", Role: RolePhysician, Practitioners: []Practitioner{{Value: "DOC"}}}
	for _, tc := range []struct {
		name, typ, id string
		who           *Identity
		want          error
		refused       string
	}{
		{"own patient", "Patient", "p1", doc, nil, ""},
		{"another's report", "DiagnosticReport", "r2", doc, engine.ErrNotFound, "Patient/p2"},
		{"a report of no patient", "DiagnosticReport", "r0", doc, engine.ErrNotFound, ""},
		{"a practitioner", "Practitioner", "d1", doc, nil, ""},
		{"an admin, another's report", "DiagnosticReport", "r2", &Identity{User: "adm", Role: RoleAdmin}, nil, ""},
		{"no identity", "Patient", "p1", nil, ErrNoIdentity, ""},
	} {
		d := &Disclosure{}
		ctx := WithDisclosure(context.Background(), d)
		if tc.who != nil {
			ctx = WithIdentity(ctx, tc.who)
		}
		_, err := rd.Resource(ctx, tc.typ, tc.id)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if refused, _ := d.Result(); refused != tc.refused {
			t.Errorf("%s: refused %q noted, want %q", tc.name, refused, tc.refused)
		}
		if _, err := rd.SearchResources(ctx, engine.ResourceQuery{Type: "Practitioner"}); tc.who == nil && !errors.Is(err, ErrNoIdentity) {
			t.Errorf("%s: a search without identity: %v", tc.name, err)
		}
	}
}
