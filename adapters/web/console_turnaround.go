package web

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
	"github.com/ferryhealth/ferry/engine/turnaround"
	"github.com/ferryhealth/ferry/fhir"
)

// ConsoleTurnaround is what the turnaround board reads: the clocks (turnaround.Reader's
// Overdue), the SLAs they are measured against (nil: turnaround.DefaultSLAs()), and the orders
// (engine.ResourceReader's Resource) for their accession and procedure.
type ConsoleTurnaround struct {
	Clocks interface {
		Overdue(ctx context.Context, now time.Time, sla turnaround.SLAs, limit int) ([]*turnaround.Clocks, error)
	}
	SLAs   turnaround.SLAs
	Orders interface {
		Resource(ctx context.Context, typ, id string) (*engine.Resource, error)
	}
	Now func() time.Time // default time.Now
}

// Turnaround board bounds: how far ahead a read counts as due, and how many orders are shown.
const (
	turnaroundHorizon = 2 * time.Hour
	turnaroundShown   = 200
)

// priorities are the FHIR request-priority codes, most urgent first: the board's order.
var priorities = []string{"stat", "asap", "urgent", "routine"}

type turnaroundView struct {
	consoleView
	Now      time.Time
	Horizon  string
	Groups   []priorityGroup
	Overdue  int
	Capped   bool
	NoneLate bool
}

type priorityGroup struct {
	Priority string
	SLA      string
	Rows     []turnaroundRow
}

// turnaroundRow is one read due or overdue: the order, which report, when due, how late.
type turnaroundRow struct {
	ServiceRequestID, Accession, Procedure string
	Stage                                  string
	StudyAt, Due                           time.Time
	Late                                   bool
	When                                   string // "overdue by 1 hour 5 minutes", "due in 20 minutes"
}

// turnaround serves GET /console/turnaround: the orders whose preliminary or final read is
// overdue, or due within turnaroundHorizon, by priority, most urgent first; it refreshes itself
// every 30 s (a meta refresh).
func (w *work) turnaround(c echo.Context) error {
	ident, sess, err := w.identity(c, access.PermDashboards)
	if ident == nil {
		return err
	}
	ta := w.data.Turnaround
	if ta == nil {
		return notSetUp
	}
	sla := ta.SLAs
	if sla == nil {
		sla = turnaround.DefaultSLAs()
	}
	now := time.Now().UTC()
	if ta.Now != nil {
		now = ta.Now().UTC()
	}
	ctx := c.Request().Context()
	// What is late at now + the horizon is what is overdue now or due within it.
	clocks, err := ta.Clocks.Overdue(ctx, now.Add(turnaroundHorizon), sla, turnaroundShown)
	if err != nil {
		return err
	}
	v := turnaroundView{consoleView: w.base(ident, sess, "Turnaround", "turnaround"), Now: now,
		Horizon: spoken(turnaroundHorizon), Capped: len(clocks) == turnaroundShown}
	v.Refresh = 30
	byPriority := map[string][]turnaroundRow{}
	for _, t := range clocks {
		acc, proc := w.orderLabel(ctx, t.ServiceRequestID)
		for _, l := range sla.Late(t, now.Add(turnaroundHorizon)) {
			row := turnaroundRow{ServiceRequestID: t.ServiceRequestID, Accession: acc, Procedure: proc, Stage: string(l.Stage),
				StudyAt: t.StudyAt, Due: l.Due, Late: now.After(l.Due)}
			if row.Late {
				row.When = "overdue by " + spoken(now.Sub(l.Due).Truncate(time.Minute))
				v.Overdue++
			} else {
				row.When = "due in " + spoken(l.Due.Sub(now).Truncate(time.Minute))
			}
			byPriority[t.Priority] = append(byPriority[t.Priority], row)
		}
	}
	order := slices.Clone(priorities)
	for p := range byPriority {
		if !slices.Contains(order, p) {
			order = append(order, p)
		}
	}
	for _, p := range order {
		rows := byPriority[p]
		if len(rows) == 0 {
			continue
		}
		slices.SortStableFunc(rows, func(a, b turnaroundRow) int { return a.Due.Compare(b.Due) })
		g := priorityGroup{Priority: p, Rows: rows}
		var parts []string
		if d := sla[p].Preliminary; d > 0 {
			parts = append(parts, "preliminary in "+spoken(d))
		}
		if d := sla[p].Final; d > 0 {
			parts = append(parts, "final in "+spoken(d))
		}
		g.SLA = strings.Join(parts, ", ")
		v.Groups = append(v.Groups, g)
	}
	w.audit(c, ident, audit.ActionSearch, "")
	return w.render(c, "turnaround", v)
}

// orderLabel is the order's accession and procedure, "" when it cannot be read (the board still
// shows the order by its id).
func (w *work) orderLabel(ctx context.Context, id string) (accession, procedure string) {
	if w.data.Turnaround.Orders == nil {
		return "", ""
	}
	res, err := w.data.Turnaround.Orders.Resource(ctx, "ServiceRequest", id)
	if err != nil {
		return "", ""
	}
	content, err := fhir.DecodeContent(res.JSON)
	if err != nil {
		return "", ""
	}
	o := fhir.ServiceRequestOf(content)
	for _, i := range o.Identifier {
		if i.TypeCode() == "ACSN" {
			accession = i.Value
		}
	}
	procedure = o.Code.Label()
	if procedure == "" {
		procedure = o.Code.FirstCode()
	}
	return accession, procedure
}
