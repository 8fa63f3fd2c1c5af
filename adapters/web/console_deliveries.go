package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
	"github.com/ferryhealth/ferry/engine/outbox"
)

// ConsoleDeliveries is what the deliveries pages read and replay of the report outbox
// (engine.DeliveryLog: outbox.Store's part); Rerender, if set, builds a replayed message again
// with the mappings in force (engine.Reports); Replayed, if set, is told when dead letters were
// made pending again (the Deliverer's Nudge).
type ConsoleDeliveries struct {
	Log      engine.DeliveryLog
	Rerender engine.DeliveryRenderer
	Replayed func()
}

// work is the console's pages beyond the message log: deliveries, reconciliation, turnaround.
type work struct {
	*console
	pages *template.Template
}

// registerWork adds the deliveries, reconciliation and turnaround pages to the console's group.
// A page whose source the Console lacks answers 404.
func (cn *console) registerWork(g *echo.Group, limit echo.MiddlewareFunc) error {
	t, err := template.New("").Funcs(template.FuncMap{
		"when": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05")
		},
	}).ParseFS(templateFiles, "templates/layout.html", "templates/console.html", "templates/console_deliveries.html",
		"templates/console_reconcile.html", "templates/console_turnaround.html")
	if err != nil {
		return fmt.Errorf("web: parsing the console's work pages: %w", err)
	}
	w := &work{console: cn, pages: t}
	g.GET("/deliveries", w.deliveries)
	g.GET("/deliveries/:id", w.delivery)
	g.POST("/deliveries/:id/replay", w.replayOne, limit)
	g.POST("/deliveries/replay", w.replayDead, limit)
	g.GET("/reconciliation", w.reconciliation)
	g.GET("/reconciliation/:uid", w.study)
	g.POST("/reconciliation/:uid/link", w.link, limit)
	g.POST("/reconciliation/:uid/unlink", w.unlink, limit)
	g.GET("/turnaround", w.turnaround)
	return nil
}

func (w *work) render(c echo.Context, page string, v any) error {
	return w.p.render(c, http.StatusOK, w.pages, page, v)
}

// notSetUp answers a page whose source this server was not given.
var notSetUp = echo.NewHTTPError(http.StatusNotFound, "this page is not set up on this server")

// deliveriesPageSize is the deliveries list's page; deliveriesCounted how many of one status
// the per-destination counts read (more show as "1000+").
const (
	deliveriesPageSize = 50
	deliveriesCounted  = 1000
)

// deliveriesView is the deliveries pages' model.
type deliveriesView struct {
	consoleView
	Destinations []destinationCount
	Status       string // the list's filter: pending, failing, dead, delivered or ""
	Destination  string
	List         []*outbox.Delivery
	Older        string
	Matching     int // dead letters the bulk replay would take (status dead)
	Delivery     *outbox.Delivery
	Payload      string // the payload as text, one segment a line
	Response     string // the receiver's last answer, as text
}

// destinationCount is one destination's row of the summary.
type destinationCount struct {
	Destination            string
	Pending, Failing, Dead string
	Alert                  bool
}

