package web

// The referring physician's pages (issue 13, docs/physicians.md): the signed-in home page of a
// physician or radiologist lists their patients' recent reports, and /reports/{id} shows one
// report in its context — the patient, the order, every version with what changed, the critical
// finding and its acknowledgement, the turnaround, the priors and key images.
//
// Which patients a user reaches is decided by the data layer, never here: every read goes
// through access.Reader with the user's identity in its context, as FHIR, QIDO-RS and WADO-RS
// do, so a report of another physician's patient is "not found" (404 and an audit row
// "refused"), and a break-glass grant is honoured and named in the audit row.
//
// No PHI in URLs: the search by name, MRN or accession is a POST form (its terms never reach
// a URL, a proxy's log or the browser's history); the status and critical filters and the page
// number, which are not PHI, are GET parameters.

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/microcosm-cc/bluemonday"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
	"github.com/ferryhealth/ferry/engine/turnaround"
	"github.com/ferryhealth/ferry/fhir"
	"github.com/ferryhealth/ferry/internal/textdiff"
)

// Physician is what the physician's pages read (Options.Physician).
type Physician struct {
	// Patients decides which patients a user reaches (engine/access); required.
	Patients *access.Patients
	// Resources is the store's FHIR resources; the pages read them only through access.Reader.
	Resources access.Resources
	// Reads is the audit trail's reader: a report version is unread until its reader's audit
	// trail has a view of it (the pages record one per view).
	Reads audit.Reader
	// Turnaround, when set, shows the order's clocks against SLAs.
	Turnaround turnaround.Reader
	SLAs       turnaround.SLAs
}

// reportsPageSize is the home page's list; reportsWindow bounds the reports it orders (critical
// and unread first, then newest): the most recent this many that match the search and filters.
const (
	reportsPageSize = 25
	reportsWindow   = 300
	// maxSearchPatients bounds the patients a name or MRN search narrows the list to.
	maxSearchPatients = 200
	// maxPriors and maxThumbnails bound the report page's lists.
	maxPriors     = 50
	maxThumbnails = 12
	// maxReadScan bounds the audit events read to tell which reports a user has opened.
	maxReadScan = 5000
)

type physician struct {
	p     *pages
	data  *Physician
	read  *access.Reader
	pages *template.Template
}

func registerPhysician(e *echo.Echo, p *pages, data *Physician, limit echo.MiddlewareFunc) (*physician, error) {
	if data.Patients == nil || data.Resources == nil {
		return nil, errors.New("web: Physician needs Patients and Resources")
	}
	t, err := template.New("").Funcs(template.FuncMap{
		"pageArgs": func(v physicianView, l *pageLink, label string) pageArgs {
			return pageArgs{V: v, Page: l.Page, Label: label}
		},
	}).ParseFS(templateFiles, "templates/layout.html", "templates/physician_*.html")
	if err != nil {
		return nil, fmt.Errorf("web: parsing the physician's pages: %w", err)
	}
	ph := &physician{p: p, data: data, pages: t, read: &access.Reader{Patients: data.Patients, Resources: data.Resources}}
	e.GET("/reports/:id", ph.report, p.headers)
	e.POST("/", ph.homeSearch, p.headers, limit)
	return ph, nil
}

// reader returns ctx carrying the identity (for access.Reader) and a Disclosure the reads fill.
func (ph *physician) reader(ctx context.Context, ident *access.Identity) (context.Context, *access.Disclosure) {
	d := &access.Disclosure{}
	return access.WithIdentity(access.WithDisclosure(ctx, d), ident), d
}

// homeRole reports whether the identity's home page is the report list.
func homeRole(ident *access.Identity) bool {
	return ident.Role == access.RolePhysician || ident.Role == access.RoleRadiologist
}

// reportRow is one report in the list.
type reportRow struct {
	ID, Patient, MRN, Procedure, Modality, Facility, Status, StatusClass string
	StudyDate, Updated                                                   string
	Critical, Unread                                                     bool
}

// listForm is the list's search and filters, as typed.
type listForm struct {
	By, Q, Status string
	Critical      bool
	Page          int
}

type physicianView struct {
	view
	Form     listForm
	Rows     []reportRow
	Problem  string
	Prev     *pageLink
	Next     *pageLink
	Windowed bool
	Searched bool
	// The report page.
	Report *reportPage
}

// pageArgs is a page button's form (the search kept out of the URL).
type pageArgs struct {
	V     physicianView
	Page  int
	Label string
}

// pageLink is a page of the list: a link when the list was not searched, a form button
// (the search terms kept out of the URL) when it was.
type pageLink struct {
	Page int
	Href string
}

