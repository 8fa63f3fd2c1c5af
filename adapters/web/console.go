package web

import (
	"context"
	"crypto/subtle"
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
	"github.com/ferryhealth/ferry/hl7"
)

// Console is what the analyst console reads and asks (docs/console.md): the message log and the
// error queue. Reprocessed, if set, is told when requests were queued (the Reprocessor's Nudge).
type Console struct {
	Messages    ConsoleMessages
	Reprocessed func()
	Mappings    *ConsoleMappings // nil: no mappings pages (console_mappings.go)
	// Deliveries, Studies and Turnaround, each if set, serve the deliveries, the reconciliation
	// worklist and the turnaround board (console_deliveries.go, console_reconcile.go,
	// console_turnaround.go).
	Deliveries *ConsoleDeliveries
	Studies    *ConsoleStudies
	Turnaround *ConsoleTurnaround
}

// ConsoleMessages is the message log's reads and the error queue: engine.MessageStore's Message
// and Messages, and engine.ErrorQueue.
type ConsoleMessages interface {
	Message(ctx context.Context, id int64) (*engine.InboundMessage, error)
	Messages(ctx context.Context, f engine.MessageFilter) ([]*engine.InboundMessage, error)
	// TextWindowEnd says where a free-text search's bounded scan stopped (0: at the oldest).
	TextWindowEnd(ctx context.Context, f engine.MessageFilter) (int64, error)
	engine.ErrorQueue
}

// consolePageSize is the message browser's page.
const consolePageSize = 50

type console struct {
	p     *pages
	data  *Console
	pages *template.Template
}

// registerConsole adds the console under /console for analysts and admins.
func registerConsole(e *echo.Echo, p *pages, c *Console, limit echo.MiddlewareFunc) error {
	t, err := template.New("").Funcs(template.FuncMap{
		"when": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05")
		},
	}).ParseFS(templateFiles, "templates/layout.html", "templates/console.html")
	if err != nil {
		return fmt.Errorf("web: parsing the console: %w", err)
	}
	cn := &console{p: p, data: c, pages: t}
	g := e.Group("/console", p.headers)
	g.GET("", cn.dashboard)
	g.GET("/messages", cn.messages)
	g.GET("/messages/:id", cn.message)
	g.POST("/messages/:id/reprocess", cn.decide(engine.ReprocessRun), limit)
	g.POST("/messages/:id/dismiss", cn.decide(engine.ReprocessDismiss), limit)
	g.POST("/errors/reprocess", cn.bulk, limit)
	if err := cn.registerMappings(g); err != nil {
		return err
	}
	return cn.registerWork(g, limit)
}

// consoleView is what the console's templates show.
type consoleView struct {
	view
	Nav      string // the page, for the navigation's aria-current
	Notice   string
	Problem  string
	Stats    []stat
	Filter   filterForm
	Messages []*engine.InboundMessage
	Older    string // the next page's URL
	// FurtherBack is the URL of the next free-text window when the scan stopped before the
	// oldest message (engine.TextScanWindow).
	FurtherBack string
	Window      int
	Matching    int // the error queue's messages the filter selects (bulk reprocess)
	Message     *engine.InboundMessage
	Segments    []segmentView
	ACK         []segmentView
	History     []*engine.Reprocessing
	InQueue     bool
}

type stat struct {
	Label, Value, Link string
	Alert              bool
}

// filterForm is the message browser's search form, as typed.
type filterForm struct {
	ControlID, Type, Status, Facility, Since, Until string
	// The patient and order keys, and free text: PHI, never logged (docs/console.md).
	MRN, Accession, StudyUID, Name, Text string
	Errors                               bool
	// Query is the form's filters as a query string (encoded here: a URL part, not text).
	Query template.URL
}

// segmentView is one segment of a raw message with each field named, for the detail page.
type segmentView struct {
	Name   string
	Fields []fieldView
}

