package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/adapters/httpapi"
	"github.com/ferryhealth/ferry/adapters/httpapi/accesstest"
	"github.com/ferryhealth/ferry/engine/turnaround"
)

// syncBuffer is a log destination the handlers write to while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type turnaroundResponse struct {
	ServiceRequestID string    `json:"service_request_id"`
	Priority         string    `json:"priority"`
	StudyAt          time.Time `json:"study_at"`
	PreliminaryAt    time.Time `json:"preliminary_at"`
	PreliminaryDue   time.Time `json:"preliminary_due"`
	FinalDue         time.Time `json:"final_due"`
	Late             []struct {
		Stage          string    `json:"stage"`
		Due            time.Time `json:"due"`
		OverdueBy      string    `json:"overdue_by"`
		OverdueSeconds int64     `json:"overdue_seconds"`
	} `json:"late"`
}

// TestTurnaroundAPI: GET /api/v1/turnaround?overdue=true lists the orders past their SLA with
// the stage that is late and by how much, measured against the SLAs the server was given;
// ?service_request= shows one order's clocks; reads are audited; bad requests are 400.
func TestTurnaroundAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := accesstest.SQLiteStore(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	statLate := now.Add(-45 * time.Minute)
	tx, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		srID, priority string
		stage          turnaround.Stage
		at             time.Time
	}{
		{"sr-stat-late", "stat", turnaround.Ordered, now.Add(-2 * time.Hour)},
		{"sr-stat-late", "stat", turnaround.Study, statLate},
		{"sr-stat-in-time", "stat", turnaround.Study, now.Add(-10 * time.Minute)},
		{"sr-routine-late", "routine", turnaround.Study, now.Add(-30 * time.Hour)},
		{"sr-routine-done", "routine", turnaround.Study, now.Add(-40 * time.Hour)},
		{"sr-routine-done", "routine", turnaround.Final, now.Add(-20 * time.Hour)},
	} {
		if _, err := tx.MarkTurnaround(ctx, m.srID, m.priority, m.stage, m.at); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	logs := &syncBuffer{}
	serve := func(sla turnaround.SLAs) *httptest.Server {
		api, err := httpapi.New(httpapi.Options{Messages: st, AdminToken: token, Turnaround: st, TurnaroundSLAs: sla,
			Logger: slog.New(slog.NewTextHandler(logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(api)
		t.Cleanup(srv.Close)
		return srv
	}
	get := func(srv *httptest.Server, path string, want int, out any) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("GET %s: %d, want %d: %s", path, resp.StatusCode, want, body)
		}
		if out != nil {
			if err := json.Unmarshal(body, out); err != nil {
				t.Fatalf("GET %s: %v in %s", path, err, body)
			}
		}
	}
	defaults := serve(nil)

	var list struct {
		Now     time.Time            `json:"now"`
		Overdue []turnaroundResponse `json:"overdue"`
	}
	get(defaults, "/api/v1/turnaround?overdue=true", http.StatusOK, &list)
	if len(list.Overdue) != 2 || list.Overdue[0].ServiceRequestID != "sr-routine-late" || list.Overdue[1].ServiceRequestID != "sr-stat-late" {
		t.Fatalf("overdue: %+v, want sr-routine-late then sr-stat-late", list.Overdue)
	}
	stat := list.Overdue[1]
	if stat.Priority != "stat" || !stat.StudyAt.Equal(statLate) || !stat.PreliminaryDue.Equal(statLate.Add(30*time.Minute)) ||
		!stat.FinalDue.Equal(statLate.Add(4*time.Hour)) || len(stat.Late) != 1 || stat.Late[0].Stage != "preliminary" {
		t.Errorf("the late stat order: %+v", stat)
	}
	if s := stat.Late[0].OverdueSeconds; s < 15*60 || s > 20*60 || !strings.HasPrefix(stat.Late[0].OverdueBy, "15m") && !strings.HasPrefix(stat.Late[0].OverdueBy, "16m") {
		t.Errorf("the stat order is %s (%ds) late, want about 15 minutes", stat.Late[0].OverdueBy, s)
	}
	if r := list.Overdue[0]; len(r.Late) != 1 || r.Late[0].Stage != "final" || !r.PreliminaryDue.IsZero() {
		t.Errorf("the late routine order (no preliminary SLA): %+v", r)
	}
	get(defaults, "/api/v1/turnaround?overdue=true&limit=1", http.StatusOK, &list)
	if len(list.Overdue) != 1 || list.Overdue[0].ServiceRequestID != "sr-routine-late" {
		t.Errorf("overdue with limit=1: %+v", list.Overdue)
	}

	// The server's SLAs are the ones measured: stat preliminary in 5 minutes, no final SLA.
	strict := serve(turnaround.SLAs{"stat": {Preliminary: 5 * time.Minute}})
	get(strict, "/api/v1/turnaround?overdue=true", http.StatusOK, &list)
	if len(list.Overdue) != 2 || list.Overdue[0].ServiceRequestID != "sr-stat-late" || list.Overdue[1].ServiceRequestID != "sr-stat-in-time" {
		t.Errorf("overdue under a 5-minute stat SLA: %+v, want sr-stat-late, sr-stat-in-time", list.Overdue)
	}

	var one turnaroundResponse
	get(defaults, "/api/v1/turnaround?service_request=ServiceRequest/sr-routine-done", http.StatusOK, &one)
	if one.ServiceRequestID != "sr-routine-done" || one.PreliminaryAt.IsZero() || len(one.Late) != 0 {
		t.Errorf("one order: %+v", one)
	}
	get(defaults, "/api/v1/turnaround?service_request=sr-stat-late", http.StatusOK, &one)
	if len(one.Late) != 1 || one.Late[0].Stage != "preliminary" {
		t.Errorf("one late order: %+v", one)
	}
	get(defaults, "/api/v1/turnaround?service_request=no-such-order", http.StatusNotFound, nil)
	for _, bad := range []string{"", "?overdue=false", "?overdue=yes", "?overdue=true&service_request=sr-stat-late",
		"?overdue=true&limit=0", "?overdue=true&limit=1001"} {
		get(defaults, "/api/v1/turnaround"+bad, http.StatusBadRequest, nil)
	}
	if code, _, _ := (&fixture{srv: defaults}).get(t, "/api/v1/turnaround?overdue=true", ""); code != http.StatusUnauthorized {
		t.Errorf("without the token: %d, want 401", code)
	}
	if l := logs.String(); !strings.Contains(l, "audit: overdue turnaround listed") || !strings.Contains(l, "audit: turnaround read") {
		t.Errorf("reads are not audited:\n%s", l)
	}
}