func (ph *physician) base(ident *access.Identity, sess *access.Session, title string) physicianView {
	return physicianView{view: view{Title: title, User: ident.User, Role: string(ident.Role), CSRF: sess.CSRFToken, Wide: true}}
}

// home serves GET / for a physician or radiologist (homePage calls it).
func (ph *physician) home(c echo.Context, ident *access.Identity, sess *access.Session) error {
	q := c.QueryParams()
	f := listForm{Status: q.Get("status"), Critical: q.Get("critical") == "1"}
	f.Page, _ = strconv.Atoi(q.Get("page"))
	return ph.list(c, ident, sess, f)
}

// homeSearch serves POST /: the search by name, MRN or accession (CSRF-checked).
func (ph *physician) homeSearch(c echo.Context) error {
	ident, sess, _ := ph.p.session(c)
	if ident == nil {
		return c.Redirect(http.StatusSeeOther, "/login")
	}
	if !homeRole(ident) {
		return echo.NewHTTPError(http.StatusForbidden, "the report list is for physicians and radiologists")
	}
	if !sessionForm(c, sess) {
		return echo.NewHTTPError(http.StatusForbidden, "the search form had expired: search again from the page")
	}
	f := listForm{By: c.FormValue("by"), Q: strings.TrimSpace(c.FormValue("q")), Status: c.FormValue("status"), Critical: c.FormValue("critical") == "1"}
	f.Page, _ = strconv.Atoi(c.FormValue("page"))
	return ph.list(c, ident, sess, f)
}

// statusValues are the DiagnosticReport statuses each filter shows.
var statusValues = map[string][]string{
	"preliminary": {"preliminary", "partial", "registered"},
	"final":       {"final"},
	"amended":     {"amended", "corrected", "appended"},
}

func (ph *physician) list(c echo.Context, ident *access.Identity, sess *access.Session, f listForm) error {
	v := ph.base(ident, sess, "Reports")
	if _, ok := statusValues[f.Status]; !ok {
		f.Status = ""
	}
	if len(f.Q) > 200 {
		f.Q = f.Q[:200]
	}
	switch f.By {
	case "name", "mrn", "accession":
	default:
		f.By = "name"
	}
	f.Page = max(f.Page, 1)
	v.Form, v.Searched = f, f.Q != ""
	ctx, disc := ph.reader(c.Request().Context(), ident)

	query := engine.ResourceQuery{Type: "DiagnosticReport", Count: reportsWindow + 1}
	if vals := statusValues[f.Status]; vals != nil {
		sf := engine.SearchFilter{Param: "status", Op: engine.SearchEq}
		for _, s := range vals {
			sf.Values = append(sf.Values, engine.SearchValue{Value: s})
		}
		query.Filters = append(query.Filters, sf)
	}
	if f.Q != "" {
		filter, err := ph.searchFilter(ctx, f)
		if err != nil {
			return err
		}
		query.Filters = append(query.Filters, filter)
	}
	var found []*engine.Resource
	if len(query.Filters) == 0 || len(query.Filters[len(query.Filters)-1].Values) > 0 {
		var err error
		if found, err = ph.read.SearchResources(ctx, query); err != nil {
			return err
		}
	}
	if len(found) > reportsWindow {
		found, v.Windowed = found[:reportsWindow], true
	}
	type item struct {
		r        *engine.Resource
		content  map[string]any
		critical bool
	}
	items := make([]item, 0, len(found))
	for _, r := range found {
		content, err := decode(r.JSON)
		if err != nil {
			return err
		}
		it := item{r: r, content: content, critical: isCritical(fhir.DiagnosticReportOf(content))}
		if f.Critical && !it.critical {
			continue
		}
		items = append(items, it)
	}
	// Critical and unread first, then newest (the search's order): which critical reports are
	// unread decides the order, so it is asked before paging.
	var critical []*engine.Resource
	for _, it := range items {
		if it.critical {
			critical = append(critical, it.r)
		}
	}
	opened, err := ph.opened(ctx, ident.User, critical)
	if err != nil {
		return err
	}
	slices.SortStableFunc(items, func(a, b item) int {
		ua := a.critical && !opened[versionKey(a.r)]
		ub := b.critical && !opened[versionKey(b.r)]
		switch {
		case ua && !ub:
			return -1
		case ub && !ua:
			return 1
		}
		return 0
	})
	start := (f.Page - 1) * reportsPageSize
	if start >= len(items) && f.Page > 1 {
		start = max(0, (len(items)-1)/reportsPageSize*reportsPageSize)
		f.Page = start/reportsPageSize + 1
		v.Form.Page = f.Page
	}
	end := min(start+reportsPageSize, len(items))
	page := items[start:end]
	shown := make([]*engine.Resource, len(page))
	for i, it := range page {
		shown[i] = it.r
	}
	if opened, err = ph.opened(ctx, ident.User, shown); err != nil {
		return err
	}
	cache := map[string]*engine.Resource{}
	for _, it := range page {
		row := ph.row(ctx, it.r, it.content, cache)
		row.Unread = !opened[versionKey(it.r)]
		v.Rows = append(v.Rows, row)
	}
	link := func(n int) *pageLink {
		l := &pageLink{Page: n}
		if !v.Searched {
			q := url.Values{"page": {strconv.Itoa(n)}}
			if f.Status != "" {
				q.Set("status", f.Status)
			}
			if f.Critical {
				q.Set("critical", "1")
			}
			l.Href = "/?" + q.Encode()
		}
		return l
	}
	if f.Page > 1 {
		v.Prev = link(f.Page - 1)
	}
	if end < len(items) {
		v.Next = link(f.Page + 1)
	}
	action := audit.ActionSearch
	e := &audit.Event{Action: action, Outcome: audit.OutcomeSuccess, Agent: ident.User, Role: string(ident.Role),
		Entity: "/ (reports: " + strconv.Itoa(len(v.Rows)) + " shown)"}
	if _, glass := disc.Result(); glass != "" {
		e.Detail = "break-glass: " + glass
	}
	ph.p.record(c, e)
	return ph.p.render(c, http.StatusOK, ph.pages, "physician_home.html", v)
}

