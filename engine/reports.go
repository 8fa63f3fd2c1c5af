package engine

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhealth/ferry/engine/outbox"
	"github.com/ferryhealth/ferry/engine/turnaround"
	"github.com/ferryhealth/ferry/fhir"
	"github.com/ferryhealth/ferry/hl7"
)

// Reports takes the radiologist's reports — FHIR DiagnosticReports from the reading platform —
// and keeps each version with the deliveries that carry it to the ordering hospital (issue:
// reports → the ordering hospital). A report is accepted only for an order Ferry knows: its
// patient, order and study are Ferry's, whatever the reading platform sent; it follows the
// report lifecycle (a final never goes back to preliminary); every version is validated with
// google/fhir before it is committed, in one transaction with its deliveries.
type Reports struct {
	Store interface {
		Begin(ctx context.Context) (Tx, error)
		ResourceReader
	}
	Validator ResourceValidator
	// Destinations returns where a facility's results go (config: facilities[].results).
	Destinations func(facility string) []outbox.Destination
	// Render builds the message a destination receives for a report version — the ORU^R01 of
	// the facility's outbound mapping for MLLP — and says which mapping built it
	// (mappings.Outbound.Version). nil: MLLP deliveries cannot be rendered and go to the dead
	// letters with that reason.
	Render func(facility string, d outbox.Destination, r *ReportVersion) (payload []byte, mappingVersion string, err error)
	// Performer, if set, is the reading group: DiagnosticReport.performer of every report.
	Performer map[string]any
	// Nudge, if set, is called after a report version is committed with its deliveries
	// (Deliverer.Nudge: they are sent at once).
	Nudge  func()
	Logger *slog.Logger
	Now    func() time.Time // default time.Now
	// ObserveTurnaround, if set, is told of each turnaround milestone a report version reached
	// first (the order's preliminary, final), once committed: turnaround.Metrics.Observe.
	ObserveTurnaround func(t *turnaround.Clocks, stage turnaround.Stage)
}

// ReportVersion is what a destination's message is built from: the report version as stored
// and the resources it refers to, decoded.
type ReportVersion struct {
	Report      *Resource
	Content     map[string]any // the report's content (no id or meta)
	Patient     map[string]any
	Order       map[string]any
	Encounter   map[string]any // nil when the order has none
	Interpreter map[string]any // the first resultsInterpreter Practitioner, nil when none
	Requester   map[string]any // the order's requester Practitioner, nil when none
	ControlID   string         // MSH-10 of this delivery
	Time        time.Time      // when the version was stored
}

// ReportError is a report refused: Status is the HTTP status the FHIR API answers (400, 404,
// 409, 422), Outcome says why. Its Error text is safe to log.
type ReportError struct {
	Status  int
	Outcome *fhir.OperationOutcome
	// PatientMismatch: the report names another patient than its order's (checkReportPatient);
	// it is kept in the message log for an analyst.
	PatientMismatch bool
	// V2 is where an ORU's ERR locates the fault, when the report came as one and it is known.
	V2  hl7.ErrorDetail
	msg string
}

func (e *ReportError) Error() string { return e.msg }

func reportErr(status int, code fhir.IssueType, msg, expression string) *ReportError {
	return &ReportError{Status: status, Outcome: fhir.NewOperationOutcome(fhir.SeverityError, code, msg, expression), msg: msg}
}

// CriticalFindingURL is the extension that marks a report with a critical finding (valueBoolean
// true): carried to the ORU's abnormal flag (OBX-8) and counted.
const CriticalFindingURL = "https://ferryhealth.github.io/fhir/StructureDefinition/critical-finding"

// report statuses and where each may go (FHIR R4 diagnostic-report-status; a final never goes
// back to preliminary, a cancelled or entered-in-error report is done).
var reportTransitions = map[string][]string{
	"":                 {"registered", "partial", "preliminary", "final", "cancelled"},
	"registered":       {"registered", "partial", "preliminary", "final", "cancelled", "entered-in-error"},
	"partial":          {"partial", "preliminary", "final", "cancelled", "entered-in-error"},
	"preliminary":      {"partial", "preliminary", "final", "cancelled", "entered-in-error"},
	"final":            {"final", "amended", "corrected", "appended", "entered-in-error"},
	"amended":          {"amended", "corrected", "appended", "entered-in-error"},
	"corrected":        {"amended", "corrected", "appended", "entered-in-error"},
	"appended":         {"amended", "corrected", "appended", "entered-in-error"},
	"cancelled":        {},
	"entered-in-error": {},
}

