package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
	"github.com/ferryhealth/ferry/fhir"
)

// ConsoleStudies is what the reconciliation pages read and decide: the studies held for a person
// and their decisions, through the same engine.Reconciler the admin API decides with. Unlearner,
// if set, takes back what a replaced decision taught the identity cross-reference
// (*engine.Linker).
type ConsoleStudies struct {
	Store     ConsoleStudyStore
	Unlearner engine.Unlearner
}

// ConsoleStudyStore is the store's part the reconciliation pages use: the Reconciler's, the
// worklist (engine.LinkStore's OpenStudyLinks) and a study's decisions (StudyLinkHistory).
type ConsoleStudyStore interface {
	engine.ReconcileStore
	OpenStudyLinks(ctx context.Context, limit, offset int) ([]*engine.StudyLink, error)
	StudyLinkHistory(ctx context.Context, studyInstanceUID string) ([]*engine.StudyLink, error)
}

// reconcilePageSize is the worklist's page.
const reconcilePageSize = 50

// reconcileView is the reconciliation pages' model.
type reconcileView struct {
	consoleView
	Items []heldStudy
	Older string
	// One study.
	Study      *engine.Study
	Link       *engine.StudyLink
	Thresholds string
	Evidence   []evidenceRow
	Current    *candidateView // the patient and order the decision names (a contradiction's)
	Candidates []candidateView
	History    []*engine.StudyLink
	Held       bool
}

// heldStudy is one row of the worklist.
type heldStudy struct {
	Study *engine.Study // nil when it could not be read
	UID   string
	Link  *engine.StudyLink
}

// evidenceRow is one field the linker compared: what the study said, what the patient or order
// holds, and whether they agreed.
type evidenceRow struct {
	Field, Study, Held, Outcome string
	Disagrees                   bool
}

// candidateView is a patient (and order) the linker weighed, as Ferry holds them.
type candidateView struct {
	Rank               int
	PatientID, OrderID string
	Score              string
	Evidence           []evidenceRow
	Patient            *candidatePatient
	Order              *candidateOrder
	PatientProblem     string // why the Patient could not be read
	OrderProblem       string
	ReplacedBy         string // the Patient this one was merged into
}

type candidatePatient struct {
	Name, BirthDate, Gender string
	Identifiers             []string
}

type candidateOrder struct {
	Code, Status, Occurrence, Subject string
	Identifiers                       []string
}

// reconciliation serves GET /console/reconciliation?offset=: the studies held for a person,
// oldest decision first, with the patient fields the modality sent and why each is held.
func (w *work) reconciliation(c echo.Context) error {
	ident, sess, err := w.identity(c, access.PermReconciliation)
	if ident == nil {
		return err
	}
	if w.data.Studies == nil {
		return notSetUp
	}
	st := w.data.Studies.Store
	ctx := c.Request().Context()
	offset, _ := strconv.Atoi(c.QueryParam("offset"))
	offset = min(max(offset, 0), 1<<30)
	links, err := st.OpenStudyLinks(ctx, reconcilePageSize+1, offset)
	if err != nil {
		return err
	}
	v := reconcileView{consoleView: w.base(ident, sess, "Reconciliation", "reconciliation")}
	if len(links) > reconcilePageSize {
		links = links[:reconcilePageSize]
		v.Older = "/console/reconciliation?offset=" + strconv.Itoa(offset+reconcilePageSize)
	}
	for _, l := range links {
		h := heldStudy{UID: l.StudyInstanceUID, Link: l}
		if s, err := st.Study(ctx, l.StudyInstanceUID); err == nil {
			h.Study = s
		} else if !errors.Is(err, engine.ErrNotFound) {
			return err
		}
		v.Items = append(v.Items, h)
	}
	v.Notice = decisionNotice(c.QueryParam("done"))
	w.audit(c, ident, audit.ActionSearch, "")
	return w.render(c, "reconciliation", v)
}

// study serves GET /console/reconciliation/{uid}: the study as the modality sent it, the
// linker's decision with its evidence, score and thresholds, the ranked candidates as Ferry holds
// them, the forms to decide, and every decision made so far (audited).
func (w *work) study(c echo.Context) error {
	ident, sess, err := w.identity(c, access.PermReconciliation)
	if ident == nil {
		return err
	}
	if w.data.Studies == nil {
		return notSetUp
	}
	return w.studyPage(c, ident, sess, c.Param("uid"), http.StatusOK, "")
}