// searchFilter turns the search into a filter of the report search: the patients a name or MRN
// finds, or the orders an accession number finds — each found through the limited reader, so
// a search never reveals another physician's patient.
func (ph *physician) searchFilter(ctx context.Context, f listForm) (engine.SearchFilter, error) {
	var q engine.ResourceQuery
	param := "patient"
	switch f.By {
	case "name":
		n := fhir.NormalizeString(f.Q)
		q = engine.ResourceQuery{Type: "Patient", Count: maxSearchPatients, Filters: []engine.SearchFilter{
			{Param: "name", Op: engine.SearchPrefix, Values: []engine.SearchValue{{Value: n}}}}}
		if n == "" {
			return engine.SearchFilter{Param: param}, nil
		}
	case "mrn":
		q = engine.ResourceQuery{Type: "Patient", Count: maxSearchPatients, Filters: []engine.SearchFilter{
			{Param: "identifier", Op: engine.SearchEq, Values: []engine.SearchValue{{Value: f.Q}}}}}
	case "accession":
		param = "based-on"
		q = engine.ResourceQuery{Type: "ServiceRequest", Count: maxSearchPatients, Filters: []engine.SearchFilter{
			{Param: "identifier", Op: engine.SearchEq, Values: []engine.SearchValue{{Value: f.Q}}}}}
	}
	found, err := ph.read.SearchResources(ctx, q)
	if err != nil {
		return engine.SearchFilter{}, err
	}
	out := engine.SearchFilter{Param: param, Op: engine.SearchEq}
	for _, r := range found {
		out.Values = append(out.Values, engine.SearchValue{Value: r.Type + "/" + r.ID})
	}
	return out, nil
}

// row gathers what the list shows of one report: its patient, order and study, each read
// through the limited reader (cache: the page's records by type/id).
func (ph *physician) row(ctx context.Context, r *engine.Resource, content map[string]any, cache map[string]*engine.Resource) reportRow {
	dr := fhir.DiagnosticReportOf(content)
	row := reportRow{ID: r.ID, Status: dr.Status, StatusClass: statusClass(dr.Status), Procedure: cmp.Or(dr.Code.Label(), "Report"),
		Critical: isCritical(dr), Updated: r.LastUpdated.UTC().Format("2006-01-02 15:04")}
	if pc := ph.cached(ctx, cache, dr.Subject.Reference); pc != nil {
		pt := fhir.PatientOf(pc)
		row.Patient, row.MRN = patientName(pt), mrn(pt)
	}
	for _, b := range dr.BasedOn {
		if oc := ph.cached(ctx, cache, b.Reference); oc != nil {
			row.Facility = engine.SendingFacility(fhir.ServiceRequestOf(oc))
			break
		}
	}
	for _, s := range dr.ImagingStudy {
		if sc := ph.cached(ctx, cache, s.Reference); sc != nil {
			row.Modality = modalities(sc)
			row.StudyDate = day(fhir.ImagingStudyOf(sc).Started)
			break
		}
	}
	if row.StudyDate == "" {
		row.StudyDate = day(str(content, "effectiveDateTime"))
	}
	return row
}