type fieldView struct {
	Text, Title string
}

// identity admits analysts and admins (the message log's permission); others get 403, and a
// browser without a session the sign-in page. Every refusal is audited.
func (cn *console) identity(c echo.Context, perm access.Permission) (*access.Identity, *access.Session, error) {
	ident, sess, _ := cn.p.session(c)
	if ident == nil {
		return nil, nil, c.Redirect(http.StatusSeeOther, "/login?next="+url.QueryEscape(c.Request().URL.RequestURI()))
	}
	if !ident.Grants(perm) {
		cn.p.record(c, &audit.Event{Action: audit.ActionAccess, Outcome: audit.OutcomeMinor, Agent: ident.User,
			Role: string(ident.Role), Entity: c.Request().URL.Path, Detail: "forbidden"})
		return nil, nil, echo.NewHTTPError(http.StatusForbidden, "the console is for analysts and admins")
	}
	return ident, sess, nil
}

func (cn *console) base(ident *access.Identity, sess *access.Session, title, nav string) consoleView {
	return consoleView{view: view{Title: title, User: ident.User, Role: string(ident.Role), CSRF: sess.CSRFToken, Wide: true}, Nav: nav}
}

// dashboard serves GET /console: the error queue and the last day's messages by outcome, each a
// link to the messages behind it. It refreshes itself every 30 s (a meta refresh: no script).
func (cn *console) dashboard(c echo.Context) error {
	ident, sess, err := cn.identity(c, access.PermMessages)
	if ident == nil {
		return err
	}
	ctx := c.Request().Context()
	v := cn.base(ident, sess, "Console", "dashboard")
	v.Refresh = 30
	n, oldest, err := cn.data.Messages.ErrorQueueStats(ctx)
	if err != nil {
		return err
	}
	waited := "—"
	if w := time.Since(oldest); n > 0 && w < time.Minute {
		waited = "under a minute"
	} else if n > 0 {
		waited = spoken(w.Truncate(time.Minute))
	}
	v.Stats = append(v.Stats, stat{Label: "In the error queue", Value: strconv.Itoa(n), Link: "/console/messages?queue=errors", Alert: n > 0},
		stat{Label: "Oldest in the queue has waited", Value: waited, Link: "/console/messages?queue=errors", Alert: n > 0})
	since := time.Now().Add(-24 * time.Hour).UTC()
	for _, s := range []struct {
		label  string
		status engine.Status
	}{{"Accepted, last 24 h", engine.StatusAccepted}, {"Answered AE, last 24 h", engine.StatusError},
		{"Rejected, last 24 h", engine.StatusRejected}, {"Duplicates, last 24 h", engine.StatusDuplicate}} {
		count, err := cn.data.Messages.CountMessages(ctx, engine.MessageFilter{Status: s.status, Since: since})
		if err != nil {
			return err
		}
		q := url.Values{"status": {string(s.status)}, "since": {since.Format(time.RFC3339)}}
		v.Stats = append(v.Stats, stat{Label: s.label, Value: strconv.Itoa(count), Link: "/console/messages?" + q.Encode(),
			Alert: count > 0 && (s.status == engine.StatusError || s.status == engine.StatusRejected)})
	}
	cn.audit(c, ident, audit.ActionSearch, "")
	return cn.render(c, "dashboard", v)
}

