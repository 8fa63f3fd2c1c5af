package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/engine"
)

// reconciliation serves the worklist of studies waiting for a person and the decisions people
// make on them (docs/dicom.md, "Reconciliation"):
//
//	GET  /api/v1/reconciliation?limit=&offset=  open decisions, oldest first, with candidates
//	POST /api/v1/studies/{uid}/link             link (or relink) to a patient and order
//	POST /api/v1/studies/{uid}/unlink           take the study off its patient
//	GET  /api/v1/studies/{uid}/history          every decision, oldest first
//
// Every change is a new engine.StudyLink written with PutStudyLink, which keeps the history and
// queues the study's ImagingStudy to be derived again. Writes are audited — who, which study,
// which patient and order, from where — never the reason, which may hold patient data (it is
// kept with the decision).
type reconciliation struct {
	studies StudyLog
	decide  *engine.Reconciler
	logger  *slog.Logger
}

// Unlearner takes back what a decision taught the identity cross-reference once a person has
// replaced it (engine.Unlearner; *engine.Linker).
type Unlearner = engine.Unlearner

// Worklist paging: the default page and the most a page may hold (OpenStudyLinks's bound).
const (
	defaultWorklistLimit = 50
	maxWorklistLimit     = 1000
)

// maxDecisionBody caps a link or unlink request.
const maxDecisionBody = 64 << 10

// worklistPage is GET /api/v1/reconciliation.
type worklistPage struct {
	Items []worklistItem `json:"items"`
	// Next is the offset of the next page; absent on the last page.
	Next int `json:"next,omitempty"`
}

// worklistItem is one study waiting for a person: its patient fields as the modality sent them
// beside the decision, its candidates and their Patients and orders as Ferry holds them.
type worklistItem struct {
	Study *studySummary `json:"study"`
	Link  *linkView     `json:"link"`
}

// studySummary is what the worklist shows of a study. Unavailable is set when the study could
// not be read (the other fields are then empty but its UID).
type studySummary struct {
	StudyInstanceUID  string   `json:"study_instance_uid"`
	Unavailable       string   `json:"unavailable,omitempty"`
	PatientName       string   `json:"patient_name,omitempty"`
	PatientID         string   `json:"patient_id,omitempty"`
	IssuerOfPatientID string   `json:"issuer_of_patient_id,omitempty"`
	PatientBirthDate  string   `json:"patient_birth_date,omitempty"`
	PatientSex        string   `json:"patient_sex,omitempty"`
	AccessionNumber   string   `json:"accession_number,omitempty"`
	StudyDate         string   `json:"study_date,omitempty"`
	StudyDescription  string   `json:"study_description,omitempty"`
	ModalitiesInStudy []string `json:"modalities_in_study,omitempty"`
	NumberOfSeries    int      `json:"number_of_series"`
	NumberOfInstances int      `json:"number_of_instances"`
}

// patientSummary is a Patient as Ferry holds it, for comparing with a study's patient fields.
// Unavailable says why it could not be read ("not found", "unreadable"); the other fields are
// then empty but the id.
type patientSummary struct {
	ID          string `json:"id"`
	Unavailable string `json:"unavailable,omitempty"`
	// ReplacedBy is the Patient this one was merged into (ADT A40): link to that one instead.
	ReplacedBy  string      `json:"replaced_by,omitempty"`
	Identifiers []string    `json:"identifiers,omitempty"` // system|value
	Name        *personName `json:"name,omitempty"`        // the official name, else the first
	BirthDate   string      `json:"birth_date,omitempty"`
	Gender      string      `json:"gender,omitempty"`
}

type personName struct {
	Family string   `json:"family,omitempty"`
	Given  []string `json:"given,omitempty"`
}

// orderSummary is a ServiceRequest as Ferry holds it. Unavailable as for patientSummary.
type orderSummary struct {
	ID          string   `json:"id"`
	Unavailable string   `json:"unavailable,omitempty"`
	Identifiers []string `json:"identifiers,omitempty"` // system|value
	Code        string   `json:"code,omitempty"`        // code.text, else the first coding's display, else its code
	Status      string   `json:"status,omitempty"`
	Occurrence  string   `json:"occurrence,omitempty"` // occurrenceDateTime, else occurrencePeriod.start
	Subject     string   `json:"subject,omitempty"`    // e.g. Patient/p1
}

