package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/engine/turnaround"
)

// TurnaroundLog is what the admin API reads of the turnaround clocks: turnaround.Reader.
// Overdue returns the orders turnaround.SLAs.Late finds late at now, oldest study first; Turnaround
// one order's clocks, or engine.ErrNotFound when it has none.
type TurnaroundLog interface {
	Overdue(ctx context.Context, now time.Time, sla turnaround.SLAs, limit int) ([]*turnaround.Clocks, error)
	Turnaround(ctx context.Context, srID string) (*turnaround.Clocks, error)
}

// turnaroundView is one order's clocks as the admin API shows them: its milestones, when the
// preliminary and final are due (from the study, by priority), and which are late and by how
// much. Ids and times only: no patient data.
type turnaroundView struct {
	ServiceRequestID string         `json:"service_request_id"`
	Priority         string         `json:"priority"`
	OrderedAt        time.Time      `json:"ordered_at,omitzero"`
	StudyAt          time.Time      `json:"study_at,omitzero"`
	PreliminaryAt    time.Time      `json:"preliminary_at,omitzero"`
	FinalAt          time.Time      `json:"final_at,omitzero"`
	ClosedAt         time.Time      `json:"closed_at,omitzero"`
	PreliminaryDue   time.Time      `json:"preliminary_due,omitzero"`
	FinalDue         time.Time      `json:"final_due,omitzero"`
	Late             []latenessView `json:"late"`
}

type latenessView struct {
	Stage          string    `json:"stage"` // preliminary or final
	Due            time.Time `json:"due"`
	OverdueBy      string    `json:"overdue_by"` // e.g. "1h15m0s", to the second
	OverdueSeconds int64     `json:"overdue_seconds"`
}

func viewTurnaround(t *turnaround.Clocks, sla turnaround.SLAs, now time.Time) turnaroundView {
	v := turnaroundView{ServiceRequestID: t.ServiceRequestID, Priority: t.Priority, OrderedAt: t.OrderedAt,
		StudyAt: t.StudyAt, PreliminaryAt: t.PreliminaryAt, FinalAt: t.FinalAt, ClosedAt: t.ClosedAt, Late: []latenessView{}}
	v.PreliminaryDue, _ = sla.Due(t, turnaround.Preliminary)
	v.FinalDue, _ = sla.Due(t, turnaround.Final)
	for _, l := range sla.Late(t, now) {
		by := l.By.Truncate(time.Second)
		v.Late = append(v.Late, latenessView{Stage: string(l.Stage), Due: l.Due, OverdueBy: by.String(), OverdueSeconds: int64(by / time.Second)})
	}
	return v
}

type turnaroundAPI struct {
	log    TurnaroundLog
	sla    turnaround.SLAs
	logger *slog.Logger
}

// get answers GET /api/v1/turnaround?overdue=true&limit= — the orders past their SLA, oldest
// study first — or GET /api/v1/turnaround?service_request={id}, one order's clocks (audited).
func (a *turnaroundAPI) get(c echo.Context) error {
	q := c.QueryParams()
	ctx, now := c.Request().Context(), time.Now().UTC()
	srID := strings.TrimPrefix(q.Get("service_request"), "ServiceRequest/")
	switch overdue := q.Get("overdue"); {
	case overdue != "" && overdue != "true" && overdue != "false":
		return echo.NewHTTPError(http.StatusBadRequest, "overdue: want true")
	case overdue == "true" && srID != "":
		return echo.NewHTTPError(http.StatusBadRequest, "give overdue=true or service_request, not both")
	case srID != "":
		t, err := a.log.Turnaround(ctx, srID)
		if err != nil {
			return err // ErrNotFound → 404
		}
		a.logger.Info("audit: turnaround read", "service_request", srID, "remote", c.RealIP())
		return c.JSON(http.StatusOK, viewTurnaround(t, a.sla, now))
	case overdue != "true":
		return echo.NewHTTPError(http.StatusBadRequest, "want overdue=true, or service_request={id}")
	}
	limit, err := intParam(q.Get("limit"), 100, 1, 1000)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "limit: "+err.Error())
	}
	ts, err := a.log.Overdue(ctx, now, a.sla, limit)
	if err != nil {
		return err
	}
	out := struct {
		Now     time.Time        `json:"now"`
		Overdue []turnaroundView `json:"overdue"`
	}{Now: now, Overdue: make([]turnaroundView, len(ts))}
	for i, t := range ts {
		out.Overdue[i] = viewTurnaround(t, a.sla, now)
	}
	a.logger.Info("audit: overdue turnaround listed", "count", len(ts), "remote", c.RealIP())
	return c.JSON(http.StatusOK, out)
}