// cached reads the record a literal reference names through the limited reader, nil when it
// cannot be read (absent, or not the user's: the list then shows less, never another's data).
func (ph *physician) cached(ctx context.Context, cache map[string]*engine.Resource, ref string) map[string]any {
	typ, id := fhir.ReferenceTypeID(ref)
	if typ == "" || id == "" {
		return nil
	}
	r, ok := cache[typ+"/"+id]
	if !ok {
		var err error
		if r, err = ph.read.Resource(ctx, typ, id); err != nil {
			r = nil
		}
		cache[typ+"/"+id] = r
	}
	if r == nil {
		return nil
	}
	c, err := decode(r.JSON)
	if err != nil {
		return nil
	}
	return c
}

// viewEntity is the audit entity of a view of one report version; opened finds it again.
func viewEntity(id string, version int64) string {
	return fmt.Sprintf("/reports/%s (DiagnosticReport/%s/_history/%d)", id, id, version)
}

func versionKey(r *engine.Resource) string { return r.ID + "/" + strconv.FormatInt(r.VersionID, 10) }

// opened returns which of the report versions user has opened (by versionKey): the audit
// trail's views of them, read from the oldest version's time on (a version cannot be opened
// before it was stored), at most maxReadScan events.
func (ph *physician) opened(ctx context.Context, user string, reports []*engine.Resource) (map[string]bool, error) {
	out := map[string]bool{}
	if ph.data.Reads == nil || len(reports) == 0 {
		return out, nil
	}
	want := map[string]string{}
	from := reports[0].LastUpdated
	for _, r := range reports {
		want[viewEntity(r.ID, r.VersionID)] = versionKey(r)
		if r.LastUpdated.Before(from) {
			from = r.LastUpdated
		}
	}
	var after int64
	for scanned := 0; scanned < maxReadScan; {
		evs, err := ph.data.Reads.AuditEvents(ctx, audit.Filter{Agent: user, From: from.Add(-time.Second), AfterSeq: after, Limit: 1000})
		if err != nil {
			return nil, fmt.Errorf("reading which reports %s opened: %w", user, err)
		}
		for _, e := range evs {
			if e.Action == audit.ActionRead && e.Outcome == audit.OutcomeSuccess {
				if k, ok := want[e.Entity]; ok {
					out[k] = true
				}
			}
			after = e.Seq
		}
		scanned += len(evs)
		if len(evs) < 1000 {
			break
		}
	}
	return out, nil
}

// reportPage is what /reports/{id} shows.
type reportPage struct {
	ID, Status, StatusClass, Procedure, Interpreter string
	Version, Latest                                 int64
	Issued                                          string
	Critical                                        bool
	Ack                                             *ackView
	AckForm                                         bool
	// Body is the report: sanitised HTML, or text (Text) when it has no HTML.
	Body     template.HTML
	Text     string
	Versions []versionView
	Diff     *diffView
	Patient  patientView
	Order    orderView
	Clocks   []clockView
	SLA      string
	Priors   []priorView
	Images   []imageView
	Studies  []studyLink
	Glass    string
}

type ackView struct{ By, At string }

type versionView struct {
	N                   int64
	Status, StatusClass string
	At                  string
	Current, Shown      bool
}

type diffView struct {
	From, To int64
	HTML     template.HTML
}

type patientView struct {
	Name, Sex, BirthDate, Age, MRN, Issuer, Facility string
}

type orderView struct {
	Procedure, Reason, Priority, Ordering, Referring, OrderedAt, StudyAt, Accession string
}

type clockView struct {
	Stage, At, Due string
	Late           bool
}

type priorView struct {
	ID, Procedure, Status, StatusClass, Date, Modality, Facility string
	StudyUID                                                     string
}

type imageView struct {
	Src, Alt, Study string
}

type studyLink struct {
	UID, Label string
}

