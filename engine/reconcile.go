package engine

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"strings"
	"time"

	"github.com/ferryhealth/ferry/fhir"
)

// Reconciler records the decisions a person makes on a study the linker held (docs/dicom.md,
// "Reconciliation"): link it to a patient and order, move it to another patient, or take it off
// its patient. The admin API and the console both decide through it, so a decision is checked
// and recorded one way whichever door it came by. Every change is a new StudyLink written with
// PutStudyLink, which keeps the history and queues the study's ImagingStudy to be derived again.
type Reconciler struct {
	Store ReconcileStore
	// Unlearner, if set, is told when a decision it may have learned from is replaced, so that
	// what it taught the identity cross-reference is taken back (*Linker).
	Unlearner Unlearner
	Logger    *slog.Logger     // nil: nothing logged
	Now       func() time.Time // default time.Now
}

// ReconcileStore is what the Reconciler reads and writes: the study, its decision, the Patients
// and orders named, and the decision's record. adapters/postgres and adapters/sqlite implement it.
type ReconcileStore interface {
	// Study returns a study as assembled from its instances, or ErrNotFound.
	Study(ctx context.Context, studyInstanceUID string) (*Study, error)
	// StudyLink returns the study's current decision, or ErrNotFound while none was made.
	StudyLink(ctx context.Context, studyInstanceUID string) (*StudyLink, error)
	// PutStudyLink records a decision (LinkWriter).
	PutStudyLink(ctx context.Context, l *StudyLink) error
	// Resource returns the current version of a Patient or ServiceRequest, or ErrNotFound.
	Resource(ctx context.Context, typ, id string) (*Resource, error)
}

// Unlearner takes back what a replaced decision taught the identity cross-reference: the
// studies linked only by the identifier it taught (rule learned-id) are decided again
// (Linker.Unlearn).
type Unlearner interface {
	Unlearn(ctx context.Context, prev *StudyLink, study func(ctx context.Context, uid string) (*Study, error)) (int, error)
}

// A DecisionError is a decision the Reconciler refuses: who or why is missing, or the patient or
// order named cannot take the study. Its text says what to change and holds ids, never names.
type DecisionError struct{ Problems []string }

func (e *DecisionError) Error() string { return strings.Join(e.Problems, "; ") }

// A TargetError is a Patient or order named in a decision that cannot take the study: not
// found, merged into another patient, or another patient's order.
type TargetError struct{ Msg string }

func (e *TargetError) Error() string { return e.Msg }

// Decision is a person's decision on a study: who and why, and for a link the patient and,
// optionally, the order.
type Decision struct {
	StudyInstanceUID string
	PatientID        string // for Link
	ServiceRequestID string // for Link, optional
	User, Reason     string
}

// Link links (or relinks) the study to d.PatientID and, when named, d.ServiceRequestID, and
// returns the decision recorded. ErrNotFound when there is no such study; a *DecisionError when
// who or why is missing; a *TargetError when the patient or order cannot take it.
func (r *Reconciler) Link(ctx context.Context, d Decision) (*StudyLink, error) {
	d.PatientID, d.ServiceRequestID = strings.TrimSpace(d.PatientID), strings.TrimSpace(d.ServiceRequestID)
	var problems []string
	switch {
	case d.PatientID == "":
		problems = append(problems, "patient_id: required")
	case !ValidResourceID(d.PatientID):
		problems = append(problems, "patient_id: want a Patient id, 1 to 64 of A-Z a-z 0-9 - .")
	}
	if d.ServiceRequestID != "" && !ValidResourceID(d.ServiceRequestID) {
		problems = append(problems, "service_request_id: want a ServiceRequest id, 1 to 64 of A-Z a-z 0-9 - .")
	}
	problems = append(problems, DecisionProblems(d.User, d.Reason)...)
	if len(problems) > 0 {
		return nil, &DecisionError{Problems: problems}
	}
	prev, err := r.current(ctx, d.StudyInstanceUID)
	if err != nil {
		return nil, err
	}
	if err := r.checkTarget(ctx, d.PatientID, d.ServiceRequestID); err != nil {
		return nil, err
	}
	next := r.decision(prev, d)
	next.Status, next.PatientID, next.ServiceRequestID = LinkLinked, d.PatientID, d.ServiceRequestID
	next.Score = previousScore(prev, d.PatientID)
	if err := r.Store.PutStudyLink(ctx, next); err != nil {
		return nil, err
	}
	r.unlearn(ctx, prev, next)
	return next, nil
}

// Unlink holds the study as unmatched, its candidates kept for a person to pick another, and
// returns the decision recorded. Errors as for Link.
func (r *Reconciler) Unlink(ctx context.Context, d Decision) (*StudyLink, error) {
	if problems := DecisionProblems(d.User, d.Reason); len(problems) > 0 {
		return nil, &DecisionError{Problems: problems}
	}
	prev, err := r.current(ctx, d.StudyInstanceUID)
	if err != nil {
		return nil, err
	}
	next := r.decision(prev, d)
	next.Status = LinkUnmatched
	if err := r.Store.PutStudyLink(ctx, next); err != nil {
		return nil, err
	}
	r.unlearn(ctx, prev, next)
	return next, nil
}

