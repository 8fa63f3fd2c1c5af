package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/engine"
)

// StudyLog is what the admin API reads of received studies: the study as assembled and the
// linker's decision.
type StudyLog interface {
	Study(ctx context.Context, studyInstanceUID string) (*engine.Study, error)
	StudySeries(ctx context.Context, studyInstanceUID string) ([]*engine.Series, error)
	StudyLink(ctx context.Context, studyInstanceUID string) (*engine.StudyLink, error)
}

// studyView is GET /api/v1/studies/{uid}: the study, its series and the linker's decision (with
// the evidence, for the analyst deciding a contradiction).
type studyView struct {
	Study  *engine.Study    `json:"study"`
	Series []*engine.Series `json:"series"`
	Link   *linkView        `json:"link,omitempty"`
}

type linkView struct {
	Status           engine.LinkStatus `json:"status"`
	Rule             string            `json:"rule,omitempty"`
	Score            float64           `json:"score"`
	ServiceRequestID string            `json:"service_request_id,omitempty"`
	PatientID        string            `json:"patient_id,omitempty"`
	Evidence         map[string]string `json:"evidence,omitempty"`
	DecidedAt        time.Time         `json:"decided_at"`
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
			view.Link = &linkView{Status: l.Status, Rule: l.Rule, Score: l.Score, ServiceRequestID: l.ServiceRequestID,
				PatientID: l.PatientID, Evidence: l.Evidence, DecidedAt: l.DecidedAt}
		case !errors.Is(err, engine.ErrNotFound):
			return err
		}
		h.logger.Info("audit: study read", "study_uid", uid, "remote", c.RealIP())
		return c.JSON(http.StatusOK, view)
	}
}