// report serves GET /reports/{id}[?version=N].
func (ph *physician) report(c echo.Context) error {
	ident, sess, _ := ph.p.session(c)
	if ident == nil {
		return c.Redirect(http.StatusSeeOther, "/login?next="+url.QueryEscape(c.Request().URL.RequestURI()))
	}
	id := c.Param("id")
	entity := "/reports/" + id
	if !ident.Grants(access.PermFHIRRead) {
		ph.p.record(c, &audit.Event{Action: audit.ActionAccess, Outcome: audit.OutcomeMinor, Agent: ident.User,
			Role: string(ident.Role), Entity: entity, Detail: "forbidden"})
		return echo.NewHTTPError(http.StatusForbidden, "reports are for physicians, radiologists and admins")
	}
	ctx, disc := ph.reader(c.Request().Context(), ident)
	refused := func() error {
		patient, _ := disc.Result()
		ph.p.record(c, &audit.Event{Action: audit.ActionRead, Outcome: audit.OutcomeMinor, Agent: ident.User,
			Role: string(ident.Role), Entity: entity, Patient: patient, Detail: "refused: not found or not among the user's patients"})
		v := ph.base(ident, sess, "Not found")
		return ph.p.render(c, http.StatusNotFound, ph.pages, "physician_notfound.html", v)
	}
	history, err := ph.read.ResourceHistory(ctx, "DiagnosticReport", id)
	if errors.Is(err, engine.ErrNotFound) || err == nil && len(history) == 0 {
		return refused()
	} else if err != nil {
		return err
	}
	// history is newest first.
	shown := history[0]
	if s := c.QueryParam("version"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		i := slices.IndexFunc(history, func(r *engine.Resource) bool { return r.VersionID == n })
		if err != nil || i < 0 {
			return refused()
		}
		shown = history[i]
	}
	content, err := decode(shown.JSON)
	if err != nil {
		return err
	}
	dr := fhir.DiagnosticReportOf(content)
	rp := &reportPage{ID: id, Status: dr.Status, StatusClass: statusClass(dr.Status), Procedure: cmp.Or(dr.Code.Label(), "Report"),
		Version: shown.VersionID, Latest: history[0].VersionID, Critical: isCritical(dr), Issued: when(str(content, "issued"))}
	for _, ri := range dr.ResultsInterpreter {
		rp.Interpreter = cmp.Or(rp.Interpreter, ri.Display)
	}
	rp.Body, rp.Text = reportBody(dr, content)
	for i, h := range history {
		hc, err := decode(h.JSON)
		if err != nil {
			return err
		}
		st := str(hc, "status")
		rp.Versions = append(rp.Versions, versionView{N: h.VersionID, Status: st, StatusClass: statusClass(st),
			At: h.LastUpdated.UTC().Format("2006-01-02 15:04 UTC"), Current: i == 0, Shown: h == shown})
		// What changed: the shown version against the one before it.
		if h.VersionID < shown.VersionID && rp.Diff == nil {
			_, oldText := reportBody(fhir.DiagnosticReportOf(hc), hc)
			_, newText := reportBody(dr, content)
			if oldText != newText {
				rp.Diff = &diffView{From: h.VersionID, To: shown.VersionID, HTML: textdiff.HTML(textdiff.Diff(oldText, newText))}
			}
		}
	}
	cache := map[string]*engine.Resource{}
	patientID := ""
	if typ, pid := dr.Subject.TypeID(); typ == "Patient" {
		patientID = pid
	}
	if pc := ph.cached(ctx, cache, dr.Subject.Reference); pc != nil {
		pt := fhir.PatientOf(pc)
		rp.Patient = patientView{Name: patientName(pt), Sex: pt.Gender, BirthDate: pt.BirthDate, Age: age(pt.BirthDate, time.Now()), MRN: mrn(pt), Issuer: issuer(pt)}
	}
	var order fhir.ServiceRequest
	orderID := ""
	for _, b := range dr.BasedOn {
		if typ, oid := b.TypeID(); typ == "ServiceRequest" {
			if oc := ph.cached(ctx, cache, b.Reference); oc != nil {
				order, orderID = fhir.ServiceRequestOf(oc), oid
				break
			}
		}
	}
	if orderID != "" {
		rp.Order = orderView{Procedure: order.Code.Label(), Priority: order.Priority, OrderedAt: when(order.AuthoredOn),
			Reason: reasons(order), Accession: accession(order.Identifier)}
		if rp.Order.Procedure == "" {
			rp.Order.Procedure = rp.Procedure
		}
		rp.Patient.Facility = engine.SendingFacility(order)
		if pc := ph.cached(ctx, cache, order.Requester.Reference); pc != nil {
			rp.Order.Ordering = practitionerName(pc)
		}
		rp.Order.Ordering = cmp.Or(rp.Order.Ordering, order.Requester.Display)
	}
	// The studies of the order (or the report's own), their key images.
	studies, err := ph.studies(ctx, orderID, dr)
	if err != nil {
		return err
	}
	for _, sc := range studies {
		uid := studyUID(sc)
		if uid == "" {
			continue
		}
		is := fhir.ImagingStudyOf(sc)
		if rp.Order.StudyAt == "" {
			rp.Order.StudyAt = when(is.Started)
		}
		if ref := asMap(sc["referrer"]); ref != nil && rp.Order.Referring == "" {
			rp.Order.Referring = str(ref, "display")
			if pc := ph.cached(ctx, cache, str(ref, "reference")); pc != nil {
				rp.Order.Referring = cmp.Or(practitionerName(pc), rp.Order.Referring)
			}
		}
		rp.Studies = append(rp.Studies, studyLink{UID: uid, Label: cmp.Or(str(sc, "description"), modalities(sc), "Study")})
		for _, s := range list(sc, "series") {
			sm := asMap(s)
			suid := str(sm, "uid")
			if suid == "" || len(rp.Images) >= maxThumbnails {
				continue
			}
			rp.Images = append(rp.Images, imageView{Study: uid,
				Src: "/dicomweb/studies/" + url.PathEscape(uid) + "/series/" + url.PathEscape(suid) + "/thumbnail",
				Alt: strings.TrimSpace("Series " + str(sm, "number") + " " + cmp.Or(str(sm, "description"), str(asMap(sm["modality"]), "code")))})
		}
	}
	if ph.data.Turnaround != nil && orderID != "" {
		clk, err := ph.data.Turnaround.Turnaround(ctx, orderID)
		if err != nil && !errors.Is(err, engine.ErrNotFound) {
			return err
		}
		if clk != nil {
			rp.Clocks, rp.SLA = ph.clocks(clk)
		}
	}
	if patientID != "" {
		if rp.Priors, err = ph.priors(ctx, patientID, id, cache); err != nil {
			return err
		}
	}
	if rp.Critical && ph.p.opt.Critical != nil {
		by, at, ok, err := ph.p.opt.Critical.Acknowledgement(ctx, id)
		if err != nil {
			return err
		}
		if ok {
			rp.Ack = &ackView{By: by, At: at.UTC().Format("2006-01-02 15:04 UTC")}
		} else {
			rp.AckForm = true
		}
	}
	_, rp.Glass = disc.Result()
	e := &audit.Event{Action: audit.ActionRead, Outcome: audit.OutcomeSuccess, Agent: ident.User, Role: string(ident.Role),
		Entity: viewEntity(id, shown.VersionID)}
	if patientID != "" {
		e.Patient = "Patient/" + patientID
	}
	if rp.Glass != "" {
		e.Detail = "break-glass: " + rp.Glass
	}
	ph.p.record(c, e)
	v := ph.base(ident, sess, rp.Procedure)
	v.Report = rp
	return ph.p.render(c, http.StatusOK, ph.pages, "physician_report.html", v)
}

