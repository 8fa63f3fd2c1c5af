package httpapi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/outbox"
)

// DeliveryLog is what the admin API reads and replays of the report outbox: outbox.Store.
type DeliveryLog interface {
	Deliveries(ctx context.Context, f outbox.Filter) ([]*outbox.Delivery, error)
	Delivery(ctx context.Context, id int64) (*outbox.Delivery, error)
	ReplayDelivery(ctx context.Context, id int64, payload []byte, mappingVersion string, now time.Time) error
}

// DeliveryRenderer builds a delivery's message again with the mappings in force:
// engine.Reports.Rerender.
type DeliveryRenderer interface {
	Rerender(ctx context.Context, d *outbox.Delivery) (payload []byte, mappingVersion string, err error)
}

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
	render DeliveryRenderer
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
func (a *deliveryAPI) replay(c echo.Context) error {
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
	notDead := echo.NewHTTPError(http.StatusConflict, "delivery "+strconv.FormatInt(id, 10)+" is not a dead letter (or does not exist)")
	d, err := a.log.Delivery(ctx, id)
	switch {
	case errors.Is(err, engine.ErrNotFound):
		return notDead
	case err != nil:
		return err
	case d.Status != outbox.Dead:
		return notDead
	}
	SetAuditPatient(c, deliveryPatient(d))
	if d, err = a.replayOne(c.Request().Context(), c, d, req.User); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewDelivery(d, false))
}

// deliveryPatient is the patient ("Patient/ID") of a delivery: its queue key's (destination|id).
func deliveryPatient(d *outbox.Delivery) string {
	if _, id, ok := strings.Cut(d.QueueKey, "|"); ok && id != "" {
		return "Patient/" + id
	}
	return ""
}

// replayOne replays the dead letter d (its message built again when there is a renderer) and
// returns it as it now stands; the store commits the replay with the audit event ctx carries
// (audit.PendingIn). Errors are HTTP errors: 409 when d is no longer dead, 422 when its message
// cannot be built.
func (a *deliveryAPI) replayOne(ctx context.Context, c echo.Context, d *outbox.Delivery, user string) (*outbox.Delivery, error) {
	var (
		payload []byte
		version string
		err     error
	)
	if a.render != nil {
		if payload, version, err = a.render.Rerender(ctx, d); err != nil {
			return nil, echo.NewHTTPError(http.StatusUnprocessableEntity, "the message cannot be built: "+err.Error())
		}
	}
	switch err := a.log.ReplayDelivery(ctx, d.ID, payload, version, time.Now()); {
	case errors.Is(err, engine.ErrNotFound):
		return nil, echo.NewHTTPError(http.StatusConflict, "delivery "+strconv.FormatInt(d.ID, 10)+" is not a dead letter (or does not exist)")
	case err != nil:
		return nil, err
	}
	if d, err = a.log.Delivery(ctx, d.ID); err != nil {
		return nil, err
	}
	a.ml.logger.Info("audit: delivery replayed", "delivery", d.ID, "report", d.ReportID, "destination", d.Destination,
		"rebuilt", payload != nil, "mapping", d.MappingVersion, "user", user, "remote", c.RealIP())
	return d, nil
}

// maxBulkReplay caps the dead letters one bulk replay takes: the oldest that many.
const maxBulkReplay = 10000

// replayAll answers POST /api/v1/deliveries/replay {"user","reason","destination","report"}:
// every dead letter (of the destination and report, when named) is replayed as one replay is,
// oldest first — in the order the deliveries were created, so each patient's reports reach the
// hospital in their order again (a queue sends its deliveries in ID order once they are all
// pending; replayed newest first, a later report would go before an earlier one still dead).
// At most maxBulkReplay, the oldest; the answer lists what was replayed and what was not, why.
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
	ctx := c.Request().Context()
	// The list is newest first: read it all, then replay from the oldest.
	var dead []*outbox.Delivery
	f := outbox.Filter{Status: outbox.Dead, Destination: req.Destination, ReportID: req.Report, Limit: 1000}
	for {
		page, err := a.log.Deliveries(ctx, f)
		if err != nil {
			return err
		}
		dead = append(dead, page...)
		if len(page) < f.Limit {
			break
		}
		f.Offset += f.Limit
	}
	slices.SortFunc(dead, func(x, y *outbox.Delivery) int { return cmp.Compare(x.ID, y.ID) })
	dead = dead[:min(len(dead), maxBulkReplay)]
	type failure struct {
		ID    int64  `json:"id"`
		Error string `json:"error"`
	}
	out := struct {
		Replayed []int64   `json:"replayed"`
		Failed   []failure `json:"failed,omitempty"`
	}{Replayed: []int64{}}
	for _, d := range dead {
		// Each replay is committed with an event of its own; the request's is recorded after.
		ctx := PerChange(c, "POST /api/v1/deliveries/"+strconv.FormatInt(d.ID, 10)+"/replay (bulk)", deliveryPatient(d))
		if _, err := a.replayOne(ctx, c, d, req.User); err != nil {
			var he *echo.HTTPError
			if !errors.As(err, &he) {
				return err // the store failed: stop, what was replayed stays replayed
			}
			out.Failed = append(out.Failed, failure{ID: d.ID, Error: fmt.Sprint(he.Message)})
			continue
		}
		out.Replayed = append(out.Replayed, d.ID)
	}
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
