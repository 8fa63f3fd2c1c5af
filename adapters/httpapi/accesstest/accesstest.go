// Package accesstest is the access matrix of people and access (issue 12), written once and run
// on both stores (adapters/sqlite and adapters/postgres call RunMatrix): every identity on every
// route gets what its role allows — 401 without a valid identity, 403 without the permission —
// and every refusal and every access to patient data leaves exactly one audit event naming who,
// the outcome and, for a record, its patient. Fixture serves adapters/httpapi's own access tests.
package accesstest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
	audit.Reader
	engine.InstanceStore
	Begin(ctx context.Context) (engine.Tx, error)
}

// Fixture is the API over a real store with one user of each role (adm, ana, rad, doc,
// dictation with reports:write, reader with fhir:read), a token each (Tokens, and "bootstrap"),
// Patient/p1 with DiagnosticReport/r1 about it, and DICOMweb with one CT instance (Study,
// Series, Instance) stored through the intake.
type Fixture struct {
	Store  Store
	Svc    *access.Service
	Srv    *httptest.Server
	Tokens map[string]string // by user
}

// SessionCookie is the session cookie the fixture's API takes (adapters/web's name).
const SessionCookie = "ferry_session"

// Bootstrap is the fixture's bootstrap admin token.
const Bootstrap = "bootstrap-admin-token-of-the-access-tests"

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
		{"Patient", "p1", `,"gender":"female"`},
		{"DiagnosticReport", "r1", `,"status":"final","code":{"text":"CT"},"subject":{"reference":"Patient/p1"}`},
	} {
		body := fmt.Sprintf(`{"resourceType":%q,"id":%q,"meta":{"versionId":"1","lastUpdated":"2026-11-27T09:00:00.000Z"}%s}`, r.typ, r.id, r.extra)
		if err := tx.PutResource(ctx, &engine.Resource{Type: r.typ, ID: r.id, VersionID: 1, LastUpdated: at, JSON: []byte(body)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	f := &Fixture{Store: st, Svc: &access.Service{Store: st, BootstrapToken: Bootstrap}, Tokens: map[string]string{"bootstrap": Bootstrap}}
	users := []struct {
		name   string
		role   access.Role
		pract  []access.Practitioner
		scopes []access.Permission
	}{
		{"adm", access.RoleAdmin, nil, nil},
		{"ana", access.RoleAnalyst, nil, nil},
		{"rad", access.RoleRadiologist, []access.Practitioner{{Value: "RAD1"}}, nil},
		{"doc", access.RolePhysician, []access.Practitioner{{System: "urn:npi", Value: "1234567893"}}, nil},
		{"dictation", access.RoleSystem, nil, []access.Permission{access.PermReportsWrite}},
		{"reader", access.RoleSystem, nil, []access.Permission{access.PermFHIRRead}},
	}
	for _, u := range users {
		if err := f.Svc.AddUser(ctx, &access.User{Name: u.name, Role: u.role, Practitioners: u.pract}, ""); err != nil {
			t.Fatal(err)
		}
		text, _, err := f.Svc.CreateToken(ctx, u.name, u.scopes, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		f.Tokens[u.name] = text
	}
	stow := dicomwebOver(t, st)
	opt := httpapi.Options{Messages: st, Resources: st, Access: f.Svc, SessionCookie: SessionCookie, AuditEvents: st,
		Gatherer: prometheus.NewRegistry(), DICOMweb: stow}
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
func dicomwebOver(t testing.TB, st Store) *dicomweb.STOW {
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
	stow, err := dicomweb.NewSTOW(intake, dicomweb.Config{IncomingDir: incoming, Studies: st, Instances: st, DataDir: data,
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
	}
	admins := []string{"bootstrap", "adm"}
	routes := []route{
		{"GET", "/fhir/r4/Patient/p1", true, "Patient/p1", append([]string{"rad", "reader"}, admins...)},
		{"GET", "/fhir/r4/DiagnosticReport/r1", true, "Patient/p1", append([]string{"rad", "reader"}, admins...)},
		{"GET", "/fhir/r4/Patient/p1/_history", true, "Patient/p1", append([]string{"rad", "reader"}, admins...)},
		{"GET", "/api/v1/messages", true, "", append([]string{"ana"}, admins...)},
		{"GET", "/fhir/r4/metadata", false, "", append([]string{"ana", "rad", "doc", "dictation", "reader"}, admins...)},
		{"GET", "/metrics", false, "", admins},
		{"GET", "/debug/pprof/", false, "", admins},
		{"GET", "/api/v1/users", false, "", admins},
		{"GET", "/api/v1/tokens", false, "", admins},
		{"GET", "/fhir/r4/AuditEvent", true, "", admins},
		// DICOMweb: QIDO-RS and WADO-RS (the study is linked to no patient: the audit names none).
		{"GET", "/dicomweb/studies", true, "", append([]string{"rad"}, admins...)},
		{"GET", "/dicomweb/studies/" + Study, true, "", append([]string{"rad"}, admins...)},
		{"GET", "/dicomweb/studies/" + Study + "/metadata", true, "", append([]string{"rad"}, admins...)},
		{"GET", "/dicomweb/studies/" + Study + "/series/" + Series + "/instances/" + Instance + "/frames/1", true, "", append([]string{"rad"}, admins...)},
		{"GET", "/dicomweb/studies/" + Study + "/series/" + Series + "/instances/" + Instance + "/rendered", true, "", append([]string{"rad"}, admins...)},
		{"GET", "/dicomweb/studies/" + Study + "/series/" + Series + "/instances/" + Instance + "/thumbnail", true, "", append([]string{"rad"}, admins...)},
		{"GET", "/dicomweb/studies/" + Study + "/thumbnail", true, "", append([]string{"rad"}, admins...)},
	}
	identities := []string{"none", "garbage", "revoked", "bootstrap", "adm", "ana", "rad", "doc", "dictation", "reader"}
	for _, r := range routes {
		for _, who := range identities {
			before := len(f.Events(t))
			code, body := f.Do(t, r.method, r.path, f.Tokens[who], "")
			evs := f.Events(t)[before:]
			allowed := false
			for _, a := range r.allowed {
				allowed = allowed || a == who
			}
			var want int
			switch {
			case who == "none" || who == "garbage" || who == "revoked":
				want = http.StatusUnauthorized
			case !allowed:
				want = http.StatusForbidden
			default:
				want = http.StatusOK
			}
			if code != want {
				t.Errorf("%s %s as %s: %d, want %d (%s)", r.method, r.path, who, code, want, body)
				continue
			}
			if want == http.StatusUnauthorized && strings.Contains(string(body), "revoked") {
				t.Errorf("%s %s as %s: the 401 says why: %s", r.method, r.path, who, body)
			}
			wantEvents := 0
			if want != http.StatusOK || r.phi {
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
			if want != http.StatusOK {
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
			if want == http.StatusOK && e.Patient != r.patient {
				t.Errorf("%s %s as %s: audit event names patient %q, want %q", r.method, r.path, who, e.Patient, r.patient)
			}
		}
	}
	if res, err := audit.Verify(ctx, f.Store); err != nil || res.Broken != 0 {
		t.Errorf("audit.Verify after the matrix: %+v, %v", res, err)
	}
}