// studies returns the ImagingStudies of the order (ImagingStudy.basedOn), or the report's own
// references when it has no order.
func (ph *physician) studies(ctx context.Context, orderID string, dr fhir.DiagnosticReport) ([]map[string]any, error) {
	var out []map[string]any
	if orderID != "" {
		found, err := ph.read.SearchResources(ctx, engine.ResourceQuery{Type: "ImagingStudy", Count: 10, Filters: []engine.SearchFilter{
			{Param: "basedon", Op: engine.SearchEq, Values: []engine.SearchValue{{Value: "ServiceRequest/" + orderID}}}}})
		if err != nil {
			return nil, err
		}
		for _, r := range found {
			if c, err := decode(r.JSON); err == nil {
				out = append(out, c)
			}
		}
	}
	if len(out) == 0 {
		for _, ref := range dr.ImagingStudy {
			if typ, sid := ref.TypeID(); typ == "ImagingStudy" {
				if r, err := ph.read.Resource(ctx, typ, sid); err == nil {
					if c, err := decode(r.JSON); err == nil {
						out = append(out, c)
					}
				}
			}
		}
	}
	return out, nil
}

// priors returns the person's other reports, newest first: of this patient record and of every
// record linked to it (a merge's replaces / replaced-by, FHIR's refer and seealso), at any
// facility — each read through the limited reader, so only what the user reaches.
func (ph *physician) priors(ctx context.Context, patientID, reportID string, cache map[string]*engine.Resource) ([]priorView, error) {
	ids := []string{patientID}
	for i := 0; i < len(ids) && len(ids) < 16; i++ {
		pc := ph.cached(ctx, cache, "Patient/"+ids[i])
		if pc == nil {
			continue
		}
		for _, l := range fhir.PatientOf(pc).Link {
			if typ, other := l.Other.TypeID(); typ == "Patient" && !slices.Contains(ids, other) {
				ids = append(ids, other)
			}
		}
	}
	f := engine.SearchFilter{Param: "patient", Op: engine.SearchEq}
	for _, pid := range ids {
		f.Values = append(f.Values, engine.SearchValue{Value: "Patient/" + pid})
	}
	found, err := ph.read.SearchResources(ctx, engine.ResourceQuery{Type: "DiagnosticReport", Count: maxPriors + 1, Filters: []engine.SearchFilter{f}})
	if err != nil {
		return nil, err
	}
	var out []priorView
	for _, r := range found {
		if r.ID == reportID {
			continue
		}
		content, err := decode(r.JSON)
		if err != nil {
			return nil, err
		}
		row := ph.row(ctx, r, content, cache)
		pv := priorView{ID: r.ID, Procedure: row.Procedure, Status: row.Status, StatusClass: row.StatusClass, Date: row.StudyDate,
			Modality: row.Modality, Facility: row.Facility}
		for _, s := range fhir.DiagnosticReportOf(content).ImagingStudy {
			if sc := ph.cached(ctx, cache, s.Reference); sc != nil {
				pv.StudyUID = studyUID(sc)
				break
			}
		}
		out = append(out, pv)
	}
	return out[:min(len(out), maxPriors)], nil
}

