package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
)

// Break-glass (docs/security.md): POST /api/v1/break-glass {"patient": "Patient/ID" or "ID",
// "reason": "…"} lets a physician open a patient who is not theirs, for access.Patients'
// BreakGlassFor (1 h unless configured). The grant is audited with its reason (action
// break-glass), and so is every read made under it.

type breakGlassAPI struct {
	patients *access.Patients
	gate     *Gate
}

type breakGlassRequest struct {
	Patient string `json:"patient"`
	Reason  string `json:"reason"`
}

type breakGlassAnswer struct {
	Patient   string    `json:"patient"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (b *breakGlassAPI) open(c echo.Context) error {
	var req breakGlassRequest
	if err := decodeDecision(c, &req); err != nil {
		return err
	}
	id := IdentityOf(c)
	if id.Role != access.RolePhysician {
		// Every other role reaches every patient it may read, or only where it reads for.
		b.gate.Record(c, &audit.Event{Action: audit.ActionBreakGlass, Outcome: audit.OutcomeMinor, Detail: "403: only a physician breaks the glass"})
		return echo.NewHTTPError(http.StatusForbidden, "only a physician breaks the glass")
	}
	pid := strings.TrimPrefix(req.Patient, "Patient/")
	event := &audit.Event{Action: audit.ActionBreakGlass, Outcome: audit.OutcomeMinor}
	if engine.ValidResourceID(pid) {
		event.Patient = "Patient/" + pid
	}
	reason := strings.TrimSpace(req.Reason)
	if !engine.ValidResourceID(pid) || reason == "" || len(reason) > access.MaxBreakGlassReason {
		event.Detail = "400: break-glass needs a patient id and a reason"
		b.gate.Record(c, event)
		return echo.NewHTTPError(http.StatusBadRequest,
			fmt.Sprintf(`want {"patient": "Patient/ID", "reason": "…"} with a reason of 1 to %d characters`, access.MaxBreakGlassReason))
	}
	// The patient must exist: the unlimited reader says so (a physician learns that a record
	// exists only by breaking the glass, which is audited).
	if _, err := b.patients.Resources.Resource(c.Request().Context(), "Patient", pid); errors.Is(err, engine.ErrNotFound) {
		event.Detail = "404: break-glass for an unknown patient"
		b.gate.Record(c, event)
		return echo.NewHTTPError(http.StatusNotFound, "no such patient")
	} else if err != nil {
		return fmt.Errorf("break-glass: reading the patient: %w", err)
	}
	g, err := b.patients.BreakGlass(c.Request().Context(), id, pid, reason)
	if err != nil {
		return fmt.Errorf("break-glass: %w", err)
	}
	event.Outcome, event.Detail = audit.OutcomeSuccess, audit.BreakGlassDetail+g.Reason
	b.gate.Record(c, event)
	return c.JSON(http.StatusCreated, breakGlassAnswer{Patient: "Patient/" + pid, ExpiresAt: g.ExpiresAt})
}
