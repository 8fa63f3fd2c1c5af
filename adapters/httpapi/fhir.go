package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
	"github.com/ferryhealth/ferry/fhir"
)

// The FHIR R4 REST API under /fhir/r4 (docs/fhir.md): metadata, read, vread, history and search
// of the types fhir.SearchTypes lists. Every answer is FHIR JSON; every error an
// OperationOutcome. All but GET metadata need the admin bearer token.

const (
	fhirBasePath    = "/fhir/r4"
	fhirContentType = "application/fhir+json; charset=utf-8"
	// defaultPageSize is _count when a search gives none; maxPageSize caps it (the store serves
	// at most 1000 per query).
	defaultPageSize = 20
	maxPageSize     = 1000
)

// FHIRResources is what the FHIR API reads: stored resource versions. engine.ResourceReader
// (every engine.Store) provides it; see there for each method's contract.
type FHIRResources interface {
	Resource(ctx context.Context, typ, id string) (*engine.Resource, error)
	ResourceVersion(ctx context.Context, typ, id string, version int64) (*engine.Resource, error)
	ResourceHistory(ctx context.Context, typ, id string) ([]*engine.Resource, error)
	SearchResources(ctx context.Context, q engine.ResourceQuery) ([]*engine.Resource, error)
}

var _ FHIRResources = engine.ResourceReader(nil)

type fhirAPI struct {
	store           FHIRResources
	reports         ReportIntake
	logger          *slog.Logger
	types           []string // the resource types served, sorted
	started         time.Time
	softwareVersion string
	xref            CrossReference // nil: Patient searches by the Patients' identifiers only
}

// registerFHIR adds the FHIR routes to g (mounted at /fhir/r4). Errors of every route under g,
// authentication included, are answered as OperationOutcome by the group's middleware, not by
// the server's JSON error handler.
func registerFHIR(g *echo.Group, opt Options) {
	a := &fhirAPI{store: opt.Resources, logger: opt.Logger, types: fhir.SearchTypes(), started: time.Now(), xref: opt.CrossReference}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		a.softwareVersion = info.Main.Version
	}
	g.Use(a.outcomes, a.negotiate)
	need := opt.gate.Require
	search, read := need(access.PermFHIRRead, audit.ActionSearch), need(access.PermFHIRRead, audit.ActionRead)

	// Every route needs an identity, metadata too (issue 12: only health, readiness and login
	// are open); it discloses no patient data, so any identity reads it.
	g.GET("/metadata", a.metadata, need("", ""))
	if opt.AuditEvents != nil {
		g.GET("/AuditEvent", auditSearch(opt.AuditEvents), need(access.PermAudit, audit.ActionSearch))
	}
	if a.xref != nil {
		g.GET("/Patient/$ihe-pix", a.pix, read) // IHE PIXm (ITI-83)
	}
	g.GET("/:type", a.search, search)
	g.GET("/:type/_search", a.search, search)
	g.POST("/:type/_search", a.search, search)
	g.GET("/:type/:id", a.read, read)
	g.GET("/:type/:id/_history", a.history, read)
	g.GET("/:type/:id/_history/:vid", a.vread, read)

	// Reports come in as DiagnosticReports (issue: reports → the ordering hospital): create and
	// update, nothing else; any other write is refused as FHIR does.
	if opt.Reports != nil {
		a.reports = opt.Reports
		g.POST("/DiagnosticReport", a.submitReport, need(access.PermReportsWrite, audit.ActionCreate))
		g.PUT("/DiagnosticReport/:id", a.submitReport, need(access.PermReportsWrite, audit.ActionUpdate))
	}
	writes := []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}
	for _, p := range []string{"/metadata", "/:type", "/:type/:id", "/:type/:id/_history", "/:type/:id/_history/:vid"} {
		g.Match(writes, p, a.methodNotAllowed)
	}
	g.Match([]string{http.MethodPut, http.MethodPatch, http.MethodDelete}, "/:type/_search", a.methodNotAllowed)
}

