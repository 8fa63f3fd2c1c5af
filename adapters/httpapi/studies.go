package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/engine"
)

// StudyLog is what the admin API reads and writes of received studies: the study as assembled,
// the linker's decisions, and the Patients and ServiceRequests a person links a study to
// (reconciliation.go). adapters/postgres and adapters/sqlite implement it. Reads return
// engine.ErrNotFound for what does not exist: answered 404 for the study in the path, 422 for a
// Patient or order named in a request body.
type StudyLog interface {
	// Study returns a study as assembled from its instances, or engine.ErrNotFound.
	Study(ctx context.Context, studyInstanceUID string) (*engine.Study, error)
	// StudySeries returns a study's series.
	StudySeries(ctx context.Context, studyInstanceUID string) ([]*engine.Series, error)
	// StudyLink returns the study's current decision, or engine.ErrNotFound while none was made.
	StudyLink(ctx context.Context, studyInstanceUID string) (*engine.StudyLink, error)
	// StudyLinkHistory returns every decision made for the study, oldest first (none: empty).
	StudyLinkHistory(ctx context.Context, studyInstanceUID string) ([]*engine.StudyLink, error)
	// OpenStudyLinks returns the decisions waiting for a person (engine.LinkStatus.Open),
	// oldest first, skipping offset and returning at most limit (1 to 1000): the worklist.
	OpenStudyLinks(ctx context.Context, limit, offset int) ([]*engine.StudyLink, error)
	// PutStudyLink records a person's decision: it replaces the current one, is appended to the
	// history and queues the study's ImagingStudy to be derived again, in one transaction
	// (engine.LinkWriter) — so every change reaches the FHIR resources.
	PutStudyLink(ctx context.Context, l *engine.StudyLink) error
	// Resource returns the current version of a Patient or ServiceRequest, or engine.ErrNotFound.
	Resource(ctx context.Context, typ, id string) (*engine.Resource, error)
}

// studyView is GET /api/v1/studies/{uid}: the study, its series and the linker's decision (with
// the evidence, for the analyst deciding a contradiction).
type studyView struct {
	Study  *engine.Study    `json:"study"`
	Series []*engine.Series `json:"series"`
	Link   *linkView        `json:"link,omitempty"`
}

// linkView is one decision (engine.StudyLink): by whom, when, why, and what was weighed.
type linkView struct {
	Status           engine.LinkStatus `json:"status"`
	Rule             string            `json:"rule,omitempty"`
	Score            float64           `json:"score"`
	ServiceRequestID string            `json:"service_request_id,omitempty"`
	PatientID        string            `json:"patient_id,omitempty"`
	Evidence         map[string]string `json:"evidence,omitempty"`
	Candidates       []candidateView   `json:"candidates,omitempty"`
	DecidedAt        time.Time         `json:"decided_at"`
	DecidedBy        string            `json:"decided_by"` // "linker", "adt" or the person
	// Reason is why, as the person gave it (may hold patient data: shown, never logged).
	Reason string `json:"reason,omitempty"`
	// Identifier is the study's patient identifier as the identifier rules read it: while the
	// decision is linked, an identifier of its patient (the identity cross-reference).
	Identifier *engine.LinkIdentifier `json:"identifier,omitempty"`
	// Patient and ServiceRequest summarise the decision's patient and order in the
	// reconciliation worklist, for a person to compare with the study's fields.
	Patient        *patientSummary `json:"patient,omitempty"`
	ServiceRequest *orderSummary   `json:"service_request,omitempty"`
}

// candidateView is a patient the linker weighed; in the reconciliation worklist with the
// Patient's and the order's summaries.
type candidateView struct {
	engine.LinkCandidate
	Patient        *patientSummary `json:"patient,omitempty"`
	ServiceRequest *orderSummary   `json:"service_request,omitempty"`
}

// viewOfLink is the JSON view of a decision, without resource summaries.
func viewOfLink(l *engine.StudyLink) *linkView {
	v := &linkView{Status: l.Status, Rule: l.Rule, Score: l.Score, ServiceRequestID: l.ServiceRequestID,
		PatientID: l.PatientID, Evidence: l.Evidence, DecidedAt: l.DecidedAt.UTC(), DecidedBy: l.DecidedByOrLinker(),
		Reason: l.Reason}
	if !l.Identifier.IsZero() {
		id := l.Identifier
		v.Identifier = &id
	}
	for _, c := range l.Candidates {
		v.Candidates = append(v.Candidates, candidateView{LinkCandidate: c})
	}
	return v
}

// getStudy answers GET /api/v1/studies/{uid}; reads are audited (who, which study, when).
func getStudy(studies StudyLog, h *messageLog) echo.HandlerFunc {
	return func(c echo.Context) error {
		uid := c.Param("uid")
		ctx := c.Request().Context()
		st, err := studies.Study(ctx, uid)
		if err != nil {
			return err // ErrNotFound → 404 in the error handler
		}
		series, err := studies.StudySeries(ctx, uid)
		if err != nil && !errors.Is(err, engine.ErrNotFound) {
			return err
		}
		view := studyView{Study: st, Series: series}
		switch l, err := studies.StudyLink(ctx, uid); {
		case err == nil:
			view.Link = viewOfLink(l)
		case !errors.Is(err, engine.ErrNotFound):
			return err
		}
		h.logger.Info("audit: study read", "study_uid", uid, "remote", c.RealIP())
		return c.JSON(http.StatusOK, view)
	}
}
