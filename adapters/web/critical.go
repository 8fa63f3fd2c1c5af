package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/critical"
)

// CriticalAcks records and reads the acknowledgement of critical results (*critical.Service;
// docs/reports.md, "Critical results"). Options.Critical serves POST /reports/{id}/acknowledge
// with it, and the report page shows who acknowledged.
type CriticalAcks interface {
	// Acknowledge records id's acknowledgement of report reportID's critical result, from
	// address; engine.ErrNotFound when it has none or its patient is not id's;
	// critical.ErrNotPhysician or critical.ErrNotTheirPatient when id may not.
	Acknowledge(ctx context.Context, id *access.Identity, reportID, address string) error
	// Acknowledgement returns who acknowledged the report's critical result and when; ok is
	// false when no one has, or it has none.
	Acknowledgement(ctx context.Context, reportID string) (by string, at time.Time, ok bool, err error)
}

// acknowledge serves POST /reports/{id}/acknowledge: the report page's "I have read this" form.
// A signed-in physician with the session's CSRF token acknowledges and goes back to the report
// (303); the service audits the acknowledgement and every refusal.
func (p *pages) acknowledge(c echo.Context) error {
	reportID := c.Param("id")
	back := "/reports/" + url.PathEscape(reportID)
	ident, sess, _ := p.session(c)
	if ident == nil {
		return c.Redirect(http.StatusSeeOther, "/login?next="+url.QueryEscape(back))
	}
	if !sessionForm(c, sess) {
		return echo.NewHTTPError(http.StatusForbidden, "the form had expired: open the report again and acknowledge from it")
	}
	err := p.opt.Critical.Acknowledge(c.Request().Context(), ident, reportID, c.RealIP())
	switch {
	case errors.Is(err, engine.ErrNotFound):
		return echo.NewHTTPError(http.StatusNotFound, "not found")
	case errors.Is(err, critical.ErrNotPhysician), errors.Is(err, critical.ErrNotTheirPatient):
		return echo.NewHTTPError(http.StatusForbidden, err.Error())
	case err != nil:
		return err
	}
	return c.Redirect(http.StatusSeeOther, back)
}
