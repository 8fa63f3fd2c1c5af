package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferryhealth/ferry/adapters/httpapi"
	"github.com/ferryhealth/ferry/adapters/sqlite"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
)

// accessFixture is the API over a real SQLite store with one user of each role, a token each,
// and a patient with a report: what the access tests ask for.
type accessFixture struct {
	store  *sqlite.Store
	svc    *access.Service
	srv    *httptest.Server
	tokens map[string]string // by user
}

const bootstrap = "bootstrap-admin-token-of-the-access-tests"

func newAccessFixture(t *testing.T) *accessFixture { return newAccessFixtureTB(t, true) }

// newAccessFixtureTB is newAccessFixture for tests and benchmarks, with or without the trail.
func newAccessFixtureTB(t testing.TB, trail bool) *accessFixture {
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

	f := &accessFixture{store: st, svc: &access.Service{Store: st, BootstrapToken: bootstrap}, tokens: map[string]string{"bootstrap": bootstrap}}
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
		if err := f.svc.AddUser(ctx, &access.User{Name: u.name, Role: u.role, Practitioners: u.pract}, ""); err != nil {
			t.Fatal(err)
		}
		text, _, err := f.svc.CreateToken(ctx, u.name, u.scopes, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		f.tokens[u.name] = text
	}
	opt := httpapi.Options{Messages: st, Resources: st, Access: f.svc, AuditEvents: st, Gatherer: prometheus.NewRegistry()}
	if trail {
		opt.Audit = &audit.Recorder{Begin: st.Begin}
	}
	api, err := httpapi.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(api)
	t.Cleanup(f.srv.Close)
	return f
}

