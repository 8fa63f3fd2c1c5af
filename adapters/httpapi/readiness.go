package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// ReadinessCheck is one thing /readyz asks before it says ready: that the store answers, that
// it can commit, that the instance store can write. Check returns nil when ready; its error
// text is shown and logged (it must hold no patient data).
type ReadinessCheck struct {
	Name  string
	Check func(ctx context.Context) error
	// Advisory marks a check that does not decide readiness: when it fails, /readyz still
	// answers 200, with the error among its "warnings" (autovacuum off, say).
	Advisory bool
}

// readyTimeout bounds /readyz: a check that has not answered by then (a frozen database, a
// partition) counts as failed, so a balancer hears 503 within 2 s however the store hangs
// (issue 18).
const readyTimeout = 1500 * time.Millisecond

// readyz answers GET /readyz: 200 {"status":"ready"} when every check passes within
// readyTimeout, else 503 {"error":"not ready: NAME: WHY; …"}; an advisory check that fails (or
// does not answer) adds "warnings": ["NAME: WHY", …] to the 200 instead. The checks run at once, each in
// its own goroutine, so one whose call ignores its context cannot hold the answer (that
// goroutine ends when its call does).
func readyz(checks []ReadinessCheck, logger *slog.Logger) echo.HandlerFunc {
	type result struct {
		i   int
		err error
	}
	return func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), readyTimeout)
		defer cancel()
		results := make(chan result, len(checks)) // buffered: a late check never blocks
		for i, rc := range checks {
			go func() { results <- result{i, rc.Check(ctx)} }()
		}
		answered := make([]bool, len(checks))
		var failed, warnings []string
		fail := func(i int, why string) {
			if checks[i].Advisory {
				warnings = append(warnings, checks[i].Name+": "+why)
			} else {
				failed = append(failed, checks[i].Name+": "+why)
			}
		}
	wait:
		for range checks {
			select {
			case r := <-results:
				answered[r.i] = true
				if r.err != nil {
					fail(r.i, r.err.Error())
				}
			case <-ctx.Done():
				break wait
			}
		}
		for i, ok := range answered {
			if !ok {
				fail(i, "no answer within "+readyTimeout.String())
			}
		}
		if len(failed) > 0 {
			slices.Sort(failed)
			logger.Warn("readiness check failed", "failed", strings.Join(failed, "; "))
			return echo.NewHTTPError(http.StatusServiceUnavailable, "not ready: "+strings.Join(failed, "; "))
		}
		if len(warnings) > 0 {
			slices.Sort(warnings)
			return c.JSON(http.StatusOK, map[string]any{"status": "ready", "warnings": warnings})
		}
		return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
	}
}