// studyPage renders the study page with status, and problem (a refused decision) as an alert.
func (w *work) studyPage(c echo.Context, ident *access.Identity, sess *access.Session, uid string, status int, problem string) error {
	st := w.data.Studies.Store
	ctx := c.Request().Context()
	s, err := st.Study(ctx, uid)
	if errors.Is(err, engine.ErrNotFound) {
		return echo.NewHTTPError(http.StatusNotFound, "no such study")
	}
	if err != nil {
		return err
	}
	v := reconcileView{consoleView: w.base(ident, sess, "Study "+s.AccessionNumber, "reconciliation"), Study: s}
	switch l, err := st.StudyLink(ctx, uid); {
	case err == nil:
		v.Link, v.Held = l, l.Status.Open()
	case !errors.Is(err, engine.ErrNotFound):
		return err
	default:
		v.Held = true
	}
	r := resources{st: st}
	if v.Link != nil {
		v.Thresholds = v.Link.Evidence["thresholds"]
		v.Evidence = evidenceRows(v.Link.Evidence)
		if v.Link.PatientID != "" {
			cur := r.candidate(ctx, 0, engine.LinkCandidate{PatientID: v.Link.PatientID, ServiceRequestID: v.Link.ServiceRequestID, Score: v.Link.Score})
			v.Current = &cur
		}
		for i, cand := range v.Link.Candidates {
			v.Candidates = append(v.Candidates, r.candidate(ctx, i+1, cand))
		}
	}
	if v.History, err = st.StudyLinkHistory(ctx, uid); err != nil {
		return err
	}
	// Newest first: the decision in force at the top.
	slices.Reverse(v.History)
	v.Notice, v.Problem = decisionNotice(c.QueryParam("done")), problem
	w.audit(c, ident, audit.ActionRead, "study "+uid)
	return w.p.render(c, status, w.pages, "study", v)
}

// evidenceRows splits a decision's evidence ("study value | held value | outcome") into rows,
// the fields in name order; the thresholds are shown apart.
func evidenceRows(ev map[string]string) []evidenceRow {
	var rows []evidenceRow
	for k, val := range ev {
		if k == "thresholds" {
			continue
		}
		parts := strings.Split(val, " | ")
		row := evidenceRow{Field: k}
		switch len(parts) {
		case 3:
			row.Study, row.Held, row.Outcome = parts[0], parts[1], parts[2]
		case 2:
			row.Study, row.Outcome = parts[0], parts[1]
		default:
			row.Outcome = val
		}
		o := strings.ToLower(row.Outcome)
		row.Disagrees = strings.Contains(o, "disagree") || strings.Contains(o, "contradict") || strings.Contains(o, "differ")
		rows = append(rows, row)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Field < rows[j].Field })
	return rows
}

// resources reads the Patients and orders a study's candidates name.
type resources struct {
	st ConsoleStudyStore
}

func (r *resources) candidate(ctx context.Context, rank int, c engine.LinkCandidate) candidateView {
	v := candidateView{Rank: rank, PatientID: c.PatientID, OrderID: c.ServiceRequestID,
		Score: strconv.FormatFloat(c.Score, 'f', -1, 64), Evidence: evidenceRows(c.Evidence)}
	if content, problem := r.read(ctx, "Patient", c.PatientID); problem != "" {
		v.PatientProblem = problem
	} else {
		p := fhir.PatientOf(content)
		pv := &candidatePatient{BirthDate: p.BirthDate, Gender: p.Gender}
		for i, n := range p.Name {
			if i == 0 || n.Use == "official" {
				pv.Name = strings.TrimSpace(n.Family + ", " + strings.Join(n.Given, " "))
			}
			if n.Use == "official" {
				break
			}
		}
		for _, id := range p.Identifier {
			pv.Identifiers = append(pv.Identifiers, identifierText(id))
		}
		for _, l := range p.Link {
			if l.Type == "replaced-by" {
				v.ReplacedBy = strings.TrimPrefix(l.Other.Reference, "Patient/")
			}
		}
		v.Patient = pv
	}
	if c.ServiceRequestID == "" {
		return v
	}
	if content, problem := r.read(ctx, "ServiceRequest", c.ServiceRequestID); problem != "" {
		v.OrderProblem = problem
	} else {
		o := fhir.ServiceRequestOf(content)
		ov := &candidateOrder{Code: o.Code.Label(), Status: o.Status, Occurrence: o.OccurrenceDateTime, Subject: o.Subject.Reference}
		if ov.Code == "" {
			ov.Code = o.Code.FirstCode()
		}
		for _, id := range o.Identifier {
			ov.Identifiers = append(ov.Identifiers, identifierText(id))
		}
		v.Order = ov
	}
	return v
}

