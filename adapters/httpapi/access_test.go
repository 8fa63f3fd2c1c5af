package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/adapters/httpapi"
	"github.com/ferryhealth/ferry/adapters/httpapi/accesstest"
	"github.com/ferryhealth/ferry/engine/audit"
)

// The access matrix runs on both stores (adapters/sqlite and adapters/postgres call
// accesstest.RunMatrix); these are the API's other access tests, on SQLite.

func newAccessFixture(t *testing.T) *accesstest.Fixture {
	return accesstest.NewFixture(t, accesstest.SQLiteStore(t), true)
}

// TestPeopleAPI: an admin adds a user, makes them a token that works, and revokes it; the
// answers never show a password hash or a stored token hash; every change is audited.
func TestPeopleAPI(t *testing.T) {
	f := newAccessFixture(t)
	adm := f.Tokens["adm"]
	code, body := f.Do(t, "POST", "/api/v1/users", adm, `{"name":"pscribe","role":"system"}`)
	if code != http.StatusCreated {
		t.Fatalf("POST /api/v1/users: %d %s", code, body)
	}
	if code, body := f.Do(t, "POST", "/api/v1/users", adm, `{"name":"pscribe","role":"system"}`); code != http.StatusConflict {
		t.Errorf("adding a taken name: %d %s, want 409", code, body)
	}
	if code, body := f.Do(t, "POST", "/api/v1/users", adm, `{"name":"dr.x","role":"physician"}`); code != http.StatusBadRequest {
		t.Errorf("a physician without practitioner: %d %s, want 400", code, body)
	}
	code, body = f.Do(t, "POST", "/api/v1/tokens", adm, `{"user":"pscribe","expires":"30d","scopes":["fhir:read"]}`)
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
	if code, _ := f.Do(t, "GET", "/fhir/r4/Patient/p1", created.Token, ""); code != http.StatusOK {
		t.Errorf("the new token reading a patient: %d, want 200", code)
	}
	if code, _ := f.Do(t, "POST", "/api/v1/tokens/"+created.ID+"/revoke", adm, ""); code != http.StatusNoContent {
		t.Errorf("revoke: %d, want 204", code)
	}
	if code, _ := f.Do(t, "GET", "/fhir/r4/Patient/p1", created.Token, ""); code != http.StatusUnauthorized {
		t.Errorf("the revoked token: %d, want 401", code)
	}
	_, list := f.Do(t, "GET", "/api/v1/tokens", adm, "")
	_, users := f.Do(t, "GET", "/api/v1/users", adm, "")
	for _, leak := range []string{"secret_hash", "SecretHash", "password_hash", "argon2", created.Token} {
		if strings.Contains(string(list)+string(users), leak) {
			t.Errorf("a listing shows %q", leak)
		}
	}
	if code, _ := f.Do(t, "POST", "/api/v1/users/ana/disable", adm, ""); code != http.StatusNoContent {
		t.Errorf("disable: %d, want 204", code)
	}
	if code, _ := f.Do(t, "GET", "/api/v1/messages", f.Tokens["ana"], ""); code != http.StatusUnauthorized {
		t.Errorf("a disabled user's token: %d, want 401", code)
	}
	admin := 0
	for _, e := range f.Events(t) {
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
	id, sess, err := f.Svc.OpenSession(ctx, "adm")
	if err != nil {
		t.Fatal(err)
	}
	cookie := accesstest.SessionCookie + "=" + id
	if code, body := f.Do(t, "GET", "/api/v1/users", "", "", "Cookie", cookie); code != http.StatusOK {
		t.Errorf("GET with the session: %d %s", code, body)
	}
	body := `{"name":"viewer","role":"analyst"}`
	if code, _ := f.Do(t, "POST", "/api/v1/users", "", body, "Cookie", cookie); code != http.StatusUnauthorized {
		t.Errorf("POST with the session, no CSRF token: %d, want 401", code)
	}
	if code, _ := f.Do(t, "POST", "/api/v1/users", "", body, "Cookie", cookie, httpapi.CSRFHeader, "wrong"); code != http.StatusUnauthorized {
		t.Errorf("POST with a wrong CSRF token: %d, want 401", code)
	}
	if code, b := f.Do(t, "POST", "/api/v1/users", "", body, "Cookie", cookie, httpapi.CSRFHeader, sess.CSRFToken); code != http.StatusCreated {
		t.Errorf("POST with the CSRF token: %d %s, want 201", code, b)
	}
}

// TestAuditEventSearch: admins read the trail as FHIR AuditEvents, by agent, patient and date.
func TestAuditEventSearch(t *testing.T) {
	f := newAccessFixture(t)
	f.Do(t, "GET", "/fhir/r4/Patient/p1", f.Tokens["rad"], "")
	f.Do(t, "GET", "/fhir/r4/DiagnosticReport/r1", f.Tokens["reader"], "")
	f.Do(t, "GET", "/api/v1/messages", f.Tokens["doc"], "") // refused
	search := func(q string) []map[string]any {
		t.Helper()
		code, body := f.Do(t, "GET", "/fhir/r4/AuditEvent?"+q, f.Tokens["adm"], "")
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
	if code, _ := f.Do(t, "GET", "/fhir/r4/AuditEvent?date=xx2026", f.Tokens["adm"], ""); code != http.StatusBadRequest {
		t.Errorf("a bad date: %d, want 400", code)
	}
}

// BenchmarkFHIRRead measures a FHIR read through the gate: "bootstrap, no trail" is what a read
// cost before people and access (one constant-time token compare); "user token, audited" is now
// (the token looked up in the store, the read recorded in the audit trail, a commit of its own).
func BenchmarkFHIRRead(b *testing.B) {
	for _, tc := range []struct {
		name     string
		who      string
		trail    bool
		parallel bool // concurrent readers (b.RunParallel, 8 per CPU), each on its own connection
	}{
		{"bootstrap, no trail", "bootstrap", false, false},
		{"user token, audited", "reader", true, false},
		{"user token, audited, parallel", "reader", true, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			f := accesstest.NewFixture(b, accesstest.SQLiteStore(b), tc.trail)
			transport := f.Srv.Client().Transport.(*http.Transport).Clone()
			transport.MaxIdleConnsPerHost = 64 // a connection kept per reader
			client := &http.Client{Transport: transport}
			defer transport.CloseIdleConnections()
			read := func() error {
				req, err := http.NewRequest(http.MethodGet, f.Srv.URL+"/fhir/r4/Patient/p1", nil)
				if err != nil {
					return err
				}
				req.Header.Set("Authorization", "Bearer "+f.Tokens[tc.who])
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("status %d", resp.StatusCode)
				}
				return nil
			}
			b.ResetTimer()
			if !tc.parallel {
				for b.Loop() {
					if err := read(); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := read(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