// deliveries serves GET /console/deliveries?status=&destination=&offset=: per destination how
// many deliveries are pending, failing (pending after a failed attempt) and dead; then the
// deliveries the filter selects, newest first. With status=dead, the bulk replay says how many
// dead letters it would send again.
func (w *work) deliveries(c echo.Context) error {
	ident, sess, err := w.identity(c, access.PermDeliveries)
	if ident == nil {
		return err
	}
	if w.data.Deliveries == nil {
		return notSetUp
	}
	log := w.data.Deliveries.Log
	ctx := c.Request().Context()
	q := c.QueryParams()
	v := deliveriesView{consoleView: w.base(ident, sess, "Deliveries", "deliveries"),
		Status: q.Get("status"), Destination: strings.TrimSpace(q.Get("destination"))}
	v.Refresh = 30
	// The summary: up to deliveriesCounted pending and dead deliveries, by destination.
	counts := map[string]*[3]int{}
	var order []string
	for _, st := range []outbox.Status{outbox.Pending, outbox.Dead} {
		ds, err := log.Deliveries(ctx, outbox.Filter{Status: st, Limit: deliveriesCounted})
		if err != nil {
			return err
		}
		for _, d := range ds {
			n, ok := counts[d.Destination]
			if !ok {
				n = &[3]int{}
				counts[d.Destination] = n
				order = append(order, d.Destination)
			}
			switch {
			case st == outbox.Dead:
				n[2]++
			case d.Attempts > 0 && d.LastError != "":
				n[1]++
			default:
				n[0]++
			}
		}
		if len(ds) == deliveriesCounted {
			v.Notice = "Counts are of the newest 1000 pending and 1000 dead deliveries."
		}
	}
	for _, dest := range order {
		n := counts[dest]
		v.Destinations = append(v.Destinations, destinationCount{Destination: dest, Pending: strconv.Itoa(n[0]),
			Failing: strconv.Itoa(n[1]), Dead: strconv.Itoa(n[2]), Alert: n[1]+n[2] > 0})
	}
	// The list.
	f := outbox.Filter{Destination: v.Destination, Limit: deliveriesPageSize + 1}
	switch v.Status {
	case "", string(outbox.Pending), string(outbox.Delivered), string(outbox.Dead):
		f.Status = outbox.Status(v.Status)
	case "failing":
		f.Status = outbox.Pending
	default:
		v.Problem, v.Status = "Status: choose pending, failing, dead or delivered.", ""
	}
	f.Offset, _ = strconv.Atoi(q.Get("offset"))
	f.Offset = min(max(f.Offset, 0), 1<<30)
	list, err := log.Deliveries(ctx, f)
	if err != nil {
		return err
	}
	if len(list) > deliveriesPageSize {
		list = list[:deliveriesPageSize]
		next := url.Values{"status": {v.Status}, "destination": {v.Destination}, "offset": {strconv.Itoa(f.Offset + deliveriesPageSize)}}
		v.Older = "/console/deliveries?" + next.Encode()
	}
	for _, d := range list {
		if v.Status == "failing" && (d.Attempts == 0 || d.LastError == "") {
			continue
		}
		v.List = append(v.List, d)
	}
	if v.Status == string(outbox.Dead) {
		dead, err := w.replayer().DeadLetters(ctx, v.Destination, "")
		if err != nil {
			return err
		}
		v.Matching = len(dead)
	}
	if notice := deliveryNotice(q.Get("done")); notice != "" {
		v.Notice = notice
	}
	w.audit(c, ident, audit.ActionSearch, "")
	return w.render(c, "deliveries", v)
}

// delivery serves GET /console/deliveries/{id}: the delivery, its payload as text, and the
// receiver's last answer; a dead letter with the form to replay it (audited: the payload holds
// patient data).
func (w *work) delivery(c echo.Context) error {
	ident, sess, err := w.identity(c, access.PermDeliveries)
	if ident == nil {
		return err
	}
	if w.data.Deliveries == nil {
		return notSetUp
	}
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return echo.NewHTTPError(http.StatusNotFound, "no such delivery")
	}
	d, err := w.data.Deliveries.Log.Delivery(c.Request().Context(), id)
	if errors.Is(err, engine.ErrNotFound) {
		return echo.NewHTTPError(http.StatusNotFound, "no such delivery")
	}
	if err != nil {
		return err
	}
	v := deliveriesView{consoleView: w.base(ident, sess, "Delivery "+strconv.FormatInt(id, 10), "deliveries"), Delivery: d,
		Payload: payloadText(d.Payload), Response: payloadText([]byte(d.Response))}
	v.Notice = deliveryNotice(c.QueryParam("done"))
	w.audit(c, ident, audit.ActionRead, "delivery "+strconv.FormatInt(id, 10)+" of DiagnosticReport/"+d.ReportID)
	return w.render(c, "delivery", v)
}