// outcomeError is an error answered with status and an OperationOutcome.
type outcomeError struct {
	status  int
	outcome *fhir.OperationOutcome
}

func (e *outcomeError) Error() string {
	if len(e.outcome.Issue) == 0 {
		return http.StatusText(e.status)
	}
	return string(e.outcome.Issue[0].Code) + ": " + e.outcome.Issue[0].Diagnostics
}

func fhirErr(status int, code fhir.IssueType, diagnostics string, expression ...string) *outcomeError {
	return &outcomeError{status: status, outcome: fhir.NewOperationOutcome(fhir.SeverityError, code, diagnostics, expression...)}
}

// outcomes answers every error of the FHIR routes (and of the auth middleware inside them) with
// an OperationOutcome. Internal errors are logged and answered without detail.
func (a *fhirAPI) outcomes(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		if err == nil || c.Response().Committed {
			return err
		}
		var oe *outcomeError
		var he *echo.HTTPError
		switch {
		case errors.As(err, &oe):
		case errors.As(err, &he):
			msg, _ := he.Message.(string)
			if msg == "" {
				msg = http.StatusText(he.Code)
			}
			code := fhir.IssueProcessing
			switch he.Code {
			case http.StatusBadRequest:
				code = fhir.IssueInvalid
			case http.StatusUnauthorized:
				code = fhir.IssueLogin
			case http.StatusForbidden:
				code = fhir.IssueForbidden
			case http.StatusNotFound:
				code, msg = fhir.IssueNotFound, "no such FHIR endpoint: "+c.Request().Method+" "+c.Request().URL.Path
			case http.StatusMethodNotAllowed, http.StatusNotAcceptable, http.StatusUnsupportedMediaType:
				code = fhir.IssueNotSupported
			}
			if he.Code >= 500 {
				a.logger.Error("FHIR request failed", "method", c.Request().Method, "path", c.Path(), "err", err)
				code, msg = fhir.IssueException, "internal error"
			}
			oe = &outcomeError{status: he.Code, outcome: fhir.NewOperationOutcome(fhir.SeverityError, code, msg)}
		case errors.Is(err, engine.ErrNotFound):
			oe = fhirErr(http.StatusNotFound, fhir.IssueNotFound, "not found")
		default:
			a.logger.Error("FHIR request failed", "method", c.Request().Method, "path", c.Path(), "err", err)
			oe = fhirErr(http.StatusInternalServerError, fhir.IssueException, "internal error")
		}
		return writeFHIR(c, oe.status, oe.outcome)
	}
}

// negotiate admits requests that accept FHIR JSON: _format json / application/fhir+json /
// application/json (or none), and an Accept header that allows one of those (or none). XML and
// everything else get 406.
func (a *fhirAPI) negotiate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if f := c.QueryParam("_format"); f != "" && !jsonFormat(f) {
			return fhirErr(http.StatusNotAcceptable, fhir.IssueNotSupported,
				"_format: Ferry serves FHIR JSON only (json, application/fhir+json, application/json)", "_format")
		}
		if accept := c.Request().Header.Get(echo.HeaderAccept); accept != "" && !acceptsJSON(accept) {
			return fhirErr(http.StatusNotAcceptable, fhir.IssueNotSupported,
				"Accept: Ferry serves FHIR JSON only (application/fhir+json, application/json)")
		}
		return next(c)
	}
}

func jsonFormat(f string) bool {
	mt, _, err := mime.ParseMediaType(f)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(f))
	}
	switch mt {
	case "json", "application/json", "application/fhir+json", "application/json+fhir":
		return true
	}
	return false
}

func acceptsJSON(accept string) bool {
	for _, r := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(r))
		if err != nil || params["q"] == "0" {
			continue
		}
		switch mt {
		case "*/*", "application/*", "application/json", "application/fhir+json", "application/json+fhir":
			return true
		}
	}
	return false
}

func (a *fhirAPI) methodNotAllowed(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderAllow, http.MethodGet)
	return fhirErr(http.StatusMethodNotAllowed, fhir.IssueNotSupported,
		c.Request().Method+" is not supported here: Ferry's FHIR API is read-only (read, vread, history, search)")
}