// clocks shows the order's milestones, each preliminary and final against its due time.
func (ph *physician) clocks(t *turnaround.Clocks) ([]clockView, string) {
	slas := ph.data.SLAs
	if slas == nil {
		slas = turnaround.DefaultSLAs()
	}
	var out []clockView
	for _, s := range []struct {
		stage turnaround.Stage
		label string
	}{{turnaround.Ordered, "Ordered"}, {turnaround.Study, "Study complete"}, {turnaround.Preliminary, "Preliminary report"}, {turnaround.Final, "Final report"}} {
		cv := clockView{Stage: s.label}
		at := t.At(s.stage)
		if !at.IsZero() {
			cv.At = at.UTC().Format("2006-01-02 15:04 UTC")
		}
		if due, ok := slas.Due(t, s.stage); ok {
			cv.Due = due.UTC().Format("2006-01-02 15:04 UTC")
			cv.Late = at.IsZero() && time.Now().After(due) && t.FinalAt.IsZero() || !at.IsZero() && at.After(due)
		}
		out = append(out, cv)
	}
	sla := ""
	if d, ok := slas[t.Priority]; ok {
		parts := []string{}
		if d.Preliminary > 0 {
			parts = append(parts, "preliminary within "+spoken(d.Preliminary))
		}
		if d.Final > 0 {
			parts = append(parts, "final within "+spoken(d.Final))
		}
		if len(parts) > 0 {
			sla = cmp.Or(t.Priority, "routine") + ": " + strings.Join(parts, ", ") + " of the study"
		}
	}
	return out, sla
}

// reportBody returns the report as sanitised HTML (a text/html presentedForm, through the
// project's allow list, engine.SanitizeNarrativeHTML) and as text (the conclusion, a text/plain
// form, else the HTML's text): the text is what versions are compared by.
func reportBody(dr fhir.DiagnosticReport, content map[string]any) (template.HTML, string) {
	var htmlDoc, plain string
	for _, f := range dr.PresentedForm {
		mediaType, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(f.ContentType)), ";")
		raw, err := base64.StdEncoding.DecodeString(f.Data)
		if err != nil || len(raw) == 0 {
			continue
		}
		switch mediaType {
		case "text/html", "application/xhtml+xml":
			if htmlDoc == "" {
				htmlDoc = string(raw)
			}
		case "text/plain":
			if plain == "" {
				plain = string(raw)
			}
		}
	}
	text := cmp.Or(dr.Conclusion, plain)
	var body template.HTML
	if htmlDoc != "" {
		// A stored form is a whole document: keep its body's content.
		if _, rest, ok := strings.Cut(htmlDoc, "<body>"); ok {
			htmlDoc, _, _ = strings.Cut(rest, "</body>")
		}
		clean := engine.SanitizeNarrativeHTML(htmlDoc)
		body = template.HTML(clean) //nolint:gosec // sanitised by the allow list just above
		if text == "" {
			text = strings.TrimSpace(bluemonday.StrictPolicy().Sanitize(strings.NewReplacer("<br>", "\n", "</p>", "\n\n").Replace(clean)))
		}
	}
	if text == "" {
		if div, ok := fhir.NarrativeDiv(content); ok {
			text = bluemonday.StrictPolicy().Sanitize(div)
		}
	}
	return body, text
}

