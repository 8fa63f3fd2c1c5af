package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferryhealth/ferry/adapters/httpapi"
	"github.com/ferryhealth/ferry/adapters/httpapi/accesstest"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
	"github.com/ferryhealth/ferry/engine/critical"
)

// TestAPIAcknowledgeCriticalResult: POST /api/v1/reports/{id}/acknowledge with a physician's
// token records the acknowledgement and answers who and when; another physician gets 404, a
// radiologist 403, a report with no critical result 404.
func TestAPIAcknowledgeCriticalResult(t *testing.T) {
	st := accesstest.SQLiteStore(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	tx, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.PutResource(ctx, &engine.Resource{Type: "DiagnosticReport", ID: "r1", VersionID: 1, LastUpdated: at,
		JSON: []byte(`{"resourceType":"DiagnosticReport","id":"r1","meta":{"versionId":"1"},"status":"final","subject":{"reference":"Patient/p1"}}`)}); err != nil {
		t.Fatal(err)
	}
	if err := tx.AddPatientAccess(ctx, []engine.PatientAccess{{PatientID: "p1", Facility: "STMARYS", System: "urn:npi", Value: "OWN"}}); err != nil {
		t.Fatal(err)
	}
	if err := tx.PutCriticalResult(ctx, &engine.CriticalResult{ReportID: "r1", Version: 1, PatientID: "p1", OrderID: "s1", ReportedAt: at}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	svc := &access.Service{Store: st}
	tokens := map[string]string{}
	for _, u := range []*access.User{
		{Name: "own", Role: access.RolePhysician, Practitioners: []access.Practitioner{{System: "urn:npi", Value: "OWN"}}},
		{Name: "other", Role: access.RolePhysician, Practitioners: []access.Practitioner{{System: "urn:npi", Value: "OTHER"}}},
		{Name: "rad", Role: access.RoleRadiologist},
	} {
		if err := svc.AddUser(ctx, u, ""); err != nil {
			t.Fatal(err)
		}
		if tokens[u.Name], _, err = svc.CreateToken(ctx, u.Name, nil, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	patients := &access.Patients{Store: st, Resources: st}
	trail := &audit.Recorder{Begin: st.Begin}
	e, err := httpapi.New(httpapi.Options{Messages: st, Resources: st, Access: svc, Patients: patients, Audit: trail,
		Gatherer: prometheus.NewRegistry(), Critical: &critical.Service{Store: st, Patients: patients, Reports: st, Audit: trail}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	post := func(user, report string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/reports/"+report+"/acknowledge", nil)
		req.Header.Set("Authorization", "Bearer "+tokens[user])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	for _, c := range []struct {
		user, report string
		want         int
	}{{"rad", "r1", 403}, {"other", "r1", 404}, {"own", "no-critical", 404}} {
		if code, body := post(c.user, c.report); code != c.want {
			t.Errorf("%s acknowledging %s: %d %s, want %d", c.user, c.report, code, body, c.want)
		}
	}
	code, body := post("own", "r1")
	var got struct {
		Report         string `json:"report"`
		AcknowledgedBy string `json:"acknowledged_by"`
	}
	if err := json.Unmarshal(body, &got); code != 200 || err != nil || got.AcknowledgedBy != "own" || got.Report != "DiagnosticReport/r1" {
		t.Errorf("acknowledging: %d %s, want 200 by own", code, body)
	}
}
