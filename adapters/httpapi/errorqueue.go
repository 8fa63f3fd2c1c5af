package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/engine"
)

// ErrorQueue is what the admin API asks of the error queue (engine/errorqueue.go):
// engine.ErrorQueue.
type ErrorQueue interface {
	engine.ErrorQueue
}

// errorQueueAPI serves reprocessing and dismissal (docs/orders.md, "The error queue"). The queue
// itself is the message log filtered with queue=errors.
type errorQueueAPI struct {
	queue ErrorQueue
	ml    *messageLog
	// queued tells the Reprocessor that requests were queued (nil: it finds them on its poll).
	queued func()
	now    func() time.Time
}

// reprocessing is one request as the API shows it, beside the message.
type reprocessing struct {
	ID             int64     `json:"id"`
	Kind           string    `json:"kind"`
	RequestedAt    time.Time `json:"requested_at"`
	RequestedBy    string    `json:"requested_by"`
	Reason         string    `json:"reason,omitempty"`
	State          string    `json:"state"`
	FinishedAt     time.Time `json:"finished_at,omitzero"`
	MappingVersion string    `json:"mapping_version,omitempty"`
	Error          string    `json:"error,omitempty"`
}

func showReprocessing(r *engine.Reprocessing) reprocessing {
	return reprocessing{ID: r.ID, Kind: string(r.Kind), RequestedAt: r.RequestedAt.UTC(), RequestedBy: r.RequestedBy,
		Reason: r.Reason, State: string(r.State), FinishedAt: r.FinishedAt.UTC(), MappingVersion: r.MappingVersion, Error: r.Error}
}

// decisionRequest is a reprocessing's or a dismissal's body: who (a signed-in user or a named
// token's user is taken from the request itself) and why; dry_run only counts (bulk).
type decisionRequest struct {
	User   string `json:"user"`
	Reason string `json:"reason"`
	DryRun bool   `json:"dry_run"`
}

// one serves POST /api/v1/messages/{id}/reprocess and /dismiss {"user","reason"}.
func (a *errorQueueAPI) one(kind engine.ReprocessKind) echo.HandlerFunc {
	return func(c echo.Context) error {
		id, err := strconv.ParseInt(c.Param("id"), 10, 64)
		if err != nil || id <= 0 {
			return echo.NewHTTPError(http.StatusBadRequest, "id: want a positive integer")
		}
		req, err := a.decision(c, kind)
		if err != nil {
			return err
		}
		ctx := c.Request().Context()
		if _, err := a.ml.log.Message(ctx, id); err != nil {
			return err
		}
		n, err := a.queue.RequestReprocessing(ctx, engine.ReprocessRequest{Filter: engine.MessageFilter{ID: id},
			Kind: kind, By: req.User, Reason: req.Reason, At: a.now()})
		if err != nil {
			return err
		}
		if n == 0 {
			return echo.NewHTTPError(http.StatusConflict, fmt.Sprintf(
				"message %d is not in the error queue, or a reprocessing of it is already queued", id))
		}
		a.ml.logger.Info("audit: error queue "+string(kind), "message_id", id, "user", req.User, "remote", c.RealIP())
		return a.answer(c, kind, n, n)
	}
}

// bulk serves POST /api/v1/messages/reprocess?<the message log's filters> {"user","reason","dry_run"}:
// every message of the error queue the filters select (queue=errors implied), oldest first, up
// to engine.MaxReprocessBatch. With dry_run it only says how many match: "N messages match"
// before the analyst confirms.
func (a *errorQueueAPI) bulk(c echo.Context) error {
	f, err := messageFilter(c.QueryParams())
	if err != nil {
		return err
	}
	f.InErrorQueue = true
	req, err := a.decision(c, engine.ReprocessRun)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	matched, err := a.queue.CountMessages(ctx, f)
	if err != nil {
		return err
	}
	if req.DryRun {
		return c.JSON(http.StatusOK, map[string]int{"matched": matched})
	}
	n, err := a.queue.RequestReprocessing(ctx, engine.ReprocessRequest{Filter: f, Kind: engine.ReprocessRun,
		By: req.User, Reason: req.Reason, At: a.now()})
	if err != nil {
		return err
	}
	a.ml.logger.Info("audit: error queue bulk reprocess", "matched", matched, "queued", n, "user", req.User, "remote", c.RealIP())
	return a.answer(c, engine.ReprocessRun, matched, n)
}

func (a *errorQueueAPI) decision(c echo.Context, kind engine.ReprocessKind) (decisionRequest, error) {
	var req decisionRequest
	if err := decodeDecision(c, &req); err != nil {
		return req, err
	}
	req.User, req.Reason = actingUser(c, req.User), strings.TrimSpace(req.Reason)
	if req.User == "" {
		return req, echo.NewHTTPError(http.StatusBadRequest, "user: required (the audit records who decided)")
	}
	if kind == engine.ReprocessDismiss && req.Reason == "" {
		return req, echo.NewHTTPError(http.StatusBadRequest, "reason: a dismissal needs one (the audit records why)")
	}
	return req, nil
}

func (a *errorQueueAPI) answer(c echo.Context, kind engine.ReprocessKind, matched, n int) error {
	if kind == engine.ReprocessDismiss {
		return c.JSON(http.StatusOK, map[string]int{"dismissed": n})
	}
	if a.queued != nil && n > 0 {
		a.queued()
	}
	// 202: queued for the Reprocessor; each outcome shows in GET /api/v1/messages/{id}.
	return c.JSON(http.StatusAccepted, map[string]int{"matched": matched, "queued": n})
}

// history is the reprocessing of message id, for its detail.
func (a *errorQueueAPI) history(c echo.Context, id int64) ([]reprocessing, error) {
	if a == nil {
		return nil, nil
	}
	hist, err := a.queue.Reprocessings(c.Request().Context(), id)
	if err != nil && !errors.Is(err, engine.ErrNotFound) {
		return nil, err
	}
	out := make([]reprocessing, 0, len(hist))
	for _, r := range hist {
		out = append(out, showReprocessing(r))
	}
	return out, nil
}