// What is unavailable about a study, Patient or order in the worklist.
const (
	unavailableNotFound   = "not found"
	unavailableUnreadable = "unreadable"
)

// fhirPatient and fhirOrder are the members of a Patient and a ServiceRequest the API reads.
type fhirPatient struct {
	Identifier []fhirIdentifier `json:"identifier"`
	Name       []struct {
		Use    string   `json:"use"`
		Family string   `json:"family"`
		Given  []string `json:"given"`
	} `json:"name"`
	BirthDate string `json:"birthDate"`
	Gender    string `json:"gender"`
	Link      []struct {
		Other fhirReference `json:"other"`
		Type  string        `json:"type"`
	} `json:"link"`
}

type fhirOrder struct {
	Identifier []fhirIdentifier `json:"identifier"`
	Status     string           `json:"status"`
	Code       struct {
		Text   string `json:"text"`
		Coding []struct {
			Code    string `json:"code"`
			Display string `json:"display"`
		} `json:"coding"`
	} `json:"code"`
	Subject            fhirReference `json:"subject"`
	OccurrenceDateTime string        `json:"occurrenceDateTime"`
	OccurrencePeriod   struct {
		Start string `json:"start"`
	} `json:"occurrencePeriod"`
}

type fhirIdentifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

type fhirReference struct {
	Reference string `json:"reference"`
}

// replacedBy is the id of the Patient this one was merged into (a replaced-by link, as the ADT
// merge writes it: engine/orders.go), "" when it was not merged.
func (p *fhirPatient) ReplacedBy() string {
	for _, l := range p.Link {
		if l.Type == "replaced-by" {
			return strings.TrimPrefix(l.Other.Reference, "Patient/")
		}
	}
	return ""
}

func identifierTexts(ids []fhirIdentifier) []string {
	var out []string
	for _, id := range ids {
		if id.Value != "" {
			out = append(out, id.System+"|"+id.Value)
		}
	}
	return out
}

// list serves GET /api/v1/reconciliation?limit=&offset=.
func (r *reconciliation) list(c echo.Context) error {
	q := c.QueryParams()
	limit, err := queryInt(q, "limit")
	if err != nil {
		return err
	}
	if limit > maxWorklistLimit {
		return echo.NewHTTPError(http.StatusBadRequest, "limit: between 1 and "+strconv.Itoa(maxWorklistLimit))
	}
	if limit == 0 {
		limit = defaultWorklistLimit
	}
	offset, err := queryInt(q, "offset")
	if err != nil {
		return err
	}
	page := int(limit)
	// One more than the page tells whether there is a next one (at the store's bound, a full
	// page is assumed to have one).
	ask := min(page+1, maxWorklistLimit)
	ctx := c.Request().Context()
	links, err := r.studies.OpenStudyLinks(ctx, ask, int(offset))
	if err != nil {
		return err
	}
	out := worklistPage{Items: make([]worklistItem, 0, min(len(links), page))}
	if len(links) > page || len(links) == maxWorklistLimit {
		out.Next = int(offset) + page
	}
	if len(links) > page {
		links = links[:page]
	}
	s := &summaries{studies: r.studies, logger: r.logger, patients: map[string]*patientSummary{},
		orders: map[string]*orderSummary{}}
	for _, l := range links {
		item := worklistItem{Study: s.study(ctx, l.StudyInstanceUID), Link: viewOfLink(l)}
		item.Link.Patient, item.Link.ServiceRequest = s.patient(ctx, l.PatientID), s.order(ctx, l.ServiceRequestID)
		for i := range item.Link.Candidates {
			cand := &item.Link.Candidates[i]
			cand.Patient, cand.ServiceRequest = s.patient(ctx, cand.PatientID), s.order(ctx, cand.ServiceRequestID)
		}
		out.Items = append(out.Items, item)
	}
	r.logger.Info("audit: reconciliation list read", "count", len(out.Items), "remote", c.RealIP())
	return c.JSON(http.StatusOK, out)
}