// messages serves GET /console/messages?control_id=&type=&status=&sending_facility=&since=&until=
// &mrn=&accession=&study_uid=&name=&text=&queue=errors&before_id=. A GET, so that a search has a
// stable link; its terms are patient data, and no log line prints a request's query (only the
// audit trail in the store records it, as it records every search).
func (cn *console) messages(c echo.Context) error {
	ident, sess, err := cn.identity(c, access.PermMessages)
	if ident == nil {
		return err
	}
	q := c.QueryParams()
	v := cn.base(ident, sess, "Messages", "messages")
	f, form, problem := parseFilter(q)
	v.Filter, v.Problem = form, problem
	if f.InErrorQueue {
		v.Title, v.Nav = "Error queue", "errors"
	}
	if problem == "" {
		if v.Filter.Errors {
			if v.Matching, err = cn.data.Messages.CountMessages(c.Request().Context(), f); err != nil {
				return err
			}
		}
		before, _ := strconv.ParseInt(q.Get("before_id"), 10, 64)
		f.BeforeID, f.Limit = max(before, 0), consolePageSize+1
		msgs, err := cn.data.Messages.Messages(c.Request().Context(), f)
		if err != nil {
			return err
		}
		page := func(before int64) string {
			next := url.Values{}
			for k, vs := range q {
				next[k] = vs
			}
			next.Del("done")
			next.Set("before_id", strconv.FormatInt(before, 10))
			return "/console/messages?" + next.Encode()
		}
		if len(msgs) > consolePageSize {
			msgs = msgs[:consolePageSize]
			v.Older = page(msgs[len(msgs)-1].ID)
		} else if f.Text != "" {
			// The page is not full: the window may have ended before the oldest message.
			end, err := cn.data.Messages.TextWindowEnd(c.Request().Context(), f)
			if err != nil {
				return err
			}
			if end > 0 {
				v.FurtherBack, v.Window = page(end), engine.TextScanWindow
			}
		}
		v.Messages = msgs
	}
	v.Notice = noticeText(q.Get("done"))
	// The audit trail (in the store, never a log) records what was searched for.
	cn.audit(c, ident, audit.ActionSearch, string(v.Filter.Query))
	return cn.render(c, "messages", v)
}

// parseFilter reads the browser's form; a value that does not read is said, not ignored.
func parseFilter(q url.Values) (engine.MessageFilter, filterForm, string) {
	form := filterForm{ControlID: strings.TrimSpace(q.Get("control_id")), Type: strings.TrimSpace(q.Get("type")),
		Status: q.Get("status"), Facility: strings.TrimSpace(q.Get("sending_facility")),
		Since: strings.TrimSpace(q.Get("since")), Until: strings.TrimSpace(q.Get("until")), Errors: q.Get("queue") == "errors",
		MRN: strings.TrimSpace(q.Get("mrn")), Accession: strings.TrimSpace(q.Get("accession")),
		StudyUID: strings.TrimSpace(q.Get("study_uid")), Name: strings.TrimSpace(q.Get("name")), Text: q.Get("text")}
	f := engine.MessageFilter{ControlID: form.ControlID, MessageType: form.Type, Status: engine.Status(form.Status),
		SendingFacility: form.Facility, InErrorQueue: form.Errors, PatientID: form.MRN, Accession: form.Accession,
		StudyUID: form.StudyUID, PatientName: form.Name, Text: form.Text}
	keep := url.Values{}
	for k, val := range map[string]string{"control_id": form.ControlID, "type": form.Type, "status": form.Status,
		"sending_facility": form.Facility, "since": form.Since, "until": form.Until, "mrn": form.MRN,
		"accession": form.Accession, "study_uid": form.StudyUID, "name": form.Name, "text": form.Text} {
		if val != "" {
			keep.Set(k, val)
		}
	}
	if form.Errors {
		keep.Set("queue", "errors")
	}
	form.Query = template.URL(keep.Encode())
	if f.Status != "" && !f.Status.Valid() {
		return f, form, "Status: choose accepted, duplicate, rejected or error."
	}
	if len(f.Text) > engine.MaxSearchText {
		return f, form, fmt.Sprintf("Text: at most %d characters.", engine.MaxSearchText)
	}
	for _, t := range []struct {
		text string
		into *time.Time
		name string
	}{{form.Since, &f.Since, "Since"}, {form.Until, &f.Until, "Until"}} {
		if t.text == "" {
			continue
		}
		at, err := parseWhen(t.text)
		if err != nil {
			return f, form, t.name + ": write a time as 2026-12-08 09:30 or 2026-12-08 (UTC)."
		}
		*t.into = at
	}
	return f, form, ""
}

