package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/outbox"
)

// DeliveryLog is what the admin API reads and replays of the report outbox: outbox.Store's
// part (engine.DeliveryLog).
type DeliveryLog = engine.DeliveryLog

// DeliveryRenderer builds a delivery's message again with the mappings in force:
// engine.Reports.Rerender.
type DeliveryRenderer = engine.DeliveryRenderer

// deliveryView is one delivery as the admin API shows it. The payload (the ORU or the FHIR
// Bundle: patient data) is shown only for one delivery, never in the list.
type deliveryView struct {
	ID             int64     `json:"id"`
	ReportID       string    `json:"report_id"`
	ReportVersion  int64     `json:"report_version"`
	Destination    string    `json:"destination"`
	Kind           string    `json:"kind"`
	Status         string    `json:"status"`
	ControlID      string    `json:"control_id"`
	MappingVersion string    `json:"mapping_version,omitempty"`
	Attempts       int       `json:"attempts"`
	NextAttemptAt  time.Time `json:"next_attempt_at,omitzero"`
	LastError      string    `json:"last_error,omitempty"`
	Response       string    `json:"response,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	DeliveredAt    time.Time `json:"delivered_at,omitzero"`
	Payload        string    `json:"payload,omitempty"`
}

func viewDelivery(d *outbox.Delivery, withPayload bool) deliveryView {
	v := deliveryView{ID: d.ID, ReportID: d.ReportID, ReportVersion: d.ReportVersion, Destination: d.Destination,
		Kind: d.Kind, Status: string(d.Status), ControlID: d.ControlID, MappingVersion: d.MappingVersion, Attempts: d.Attempts, LastError: d.LastError,
		Response: d.Response, CreatedAt: d.CreatedAt, DeliveredAt: d.DeliveredAt}
	if d.Status == outbox.Pending {
		v.NextAttemptAt = d.NextAttemptAt
	}
	if withPayload {
		// HL7 segments end in CR: shown one per line.
		v.Payload = strings.ReplaceAll(string(d.Payload), "\r", "\n")
	}
	return v
}

type deliveryAPI struct {
	log    DeliveryLog
	replay *engine.DeliveryReplay
	ml     *messageLog
}

// list answers GET /api/v1/deliveries?status=&report=&destination=&limit=&offset=, newest
// first: with status=dead, the dead-letter list.
func (a *deliveryAPI) list(c echo.Context) error {
	q := c.QueryParams()
	f := outbox.Filter{Status: outbox.Status(q.Get("status")), ReportID: q.Get("report"), Destination: q.Get("destination")}
	switch f.Status {
	case "", outbox.Pending, outbox.Delivered, outbox.Dead:
	default:
		return echo.NewHTTPError(http.StatusBadRequest, "status: want pending, delivered or dead")
	}
	var err error
	if f.Limit, err = intParam(q.Get("limit"), 100, 1, 1000); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "limit: "+err.Error())
	}
	if f.Offset, err = intParam(q.Get("offset"), 0, 0, 1<<30); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "offset: "+err.Error())
	}
	ds, err := a.log.Deliveries(c.Request().Context(), f)
	if err != nil {
		return err
	}
	out := struct {
		Deliveries []deliveryView `json:"deliveries"`
		Next       *int           `json:"next,omitempty"`
	}{Deliveries: make([]deliveryView, len(ds))}
	for i, d := range ds {
		out.Deliveries[i] = viewDelivery(d, false)
	}
	if len(ds) == f.Limit {
		next := f.Offset + f.Limit
		out.Next = &next
	}
	a.ml.logger.Info("audit: deliveries listed", "status", string(f.Status), "count", len(ds), "remote", c.RealIP())
	return c.JSON(http.StatusOK, out)
}

// get answers GET /api/v1/deliveries/{id}: the delivery with its payload (audited).
func (a *deliveryAPI) get(c echo.Context) error {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "id: want a number")
	}
	d, err := a.log.Delivery(c.Request().Context(), id)
	if err != nil {
		return err // ErrNotFound → 404
	}
	a.ml.logger.Info("audit: delivery read", "delivery", id, "report", d.ReportID, "remote", c.RealIP())
	return c.JSON(http.StatusOK, viewDelivery(d, true))
}

// replay answers POST /api/v1/deliveries/{id}/replay {"user","reason"}: a dead letter is sent
// again, first in its queue's order, with the same MSH-10, its message built again with the
// mappings in force — so that a corrected mapping takes effect (audited: who, when, why). When
// it still cannot be built the delivery stays dead and the answer (422) says why.
func (a *deliveryAPI) replayOne(c echo.Context) error {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "id: want a number")
	}
	var req unlinkRequest // who and why, as a reconciliation decision
	if err := decodeDecision(c, &req); err != nil {
		return err
	}
	req.User = actingUser(c, req.User)
	if problems := auditProblems(req.User, strings.TrimSpace(req.Reason)); len(problems) > 0 {
		return echo.NewHTTPError(http.StatusBadRequest, strings.Join(problems, "; "))
	}
	ctx := c.Request().Context()
	// The audit event committed with the replay names the delivery's patient.
	if d, err := a.log.Delivery(ctx, id); err == nil {
		SetAuditPatient(c, deliveryPatient(d))
	}
	d, err := a.replay.Replay(ctx, id)
	var rb *engine.RebuildError
	switch {
	case errors.Is(err, engine.ErrNotDead):
		return echo.NewHTTPError(http.StatusConflict, "delivery "+strconv.FormatInt(id, 10)+" is not a dead letter (or does not exist)")
	case errors.As(err, &rb):
		return echo.NewHTTPError(http.StatusUnprocessableEntity, rb.Error())
	case err != nil:
		return err
	}
	a.ml.logger.Info("audit: delivery replayed", "delivery", d.ID, "report", d.ReportID, "destination", d.Destination,
		"mapping", d.MappingVersion, "user", req.User, "remote", c.RealIP())
	return c.JSON(http.StatusOK, viewDelivery(d, false))
}

// deliveryPatient is the patient ("Patient/ID") of a delivery: its queue key's (destination|id).
func deliveryPatient(d *outbox.Delivery) string {
	if _, id, ok := strings.Cut(d.QueueKey, "|"); ok && id != "" {
		return "Patient/" + id
	}
	return ""
}

// replayAll answers POST /api/v1/deliveries/replay {"user","reason","destination","report"}:
// every dead letter (of the destination and report, when named) is replayed as one replay is,
// oldest first (engine.DeliveryReplay.ReplayAll: each patient's reports in their order). At
// most engine.MaxBulkReplay, the oldest; the answer lists what was replayed and what was not,
// why.
func (a *deliveryAPI) replayAll(c echo.Context) error {
	var req struct {
		User        string `json:"user"`
		Reason      string `json:"reason"`
		Destination string `json:"destination"`
		Report      string `json:"report"`
	}
	if err := decodeDecision(c, &req); err != nil {
		return err
	}
	req.User = actingUser(c, req.User)
	if problems := auditProblems(req.User, strings.TrimSpace(req.Reason)); len(problems) > 0 {
		return echo.NewHTTPError(http.StatusBadRequest, strings.Join(problems, "; "))
	}
	// Each replay is committed with an audit event of its own; the request's is recorded after.
	replayed, failed, err := a.replay.ReplayAll(c.Request().Context(), req.Destination, req.Report, func(d *outbox.Delivery) context.Context {
		return PerChange(c, "POST /api/v1/deliveries/"+strconv.FormatInt(d.ID, 10)+"/replay (bulk)", deliveryPatient(d))
	})
	if err != nil {
		return err // the store failed: what was replayed stays replayed
	}
	out := struct {
		Replayed []int64                `json:"replayed"`
		Failed   []engine.ReplayFailure `json:"failed,omitempty"`
	}{Replayed: replayed, Failed: failed}
	a.ml.logger.Info("audit: dead letters replayed", "replayed", len(out.Replayed), "failed", len(out.Failed),
		"destination", req.Destination, "report", req.Report, "user", req.User, "remote", c.RealIP())
	return c.JSON(http.StatusOK, out)
}

// intParam reads an optional integer query parameter within [lo, hi].
func intParam(s string, def, lo, hi int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, errors.New("want a number from " + strconv.Itoa(lo) + " to " + strconv.Itoa(hi))
	}
	return n, nil
}
