// Package accesstest is the access matrix of people and access (issue 12), written once and run
// on both stores (adapters/sqlite and adapters/postgres call RunMatrix): every identity on every
// route gets what its role allows — 401 without a valid identity, 403 without the permission —
// and every refusal and every access to patient data leaves exactly one audit event naming who,
// the outcome and, for a record, its patient. Fixture serves adapters/httpapi's own access tests.
package accesstest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferryhealth/ferry/adapters/dicomweb"
	"github.com/ferryhealth/ferry/adapters/httpapi"
	"github.com/ferryhealth/ferry/adapters/sqlite"
	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/dicom/dicomtest"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
	"github.com/ferryhealth/ferry/fhir"
)

// SQLiteStore returns a fresh, migrated SQLite store in t's temporary directory, closed when t
// ends: what the HTTP edge's tests serve.
func SQLiteStore(t testing.TB) *sqlite.Store {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

// Store is what the fixture needs of a store: fresh, migrated and empty.
type Store interface {
	httpapi.MessageLog
	httpapi.FHIRResources
	access.Store
	access.PatientStore
	audit.Reader
	engine.InstanceStore
	httpapi.StudyLog
	httpapi.DeliveryLog
	httpapi.ErrorQueue
	Begin(ctx context.Context) (engine.Tx, error)
}

// Fixture is the API over a real store with one user of each role (adm, ana, rad limited to
// facility stmarys, doc the physician with practitioner urn:npi|1234567893, dictation with
// reports:write, reader with fhir:read), a token each (Tokens, and "bootstrap"), and these
// records:
//
//   - Patient/p1, doc's patient (an order from STMARYS names doc), with DiagnosticReport/r1
//     and ServiceRequest/s1;
//   - Patient/p0, merged into p1 (replaced-by): doc's patient through the merge;
//   - Patient/p2, another physician's at another hospital (OTHERH), with DiagnosticReport/r2.
//
// and DICOMweb with one CT instance (Study, Series, Instance) stored through the intake and
// linked to no patient: only admins reach it.
type Fixture struct {
	Store    Store
	Svc      *access.Service
	Patients *access.Patients
	Srv      *httptest.Server
	Tokens   map[string]string // by user
	// Now is the time the fixture's break-glass grants are judged at; tests move it.
	Now time.Time
}

// SessionCookie is the session cookie the fixture's API takes (adapters/web's name).
const SessionCookie = "ferry_session"

// Bootstrap is the fixture's bootstrap admin token.
const Bootstrap = "bootstrap-admin-token-of-the-access-tests"

// DocNPI is the fixture physician's practitioner identifier.
var DocNPI = access.Practitioner{System: "urn:npi", Value: "1234567893"}

// NewFixture serves the API over st, a fresh, migrated, empty store, recording the audit trail
// when trail is set.
func NewFixture(t testing.TB, st Store, trail bool) *Fixture {
	t.Helper()
	ctx := context.Background()
	tx, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	for _, r := range []struct{ typ, id, extra string }{
		{"Patient", "p1", `,"gender":"female","link":[{"other":{"reference":"Patient/p0"},"type":"replaces"}]`},
		{"Patient", "p0", `,"active":false,"link":[{"other":{"reference":"Patient/p1"},"type":"replaced-by"}]`},
		{"Patient", "p2", `,"gender":"male"`},
		{"DiagnosticReport", "r1", `,"status":"final","code":{"text":"CT"},"subject":{"reference":"Patient/p1"}`},
		{"DiagnosticReport", "r2", `,"status":"final","code":{"text":"MR"},"subject":{"reference":"Patient/p2"}`},
		{"ServiceRequest", "s1", `,"status":"active","intent":"order","code":{"text":"CT"},"subject":{"reference":"Patient/p1"}`},
	} {
		body := fmt.Sprintf(`{"resourceType":%q,"id":%q,"meta":{"versionId":"1","lastUpdated":"2026-11-27T09:00:00.000Z"}%s}`, r.typ, r.id, r.extra)
		index, err := fhir.Index(r.typ, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.PutResource(ctx, &engine.Resource{Type: r.typ, ID: r.id, VersionID: 1, LastUpdated: at, JSON: []byte(body), Index: index}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.AddPatientAccess(ctx, []engine.PatientAccess{
		{PatientID: "p1", Facility: "STMARYS", System: DocNPI.System, Value: DocNPI.Value},
		{PatientID: "p2", Facility: "OTHERH", System: "urn:npi", Value: "9999999991"},
	}); err != nil {
		t.Fatal(err)
	}
	// p0 was merged into p1: each takes the other's rows, as the merge's transaction does.
	if err := tx.SharePatientAccess(ctx, "p0", "p1"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	f := &Fixture{Store: st, Svc: &access.Service{Store: st, BootstrapToken: Bootstrap}, Tokens: map[string]string{"bootstrap": Bootstrap}, Now: at}
	f.Patients = &access.Patients{Store: st, Resources: st, SendingFacilities: map[string]string{"stmarys": "STMARYS"},
		Now: func() time.Time { return f.Now }}
	users := []struct {
		name   string
		role   access.Role
		pract  []access.Practitioner
		facs   []string
		scopes []access.Permission
	}{
		{"adm", access.RoleAdmin, nil, nil, nil},
		{"ana", access.RoleAnalyst, nil, nil, nil},
		{"rad", access.RoleRadiologist, []access.Practitioner{{Value: "RAD1"}}, []string{"stmarys"}, nil},
		{"doc", access.RolePhysician, []access.Practitioner{DocNPI}, nil, nil},
		{"dictation", access.RoleSystem, nil, nil, []access.Permission{access.PermReportsWrite}},
		{"reader", access.RoleSystem, nil, nil, []access.Permission{access.PermFHIRRead}},
	}
	for _, u := range users {
		if err := f.Svc.AddUser(ctx, &access.User{Name: u.name, Role: u.role, Practitioners: u.pract, Facilities: u.facs}, ""); err != nil {
			t.Fatal(err)
		}
		text, _, err := f.Svc.CreateToken(ctx, u.name, u.scopes, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		f.Tokens[u.name] = text
	}
	stow := dicomwebOver(t, st, f.Patients)
	opt := httpapi.Options{Messages: st, Resources: st, Access: f.Svc, SessionCookie: SessionCookie, AuditEvents: st,
		Gatherer: prometheus.NewRegistry(), Patients: f.Patients, DICOMweb: stow,
		Studies: st, Deliveries: st, ErrorQueue: st}
	if trail {
		opt.Audit = &audit.Recorder{Begin: st.Begin}
	}
	api, err := httpapi.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	f.Srv = httptest.NewServer(api)
	t.Cleanup(f.Srv.Close)
	return f
}

// The fixture's DICOM instance.
const (
	Study    = "1.2.826.0.1.3680043.10.1081.12.1"
	Series   = Study + ".1"
	Instance = Series + ".1"
)

// dicomwebOver serves DICOMweb (STOW-RS, QIDO-RS, WADO-RS) over st, with Instance stored through
// the intake as C-STORE and STOW-RS store one.
func dicomwebOver(t testing.TB, st Store, patients *access.Patients) *dicomweb.STOW {
	t.Helper()
	data := t.TempDir()
	incoming := filepath.Join(data, ".incoming")
	if err := os.MkdirAll(incoming, 0o750); err != nil {
		t.Fatal(err)
	}
	intake := &engine.Intake{Store: st, Dir: data}
	ds := dicomtest.Instance(dicomtest.CTImageStorage, Instance, 16*16*2)
	ds.Set(dicom.NewString(dicom.TagStudyInstanceUID, dicom.VRUI, Study))
	ds.Set(dicom.NewString(dicom.TagSeriesInstanceUID, dicom.VRUI, Series))
	path := dicomtest.WriteInstance(t, incoming, "ct.dcm", ds)
	hdr, err := dicom.ReadInstance(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	inst := engine.NewInstance(hdr, path)
	inst.ReceivedAt, inst.SHA256 = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC), "fixture"
	if _, err := intake.StoreInstance(context.Background(), inst, path); err != nil {
		t.Fatal(err)
	}
	stow, err := dicomweb.NewSTOW(intake, dicomweb.Config{IncomingDir: incoming, Studies: &access.Studies{Patients: patients, Studies: st}, Instances: st, DataDir: data,
		AuditPatient: httpapi.SetAuditPatient})
	if err != nil {
		t.Fatal(err)
	}
	return stow
}

// Do sends a request with a bearer token ("" for none) and returns its status and body.
func (f *Fixture) Do(t testing.TB, method, path, token string, body string, header ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.Srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := f.Srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// Events returns the audit trail.
func (f *Fixture) Events(t testing.TB) []*audit.Event {
	t.Helper()
	evs, err := f.Store.AuditEvents(context.Background(), audit.Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// RunMatrix runs the access matrix on st, a fresh, migrated, empty store.
func RunMatrix(t *testing.T, st Store) {
	f := NewFixture(t, st, true)
	ctx := context.Background()
	// A revoked and an expired token of users who exist.
	revoked, tok, err := f.Svc.CreateToken(ctx, "ana", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Svc.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	f.Tokens["revoked"] = revoked
	f.Tokens["none"] = ""
	f.Tokens["garbage"] = "ferry_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

	type route struct {
		method, path string
		phi          bool   // an access to patient data: audited when allowed
		patient      string // the patient its audit event names
		allowed      []string
		// hidden are the identities the record is not found for (404: another patient's),
		// audited as refused, naming the patient.
		hidden []string
	}
	admins := []string{"bootstrap", "adm"}
	readers := append([]string{"rad", "reader", "doc"}, admins...)
	notDoc := append([]string{"rad", "reader"}, admins...)
	routes := []route{
		{"GET", "/fhir/r4/Patient/p1", true, "Patient/p1", readers, nil},
		{"GET", "/fhir/r4/DiagnosticReport/r1", true, "Patient/p1", readers, nil},
		{"GET", "/fhir/r4/Patient/p1/_history", true, "Patient/p1", readers, nil},
		{"GET", "/fhir/r4/Patient/p1/_history/1", true, "Patient/p1", readers, nil},
		{"GET", "/fhir/r4/ServiceRequest/s1", true, "Patient/p1", readers, nil},
		// Merged into p1: doc's patient through the merge; rad's (p1's facility) alike.
		{"GET", "/fhir/r4/Patient/p0", true, "Patient/p0", readers, nil},
		// Another hospital's patient of another physician.
		{"GET", "/fhir/r4/Patient/p2", true, "Patient/p2", notDoc, []string{"doc", "rad"}},
		{"GET", "/fhir/r4/DiagnosticReport/r2", true, "Patient/p2", notDoc, []string{"doc", "rad"}},
		{"GET", "/fhir/r4/Patient/p2/_history", true, "Patient/p2", notDoc, []string{"doc", "rad"}},
		{"GET", "/fhir/r4/DiagnosticReport/r2/_history/1", true, "Patient/p2", notDoc, []string{"doc", "rad"}},
		// Searches: each finds only the caller's patients' records (checked below).
		{"GET", "/fhir/r4/DiagnosticReport?patient=p1", true, "Patient/p1", readers, nil},
		{"GET", "/api/v1/messages", true, "", append([]string{"ana"}, admins...), nil},
		{"GET", "/api/v1/messages?queue=errors", true, "", append([]string{"ana"}, admins...), nil},
		{"GET", "/api/v1/messages/export?format=hl7", true, "", append([]string{"ana"}, admins...), nil},
		{"GET", "/fhir/r4/metadata", false, "", append([]string{"ana", "rad", "doc", "dictation", "reader"}, admins...), nil},
		{"GET", "/metrics", false, "", admins, nil},
		{"GET", "/debug/pprof/", false, "", admins, nil},
		{"GET", "/api/v1/users", false, "", admins, nil},
		{"GET", "/api/v1/tokens", false, "", admins, nil},
		{"GET", "/fhir/r4/AuditEvent", true, "", admins, nil},
		// DICOMweb: QIDO-RS finds nothing for doc and rad (the study is linked to no patient, so
		// it is no one's); WADO-RS answers them 404. The audit names no patient.
		{"GET", "/dicomweb/studies", true, "", append([]string{"rad", "doc"}, admins...), nil},
		{"GET", "/dicomweb/studies/" + Study, true, "", admins, []string{"rad", "doc"}},
		{"GET", "/dicomweb/studies/" + Study + "/metadata", true, "", admins, []string{"rad", "doc"}},
		{"GET", "/dicomweb/studies/" + Study + "/series/" + Series + "/instances/" + Instance + "/frames/1", true, "", admins, []string{"rad", "doc"}},
		{"GET", "/dicomweb/studies/" + Study + "/series/" + Series + "/instances/" + Instance + "/rendered", true, "", admins, []string{"rad", "doc"}},
		{"GET", "/dicomweb/studies/" + Study + "/series/" + Series + "/instances/" + Instance + "/thumbnail", true, "", admins, []string{"rad", "doc"}},
		{"GET", "/dicomweb/studies/" + Study + "/thumbnail", true, "", admins, []string{"rad", "doc"}},
	}
	identities := []string{"none", "garbage", "revoked", "bootstrap", "adm", "ana", "rad", "doc", "dictation", "reader"}
	for _, r := range routes {
		for _, who := range identities {
			before := len(f.Events(t))
			code, body := f.Do(t, r.method, r.path, f.Tokens[who], "")
			evs := f.Events(t)[before:]
			allowed := slices.Contains(r.allowed, who)
			hidden := slices.Contains(r.hidden, who)
			var want int
			switch {
			case who == "none" || who == "garbage" || who == "revoked":
				want = http.StatusUnauthorized
			case hidden:
				want = http.StatusNotFound
			case !allowed:
				want = http.StatusForbidden
			case r.path == "/dicomweb/studies" && (who == "doc" || who == "rad"):
				want = http.StatusNoContent // a search that finds none of theirs
			default:
				want = http.StatusOK
			}
			found := want == http.StatusOK || want == http.StatusNoContent
			if code != want {
				t.Errorf("%s %s as %s: %d, want %d (%s)", r.method, r.path, who, code, want, body)
				continue
			}
			if want == http.StatusUnauthorized && strings.Contains(string(body), "revoked") {
				t.Errorf("%s %s as %s: the 401 says why: %s", r.method, r.path, who, body)
			}
			if want == http.StatusNotFound && strings.Contains(string(body), "patients") {
				t.Errorf("%s %s as %s: the 404 says why: %s", r.method, r.path, who, body)
			}
			wantEvents := 0
			if !found || r.phi {
				wantEvents = 1
			}
			if len(evs) != wantEvents {
				t.Errorf("%s %s as %s: %d audit events, want %d", r.method, r.path, who, len(evs), wantEvents)
				continue
			}
			if wantEvents == 0 {
				continue
			}
			e := evs[0]
			wantOutcome := audit.OutcomeSuccess
			if !found {
				wantOutcome = audit.OutcomeMinor
			}
			wantAgent := who
			switch who {
			case "bootstrap":
				wantAgent = access.BootstrapAdmin
			case "none", "garbage":
				wantAgent = ""
			case "revoked":
				wantAgent = "ana"
			}
			if e.Outcome != wantOutcome || e.Agent != wantAgent || e.Address != "127.0.0.1" ||
				!strings.Contains(e.Entity, r.path) {
				t.Errorf("%s %s as %s: audit event %+v, want outcome %s, agent %q, address 127.0.0.1", r.method, r.path, who, e, wantOutcome, wantAgent)
			}
			if want == http.StatusOK && strings.HasPrefix(r.path, "/dicomweb/studies/") && e.Action != audit.ActionRead {
				t.Errorf("%s %s as %s: audited as %q, want a read (a WADO-RS retrieval)", r.method, r.path, who, e.Action)
			}
			if (found || hidden) && e.Patient != r.patient {
				t.Errorf("%s %s as %s: audit event names patient %q, want %q", r.method, r.path, who, e.Patient, r.patient)
			}
			// A record the filter hid says so; a study outside the caller's reach is not found by
			// the study search WADO-RS looks it up with, so its row is the 404 alone.
			if hidden && !strings.HasPrefix(r.path, "/dicomweb/") && !strings.Contains(e.Detail, "refused") {
				t.Errorf("%s %s as %s: audit event detail %q does not say refused", r.method, r.path, who, e.Detail)
			}
		}
	}

	// Searches find only the caller's patients' records, whatever they ask for.
	for _, tc := range []struct {
		who, path string
		want      []string // ids found
	}{
		{"doc", "/fhir/r4/DiagnosticReport", []string{"r1"}},
		{"doc", "/fhir/r4/DiagnosticReport?patient=p2", nil},
		{"doc", "/fhir/r4/Patient", []string{"p0", "p1"}},
		{"doc", "/fhir/r4/ServiceRequest", []string{"s1"}},
		{"rad", "/fhir/r4/DiagnosticReport", []string{"r1"}},
		{"reader", "/fhir/r4/DiagnosticReport", []string{"r1", "r2"}},
		{"adm", "/fhir/r4/Patient", []string{"p0", "p1", "p2"}},
	} {
		code, body := f.Do(t, "GET", tc.path, f.Tokens[tc.who], "")
		if got := bundleIDs(t, body); code != http.StatusOK || !slices.Equal(got, tc.want) {
			t.Errorf("GET %s as %s: %d, found %v, want %v", tc.path, tc.who, code, got, tc.want)
		}
	}
	runBreakGlass(t, f)
	runAuditedChanges(t, f)
	if res, err := audit.Verify(ctx, f.Store); err != nil || res.Broken != 0 {
		t.Errorf("audit.Verify after the matrix: %+v, %v", res, err)
	}
}

// bundleIDs returns the ids of a searchset's entries, sorted.
func bundleIDs(t testing.TB, body []byte) []string {
	t.Helper()
	var b struct {
		Entry []struct {
			Resource struct {
				ID string `json:"id"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("reading a Bundle: %v", err)
	}
	var ids []string
	for _, e := range b.Entry {
		ids = append(ids, e.Resource.ID)
	}
	slices.Sort(ids)
	return ids
}

// runBreakGlass: a physician opens another patient's record by giving a reason; the grant and
// every read under it are audited as break-glass (AuditEvent purposeOfUse BTG), and it ends
// when its time is up.
func runBreakGlass(t *testing.T, f *Fixture) {
	doc := f.Tokens["doc"]
	lastEvent := func() *audit.Event {
		evs := f.Events(t)
		return evs[len(evs)-1]
	}
	for _, tc := range []struct {
		who, body string
		want      int
	}{
		{"doc", `{"patient":"Patient/p2"}`, http.StatusBadRequest},
		{"doc", `{"patient":"Patient/nobody","reason":"ED consult"}`, http.StatusNotFound},
		{"adm", `{"patient":"Patient/p2","reason":"ED consult"}`, http.StatusForbidden},
		{"ana", `{"patient":"Patient/p2","reason":"ED consult"}`, http.StatusForbidden},
	} {
		if code, body := f.Do(t, "POST", "/api/v1/break-glass", f.Tokens[tc.who], tc.body); code != tc.want {
			t.Errorf("break-glass %s as %s: %d, want %d (%s)", tc.body, tc.who, code, tc.want, body)
		}
		if e := lastEvent(); e.Outcome != audit.OutcomeMinor || e.Agent != tc.who {
			t.Errorf("break-glass %s as %s: audit event %+v, want a refusal", tc.body, tc.who, e)
		}
	}
	if code, _ := f.Do(t, "GET", "/fhir/r4/Patient/p2", doc, ""); code != http.StatusNotFound {
		t.Fatalf("before break-glass: Patient/p2 as doc: %d, want 404", code)
	}
	code, body := f.Do(t, "POST", "/api/v1/break-glass", doc, `{"patient":"Patient/p2","reason":"ED consult, attending away"}`)
	if code != http.StatusCreated || !strings.Contains(string(body), `"expires_at":"2026-11-27T10:00:00Z"`) {
		t.Fatalf("break-glass: %d %s, want 201 expiring in an hour", code, body)
	}
	if e := lastEvent(); e.Action != audit.ActionBreakGlass || e.Outcome != audit.OutcomeSuccess || e.Patient != "Patient/p2" ||
		e.Detail != audit.BreakGlassDetail+"ED consult, attending away" {
		t.Errorf("break-glass: audit event %+v", e)
	}
	for _, path := range []string{"/fhir/r4/Patient/p2", "/fhir/r4/DiagnosticReport/r2", "/fhir/r4/DiagnosticReport?patient=p2"} {
		code, body := f.Do(t, "GET", path, doc, "")
		if code != http.StatusOK || !strings.Contains(string(body), "p2") {
			t.Errorf("under break-glass: GET %s as doc: %d %s", path, code, body)
		}
		if e := lastEvent(); e.Outcome != audit.OutcomeSuccess || !strings.HasPrefix(e.Detail, audit.BreakGlassDetail) {
			t.Errorf("under break-glass: GET %s: audit event %+v, want flagged break-glass", path, e)
		}
	}
	// doc's own patient is not read under the grant.
	f.Do(t, "GET", "/fhir/r4/Patient/p1", doc, "")
	if e := lastEvent(); e.Detail != "" {
		t.Errorf("own patient during a break-glass: audit detail %q, want none", e.Detail)
	}
	// The trail shows the purpose of use.
	if code, body := f.Do(t, "GET", "/fhir/r4/AuditEvent?agent=doc&patient=Patient/p2", f.Tokens["adm"], ""); code != http.StatusOK ||
		!strings.Contains(string(body), `"code":"BTG"`) {
		t.Errorf("AuditEvent of doc's break-glass reads: %d, want purposeOfUse BTG: %s", code, body)
	}
	// An hour later the grant has ended.
	f.Now = f.Now.Add(time.Hour + time.Second)
	if code, _ := f.Do(t, "GET", "/fhir/r4/Patient/p2", doc, ""); code != http.StatusNotFound {
		t.Errorf("after the grant expired: Patient/p2 as doc: %d, want 404", code)
	}
}

// runAuditedChanges: a person's link, unlink, replay and dismissal each leave exactly one audit
// row — committed with the change when it was made (naming the patient linked or taken off),
// the refusal when it was not — never a success row for a change that did not happen.
func runAuditedChanges(t *testing.T, f *Fixture) {
	t.Helper()
	type want struct {
		code    int
		action  audit.Action
		outcome audit.Outcome
		patient string
	}
	for _, tc := range []struct {
		who, method, path, body string
		want                    want
	}{
		{"doc", "POST", "/api/v1/studies/" + Study + "/link", `{"patient_id":"p1","reason":"mine"}`,
			want{http.StatusForbidden, audit.ActionLink, audit.OutcomeMinor, ""}},
		{"ana", "POST", "/api/v1/studies/" + Study + "/link", `{"patient_id":"p1","reason":"checked the requisition"}`,
			want{http.StatusOK, audit.ActionLink, audit.OutcomeSuccess, "Patient/p1"}},
		{"ana", "POST", "/api/v1/studies/" + Study + "/link", `{"patient_id":"nobody","reason":"typo"}`,
			want{http.StatusUnprocessableEntity, audit.ActionLink, audit.OutcomeMinor, ""}},
		{"ana", "POST", "/api/v1/studies/" + Study + "/unlink", `{"reason":"wrong patient after all"}`,
			want{http.StatusOK, audit.ActionLink, audit.OutcomeSuccess, "Patient/p1"}},
		{"ana", "POST", "/api/v1/deliveries/999999/replay", `{"reason":"EHR fixed"}`,
			want{http.StatusConflict, audit.ActionReplay, audit.OutcomeMinor, ""}},
		{"ana", "POST", "/api/v1/messages/999999/dismiss", `{"reason":"duplicate"}`,
			want{http.StatusNotFound, audit.ActionUpdate, audit.OutcomeMinor, ""}},
	} {
		before := len(f.Events(t))
		code, body := f.Do(t, tc.method, tc.path, f.Tokens[tc.who], tc.body)
		evs := f.Events(t)[before:]
		if code != tc.want.code {
			t.Errorf("%s %s as %s: %d, want %d (%s)", tc.method, tc.path, tc.who, code, tc.want.code, body)
			continue
		}
		if len(evs) != 1 {
			t.Errorf("%s %s as %s: %d audit events, want 1: %+v", tc.method, tc.path, tc.who, len(evs), evs)
			continue
		}
		if e := evs[0]; e.Action != tc.want.action || e.Outcome != tc.want.outcome || e.Patient != tc.want.patient ||
			e.Agent != tc.who || !strings.Contains(e.Entity, tc.path) {
			t.Errorf("%s %s as %s: audit event %+v, want %s, outcome %s, patient %q", tc.method, tc.path, tc.who, e,
				tc.want.action, tc.want.outcome, tc.want.patient)
		}
	}
}