// parseWhen reads the times an analyst types: RFC 3339, or a date with an optional time, in UTC.
func parseWhen(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339, "2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errors.New("not a time")
}

// message serves GET /console/messages/{id}: the message as received, each field named on hover,
// the ACK sent, and its reprocessing with the forms to reprocess or dismiss it.
func (cn *console) message(c echo.Context) error {
	ident, sess, err := cn.identity(c, access.PermMessages)
	if ident == nil {
		return err
	}
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return echo.NewHTTPError(http.StatusNotFound, "no such message")
	}
	ctx := c.Request().Context()
	m, err := cn.data.Messages.Message(ctx, id)
	if errors.Is(err, engine.ErrNotFound) {
		return echo.NewHTTPError(http.StatusNotFound, "no such message")
	}
	if err != nil {
		return err
	}
	v := cn.base(ident, sess, "Message "+strconv.FormatInt(id, 10), "messages")
	v.Message, v.Segments, v.ACK = m, segments(m.Raw), segments(m.ACK)
	if v.History, err = cn.data.Messages.Reprocessings(ctx, id); err != nil {
		return err
	}
	inQueue, err := cn.data.Messages.CountMessages(ctx, engine.MessageFilter{ID: id, InErrorQueue: true})
	if err != nil {
		return err
	}
	v.InQueue = inQueue > 0
	v.Notice = noticeText(c.QueryParam("done"))
	cn.audit(c, ident, audit.ActionRead, "message "+strconv.FormatInt(id, 10))
	return cn.render(c, "message", v)
}

// segments splits raw into segments and fields for display, each field titled with its place
// and name ("PID-5 Patient Name"). Bytes that are not UTF-8 show as U+FFFD; html/template
// escapes the rest, so a message holding <script> is text.
func segments(raw []byte) []segmentView {
	text := strings.ToValidUTF8(string(raw), "\uFFFD")
	text = strings.ReplaceAll(strings.ReplaceAll(text, "\r\n", "\r"), "\n", "\r")
	var out []segmentView
	for _, line := range strings.Split(text, "\r") {
		if line == "" {
			continue
		}
		fields := strings.Split(line, "|")
		name := fields[0]
		sv := segmentView{Name: name}
		for i, f := range fields[1:] {
			n := i + 1
			if name == "MSH" {
				n++ // MSH-1 is the separator itself: MSH-2 is the first field written
			}
			title := fmt.Sprintf("%s-%d", name, n)
			if label := hl7.FieldName(name, n); label != "" {
				title += " " + label
			}
			sv.Fields = append(sv.Fields, fieldView{Text: f, Title: title})
		}
		out = append(out, sv)
	}
	return out
}

// decide serves POST /console/messages/{id}/reprocess and /dismiss (reason; CSRF token).
func (cn *console) decide(kind engine.ReprocessKind) echo.HandlerFunc {
	return func(c echo.Context) error {
		ident, sess, err := cn.identity(c, access.PermReprocess)
		if ident == nil {
			return err
		}
		if err := checkCSRF(c, sess); err != nil {
			return err
		}
		id, err := strconv.ParseInt(c.Param("id"), 10, 64)
		if err != nil || id <= 0 {
			return echo.NewHTTPError(http.StatusNotFound, "no such message")
		}
		back := "/console/messages/" + strconv.FormatInt(id, 10)
		reason := strings.TrimSpace(c.FormValue("reason"))
		if kind == engine.ReprocessDismiss && reason == "" {
			return c.Redirect(http.StatusSeeOther, back+"?done=needs-reason")
		}
		n, err := cn.data.Messages.RequestReprocessing(c.Request().Context(), engine.ReprocessRequest{
			Filter: engine.MessageFilter{ID: id}, Kind: kind, By: ident.User, Reason: reason, At: time.Now().UTC()})
		if err != nil {
			return err
		}
		action, done := audit.ActionReplay, "queued"
		if kind == engine.ReprocessDismiss {
			action, done = audit.ActionUpdate, "dismissed"
		}
		if n == 0 {
			done = "not-in-queue"
		} else if kind == engine.ReprocessRun && cn.data.Reprocessed != nil {
			cn.data.Reprocessed()
		}
		cn.audit(c, ident, action, "message "+strconv.FormatInt(id, 10)+" "+string(kind))
		return c.Redirect(http.StatusSeeOther, back+"?done="+done)
	}
}

