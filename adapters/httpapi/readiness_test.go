package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/labstack/echo/v4"
)

// A check that never answers (a frozen database whose driver ignores its context) and one that
// fails: /readyz answers 503 naming both, within readyTimeout.
func TestReadyzDoesNotWaitForAHungCheck(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		hung := make(chan struct{})
		defer close(hung)
		h := readyz([]ReadinessCheck{
			{Name: "store", Check: func(context.Context) error { <-hung; return nil }},
			{Name: "commits", Check: func(context.Context) error { return errors.New("the last commit failed: disk full") }},
			{Name: "instance store", Check: func(context.Context) error { return nil }},
		}, slog.New(slog.DiscardHandler))
		rec := httptest.NewRecorder()
		start := time.Now()
		err := h(echo.New().NewContext(httptest.NewRequest(http.MethodGet, "/readyz", nil), rec))
		var he *echo.HTTPError
		if !errors.As(err, &he) || he.Code != http.StatusServiceUnavailable {
			t.Fatalf("readyz: %v, want 503", err)
		}
		msg, _ := he.Message.(string)
		if !strings.Contains(msg, "store: no answer") || !strings.Contains(msg, "commits: the last commit failed: disk full") || strings.Contains(msg, "instance store") {
			t.Errorf("readyz: %q, want the hung store and the failed commits, not the instance store", msg)
		}
		if took := time.Since(start); took != readyTimeout {
			t.Errorf("answered after %v, want %v", took, readyTimeout)
		}
	})
}

// An advisory check that fails (autovacuum off) leaves Ferry ready and shows as a warning; with
// a real failure as well, the answer is 503 and names only the real one.
func TestReadyzAdvisoryCheckWarns(t *testing.T) {
	t.Parallel()
	autovacuumOff := ReadinessCheck{Name: "maintenance", Advisory: true,
		Check: func(context.Context) error { return errors.New("autovacuum is off") }}
	for _, tc := range []struct {
		name     string
		checks   []ReadinessCheck
		wantCode int
		want     string
	}{
		{"ready with a warning", []ReadinessCheck{{Name: "store", Check: func(context.Context) error { return nil }}, autovacuumOff},
			http.StatusOK, `{"status":"ready","warnings":["maintenance: autovacuum is off"]}`},
		{"not ready", []ReadinessCheck{{Name: "store", Check: func(context.Context) error { return errors.New("down") }}, autovacuumOff},
			http.StatusServiceUnavailable, "not ready: store: down"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			err := readyz(tc.checks, slog.New(slog.DiscardHandler))(echo.New().NewContext(httptest.NewRequest(http.MethodGet, "/readyz", nil), rec))
			var he *echo.HTTPError
			switch {
			case errors.As(err, &he):
				if msg, _ := he.Message.(string); he.Code != tc.wantCode || msg != tc.want {
					t.Errorf("readyz: %d %q, want %d %q", he.Code, msg, tc.wantCode, tc.want)
				}
			case err != nil:
				t.Fatal(err)
			default:
				if got := strings.TrimSpace(rec.Body.String()); rec.Code != tc.wantCode || got != tc.want {
					t.Errorf("readyz: %d %s, want %d %s", rec.Code, got, tc.wantCode, tc.want)
				}
			}
		})
	}
}