// writeFHIR answers with v as FHIR JSON.
func writeFHIR(c echo.Context, status int, v any) error {
	body, err := fhir.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding the FHIR response: %w", err)
	}
	return c.Blob(status, fhirContentType, body)
}

// baseURL is this server's FHIR base as the client reached it.
func baseURL(c echo.Context) string {
	return c.Scheme() + "://" + c.Request().Host + fhirBasePath
}

// audit records who read what, as the admin API does: the log line names the resources
// disclosed (type and id, never their content) and the caller's address.
func (a *fhirAPI) audit(c echo.Context, action, typ string, ids []string, attrs ...any) {
	args := append([]any{"type", typ, "ids", ids, "remote", c.RealIP()}, attrs...)
	a.logger.Info("audit: FHIR "+action, args...)
}

func (a *fhirAPI) metadata(c echo.Context) error {
	opt := fhir.CapabilityOptions{BaseURL: baseURL(c), SoftwareVersion: a.softwareVersion, Date: a.started,
		PageSize: defaultPageSize, MaxPageSize: maxPageSize}
	if a.reports != nil {
		opt.Writable = []string{"DiagnosticReport"}
	}
	return writeFHIR(c, http.StatusOK, fhir.NewCapabilityStatement(opt))
}

// resourceType returns the :type of the route when Ferry serves it.
func (a *fhirAPI) resourceType(c echo.Context) (string, error) {
	typ := c.Param("type")
	if _, ok := slices.BinarySearch(a.types, typ); !ok {
		return "", fhirErr(http.StatusNotFound, fhir.IssueNotSupported,
			fmt.Sprintf("resource type %q is not served here (served: %s)", typ, strings.Join(a.types, ", ")))
	}
	return typ, nil
}

// typeAndID returns the :type and :id of the route, both checked.
func (a *fhirAPI) typeAndID(c echo.Context) (string, string, error) {
	typ, err := a.resourceType(c)
	if err != nil {
		return "", "", err
	}
	id := c.Param("id")
	if !engine.ValidResourceID(id) {
		return "", "", fhirErr(http.StatusBadRequest, fhir.IssueInvalid, "id: want 1 to 64 of A-Z a-z 0-9 - .")
	}
	return typ, id, nil
}

func notFound(typ, id string) error {
	return fhirErr(http.StatusNotFound, fhir.IssueNotFound, typ+"/"+id+" is not known")
}

// writeVersion answers with one stored version and its ETag and Last-Modified.
func writeVersion(c echo.Context, r *engine.Resource) error {
	h := c.Response().Header()
	h.Set("ETag", fhir.ETag(r.VersionID))
	if !r.LastUpdated.IsZero() {
		h.Set(echo.HeaderLastModified, r.LastUpdated.UTC().Format(http.TimeFormat))
	}
	return c.Blob(http.StatusOK, fhirContentType, r.JSON)
}

// ReportIntake takes reports from the reading platform: *engine.Reports implements it.
type ReportIntake interface {
	// Submit stores a DiagnosticReport (id "" for a create) and returns the version stored and
	// whether it was created; a refused report is an *engine.ReportError.
	Submit(ctx context.Context, body []byte, id string) (*engine.Resource, bool, error)
}

// maxReportBody caps a DiagnosticReport's body (a PDF in presentedForm included).
const maxReportBody = 32 << 20