// Submit takes one DiagnosticReport as the reading platform sent it: POST (id "") or PUT of
// DiagnosticReport/id. It returns the version stored and whether the report was created; a
// version identical to the current one stores nothing and returns the current version (a final
// sent twice is delivered once). A refused report is a *ReportError.
func (rs *Reports) Submit(ctx context.Context, body []byte, id string) (*Resource, bool, error) {
	in, err := rs.parse(body)
	if err != nil {
		return nil, false, err
	}
	tx, err := rs.Store.Begin(ctx)
	if err != nil {
		return nil, false, err
	}
	defer tx.Rollback()
	res, err := rs.store(ctx, tx, in, id, subjectPatient(fhir.DiagnosticReportOf(in)))
	if err != nil {
		tx.Rollback()
		rs.refused(ctx, body, err)
		return nil, false, err
	}
	if err := tx.Commit(); err != nil {
		return nil, false, err
	}
	rs.committed(res)
	return res.version, res.created, nil
}

// refused keeps a report refused because it names another patient than its order's in the
// message log (channel fhir, status error), where an analyst finds it with its reason; other
// refusals are the platform's to fix and are only answered.
func (rs *Reports) refused(ctx context.Context, body []byte, err error) {
	var re *ReportError
	if !errors.As(err, &re) || !re.PatientMismatch {
		return
	}
	tx, terr := rs.Store.Begin(ctx)
	if terr == nil {
		defer tx.Rollback()
		m := &InboundMessage{Channel: "fhir", ReceivedAt: rs.now().UTC(), Raw: body, MessageType: "DiagnosticReport",
			Status: StatusError, Error: limit(re.Error(), 500)}
		if terr = tx.InsertInbound(ctx, m); terr == nil {
			terr = tx.Commit()
		}
	}
	if terr != nil {
		rs.logger().Error("a report refused for its patient could not be kept for an analyst", "err", terr)
	}
}

// parse validates a DiagnosticReport as received and decodes its content.
func (rs *Reports) parse(body []byte) (map[string]any, error) {
	if rs.Validator != nil {
		if err := rs.Validator.Validate(body); err != nil {
			var ve *fhir.ValidationError
			if errors.As(err, &ve) {
				return nil, &ReportError{Status: 422, Outcome: ve.OperationOutcome(), msg: ve.Error()}
			}
			return nil, err
		}
	}
	in, err := contentOfTyped(body, "DiagnosticReport")
	if err != nil {
		return nil, reportErr(400, fhir.IssueInvalid, err.Error(), "DiagnosticReport")
	}
	// A report a physician is to read carries something to read. Registered, partial, cancelled
	// and entered-in-error reports may be empty; the others may not, or an EHR would file a
	// preliminary or final report with no findings in it.
	r := fhir.DiagnosticReportOf(in)
	switch r.Status {
	case "preliminary", "final", "amended", "corrected", "appended":
		if strings.TrimSpace(r.Conclusion) == "" && len(r.PresentedForm) == 0 && in["result"] == nil {
			return nil, reportErr(422, fhir.IssueRequired,
				"a "+r.Status+" report carries its text: a conclusion, a presentedForm or results", "DiagnosticReport.conclusion")
		}
	}
	return in, nil
}

// storedReport is what store did, for after the commit.
type storedReport struct {
	version  *Resource
	created  bool
	changed  bool // a new version was stored (not a repeat)
	mark     turnaround.Reached
	critical bool
	orderID  string
}

// committed does what waits for the commit: the turnaround metrics, the critical-finding log,
// and the nudge that sends the new deliveries at once.
func (rs *Reports) committed(res *storedReport) {
	if !res.changed {
		return
	}
	res.mark.Observe(rs.ObserveTurnaround)
	if res.critical {
		rs.logger().Warn("critical finding reported", "report", res.version.ID, "version", res.version.VersionID, "service_request", res.orderID)
	}
	if rs.Nudge != nil {
		rs.Nudge()
	}
}