// payloadText is a payload to show as text: JSON (a FHIR Bundle, an OperationOutcome) indented,
// HL7 segments one a line, bytes that are not UTF-8 as U+FFFD (html/template escapes the rest,
// so <script> in a report is text). Indenting costs a pass over the bytes.
func payloadText(p []byte) string {
	var b bytes.Buffer
	if json.Valid(p) && json.Indent(&b, p, "", "  ") == nil {
		return b.String()
	}
	s := strings.ToValidUTF8(string(p), "\uFFFD")
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

func (w *work) replayer() *engine.DeliveryReplay {
	return &engine.DeliveryReplay{Log: w.data.Deliveries.Log, Render: w.data.Deliveries.Rerender}
}

// replayOne serves POST /console/deliveries/{id}/replay (reason; CSRF token): the dead letter
// is sent again, first in its queue, its message built with the mappings in force.
func (w *work) replayOne(c echo.Context) error {
	ident, sess, err := w.identity(c, access.PermDeliveries)
	if ident == nil {
		return err
	}
	if err := checkCSRF(c, sess); err != nil {
		return err
	}
	if w.data.Deliveries == nil {
		return notSetUp
	}
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return echo.NewHTTPError(http.StatusNotFound, "no such delivery")
	}
	back := "/console/deliveries/" + strconv.FormatInt(id, 10)
	reason := strings.TrimSpace(c.FormValue("reason"))
	if len(engine.DecisionProblems(ident.User, reason)) > 0 {
		return c.Redirect(http.StatusSeeOther, back+"?done=needs-reason")
	}
	_, err = w.replayer().Replay(c.Request().Context(), id)
	var rb *engine.RebuildError
	done := "replayed"
	switch {
	case errors.Is(err, engine.ErrNotDead):
		done = "not-dead"
	case errors.As(err, &rb):
		done = "cannot-build"
	case err != nil:
		return err
	}
	if done == "replayed" && w.data.Deliveries.Replayed != nil {
		w.data.Deliveries.Replayed()
	}
	w.auditReplay(c, ident, fmt.Sprintf("delivery %d %s", id, done), reason)
	return c.Redirect(http.StatusSeeOther, back+"?done="+done)
}

// replayDead serves POST /console/deliveries/replay (destination, reason; CSRF token): every dead
// letter of the destination (or all), oldest first, after the page said how many match.
func (w *work) replayDead(c echo.Context) error {
	ident, sess, err := w.identity(c, access.PermDeliveries)
	if ident == nil {
		return err
	}
	if err := checkCSRF(c, sess); err != nil {
		return err
	}
	if w.data.Deliveries == nil {
		return notSetUp
	}
	dest := strings.TrimSpace(c.FormValue("destination"))
	back := "/console/deliveries?" + url.Values{"status": {"dead"}, "destination": {dest}}.Encode()
	if len(engine.DecisionProblems(ident.User, c.FormValue("reason"))) > 0 {
		return c.Redirect(http.StatusSeeOther, back+"&done=needs-reason")
	}
	replayed, failed, err := w.replayer().ReplayAll(c.Request().Context(), dest, "", nil)
	if len(replayed) > 0 && w.data.Deliveries.Replayed != nil {
		w.data.Deliveries.Replayed()
	}
	w.auditReplay(c, ident, fmt.Sprintf("dead letters of %q: %d replayed, %d not", dest, len(replayed), len(failed)), c.FormValue("reason"))
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, back+fmt.Sprintf("&done=bulk-%d-%d", len(replayed), len(failed)))
}

// auditReplay records a replay with its reason (kept in the audit trail, as a decision's reason
// is kept with the decision; never logged).
func (w *work) auditReplay(c echo.Context, ident *access.Identity, what, reason string) {
	w.p.record(c, &audit.Event{Action: audit.ActionReplay, Outcome: audit.OutcomeSuccess, Agent: ident.User,
		Role: string(ident.Role), Entity: c.Request().URL.Path + " (" + what + ")", Detail: strings.TrimSpace(reason)})
}

func deliveryNotice(done string) string {
	switch done {
	case "replayed":
		return "Replayed: the delivery is pending again, first in its queue. Reload to see the outcome."
	case "not-dead":
		return "Nothing done: the delivery is not a dead letter (it may have been replayed already)."
	case "cannot-build":
		return "Not replayed: its message cannot be built with the mappings now in force. Fix the mapping, then replay again."
	case "needs-reason":
		return "A replay needs a reason."
	}
	if rest, ok := strings.CutPrefix(done, "bulk-"); ok {
		ok, notOK, _ := strings.Cut(rest, "-")
		if _, err := strconv.Atoi(ok); err != nil {
			return ""
		}
		if _, err := strconv.Atoi(notOK); err != nil {
			return ""
		}
		msg := ok + " dead letters replayed, oldest first."
		if notOK != "0" {
			msg += " " + notOK + " could not be (their message cannot be built): they stay dead."
		}
		return msg
	}
	return ""
}