// submitReport serves POST /fhir/r4/DiagnosticReport and PUT /fhir/r4/DiagnosticReport/:id:
// 201 Created with Location for a new report, 200 for a new version (or a repeat of the
// current one), an OperationOutcome for a refused one.
func (a *fhirAPI) submitReport(c echo.Context) error {
	id := c.Param("id")
	if c.Request().Method == http.MethodPut && !engine.ValidResourceID(id) {
		return fhirErr(http.StatusBadRequest, fhir.IssueInvalid, "id: want [A-Za-z0-9-.]{1,64}")
	}
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, maxReportBody+1))
	if err != nil {
		return fhirErr(http.StatusBadRequest, fhir.IssueInvalid, "reading the body: "+err.Error())
	}
	if len(body) > maxReportBody {
		return fhirErr(http.StatusRequestEntityTooLarge, fhir.IssueInvalid, fmt.Sprintf("the report is over %d bytes", maxReportBody))
	}
	if id != "" {
		var head struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(body, &head) == nil && head.ID != "" && head.ID != id {
			return fhirErr(http.StatusBadRequest, fhir.IssueInvalid, "the body's id is not the URL's", "DiagnosticReport.id")
		}
	}
	r, created, err := a.reports.Submit(c.Request().Context(), body, id)
	var re *engine.ReportError
	if errors.As(err, &re) {
		a.logger.Info("report refused", "status", re.Status, "reason", re.Error(), "remote", c.RealIP())
		return &outcomeError{status: re.Status, outcome: re.Outcome}
	} else if err != nil {
		return fmt.Errorf("storing a DiagnosticReport: %w", err)
	}
	SetAuditPatient(c, audit.PatientOf("DiagnosticReport", r.ID, r.JSON))
	a.audit(c, "write", "DiagnosticReport", []string{r.ID}, "version", r.VersionID, "created", created)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		c.Response().Header().Set(echo.HeaderLocation, baseURL(c)+"/DiagnosticReport/"+r.ID+"/_history/"+strconv.FormatInt(r.VersionID, 10))
	}
	c.Response().Header().Set("ETag", fhir.ETag(r.VersionID))
	return c.Blob(status, fhirContentType, r.JSON)
}

// read serves GET /fhir/r4/:type/:id
func (a *fhirAPI) read(c echo.Context) error {
	typ, id, err := a.typeAndID(c)
	if err != nil {
		return err
	}
	r, err := a.store.Resource(c.Request().Context(), typ, id)
	if errors.Is(err, engine.ErrNotFound) {
		return notFound(typ, id)
	} else if err != nil {
		return fmt.Errorf("reading %s/%s: %w", typ, id, err)
	}
	SetAuditPatient(c, audit.PatientOf(typ, id, r.JSON))
	a.audit(c, "read", typ, []string{id}, "version", r.VersionID)
	return writeVersion(c, r)
}

// vread serves GET /fhir/r4/:type/:id/_history/:vid
func (a *fhirAPI) vread(c echo.Context) error {
	typ, id, err := a.typeAndID(c)
	if err != nil {
		return err
	}
	if strings.Contains(c.Param("vid"), "/") {
		// echo lets the route's last parameter take the rest of the path.
		return echo.ErrNotFound
	}
	vid, err := strconv.ParseInt(c.Param("vid"), 10, 64)
	if err != nil || vid <= 0 {
		return fhirErr(http.StatusBadRequest, fhir.IssueInvalid, "version id: want a positive integer")
	}
	r, err := a.store.ResourceVersion(c.Request().Context(), typ, id, vid)
	if errors.Is(err, engine.ErrNotFound) {
		return fhirErr(http.StatusNotFound, fhir.IssueNotFound, fmt.Sprintf("%s/%s has no version %d", typ, id, vid))
	} else if err != nil {
		return fmt.Errorf("reading %s/%s version %d: %w", typ, id, vid, err)
	}
	SetAuditPatient(c, audit.PatientOf(typ, id, r.JSON))
	a.audit(c, "vread", typ, []string{id}, "version", vid)
	return writeVersion(c, r)
}

// history serves GET /fhir/r4/:type/:id/_history: every version, newest first, in one page.
func (a *fhirAPI) history(c echo.Context) error {
	typ, id, err := a.typeAndID(c)
	if err != nil {
		return err
	}
	versions, err := a.store.ResourceHistory(c.Request().Context(), typ, id)
	if errors.Is(err, engine.ErrNotFound) || err == nil && len(versions) == 0 {
		return notFound(typ, id)
	} else if err != nil {
		return fmt.Errorf("reading the history of %s/%s: %w", typ, id, err)
	}
	base := baseURL(c)
	entries := make([]fhir.StoredResource, len(versions))
	SetAuditPatient(c, audit.PatientOf(typ, id, versions[0].JSON))
	for i, r := range versions {
		entries[i] = stored(r)
	}
	a.audit(c, "history", typ, []string{id}, "versions", len(versions))
	self := []fhir.BundleLink{{Relation: "self", URL: base + "/" + typ + "/" + id + "/_history"}}
	return writeFHIR(c, http.StatusOK, fhir.NewHistory(base, entries, self))
}