// bulk serves POST /console/errors/reprocess: every message of the error queue the filter (as
// hidden fields) selects, after the page said how many match.
func (cn *console) bulk(c echo.Context) error {
	ident, sess, err := cn.identity(c, access.PermReprocess)
	if ident == nil {
		return err
	}
	if err := checkCSRF(c, sess); err != nil {
		return err
	}
	form, err := c.FormParams()
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "the form did not read")
	}
	form.Set("queue", "errors")
	f, filter, problem := parseFilter(form)
	if problem != "" {
		return c.Redirect(http.StatusSeeOther, "/console/messages?"+string(filter.Query))
	}
	n, err := cn.data.Messages.RequestReprocessing(c.Request().Context(), engine.ReprocessRequest{
		Filter: f, Kind: engine.ReprocessRun, By: ident.User, Reason: strings.TrimSpace(form.Get("reason")), At: time.Now().UTC()})
	if err != nil {
		return err
	}
	if n > 0 && cn.data.Reprocessed != nil {
		cn.data.Reprocessed()
	}
	cn.audit(c, ident, audit.ActionReplay, fmt.Sprintf("error queue: %d queued (%s)", n, string(filter.Query)))
	return c.Redirect(http.StatusSeeOther, "/console/messages?"+string(filter.Query)+"&done=bulk-"+strconv.Itoa(n))
}

// checkCSRF refuses a form whose token is not the session's (403).
func checkCSRF(c echo.Context, sess *access.Session) error {
	if !sessionForm(c, sess) {
		return echo.NewHTTPError(http.StatusForbidden, "the form had expired: go back, reload the page and try again")
	}
	return nil
}

// sessionForm reports whether a posted form carries its session's CSRF token: every form a
// signed-in page posts (sign-out, the console's) is checked by it.
func sessionForm(c echo.Context, sess *access.Session) bool {
	return sess != nil && sess.CSRFToken != "" &&
		subtle.ConstantTimeCompare([]byte(c.FormValue("csrf_token")), []byte(sess.CSRFToken)) == 1
}

func noticeText(done string) string {
	switch {
	case done == "queued":
		return "Queued for reprocessing with the mappings and tables now in force. Reload to see the outcome."
	case done == "dismissed":
		return "Dismissed from the error queue."
	case done == "not-in-queue":
		return "Nothing done: the message is not in the error queue, or its reprocessing is already queued."
	case done == "needs-reason":
		return "A dismissal needs a reason."
	case strings.HasPrefix(done, "bulk-"):
		return strings.TrimPrefix(done, "bulk-") + " messages queued for reprocessing, oldest first."
	}
	return ""
}

// audit records a console access (the message log holds patient data: every page is audited).
func (cn *console) audit(c echo.Context, ident *access.Identity, action audit.Action, what string) {
	entity := c.Request().URL.Path
	if what != "" {
		entity += " (" + what + ")"
	}
	cn.p.record(c, &audit.Event{Action: action, Outcome: audit.OutcomeSuccess, Agent: ident.User, Role: string(ident.Role), Entity: entity})
}

func (cn *console) render(c echo.Context, page string, v consoleView) error {
	return cn.p.render(c, http.StatusOK, cn.pages, page, v)
}