// isCritical reports whether a report carries the critical-finding extension.
func isCritical(r fhir.DiagnosticReport) bool {
	return slices.ContainsFunc(r.Extension, func(e fhir.Extension) bool { return e.URL == engine.CriticalFindingURL && e.ValueBoolean })
}

// statusClass is the badge of a report status: preliminary, final or amended.
func statusClass(s string) string {
	for class, vals := range statusValues {
		if slices.Contains(vals, s) {
			return class
		}
	}
	return "other"
}

func decode(b []byte) (map[string]any, error) {
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("reading a stored resource: %w", err)
	}
	return c, nil
}

func asMap(x any) map[string]any { m, _ := x.(map[string]any); return m }

func str(c map[string]any, k string) string {
	switch v := c[k].(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return ""
}

func list(c map[string]any, k string) []any { l, _ := c[k].([]any); return l }

// patientName is "FAMILY, Given Middle" (the official or first name).
func patientName(p fhir.Patient) string {
	if len(p.Name) == 0 {
		return "(no name)"
	}
	n := p.Name[0]
	for _, cand := range p.Name {
		if cand.Use == "official" {
			n = cand
			break
		}
	}
	if n.Family == "" && len(n.Given) == 0 {
		return cmp.Or(n.Text, "(no name)")
	}
	if len(n.Given) == 0 {
		return n.Family
	}
	return strings.TrimPrefix(n.Family+", "+strings.Join(n.Given, " "), ", ")
}

// mrnIdentifier is the patient's medical record number: the identifier typed MR, else the first.
func mrnIdentifier(p fhir.Patient) (fhir.Identifier, bool) {
	for _, id := range p.Identifier {
		if id.TypeCode() == "MR" {
			return id, true
		}
	}
	if len(p.Identifier) > 0 {
		return p.Identifier[0], true
	}
	return fhir.Identifier{}, false
}

func mrn(p fhir.Patient) string {
	id, _ := mrnIdentifier(p)
	return id.Value
}

func issuer(p fhir.Patient) string {
	id, _ := mrnIdentifier(p)
	return cmp.Or(id.Assigner, id.System)
}

func practitionerName(c map[string]any) string {
	p := fhir.PatientOf(c) // a Practitioner's name and identifiers read as a Patient's do
	if len(p.Name) == 0 {
		return ""
	}
	return patientName(p)
}

func accession(ids []fhir.Identifier) string {
	for _, id := range ids {
		if id.TypeCode() == "ACSN" {
			return id.Value
		}
	}
	return ""
}

func reasons(o fhir.ServiceRequest) string {
	var out []string
	for _, r := range o.ReasonCode {
		label := r.Label()
		if label == "" {
			for _, cd := range r.Coding {
				if cd.Code != "" {
					label = cd.Code
					break
				}
			}
		}
		if label != "" && !slices.Contains(out, label) {
			out = append(out, label)
		}
	}
	return strings.Join(out, "; ")
}

func modalities(study map[string]any) string {
	var out []string
	for _, m := range list(study, "modality") {
		if code := str(asMap(m), "code"); code != "" && !slices.Contains(out, code) {
			out = append(out, code)
		}
	}
	for _, s := range list(study, "series") {
		if code := str(asMap(asMap(s)["modality"]), "code"); code != "" && !slices.Contains(out, code) {
			out = append(out, code)
		}
	}
	return strings.Join(out, ", ")
}

// studyUID is the StudyInstanceUID of an ImagingStudy (its identifier "urn:oid:<uid>").
func studyUID(study map[string]any) string {
	for _, id := range fhir.ImagingStudyOf(study).Identifier {
		if uid, ok := strings.CutPrefix(id.Value, "urn:oid:"); ok {
			return uid
		}
	}
	return ""
}

// day is a FHIR date or dateTime's date.
func day(s string) string {
	if len(s) >= 10 {
		return s[:10]
	}
	return s
}

// when shows a FHIR dateTime in UTC, or as it is when it has no time zone.
func when(s string) string {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC().Format("2006-01-02 15:04 UTC")
	}
	return s
}

// age is a person's age in whole years on now, "" when the birth date is not a full date.
func age(birth string, now time.Time) string {
	b, err := time.Parse("2006-01-02", birth)
	if err != nil {
		return ""
	}
	y := now.Year() - b.Year()
	if now.Month() < b.Month() || now.Month() == b.Month() && now.Day() < b.Day() {
		y--
	}
	if y < 0 {
		return ""
	}
	return strconv.Itoa(y)
}