func stored(r *engine.Resource) fhir.StoredResource {
	return fhir.StoredResource{Type: r.Type, ID: r.ID, VersionID: r.VersionID, LastUpdated: r.LastUpdated, JSON: r.JSON}
}

// search serves GET /fhir/r4/:type?params and POST /fhir/r4/:type/_search (form body).
func (a *fhirAPI) search(c echo.Context) error {
	typ, err := a.resourceType(c)
	if err != nil {
		return err
	}
	params := c.QueryParams()
	if c.Request().Method == http.MethodPost {
		if params, err = c.FormParams(); err != nil {
			return fhirErr(http.StatusBadRequest, fhir.IssueInvalid, "reading the form body: want application/x-www-form-urlencoded")
		}
	}
	lenient := preferLenient(c.Request().Header.Values("Prefer"))
	s, err := parseSearch(typ, params, lenient)
	if err != nil {
		return err
	}
	if err := a.resolveIdentifiers(c.Request().Context(), s); err != nil {
		return err
	}
	if err := a.crossReference(c.Request().Context(), typ, s); err != nil {
		return err
	}
	q := engine.ResourceQuery{Type: typ, Filters: s.filters, Offset: s.offset, Count: min(s.count+1, maxPageSize)}
	found, err := a.store.SearchResources(c.Request().Context(), q)
	if err != nil {
		return fmt.Errorf("searching %s: %w", typ, err)
	}
	// One more than the page was asked for to know whether a next page exists; a page of the
	// store's maximum is assumed to have one.
	more := len(found) > s.count || (q.Count == s.count && len(found) == s.count)
	if len(found) > s.count {
		found = found[:s.count]
	}
	total := -1
	if !more && (len(found) > 0 || s.offset == 0) {
		total = s.offset + len(found)
	}

	base := baseURL(c)
	page := func(offset int) string {
		v := url.Values{}
		for k, vals := range s.honoured {
			v[k] = vals
		}
		v.Set("_count", strconv.Itoa(s.count))
		if offset > 0 {
			v.Set("_offset", strconv.Itoa(offset))
		}
		return base + "/" + typ + "?" + v.Encode()
	}
	links := []fhir.BundleLink{{Relation: "self", URL: page(s.offset)}}
	if more {
		links = append(links, fhir.BundleLink{Relation: "next", URL: page(s.offset + s.count)})
	}
	if s.offset > 0 {
		links = append(links, fhir.BundleLink{Relation: "previous", URL: page(max(0, s.offset-s.count))})
	}

	matches := make([]fhir.StoredResource, len(found))
	ids := make([]string, len(found))
	patients := map[string]bool{}
	for i, r := range found {
		matches[i], ids[i] = stored(r), r.ID
		patients[audit.PatientOf(typ, r.ID, r.JSON)] = true
	}
	if len(patients) == 1 { // one patient's records: the event names them
		for p := range patients {
			SetAuditPatient(c, p)
		}
	}
	names := make([]string, 0, len(s.honoured))
	for k := range s.honoured {
		names = append(names, k)
	}
	slices.Sort(names)
	// The audit names the parameters, not their values: a search by name or birth date is PHI.
	a.audit(c, "search", typ, ids, "params", names, "offset", s.offset)
	return writeFHIR(c, http.StatusOK, fhir.NewSearchset(base, matches, total, links))
}