// store writes one report version in tx: the order, patient and study found, the lifecycle
// checked, the report completed, stored with its deliveries and its turnaround mark. An ORU
// from a dictation system is stored this way in its message's transaction.
func (rs *Reports) store(ctx context.Context, tx Tx, in map[string]any, id string, named *reportPatient) (*storedReport, error) {
	if n := sanitizeReportHTML(in); n > 0 { // before it is stored or forwarded (sanitize.go)
		rs.logger().Warn("report HTML sanitised: disallowed markup removed", "report", id, "places", n)
	}
	report := fhir.DiagnosticReportOf(in)
	status := report.Status
	order, err := rs.order(ctx, tx, report)
	if err != nil {
		return nil, err
	}
	orderContent, err := contentOf(order.JSON)
	if err != nil {
		return nil, err
	}
	orderView := fhir.ServiceRequestOf(orderContent)
	patientID, _ := strings.CutPrefix(orderView.Subject.Reference, "Patient/")
	patient, err := tx.Resource(ctx, "Patient", patientID)
	if err != nil {
		return nil, fmt.Errorf("reading the order's patient: %w", err)
	}
	if patient, err = survivor(ctx, tx, patient); err != nil { // merged: the survivor
		return nil, err
	}
	if err := checkReportPatient(ctx, tx, named, patient); err != nil {
		var re *ReportError
		if errors.As(err, &re) && re.PatientMismatch {
			rs.logger().Warn("report refused: its patient contradicts its order's patient; never filed or delivered",
				"service_request", order.ID, "reason", re.Error())
		}
		return nil, err
	}
	study, err := rs.study(ctx, tx, report, order.ID)
	if err != nil {
		return nil, err
	}
	cur, err := rs.current(ctx, tx, report, id, order.ID)
	if err != nil {
		return nil, err
	}
	curStatus := ""
	var curContent map[string]any
	if cur != nil {
		if curContent, err = contentOf(cur.JSON); err != nil {
			return nil, err
		}
		curView := fhir.DiagnosticReportOf(curContent)
		curStatus = curView.Status
		// A new version stays with its report's order: a PUT of another order's report, or an
		// identifier that is another order's report's, would move that report — and its
		// patient — to this order (DESIGN.md rule 6). A person relinks a report filed wrongly.
		curOrder := ""
		if based := curView.BasedOn; len(based) > 0 {
			curOrder = based[0].Reference
		}
		if curOrder != "ServiceRequest/"+order.ID {
			e := reportErr(409, fhir.IssueConflict, "the report this version would change belongs to another order: a report is never moved to another order or patient", "DiagnosticReport.basedOn")
			e.PatientMismatch = true
			e.V2 = hl7.ErrorDetail{Segment: "OBR", Sequence: 1, Field: 3, Code: hl7.CodeDuplicateKey, Severity: "E", Text: e.Error()}
			rs.logger().Warn("report refused: it would move another order's report", "service_request", order.ID, "report", cur.ID)
			return nil, e
		}
	}
	if !slices.Contains(reportTransitions[curStatus], status) {
		msg := fmt.Sprintf("a %s report cannot become %s", curStatus, status)
		if curStatus == "" {
			msg = fmt.Sprintf("a new report cannot be %s", status)
		}
		return nil, reportErr(409, fhir.IssueBusinessRule, msg, "DiagnosticReport.status")
	}

	content := rs.complete(in, report, order, orderContent, patient.ID, study)
	if curContent != nil {
		if same, err := sameContent(withoutIssued(curContent), withoutIssued(content)); err != nil {
			return nil, err
		} else if same {
			return &storedReport{version: cur}, nil // a repeat: nothing new to store or deliver
		}
	}
	now := rs.now().UTC().Truncate(time.Millisecond)
	reportID, version, keys := newID(), int64(1), reportKeys(report.Identifier) // complete leaves identifier and extension as sent
	if cur != nil {
		reportID, version, keys = cur.ID, cur.VersionID+1, unionKeys(cur.Keys, keys)
	}
	body, err := resourceJSON("DiagnosticReport", reportID, version, now, "", content)
	if err != nil {
		return nil, err
	}
	if rs.Validator != nil {
		if err := rs.Validator.Validate(body); err != nil {
			return nil, fmt.Errorf("the completed DiagnosticReport is not valid FHIR R4: %w", err)
		}
	}
	index, err := fhir.Index("DiagnosticReport", body)
	if err != nil {
		return nil, err
	}
	r := &Resource{Type: "DiagnosticReport", ID: reportID, VersionID: version, LastUpdated: now, JSON: body, Index: index, Keys: keys}
	if err := tx.PutResource(ctx, r); err != nil {
		if errors.Is(err, ErrConflict) {
			return nil, reportErr(409, fhir.IssueConflict, "the report changed meanwhile, or its identifier is another report's: send it again", "DiagnosticReport")
		}
		return nil, err
	}
	if err := rs.enqueue(ctx, tx, r, content, orderContent, SendingFacility(orderView), patient, now); err != nil {
		return nil, err
	}
	res := &storedReport{version: r, created: cur == nil, changed: true, critical: critical(report), orderID: order.ID}
	if err := markCritical(ctx, tx, res, patient.ID); err != nil { // engine/critical.go
		return nil, err
	}
	if stage, ok := turnaround.ReportStage(status); ok { // the order's report clock (engine/turnaround)
		if res.mark, err = turnaround.Reach(ctx, tx, order.ID, orderView, stage, now); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func (rs *Reports) now() time.Time {
	if rs.Now != nil {
		return rs.Now()
	}
	return time.Now()
}

func (rs *Reports) logger() *slog.Logger {
	if rs.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return rs.Logger
}

// contentOfTyped decodes a resource of the given type, without id and meta.
func contentOfTyped(body []byte, typ string) (map[string]any, error) {
	c, err := contentOf(body)
	if err != nil {
		return nil, err
	}
	var head struct {
		ResourceType string `json:"resourceType"`
	}
	_ = json.Unmarshal(body, &head)
	if head.ResourceType != typ {
		return nil, fmt.Errorf("want a %s, got %q", typ, head.ResourceType)
	}
	return c, nil
}

// order finds the order a report is based on: a basedOn reference to a ServiceRequest Ferry
// holds, or a basedOn identifier (accession, placer or filler number) exactly one order has.
// Every basedOn that finds an order must find the same one: an ORU whose placer number is one
// order's and accession another's names no order for sure.
func (rs *Reports) order(ctx context.Context, rd ResourceReader, in fhir.DiagnosticReport) (*Resource, error) {
	basedOn := in.BasedOn
	if len(basedOn) == 0 {
		return nil, reportErr(422, fhir.IssueRequired, "basedOn must name the order (a ServiceRequest reference or identifier)", "DiagnosticReport.basedOn")
	}
	var notFound *ReportError
	var order *Resource
	agree := func(r *Resource, expr string) error {
		if order != nil && order.ID != r.ID {
			return reportErr(422, fhir.IssueMultipleMatch, "basedOn names two different orders", expr)
		}
		order = r
		return nil
	}
	for i, b := range basedOn {
		expr := "DiagnosticReport.basedOn[" + strconv.Itoa(i) + "]"
		if ref := b.Reference; ref != "" {
			typ, id := fhir.ReferenceTypeID(ref)
			if typ != "ServiceRequest" {
				return nil, reportErr(422, fhir.IssueValue, "basedOn must refer to a ServiceRequest", expr)
			}
			r, err := rd.Resource(ctx, "ServiceRequest", id)
			if errors.Is(err, ErrNotFound) {
				return nil, reportErr(422, fhir.IssueNotFound, "no such order: ServiceRequest/"+id, expr)
			}
			if err != nil {
				return nil, err
			}
			if err := agree(r, expr); err != nil {
				return nil, err
			}
			continue
		}
		if b.Identifier == nil || b.Identifier.Value == "" {
			continue
		}
		ident := *b.Identifier
		value, system := ident.Value, ident.System
		found, err := rd.SearchResources(ctx, ResourceQuery{Type: "ServiceRequest", Count: 10, Filters: []SearchFilter{
			{Param: "identifier", Op: SearchEq, Values: []SearchValue{{System: system, Value: value}}}}})
		if err != nil {
			return nil, err
		}
		if want := ident.TypeCode(); want != "" {
			found = slices.DeleteFunc(found, func(r *Resource) bool { return !hasIdentifier(r, value, want) })
		}
		switch len(found) {
		case 0:
			notFound = reportErr(422, fhir.IssueNotFound, "no order has the identifier in basedOn", expr+".identifier")
			continue // another basedOn (the accession, the filler number) may name it
		case 1:
			if err := agree(found[0], expr+".identifier"); err != nil {
				return nil, err
			}
		default:
			return nil, reportErr(422, fhir.IssueMultipleMatch, "more than one order has the identifier in basedOn: give its type (ACSN, PLAC, FILL) or system", expr+".identifier")
		}
	}
	if order != nil {
		return order, nil
	}
	if notFound != nil {
		return nil, notFound
	}
	return nil, reportErr(422, fhir.IssueRequired, "basedOn must name the order (a ServiceRequest reference or identifier)", "DiagnosticReport.basedOn")
}

// hasIdentifier reports whether a stored resource has an identifier value of the v2-0203 type.
func hasIdentifier(r *Resource, value, typ string) bool {
	c, err := contentOf(r.JSON)
	if err != nil {
		return false
	}
	for _, id := range fhir.IdentifiersOf(c["identifier"]) {
		if id.Value == value && id.TypeCode() == typ {
			return true
		}
	}
	return false
}

// study finds the report's ImagingStudy: the one it names, else the one based on its order.
func (rs *Reports) study(ctx context.Context, rd ResourceReader, in fhir.DiagnosticReport, orderID string) (*Resource, error) {
	for _, ref := range in.ImagingStudy {
		if typ, id := ref.TypeID(); typ == "ImagingStudy" {
			r, err := rd.Resource(ctx, "ImagingStudy", id)
			if errors.Is(err, ErrNotFound) {
				return nil, reportErr(422, fhir.IssueNotFound, "no such study: ImagingStudy/"+id, "DiagnosticReport.imagingStudy")
			}
			return r, err
		}
	}
	found, err := rd.SearchResources(ctx, ResourceQuery{Type: "ImagingStudy", Count: 10, Filters: []SearchFilter{
		{Param: "basedon", Op: SearchEq, Values: []SearchValue{{Value: "ServiceRequest/" + orderID}}}}})
	if err != nil || len(found) == 0 {
		return nil, err
	}
	return found[0], nil // newest
}

// current returns the report a submission changes: DiagnosticReport/id for a PUT (nil: created
// with that id is not offered — ids are Ferry's), else the report holding one of its
// identifiers, else the order's current report (one report per order: a final is a new
// version of the preliminary, not another report).
func (rs *Reports) current(ctx context.Context, tx Tx, in fhir.DiagnosticReport, id, orderID string) (*Resource, error) {
	if id != "" {
		r, err := tx.Resource(ctx, "DiagnosticReport", id)
		if errors.Is(err, ErrNotFound) {
			return nil, reportErr(404, fhir.IssueNotFound, "no such report: DiagnosticReport/"+id+" (POST a new report)", "DiagnosticReport.id")
		}
		return r, err
	}
	if keys := reportKeys(in.Identifier); len(keys) > 0 {
		r, err := tx.ResourceByKeys(ctx, "DiagnosticReport", keys)
		if err == nil || !errors.Is(err, ErrNotFound) {
			return r, err
		}
	}
	found, err := tx.SearchResources(ctx, ResourceQuery{Type: "DiagnosticReport", Count: 10, Filters: []SearchFilter{
		{Param: "based-on", Op: SearchEq, Values: []SearchValue{{Value: "ServiceRequest/" + orderID}}}}})
	if err != nil {
		return nil, err
	}
	for _, r := range found {
		c, err := contentOf(r.JSON)
		if err != nil {
			return nil, err
		}
		if st := fhir.DiagnosticReportOf(c).Status; st != "entered-in-error" && st != "cancelled" {
			return tx.Resource(ctx, "DiagnosticReport", r.ID) // with its keys
		}
	}
	return nil, nil
}

// reportKeys are a report's business keys: its identifiers.
func reportKeys(ids []fhir.Identifier) []string {
	var keys []string
	for _, id := range ids {
		if id.Value != "" {
			keys = append(keys, "identifier|"+id.System+"|"+id.Value)
		}
	}
	return keys
}

// complete fills what Ferry knows better than the reading platform: category RAD; the order's
// code, patient and encounter; basedOn and imagingStudy as Ferry's references; effective from
// the study; issued; the reading group as performer; and the report text as text/plain and as
// HTML (IHE IMR) in presentedForm. view is in's view.
func (rs *Reports) complete(in map[string]any, view fhir.DiagnosticReport, order *Resource, oc map[string]any, patientID string, study *Resource) map[string]any {
	c := clone(in)
	rad := map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD", "display": "Radiology"}}}
	if !slices.ContainsFunc(view.Category, func(cc fhir.CodeableConcept) bool { return cc.HasCode("RAD") }) {
		fhir.AppendTo(c, "category", rad)
	}
	if code, ok := oc["code"]; ok {
		c["code"] = code // the procedure, LOINC first where the procedures table maps it
	}
	c["subject"] = reference("Patient", patientID)
	// A contained Patient named the subject as the platform knew it; the order's patient (its
	// agreement checked by checkReportPatient) replaces it, so it would be left unreferenced.
	if len(view.Contained) > 0 {
		var kept []any
		for _, r := range view.Contained {
			if fhir.ResourceType(r) != "Patient" {
				kept = append(kept, r)
			}
		}
		if len(kept) == 0 {
			delete(c, "contained")
		} else {
			c["contained"] = kept
		}
	}
	if enc, ok := oc["encounter"]; ok {
		c["encounter"] = enc
	}
	c["basedOn"] = []any{reference("ServiceRequest", order.ID)}
	if study != nil {
		c["imagingStudy"] = []any{reference("ImagingStudy", study.ID)}
		if _, ok := c["effectiveDateTime"]; !ok {
			if sc, err := contentOf(study.JSON); err == nil {
				if started := fhir.ImagingStudyOf(sc).Started; started != "" {
					c["effectiveDateTime"] = started
				}
			}
		}
	}
	if _, ok := c["issued"]; !ok {
		c["issued"] = rs.now().UTC().Format(fhirInstant)
	}
	if rs.Performer != nil && c["performer"] == nil {
		c["performer"] = []any{rs.Performer}
	}
	addPresentedForms(c)
	return c
}

// addPresentedForms gives the report's presentedForm its text both as text/plain and as
// text/html (IHE IMR: a rendering any browser shows), the text taken from a text/plain form or,
// without one, from the conclusion; other forms (a PDF) are kept.
func addPresentedForms(c map[string]any) {
	r := fhir.DiagnosticReportOf(c)
	text, hasPlain, hasHTML := "", false, false
	for _, f := range r.PresentedForm {
		switch ct := f.ContentType; {
		case strings.HasPrefix(ct, "text/plain"):
			hasPlain = true
			if f.Data != "" {
				if b, err := base64.StdEncoding.DecodeString(f.Data); err == nil {
					text = string(b)
				}
			}
		case strings.HasPrefix(ct, "text/html"):
			hasHTML = true
		}
	}
	if text == "" {
		text = r.Conclusion
	}
	if text == "" {
		return
	}
	if !hasPlain {
		fhir.AppendTo(c, "presentedForm", map[string]any{"contentType": "text/plain; charset=utf-8", "language": "en",
			"data": base64.StdEncoding.EncodeToString([]byte(text)), "title": "Report"})
	}
	if !hasHTML {
		fhir.AppendTo(c, "presentedForm", map[string]any{"contentType": "text/html; charset=utf-8", "language": "en",
			"data": base64.StdEncoding.EncodeToString([]byte(reportHTML(r, text))), "title": "Report"})
	}
}

// reportHTML renders the report text as a small HTML document: a heading from the procedure and
// status, one paragraph per blank-line-separated block, line breaks kept, everything escaped.
func reportHTML(r fhir.DiagnosticReport, text string) string {
	var b strings.Builder
	title, status := r.Code.Label(), r.Status
	b.WriteString("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>")
	b.WriteString(html.EscapeString(cmp.Or(title, "Radiology report")))
	b.WriteString("</title></head><body><h1>")
	b.WriteString(html.EscapeString(cmp.Or(title, "Radiology report")))
	b.WriteString("</h1><p><em>")
	b.WriteString(html.EscapeString(status))
	b.WriteString("</em></p>")
	if critical(r) {
		b.WriteString("<p><strong>Critical finding</strong></p>")
	}
	for _, para := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n\n") {
		if strings.TrimSpace(para) == "" {
			continue
		}
		b.WriteString("<p>")
		b.WriteString(strings.ReplaceAll(html.EscapeString(para), "\n", "<br>"))
		b.WriteString("</p>")
	}
	b.WriteString("</body></html>")
	return b.String()
}

// critical reports whether a report carries the critical-finding extension.
func critical(r fhir.DiagnosticReport) bool {
	return slices.ContainsFunc(r.Extension, func(e fhir.Extension) bool { return e.URL == CriticalFindingURL && e.ValueBoolean })
}

// withoutIssued is a report's content without issued, which Ferry fills when the sender does
// not: a repeat differs only in it.
func withoutIssued(c map[string]any) map[string]any {
	out := clone(c)
	delete(out, "issued")
	return out
}

// enqueue writes one delivery per destination of the order's facility for the version r.
func (rs *Reports) enqueue(ctx context.Context, tx Tx, r *Resource, content, order map[string]any, facility string, patient *Resource, now time.Time) error {
	if rs.Destinations == nil || facility == "" {
		return nil
	}
	var rv *ReportVersion
	for _, d := range rs.Destinations(facility) {
		if d.Kind != outbox.MLLP && d.Kind != outbox.FHIR {
			continue
		}
		dl := &outbox.Delivery{ReportID: r.ID, ReportVersion: r.VersionID, Destination: facility + "/" + d.Name, Kind: d.Kind,
			Status: outbox.Pending, NextAttemptAt: now, CreatedAt: now,
			ControlID: controlID(r.ID, r.VersionID, d.Name)}
		dl.QueueKey = dl.Destination + "|" + patient.ID
		if rv == nil {
			var err error
			if rv, err = rs.version(ctx, tx, r, content, order, patient); err != nil {
				return err
			}
		}
		payload, version, err := rs.render(facility, d, dl, rv)
		switch {
		case err != nil && d.Kind == outbox.MLLP:
			// The report is kept; the delivery waits, dead, for a fixed mapping and a replay. The
			// mapping that failed is recorded.
			dl.Status, dl.LastError, dl.Payload = outbox.Dead, limit("rendering the ORU: "+err.Error(), 500), []byte{}
			dl.MappingVersion = version
		case err != nil:
			return err
		default:
			dl.Payload, dl.MappingVersion = payload, version
		}
		if err := tx.InsertDelivery(ctx, dl); err != nil {
			return err
		}
	}
	return nil
}

// render builds the message delivery dl carries to destination d for the report version rv —
// the facility's ORU^R01 (MLLP) or the transaction Bundle (FHIR) — with the version of the
// mapping that built it ("" for the Bundle).
func (rs *Reports) render(facility string, d outbox.Destination, dl *outbox.Delivery, rv *ReportVersion) ([]byte, string, error) {
	if dl.Kind == outbox.FHIR {
		b, err := transactionBundle(rv)
		return b, "", err
	}
	if rs.Render == nil {
		return nil, "", errors.New("no outbound mapping to render the ORU")
	}
	rv.ControlID, rv.Time = dl.ControlID, dl.CreatedAt
	return rs.Render(facility, d, rv)
}

// Rerender builds delivery d's message again from its report version, with the mappings and
// the destination's settings in force and the patient and order as they are now: what a replay
// sends once the cause of a dead letter is fixed. The control ID (MSH-10) and the message time
// are the delivery's own, so the bytes differ from the first only where something changed. An
// error says why it cannot be built (the mapping still fails, the destination is gone); its
// text holds no patient data. The mapping version is the one that built it now.
func (rs *Reports) Rerender(ctx context.Context, d *outbox.Delivery) (payload []byte, mappingVersion string, err error) {
	facility, name, _ := strings.Cut(d.Destination, "/")
	var dest *outbox.Destination
	if rs.Destinations != nil {
		for _, x := range rs.Destinations(facility) {
			if x.Name == name && x.Kind == d.Kind {
				dest = &x
			}
		}
	}
	if dest == nil {
		return nil, "", fmt.Errorf("destination %s (%s) is no longer configured", d.Destination, d.Kind)
	}
	r, err := rs.Store.ResourceVersion(ctx, "DiagnosticReport", d.ReportID, d.ReportVersion)
	if err != nil {
		return nil, "", fmt.Errorf("reading DiagnosticReport/%s version %d: %w", d.ReportID, d.ReportVersion, err)
	}
	content, err := contentOf(r.JSON)
	if err != nil {
		return nil, "", err
	}
	read := func(ref fhir.Reference, typ string) (*Resource, error) {
		id, ok := strings.CutPrefix(ref.Reference, typ+"/")
		if !ok {
			return nil, fmt.Errorf("the report version has no %s reference", typ)
		}
		return rs.Store.Resource(ctx, typ, id)
	}
	report := fhir.DiagnosticReportOf(content)
	var basedOn fhir.Reference
	if len(report.BasedOn) > 0 {
		basedOn = report.BasedOn[0]
	}
	order, err := read(basedOn, "ServiceRequest")
	if err != nil {
		return nil, "", fmt.Errorf("reading the report's order: %w", err)
	}
	orderContent, err := contentOf(order.JSON)
	if err != nil {
		return nil, "", err
	}
	patient, err := read(report.Subject, "Patient")
	if err != nil {
		return nil, "", fmt.Errorf("reading the report's patient: %w", err)
	}
	if patient, err = survivor(ctx, rs.Store, patient); err != nil {
		return nil, "", err
	}
	rv, err := rs.version(ctx, rs.Store, r, content, orderContent, patient)
	if err != nil {
		return nil, "", err
	}
	return rs.render(facility, *dest, d, rv)
}

// version gathers what a report version's message is built from.
func (rs *Reports) version(ctx context.Context, rd ResourceReader, r *Resource, content, order map[string]any, patient *Resource) (*ReportVersion, error) {
	rv := &ReportVersion{Report: r, Content: content, Order: order}
	var err error
	if rv.Patient, err = contentOf(patient.JSON); err != nil {
		return nil, err
	}
	read := func(ref fhir.Reference) map[string]any {
		typ, id := ref.TypeID()
		if typ == "" {
			return nil
		}
		res, err := rd.Resource(ctx, typ, id)
		if err != nil {
			return nil
		}
		c, _ := contentOf(res.JSON)
		return c
	}
	o := fhir.ServiceRequestOf(order)
	rv.Encounter = read(o.Encounter)
	rv.Requester = read(o.Requester)
	if ri := fhir.DiagnosticReportOf(content).ResultsInterpreter; len(ri) > 0 {
		rv.Interpreter = read(ri[0])
	}
	return rv, nil
}

// controlID is a delivery's MSH-10: the same for every attempt of one report version to one
// destination, at most 20 characters (ST in MSH-10 is 20 in v2.3.1).
func controlID(reportID string, version int64, destination string) string {
	h := fnv64(reportID + "|" + strconv.FormatInt(version, 10) + "|" + destination)
	return "F" + strconv.FormatUint(h, 36)
}

func fnv64(s string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	return h
}

// transactionBundle is what a FHIR destination receives for a report version: a transaction
// Bundle with the patient, the order and the report, each a conditional update by identifier, so
// that the hospital's server files the report under its own records of the patient and order
// (it knows nothing of Ferry's ids). References between them are the entries' urn:uuid fullUrls;
// references to resources the hospital does not hold (Ferry's study, practitioners) are left as
// their display text and identifier.
func transactionBundle(rv *ReportVersion) ([]byte, error) {
	patientURN, orderURN := "urn:uuid:"+newID(), "urn:uuid:"+newID()
	entry := func(typ, urn string, content map[string]any, search string) map[string]any {
		e := map[string]any{"resource": withFields(content, map[string]any{"resourceType": typ})}
		if urn != "" {
			e["fullUrl"] = urn
		}
		if search != "" {
			e["request"] = map[string]any{"method": "PUT", "url": typ + "?identifier=" + search}
		} else {
			e["request"] = map[string]any{"method": "POST", "url": typ}
		}
		return e
	}
	patient := clone(rv.Patient)
	delete(patient, "link") // Ferry's merge history: Ferry's ids
	order := clone(rv.Order)
	order["subject"] = map[string]any{"reference": patientURN}
	for _, k := range []string{"requester", "encounter"} {
		order[k] = fhir.LogicalReference(order[k])
	}
	report := clone(rv.Content)
	report["subject"] = map[string]any{"reference": patientURN}
	report["basedOn"] = []any{map[string]any{"reference": orderURN}}
	delete(report, "imagingStudy")
	report["encounter"] = fhir.LogicalReference(report["encounter"])
	for _, k := range []string{"performer", "resultsInterpreter"} {
		report[k] = fhir.LogicalReferences(report, k)
	}
	fhir.AppendTo(report, "identifier", map[string]any{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:" + rv.Report.ID})
	bundle := map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
		entry("Patient", patientURN, patient, conditionalIdentifier(patient, "MR")),
		entry("ServiceRequest", orderURN, order, conditionalIdentifier(order, "PLAC")),
		entry("DiagnosticReport", "", report, url.QueryEscape("urn:ietf:rfc:3986|urn:uuid:"+rv.Report.ID)),
	}}
	return marshalJSON(dropEmpty(bundle))
}

// conditionalIdentifier is the search of a conditional update: the identifier of type typ (the
// hospital's MRN, the placer number) — system|value, or |value when it has no system, which
// FHIR search reads as "no system" — else the first with a system; "" when there is none (then
// the entry is created, not matched).
func conditionalIdentifier(c map[string]any, typ string) string {
	var first string
	for _, id := range fhir.IdentifiersOf(c["identifier"]) {
		system, value := id.System, id.Value
		if value == "" {
			continue
		}
		token := escapeSearch(system) + "|" + escapeSearch(value)
		if id.TypeCode() == typ {
			return url.QueryEscape(token)
		}
		if first == "" && system != "" {
			first = url.QueryEscape(token)
		}
	}
	return first
}

// escapeSearch escapes FHIR search's special characters in a token part.
func escapeSearch(s string) string {
	return strings.NewReplacer(`\`, `\\`, `|`, `\|`, `,`, `\,`, `$`, `\$`).Replace(s)
}

// dropEmpty removes nil values, empty strings, lists and objects, recursively: FHIR has none.
func dropEmpty(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if e = dropEmpty(e); e != nil {
				out[k] = e
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case []any:
		var out []any
		for _, e := range x {
			if e = dropEmpty(e); e != nil {
				out = append(out, e)
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case []map[string]any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = e
		}
		return dropEmpty(out)
	case string:
		if x == "" {
			return nil
		}
	case nil:
		return nil
	}
	return v
}