// identifierText is an identifier as an analyst reads it: its type, value and system.
func identifierText(id fhir.Identifier) string {
	s := id.Value
	if t := id.TypeCode(); t != "" {
		s = t + " " + s
	}
	if id.System != "" {
		s += " (" + id.System + ")"
	}
	return s
}

// read returns typ/id's content, or why it cannot be shown.
func (r *resources) read(ctx context.Context, typ, id string) (map[string]any, string) {
	res, err := r.st.Resource(ctx, typ, id)
	if errors.Is(err, engine.ErrNotFound) {
		return nil, "not found"
	}
	if err != nil {
		return nil, "could not be read"
	}
	content, err := fhir.DecodeContent(res.JSON)
	if err != nil {
		return nil, "could not be read"
	}
	return content, ""
}

func (w *work) reconciler() *engine.Reconciler {
	return &engine.Reconciler{Store: w.data.Studies.Store, Unlearner: w.data.Studies.Unlearner, Logger: w.p.opt.Logger}
}

// link serves POST /console/reconciliation/{uid}/link (patient_id, service_request_id, reason;
// CSRF token): link the study to a candidate, or move it to another patient.
func (w *work) link(c echo.Context) error {
	return w.decide(c, func(r *engine.Reconciler, ctx context.Context, d engine.Decision) (*engine.StudyLink, error) {
		return r.Link(ctx, d)
	}, "linked")
}

// unlink serves POST /console/reconciliation/{uid}/unlink (reason; CSRF token): the study is
// held as unmatched, its candidates kept.
func (w *work) unlink(c echo.Context) error {
	return w.decide(c, func(r *engine.Reconciler, ctx context.Context, d engine.Decision) (*engine.StudyLink, error) {
		return r.Unlink(ctx, d)
	}, "unlinked")
}

func (w *work) decide(c echo.Context, do func(*engine.Reconciler, context.Context, engine.Decision) (*engine.StudyLink, error), done string) error {
	ident, sess, err := w.identity(c, access.PermReconciliation)
	if ident == nil {
		return err
	}
	if err := checkCSRF(c, sess); err != nil {
		return err
	}
	if w.data.Studies == nil {
		return notSetUp
	}
	uid := c.Param("uid")
	back := "/console/reconciliation/" + url.PathEscape(uid)
	l, err := do(w.reconciler(), c.Request().Context(), engine.Decision{StudyInstanceUID: uid,
		PatientID: c.FormValue("patient_id"), ServiceRequestID: c.FormValue("service_request_id"),
		User: ident.User, Reason: c.FormValue("reason")})
	var de *engine.DecisionError
	var te *engine.TargetError
	switch {
	case errors.Is(err, engine.ErrNotFound):
		return echo.NewHTTPError(http.StatusNotFound, "no such study")
	case errors.As(err, &de), errors.As(err, &te):
		return w.studyPage(c, ident, sess, uid, http.StatusUnprocessableEntity, "Not done: "+err.Error())
	case err != nil:
		return err
	}
	what := "study " + uid + " " + done
	if l.PatientID != "" {
		what += " to Patient/" + l.PatientID
	}
	if l.ServiceRequestID != "" {
		what += " ServiceRequest/" + l.ServiceRequestID
	}
	w.audit(c, ident, audit.ActionLink, what)
	return c.Redirect(http.StatusSeeOther, back+"?done="+done)
}

func decisionNotice(done string) string {
	switch done {
	case "linked":
		return "Linked. The study's ImagingStudy is published again under that patient."
	case "unlinked":
		return "Held as unmatched; its candidates are kept."
	}
	return ""
}