// preferLenient reports whether a Prefer header asks for handling=lenient (unknown search
// parameters ignored instead of rejected; strict is the default).
func preferLenient(prefer []string) bool {
	for _, h := range prefer {
		for _, p := range strings.Split(h, ",") {
			if k, v, _ := strings.Cut(strings.TrimSpace(p), "="); strings.EqualFold(k, "handling") && strings.EqualFold(strings.Trim(v, `"`), "lenient") {
				return true
			}
		}
	}
	return false
}

// search is a parsed FHIR search.
type searchRequest struct {
	filters  []engine.SearchFilter
	count    int
	offset   int
	honoured url.Values // the search parameters applied, for the self and paging links
	// byIdentifier are the reference filters given with :identifier ("patient:identifier=
	// system|value"), whose values are identifiers until resolveIdentifiers makes them
	// references.
	byIdentifier []identifierRef
}

type identifierRef struct {
	filter  int      // index in filters
	targets []string // the types the reference parameter may point to
}

// resolveIdentifiers turns each :identifier filter into the references of the resources holding
// one of its identifiers (FHIR R4 search 3.1.1.4.1, the :identifier modifier). A Patient merged
// into another stands for the survivor, which holds its orders and studies since the merge: so
// ImagingStudy?patient:identifier= finds the patient's studies under any identifier it or a
// record merged into it had.
func (a *fhirAPI) resolveIdentifiers(ctx context.Context, s *searchRequest) error {
	for _, ref := range s.byIdentifier {
		f := &s.filters[ref.filter]
		var refs []engine.SearchValue
		for _, typ := range ref.targets {
			if _, ok := fhir.LookupSearchParam(typ, "identifier"); !ok {
				continue
			}
			found, err := a.store.SearchResources(ctx, engine.ResourceQuery{Type: typ, Count: maxPageSize,
				Filters: []engine.SearchFilter{{Param: "identifier", Op: engine.SearchEq, Values: f.Values}}})
			if err != nil {
				return fmt.Errorf("resolving %s:identifier: %w", f.Param, err)
			}
			for _, r := range found {
				for range 16 {
					next := ""
					if typ == "Patient" {
						next = engine.ReplacedBy(r.JSON)
					}
					if next == "" {
						break
					}
					if r, err = a.store.Resource(ctx, typ, next); err != nil {
						return fmt.Errorf("resolving %s:identifier: %w", f.Param, err)
					}
				}
				v := engine.SearchValue{Value: typ + "/" + r.ID}
				if !slices.Contains(refs, v) {
					refs = append(refs, v)
				}
			}
		}
		f.Values = refs // none: the filter matches nothing
	}
	return nil
}

// searchIgnored are request parameters that are not search parameters and change nothing in
// the result: _format is checked by negotiate, _pretty has no effect on Ferry's compact JSON.
var searchIgnored = map[string]bool{"_format": true, "_pretty": true}

// parseSearch turns FHIR search parameters into a store query. Each occurrence of a parameter
// is one filter (ANDed); the comma-separated values of one occurrence are ORed.
func parseSearch(typ string, params url.Values, lenient bool) (*searchRequest, error) {
	s := &searchRequest{count: defaultPageSize, honoured: url.Values{}}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys) // deterministic filters and errors
	for _, key := range keys {
		vals := params[key]
		switch {
		case key == "_count":
			n, err := strconv.Atoi(vals[len(vals)-1])
			if err != nil || n < 1 {
				return nil, fhirErr(http.StatusBadRequest, fhir.IssueInvalid, "_count: want a positive integer", "_count")
			}
			s.count = min(n, maxPageSize)
			continue
		case key == "_offset":
			n, err := strconv.Atoi(vals[len(vals)-1])
			if err != nil || n < 0 || n > 1<<30 {
				return nil, fhirErr(http.StatusBadRequest, fhir.IssueInvalid, "_offset: want a non-negative integer", "_offset")
			}
			s.offset = n
			continue
		case searchIgnored[key]:
			continue
		}
		name, modifier, _ := strings.Cut(key, ":")
		p, ok := fhir.LookupSearchParam(typ, name)
		if !ok {
			if lenient {
				continue
			}
			return nil, fhirErr(http.StatusBadRequest, fhir.IssueNotSupported,
				fmt.Sprintf("unknown or unsupported search parameter %q for %s (send Prefer: handling=lenient to have it ignored)", key, typ), key)
		}
		for _, v := range vals {
			if v == "" {
				continue // FHIR: an empty parameter value is ignored
			}
			f, err := searchFilter(p, modifier, v)
			if err != nil {
				return nil, fhirErr(http.StatusBadRequest, fhir.IssueInvalid, key+": "+err.Error(), key)
			}
			if modifier == "identifier" {
				s.byIdentifier = append(s.byIdentifier, identifierRef{filter: len(s.filters), targets: p.Targets})
			}
			s.filters = append(s.filters, f)
			s.honoured.Add(key, v)
		}
	}
	return s, nil
}

