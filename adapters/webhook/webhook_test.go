package webhook_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferryhealth/ferry/adapters/sqlite"
	"github.com/ferryhealth/ferry/adapters/webhook"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/critical"
)

// TestAlertOverdueCriticalResultOnce: a real HTTP server receives the webhook of a critical
// result left unacknowledged past its hour — not before — as JSON with ids only; a 503 is tried
// again after the backoff, a 200 ends it: the alert is accepted once, never sent again; the
// metrics count it overdue until a physician acknowledges it.
func TestAlertOverdueCriticalResultOnce(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	reported := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	tx, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.PutCriticalResult(ctx, &engine.CriticalResult{ReportID: "r1", Version: 1, PatientID: "p1", OrderID: "o1", ReportedAt: reported}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	type received struct {
		body  []byte
		ctype string
	}
	got := make(chan received, 10)
	answers := make(chan int, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 4096)
		n, _ := r.Body.Read(b)
		got <- received{b[:n], r.Header.Get("Content-Type")}
		w.WriteHeader(<-answers)
	}))
	t.Cleanup(srv.Close)
	n, err := webhook.New(srv.URL+"/hooks/ferry", 0)
	if err != nil {
		t.Fatal(err)
	}
	now := reported
	a := &critical.Alerter{Store: st, Notifier: n, Within: time.Hour, Now: func() time.Time { return now },
		ReportURL: func(id string) string { return "https://ferry.example/reports/" + id }}
	pass := func(wantSent int) {
		t.Helper()
		sent, err := a.Pass(ctx)
		if err != nil || sent != wantSent {
			t.Fatalf("pass at %v: sent %d, %v; want %d", now, sent, err, wantSent)
		}
	}
	requests := func() int { return len(got) }

	now = reported.Add(59 * time.Minute)
	pass(0)
	if requests() != 0 {
		t.Fatal("the webhook was called within the hour allowed")
	}
	now = reported.Add(61 * time.Minute)
	answers <- http.StatusServiceUnavailable
	pass(0)
	first := <-got
	now = now.Add(10 * time.Second) // within the backoff: nothing
	pass(0)
	if requests() != 0 {
		t.Fatal("the webhook was called again within the backoff")
	}
	now = now.Add(time.Minute)
	answers <- http.StatusOK
	pass(1)
	second := <-got
	now = now.Add(24 * time.Hour)
	pass(0)
	if requests() != 0 {
		t.Fatal("the webhook was called again after a 200")
	}

	if first.ctype != "application/json" {
		t.Errorf("Content-Type %q", first.ctype)
	}
	var alert map[string]any
	if err := json.Unmarshal(second.body, &alert); err != nil {
		t.Fatalf("body %s: %v", second.body, err)
	}
	want := map[string]any{"event": "critical_result_unacknowledged", "report": "DiagnosticReport/r1", "version": 1.0,
		"service_request": "ServiceRequest/o1", "patient": "Patient/p1", "reported_at": "2026-03-02T08:00:00Z",
		"overdue_seconds": 130.0, "attempt": 2.0, "url": "https://ferry.example/reports/r1"}
	for k, v := range want {
		if alert[k] != v {
			t.Errorf("alert %s = %v, want %v", k, alert[k], v)
		}
	}
	if len(alert) != len(want) {
		t.Errorf("alert %s: want exactly the fields %v (ids and times only)", second.body, want)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(critical.NewCollector(st, time.Hour, nil))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, f := range families {
		values[f.GetName()] = f.GetMetric()[0].GetGauge().GetValue()
	}
	if values["ferry_critical_unacknowledged"] != 1 || values["ferry_critical_unacknowledged_overdue"] != 1 || values["ferry_critical_unacknowledged_oldest_age_seconds"] <= 0 {
		t.Errorf("metrics %v: want 1 unacknowledged, 1 overdue, an age", values)
	}
}

func TestValidate(t *testing.T) {
	for _, bad := range []string{"", "ftp://x/y", "/relative", "http://"} {
		if webhook.Validate(bad) == nil {
			t.Errorf("Validate(%q): no error", bad)
		}
	}
	if err := webhook.Validate("https://pager.example/hooks/ferry"); err != nil {
		t.Error(err)
	}
}
