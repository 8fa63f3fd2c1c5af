package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/critical"
)

// Critical results (docs/reports.md, "Critical results"): POST
// /api/v1/reports/{id}/acknowledge records that the calling physician has read the report's
// critical finding. The acknowledgement, and every refusal, is audited by the service.

// CriticalAcks records and reads acknowledgements (*critical.Service).
type CriticalAcks interface {
	// Acknowledge records id's acknowledgement of report reportID's critical result, from
	// address; engine.ErrNotFound when it has none or its patient is not id's, another error
	// naming who may (a physician, not under break-glass) when id may not.
	Acknowledge(ctx context.Context, id *access.Identity, reportID, address string) error
	// Acknowledgement returns who acknowledged the report's critical result and when.
	Acknowledgement(ctx context.Context, reportID string) (by string, at time.Time, ok bool, err error)
}

type acknowledgement struct {
	Report         string    `json:"report"`
	AcknowledgedBy string    `json:"acknowledged_by"`
	AcknowledgedAt time.Time `json:"acknowledged_at"`
}

func acknowledge(acks CriticalAcks) echo.HandlerFunc {
	return func(c echo.Context) error {
		reportID := c.Param("id")
		if !engine.ValidResourceID(reportID) {
			return echo.NewHTTPError(http.StatusNotFound, "not found")
		}
		ctx := c.Request().Context()
		err := acks.Acknowledge(ctx, IdentityOf(c), reportID, c.RealIP())
		switch {
		case errors.Is(err, engine.ErrNotFound):
			return echo.NewHTTPError(http.StatusNotFound, "not found")
		case errors.Is(err, critical.ErrNotPhysician), errors.Is(err, critical.ErrNotTheirPatient):
			return echo.NewHTTPError(http.StatusForbidden, err.Error())
		case err != nil:
			return err
		}
		by, at, _, err := acks.Acknowledgement(ctx, reportID)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, acknowledgement{Report: "DiagnosticReport/" + reportID, AcknowledgedBy: by, AcknowledgedAt: at.UTC()})
	}
}