// DecisionProblems lists what a decision (a link, an unlink, a replay) lacks for the audit: who decided and why.
func DecisionProblems(user, reason string) []string {
	var problems []string
	switch strings.TrimSpace(user) {
	case "":
		problems = append(problems, "user: required (the audit records who decided)")
	case DecidedByLinker, DecidedByADT:
		problems = append(problems, "user: "+user+" is Ferry's own; name the person deciding")
	}
	if strings.TrimSpace(reason) == "" {
		problems = append(problems, "reason: required (the audit records why)")
	}
	return problems
}

// ValidResourceID reports whether id is a FHIR resource id: 1 to 64 of A-Z a-z 0-9 - .
func ValidResourceID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// current returns the study's decision, nil when none was made yet; ErrNotFound when there is
// no such study.
func (r *Reconciler) current(ctx context.Context, uid string) (*StudyLink, error) {
	if _, err := r.Store.Study(ctx, uid); err != nil {
		return nil, err
	}
	l, err := r.Store.StudyLink(ctx, uid)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return l, err
}

// decision starts a person's decision after prev (nil: none): rule manual, prev's candidates
// kept, and its evidence with what it decided under "previous".
func (r *Reconciler) decision(prev *StudyLink, d Decision) *StudyLink {
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	next := &StudyLink{StudyInstanceUID: d.StudyInstanceUID, Rule: RuleManual, Evidence: map[string]string{},
		// Microseconds: what both stores keep, so the answer matches the history.
		DecidedAt: now().UTC().Truncate(time.Microsecond), DecidedBy: strings.TrimSpace(d.User), Reason: strings.TrimSpace(d.Reason)}
	previous := "none"
	if prev != nil {
		maps.Copy(next.Evidence, prev.Evidence)
		// The study's identifier stays with it: linked by a person, it teaches the cross-reference.
		next.Candidates, next.Identifier = prev.Candidates, prev.Identifier
		parts := []string{string(prev.Status)}
		if prev.PatientID != "" {
			parts = append(parts, "Patient/"+prev.PatientID)
		}
		if prev.ServiceRequestID != "" {
			parts = append(parts, "ServiceRequest/"+prev.ServiceRequestID)
		}
		previous = strings.Join(parts, " ")
	}
	next.Evidence["previous"] = previous
	return next
}

// previousScore is the score prev gave patientID: as a candidate, or as the patient it named
// (a contradiction has no candidates); 0 when prev did not weigh that patient.
func previousScore(prev *StudyLink, patientID string) float64 {
	if prev == nil {
		return 0
	}
	for _, c := range prev.Candidates {
		if c.PatientID == patientID {
			return c.Score
		}
	}
	if prev.PatientID == patientID {
		return prev.Score
	}
	return 0
}

// unlearn tells the Unlearner that prev was replaced by next, when next names another patient.
func (r *Reconciler) unlearn(ctx context.Context, prev, next *StudyLink) {
	if r.Unlearner == nil || prev == nil || (next.Status == LinkLinked && next.PatientID == prev.PatientID) {
		return
	}
	logger := r.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n, err := r.Unlearner.Unlearn(ctx, prev, r.Store.Study)
	if err != nil {
		logger.Error("taking back what a decision taught", "study_uid", prev.StudyInstanceUID, "err", err)
		return
	}
	if n > 0 {
		logger.Info("studies decided again: the identifier they were linked by was taken back", "study_uid", prev.StudyInstanceUID, "studies", n)
	}
}

// checkTarget returns a *TargetError unless Patient/patientID exists and was not merged away,
// and the order, if named, exists and is that patient's (its subject, or a patient merged into
// it).
func (r *Reconciler) checkTarget(ctx context.Context, patientID, orderID string) error {
	p, err := r.Store.Resource(ctx, "Patient", patientID)
	switch {
	case errors.Is(err, ErrNotFound):
		return &TargetError{"patient_id: Patient/" + patientID + " not found"}
	case err != nil:
		return err
	}
	if next := ReplacedBy(p.JSON); next != "" {
		if s, err := survivor(ctx, r.Store, p); err == nil {
			next = s.ID
		}
		return &TargetError{"patient_id: Patient/" + patientID + " was merged into Patient/" + next +
			": link the study to Patient/" + next + " instead"}
	}
	if orderID == "" {
		return nil
	}
	o, err := r.Store.Resource(ctx, "ServiceRequest", orderID)
	switch {
	case errors.Is(err, ErrNotFound):
		return &TargetError{"service_request_id: ServiceRequest/" + orderID + " not found"}
	case err != nil:
		return err
	}
	content, err := contentOf(o.JSON)
	if err != nil {
		return err
	}
	subject, ok := strings.CutPrefix(fhir.ServiceRequestOf(content).Subject.Reference, "Patient/")
	if !ok {
		return &TargetError{"service_request_id: ServiceRequest/" + orderID + " is not a patient's order"}
	}
	if subject == patientID {
		return nil
	}
	sp, err := r.Store.Resource(ctx, "Patient", subject)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if err == nil {
		switch s, err := survivor(ctx, r.Store, sp); {
		case err == nil && s.ID == patientID:
			return nil // the order's patient was merged into this one
		case err != nil && !errors.Is(err, ErrNotFound):
			return err
		}
	}
	return &TargetError{"service_request_id: ServiceRequest/" + orderID + " is an order of Patient/" + subject +
		", not of Patient/" + patientID}
}