// searchFilter turns one occurrence of a search parameter into a filter.
func searchFilter(p fhir.SearchParam, modifier, raw string) (engine.SearchFilter, error) {
	f := engine.SearchFilter{Param: p.Name, Op: engine.SearchEq}
	if modifier == "identifier" && p.Type == fhir.ParamReference {
		// Parsed as a token; resolved to the resources holding it before the query
		// (resolveIdentifiers).
		token := p
		token.Type = fhir.ParamToken
		return searchFilter(token, "", raw)
	}
	if modifier != "" && (p.Type != fhir.ParamReference || !slices.Contains(p.Targets, modifier)) {
		return f, fmt.Errorf("modifier :%s is not supported", modifier)
	}
	values := splitUnescaped(raw, ',')
	dateOp := ""
	for _, v := range values {
		if v == "" {
			continue
		}
		switch p.Type {
		case fhir.ParamToken:
			parts := splitUnescaped(v, '|')
			switch len(parts) {
			case 1:
				f.Values = append(f.Values, engine.SearchValue{Value: unescape(v)})
			case 2:
				if parts[1] == "" {
					return f, errors.New("system| (any code of a system) is not supported; give system|code")
				}
				// "|code" (explicitly no system) is served as "code" in any system.
				f.Values = append(f.Values, engine.SearchValue{System: unescape(parts[0]), Value: unescape(parts[1])})
			default:
				return f, errors.New("want system|code or code")
			}
		case fhir.ParamString:
			n := fhir.NormalizeString(unescape(v))
			if n == "" {
				continue
			}
			f.Op = engine.SearchPrefix
			f.Values = append(f.Values, engine.SearchValue{Value: n})
		case fhir.ParamDate:
			d, err := fhir.ParseDateQuery(unescape(v))
			if err != nil {
				return f, err
			}
			if dateOp != "" && d.Op != dateOp {
				return f, errors.New("comma-separated dates must use the same comparison (repeat the parameter to AND them)")
			}
			dateOp = d.Op
			f.Op = engine.SearchOp(d.Op)
			f.Values = append(f.Values, engine.SearchValue{Value: d.Value})
		case fhir.ParamReference:
			v = unescape(v)
			if modifier != "" {
				v = modifier + "/" + v
			}
			if typ, id := fhir.ReferenceTypeID(v); typ != "" {
				if !slices.Contains(p.Targets, typ) {
					return f, fmt.Errorf("%s cannot refer to a %s (want %s)", p.Name, typ, strings.Join(p.Targets, ", "))
				}
				f.Values = append(f.Values, engine.SearchValue{Value: typ + "/" + id})
				continue
			}
			if !engine.ValidResourceID(v) {
				return f, errors.New("want Type/id or an id")
			}
			// A bare id: any of the types the parameter may refer to.
			for _, t := range p.Targets {
				f.Values = append(f.Values, engine.SearchValue{Value: t + "/" + v})
			}
		}
	}
	if len(f.Values) == 0 {
		return f, errors.New("no value to search for")
	}
	return f, nil
}

// splitUnescaped splits s at each sep not escaped with a backslash (FHIR search escaping: "\,",
// "\|", "\$", "\\"); the parts keep their escapes.
func splitUnescaped(s string, sep byte) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// unescape removes FHIR search escaping.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