// do sends a request with a bearer token ("" for none) and returns its status and body.
func (f *accessFixture) do(t *testing.T, method, path, token string, body string, header ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
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
	resp, err := f.srv.Client().Do(req)
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

// events returns the audit trail.
func (f *accessFixture) events(t *testing.T) []*audit.Event {
	t.Helper()
	evs, err := f.store.AuditEvents(context.Background(), audit.Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestAccessMatrix: each identity on each route gets what its role allows — 401 without a valid
// identity, 403 without the permission — and every refusal and every access to patient data
// leaves exactly one audit event naming who, the outcome and, for a record, its patient.
func TestAccessMatrix(t *testing.T) {
	f := newAccessFixture(t)
	ctx := context.Background()
	// A revoked and an expired token of users who exist.
	revoked, tok, err := f.svc.CreateToken(ctx, "ana", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	f.tokens["revoked"] = revoked
	f.tokens["none"] = ""
	f.tokens["garbage"] = "ferry_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

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
	}
	identities := []string{"none", "garbage", "revoked", "bootstrap", "adm", "ana", "rad", "doc", "dictation", "reader"}
	for _, r := range routes {
		for _, who := range identities {
			before := len(f.events(t))
			code, body := f.do(t, r.method, r.path, f.tokens[who], "")
			evs := f.events(t)[before:]
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
			if want == http.StatusOK && e.Patient != r.patient {
				t.Errorf("%s %s as %s: audit event names patient %q, want %q", r.method, r.path, who, e.Patient, r.patient)
			}
		}
	}
	if res, err := audit.Verify(ctx, f.store); err != nil || res.Broken != 0 {
		t.Errorf("audit.Verify after the matrix: %+v, %v", res, err)
	}
}

// TestPeopleAPI: an admin adds a user, makes them a token that works, and revokes it; the
// answers never show a password hash or a stored token hash; every change is audited.
func TestPeopleAPI(t *testing.T) {
	f := newAccessFixture(t)
	adm := f.tokens["adm"]
	code, body := f.do(t, "POST", "/api/v1/users", adm, `{"name":"pscribe","role":"system"}`)
	if code != http.StatusCreated {
		t.Fatalf("POST /api/v1/users: %d %s", code, body)
	}
	if code, body := f.do(t, "POST", "/api/v1/users", adm, `{"name":"pscribe","role":"system"}`); code != http.StatusConflict {
		t.Errorf("adding a taken name: %d %s, want 409", code, body)
	}
	if code, body := f.do(t, "POST", "/api/v1/users", adm, `{"name":"dr.x","role":"physician"}`); code != http.StatusBadRequest {
		t.Errorf("a physician without practitioner: %d %s, want 400", code, body)
	}
	code, body = f.do(t, "POST", "/api/v1/tokens", adm, `{"user":"pscribe","expires":"30d","scopes":["fhir:read"]}`)
	if code != http.StatusCreated {
		t.Fatalf("POST /api/v1/tokens: %d %s", code, body)
	}
	var created struct {
		ID, Token string
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(body, &created); err != nil || created.Token == "" {
		t.Fatalf("token answer %s: %v", body, err)
	}
	if d := time.Until(created.ExpiresAt); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("expires_at %v: want 30 days from now", created.ExpiresAt)
	}
	if code, _ := f.do(t, "GET", "/fhir/r4/Patient/p1", created.Token, ""); code != http.StatusOK {
		t.Errorf("the new token reading a patient: %d, want 200", code)
	}
	if code, _ := f.do(t, "POST", "/api/v1/tokens/"+created.ID+"/revoke", adm, ""); code != http.StatusNoContent {
		t.Errorf("revoke: %d, want 204", code)
	}
	if code, _ := f.do(t, "GET", "/fhir/r4/Patient/p1", created.Token, ""); code != http.StatusUnauthorized {
		t.Errorf("the revoked token: %d, want 401", code)
	}
	_, list := f.do(t, "GET", "/api/v1/tokens", adm, "")
	_, users := f.do(t, "GET", "/api/v1/users", adm, "")
	for _, leak := range []string{"secret_hash", "SecretHash", "password_hash", "argon2", created.Token} {
		if strings.Contains(string(list)+string(users), leak) {
			t.Errorf("a listing shows %q", leak)
		}
	}
	if code, _ := f.do(t, "POST", "/api/v1/users/ana/disable", adm, ""); code != http.StatusNoContent {
		t.Errorf("disable: %d, want 204", code)
	}
	if code, _ := f.do(t, "GET", "/api/v1/messages", f.tokens["ana"], ""); code != http.StatusUnauthorized {
		t.Errorf("a disabled user's token: %d, want 401", code)
	}
	admin := 0
	for _, e := range f.events(t) {
		if e.Action == audit.ActionAdmin && e.Agent == "adm" {
			admin++
		}
	}
	if admin != 5 { // an add and a refused one (taken), a token, a revocation, a disable
		t.Errorf("%d admin audit events by adm, want 5", admin)
	}
}

// TestSessionCSRF: a request made with a session cookie that changes something must carry the
// session's CSRF token; reads need not.
func TestSessionCSRF(t *testing.T) {
	f := newAccessFixture(t)
	ctx := context.Background()
	id, sess, err := f.svc.OpenSession(ctx, "adm")
	if err != nil {
		t.Fatal(err)
	}
	cookie := httpapi.SessionCookie + "=" + id
	if code, body := f.do(t, "GET", "/api/v1/users", "", "", "Cookie", cookie); code != http.StatusOK {
		t.Errorf("GET with the session: %d %s", code, body)
	}
	body := `{"name":"viewer","role":"analyst"}`
	if code, _ := f.do(t, "POST", "/api/v1/users", "", body, "Cookie", cookie); code != http.StatusUnauthorized {
		t.Errorf("POST with the session, no CSRF token: %d, want 401", code)
	}
	if code, _ := f.do(t, "POST", "/api/v1/users", "", body, "Cookie", cookie, httpapi.CSRFHeader, "wrong"); code != http.StatusUnauthorized {
		t.Errorf("POST with a wrong CSRF token: %d, want 401", code)
	}
	if code, b := f.do(t, "POST", "/api/v1/users", "", body, "Cookie", cookie, httpapi.CSRFHeader, sess.CSRFToken); code != http.StatusCreated {
		t.Errorf("POST with the CSRF token: %d %s, want 201", code, b)
	}
}

// TestAuditEventSearch: admins read the trail as FHIR AuditEvents, by agent, patient and date.
func TestAuditEventSearch(t *testing.T) {
	f := newAccessFixture(t)
	f.do(t, "GET", "/fhir/r4/Patient/p1", f.tokens["rad"], "")
	f.do(t, "GET", "/fhir/r4/DiagnosticReport/r1", f.tokens["reader"], "")
	f.do(t, "GET", "/api/v1/messages", f.tokens["doc"], "") // refused
	search := func(q string) []map[string]any {
		t.Helper()
		code, body := f.do(t, "GET", "/fhir/r4/AuditEvent?"+q, f.tokens["adm"], "")
		if code != http.StatusOK {
			t.Fatalf("AuditEvent?%s: %d %s", q, code, body)
		}
		var b struct {
			ResourceType string
			Entry        []struct{ Resource map[string]any }
		}
		if err := json.Unmarshal(body, &b); err != nil || b.ResourceType != "Bundle" {
			t.Fatalf("AuditEvent?%s: %s %v", q, body, err)
		}
		var out []map[string]any
		for _, e := range b.Entry {
			out = append(out, e.Resource)
		}
		return out
	}
	if got := search("agent=rad"); len(got) != 1 || got[0]["resourceType"] != "AuditEvent" || got[0]["action"] != "R" {
		t.Errorf("agent=rad: %v, want one read", got)
	}
	if got := search("patient=Patient/p1"); len(got) != 2 {
		t.Errorf("patient=Patient/p1: %d events, want the two reads", len(got))
	}
	if got := search("agent=doc"); len(got) != 1 || got[0]["outcome"] != "4" {
		t.Errorf("agent=doc: %v, want one refusal (outcome 4)", got)
	}
	if got := search("date=ge2000-01-01&date=lt2000-01-02"); len(got) != 0 {
		t.Errorf("a day long ago: %d events, want 0", len(got))
	}
	// Each search is itself audited: the second sees one more event than the first.
	all := len(search("_count=1000"))
	if got := len(search("date=ge2000-01-01&date=le2999&_count=1000")); got != all+1 {
		t.Errorf("date=ge2000-01-01&date=le2999: %d events, want every one (%d)", got, all+1)
	}
	if got := search("date=2000"); len(got) != 0 {
		t.Errorf("date=2000 (all of a year long ago): %d events, want 0", len(got))
	}
	if code, _ := f.do(t, "GET", "/fhir/r4/AuditEvent?date=xx2026", f.tokens["adm"], ""); code != http.StatusBadRequest {
		t.Errorf("a bad date: %d, want 400", code)
	}
}

// BenchmarkFHIRRead measures a FHIR read through the gate: "bootstrap, no trail" is what a read
// cost before people and access (one constant-time token compare); "user token, audited" is now
// (the token looked up in the store, the read recorded in the audit trail, a commit of its own).
func BenchmarkFHIRRead(b *testing.B) {
	for _, tc := range []struct {
		name  string
		who   string
		trail bool
	}{{"bootstrap, no trail", "bootstrap", false}, {"user token, audited", "reader", true}} {
		b.Run(tc.name, func(b *testing.B) {
			f := newAccessFixtureTB(b, tc.trail)
			req, err := http.NewRequest(http.MethodGet, f.srv.URL+"/fhir/r4/Patient/p1", nil)
			if err != nil {
				b.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+f.tokens[tc.who])
			client := f.srv.Client()
			b.ResetTimer()
			for b.Loop() {
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