// summaries reads what the worklist shows of studies, Patients and orders, each Patient and
// order once a request. A read that fails marks that entry unavailable instead of failing the
// page: a person can still work on the others.
type summaries struct {
	studies  StudyLog
	logger   *slog.Logger
	patients map[string]*patientSummary
	orders   map[string]*orderSummary
}

func (s *summaries) study(ctx context.Context, uid string) *studySummary {
	st, err := s.studies.Study(ctx, uid)
	if err != nil {
		return &studySummary{StudyInstanceUID: uid, Unavailable: s.unavailable("study", uid, err)}
	}
	return &studySummary{StudyInstanceUID: uid, PatientName: st.PatientName, PatientID: st.PatientID,
		IssuerOfPatientID: st.IssuerOfPatientID, PatientBirthDate: st.PatientBirthDate, PatientSex: st.PatientSex,
		AccessionNumber: st.AccessionNumber, StudyDate: st.StudyDate, StudyDescription: st.StudyDescription,
		ModalitiesInStudy: st.ModalitiesInStudy, NumberOfSeries: st.NumberOfSeries, NumberOfInstances: st.NumberOfInstances}
}

// patient summarises Patient/id; nil for "".
func (s *summaries) patient(ctx context.Context, id string) *patientSummary {
	if id == "" {
		return nil
	}
	if p, ok := s.patients[id]; ok {
		return p
	}
	sum := &patientSummary{ID: id}
	s.patients[id] = sum
	var p fhirPatient
	if err := readResource(ctx, s.studies, "Patient", id, &p); err != nil {
		sum.Unavailable = s.unavailable("Patient", id, err)
		return sum
	}
	sum.ReplacedBy, sum.Identifiers, sum.BirthDate, sum.Gender = p.ReplacedBy(), identifierTexts(p.Identifier), p.BirthDate, p.Gender
	for i, n := range p.Name {
		if i == 0 || n.Use == "official" {
			sum.Name = &personName{Family: n.Family, Given: n.Given}
		}
		if n.Use == "official" {
			break
		}
	}
	return sum
}

// order summarises ServiceRequest/id; nil for "".
func (s *summaries) order(ctx context.Context, id string) *orderSummary {
	if id == "" {
		return nil
	}
	if o, ok := s.orders[id]; ok {
		return o
	}
	sum := &orderSummary{ID: id}
	s.orders[id] = sum
	var o fhirOrder
	if err := readResource(ctx, s.studies, "ServiceRequest", id, &o); err != nil {
		sum.Unavailable = s.unavailable("ServiceRequest", id, err)
		return sum
	}
	sum.Identifiers, sum.Status, sum.Subject = identifierTexts(o.Identifier), o.Status, o.Subject.Reference
	sum.Code = o.Code.Text
	if sum.Code == "" && len(o.Code.Coding) > 0 {
		sum.Code = o.Code.Coding[0].Display
		if sum.Code == "" {
			sum.Code = o.Code.Coding[0].Code
		}
	}
	sum.Occurrence = o.OccurrenceDateTime
	if sum.Occurrence == "" {
		sum.Occurrence = o.OccurrencePeriod.Start
	}
	return sum
}

// unavailable is the marker for a read that failed; other failures than "not found" are logged
// (the error names the resource, never its content).
func (s *summaries) unavailable(what, id string, err error) string {
	if errors.Is(err, engine.ErrNotFound) {
		return unavailableNotFound
	}
	s.logger.Warn("reconciliation: reading for the worklist failed", "type", what, "id", id, "err", err)
	return unavailableUnreadable
}

// readResource reads the current version of typ/id into v (the members it declares).
func readResource(ctx context.Context, studies StudyLog, typ, id string, v any) error {
	res, err := studies.Resource(ctx, typ, id)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(res.JSON, v); err != nil {
		return fmt.Errorf("decoding %s/%s: %w", typ, id, err)
	}
	return nil
}

// linkRequest is POST /api/v1/studies/{uid}/link.
type linkRequest struct {
	PatientID        string `json:"patient_id"`
	ServiceRequestID string `json:"service_request_id"` // optional
	User             string `json:"user"`
	Reason           string `json:"reason"`
}

// unlinkRequest is POST /api/v1/studies/{uid}/unlink.
type unlinkRequest struct {
	User   string `json:"user"`
	Reason string `json:"reason"`
}

// decodeDecision reads a link or unlink request: one JSON object of the request's members, no
// others (a misspelt member is an error, not an order silently left out).
func decodeDecision(c echo.Context, into any) error {
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, maxDecisionBody+1))
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "reading the request: "+err.Error())
	}
	if len(body) > maxDecisionBody {
		return echo.NewHTTPError(http.StatusRequestEntityTooLarge, "the request exceeds 64 KiB")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		// Decoder errors name members, types and offsets, never values.
		return echo.NewHTTPError(http.StatusBadRequest, "the request: want a JSON object: "+err.Error())
	}
	return nil
}

// auditProblems lists what a decision lacks for the audit: who decided and why.
func auditProblems(user, reason string) []string { return engine.DecisionProblems(user, reason) }

func badRequest(problems []string) error {
	return echo.NewHTTPError(http.StatusBadRequest, strings.Join(problems, "; "))
}

// decisionError answers a decision the Reconciler refused: 400 for what the request lacks,
// 422 for a patient or order that cannot take the study; other errors as they are.
func decisionError(err error) error {
	var de *engine.DecisionError
	var te *engine.TargetError
	switch {
	case errors.As(err, &de):
		return badRequest(de.Problems)
	case errors.As(err, &te):
		return echo.NewHTTPError(http.StatusUnprocessableEntity, te.Msg)
	}
	return err
}

// link serves POST /api/v1/studies/{uid}/link: a person links the study to a Patient and,
// optionally, one of its orders — or relinks a study already linked (engine.Reconciler).
func (r *reconciliation) link(c echo.Context) error {
	uid := c.Param("uid")
	var req linkRequest
	if err := decodeDecision(c, &req); err != nil {
		return err
	}
	next, err := r.decide.Link(c.Request().Context(), engine.Decision{StudyInstanceUID: uid, PatientID: req.PatientID,
		ServiceRequestID: req.ServiceRequestID, User: actingUser(c, req.User), Reason: req.Reason})
	if err != nil {
		return decisionError(err)
	}
	r.logger.Info("audit: study linked", "study_uid", uid, "patient", next.PatientID,
		"service_request", next.ServiceRequestID, "user", next.DecidedBy, "remote", c.RealIP())
	return c.JSON(http.StatusOK, viewOfLink(next))
}

// unlink serves POST /api/v1/studies/{uid}/unlink: the study is held as unmatched, its
// candidates kept for the person to pick another.
func (r *reconciliation) unlink(c echo.Context) error {
	uid := c.Param("uid")
	var req unlinkRequest
	if err := decodeDecision(c, &req); err != nil {
		return err
	}
	ctx := c.Request().Context()
	// The audit event committed with the decision names the patient the study is taken off
	// (the store names the linked patient of a link itself).
	if prev, err := r.studies.StudyLink(ctx, uid); err == nil && prev.PatientID != "" {
		SetAuditPatient(c, "Patient/"+prev.PatientID)
	}
	next, err := r.decide.Unlink(ctx, engine.Decision{StudyInstanceUID: uid,
		User: actingUser(c, req.User), Reason: req.Reason})
	if err != nil {
		return decisionError(err)
	}
	r.logger.Info("audit: study unlinked", "study_uid", uid, "user", next.DecidedBy, "remote", c.RealIP())
	return c.JSON(http.StatusOK, viewOfLink(next))
}

// history serves GET /api/v1/studies/{uid}/history: every decision, oldest first.
func (r *reconciliation) history(c echo.Context) error {
	uid := c.Param("uid")
	ctx := c.Request().Context()
	if _, err := r.studies.Study(ctx, uid); err != nil {
		return err // ErrNotFound → 404
	}
	links, err := r.studies.StudyLinkHistory(ctx, uid)
	if err != nil {
		return err
	}
	out := struct {
		StudyInstanceUID string      `json:"study_instance_uid"`
		Decisions        []*linkView `json:"decisions"`
	}{StudyInstanceUID: uid, Decisions: make([]*linkView, 0, len(links))}
	for _, l := range links {
		out.Decisions = append(out.Decisions, viewOfLink(l))
	}
	r.logger.Info("audit: study link history read", "study_uid", uid, "count", len(links), "remote", c.RealIP())
	return c.JSON(http.StatusOK, out)
}
