// Package httpapi is Ferry's HTTP edge (echo): health and readiness, Prometheus metrics, the
// admin API under /api/v1/ (the message log, mapping tests) and FHIR REST under /fhir/r4 (see
// fhir.go). Errors from the admin API go through one error handler that answers JSON
// {"error": "..."}; the FHIR routes answer OperationOutcome.
package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
	"github.com/ferryhealth/ferry/engine/turnaround"
)

// MessageLog is what the admin API reads: the inbound message store.
type MessageLog interface {
	Message(ctx context.Context, id int64) (*engine.InboundMessage, error)
	Messages(ctx context.Context, f engine.MessageFilter) ([]*engine.InboundMessage, error)
	// Ping reports whether the store is reachable; /readyz fails while it is not.
	Ping(ctx context.Context) error
}

// Routes is a part of the HTTP API that another package serves (the DICOMweb edge,
// adapters/dicomweb.STOW): the server mounts a group at BasePath, behind authentication, and
// Register adds the part's routes to it. The server knows nothing else of the part.
type Routes interface {
	BasePath() string
	Register(g *echo.Group)
}

// Options configures the HTTP server. Messages, and Access or AdminToken, are required.
type Options struct {
	Messages MessageLog
	// Access authenticates requests (tokens, sessions) and, with a store, serves /api/v1/users
	// and /api/v1/tokens (access.go, people.go).
	Access *access.Service
	// AdminToken, when Access is nil, is the only credential: the bootstrap admin's token.
	AdminToken string
	// SessionCookie is the web session cookie's name (adapters/web.SessionCookie): requests
	// carrying it are who its session is. "": the API takes bearer tokens only.
	SessionCookie string
	// Audit records every access to patient data and every refusal (nil: none recorded).
	Audit AuditTrail
	// AuditEvents, if set, serves GET /fhir/r4/AuditEvent to admins.
	AuditEvents audit.Reader
	// Resources serves the FHIR REST API under /fhir/r4 (see fhir.go); nil: no FHIR API.
	Resources FHIRResources
	// Patients, if set, limits every read of Resources to the patients the caller reaches
	// (access.Reader), serves POST /api/v1/break-glass, and admits physicians and radiologists
	// limited to facilities — whose reads must then be limited everywhere, DICOMweb's study
	// search included (access.Studies, wired by cmd/ferry). nil: those identities get 403.
	Patients *access.Patients
	// DICOMweb serves the DICOMweb routes under their base path, for the roles that may read
	// or write studies (adapters/dicomweb.STOW); nil: no DICOMweb.
	DICOMweb Routes
	// Mappings, if set, serves POST /api/v1/mappings/test with the mappings in force.
	Mappings func() MappingTester
	// Deliveries, if set, serves /api/v1/deliveries: the report outbox, its dead letters and
	// replay; a replay's message is built again by Rerender (nil: the stored bytes are sent).
	Deliveries DeliveryLog
	Rerender   DeliveryRenderer
	// Turnaround, if set, serves GET /api/v1/turnaround (turnaround.go): the orders past their
	// SLA, or one order's clocks, measured against TurnaroundSLAs (nil: turnaround.DefaultSLAs()).
	Turnaround     TurnaroundLog
	TurnaroundSLAs turnaround.SLAs
	// Reports, if set, takes DiagnosticReports by POST and PUT under /fhir/r4 (with Resources).
	Reports ReportIntake
	// Studies, if set, serves GET /api/v1/studies/{uid} (a received study and its link) and
	// reconciliation (reconciliation.go): the worklist of studies waiting for a person under
	// /api/v1/reconciliation, and a study's link, unlink and decision history under
	// /api/v1/studies/{uid}/.
	Studies StudyLog
	// CrossReference, if set, widens Patient?identifier= to the identifiers learned from linked
	// studies and serves Patient/$ihe-pix (pix.go; *engine.Linker).
	CrossReference CrossReference
	// Unlearner, if set, is told of each decision a person replaces, so that what it taught
	// the identity cross-reference is taken back (*engine.Linker).
	Unlearner Unlearner
	// ErrorQueue, if set, serves the error queue's reprocessing and dismissal under
	// /api/v1/messages (errorqueue.go); Reprocessed is called when requests were queued (the
	// Reprocessor's Nudge).
	ErrorQueue  ErrorQueue
	Reprocessed func()
	// Critical, if set, serves POST /api/v1/reports/{id}/acknowledge (critical.go): a
	// physician acknowledges a report's critical result.
	Critical CriticalAcks
	// Gatherer serves /metrics (nil: prometheus.DefaultGatherer).
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger
	// Readiness are the checks /readyz makes besides the store's Ping (readiness.go): the
	// commits, the instance store.
	Readiness []ReadinessCheck
	// TrustedProxies are the load balancers and reverse proxies whose X-Forwarded-For (or
	// X-Real-IP) names the client; from any other peer those headers are ignored and the TCP
	// peer is the client address audited (clientip.go). Empty: no proxy is trusted.
	TrustedProxies []*net.IPNet

	gate *Gate // set by New
}

// New builds the HTTP handler.
func New(opt Options) (*echo.Echo, error) {
	if opt.Messages == nil {
		return nil, errors.New("httpapi: Options.Messages is required")
	}
	if opt.Access == nil {
		if opt.AdminToken == "" {
			return nil, errors.New("httpapi: Options.Access or Options.AdminToken is required")
		}
		opt.Access = &access.Service{BootstrapToken: opt.AdminToken}
	}
	if opt.Gatherer == nil {
		opt.Gatherer = prometheus.DefaultGatherer
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler(opt.Logger)
	e.IPExtractor = clientIPExtractor(opt.TrustedProxies)
	gate := &Gate{Auth: opt.Access, SessionCookie: opt.SessionCookie, Trail: opt.Audit, Logger: opt.Logger, Limits: opt.Patients != nil}
	if opt.Patients != nil && opt.Resources != nil {
		opt.Resources = &access.Reader{Patients: opt.Patients, Resources: opt.Resources}
	}
	opt.gate = gate
	need := gate.Require

	e.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	e.GET("/readyz", readyz(append([]ReadinessCheck{{Name: "store", Check: opt.Messages.Ping}}, opt.Readiness...), opt.Logger))
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(opt.Gatherer, promhttp.HandlerOpts{})), need(access.PermOperations, ""))

	api := e.Group("/api/v1")
	ml := &messageLog{log: opt.Messages, logger: opt.Logger}
	if opt.ErrorQueue != nil {
		eq := &errorQueueAPI{queue: opt.ErrorQueue, ml: ml, queued: opt.Reprocessed, now: func() time.Time { return time.Now().UTC() }}
		ml.errors = eq
		api.POST("/messages/reprocess", eq.bulk, need(access.PermReprocess, audit.ActionReplay))
		api.POST("/messages/:id/reprocess", eq.one(engine.ReprocessRun), need(access.PermReprocess, audit.ActionReplay))
		api.POST("/messages/:id/dismiss", eq.one(engine.ReprocessDismiss), need(access.PermReprocess, audit.ActionUpdate))
	}
	api.GET("/messages", ml.list, need(access.PermMessages, audit.ActionSearch))
	api.GET("/messages/export", ml.export, need(access.PermMessages, audit.ActionSearch))
	api.GET("/messages/:id", ml.get, need(access.PermMessages, audit.ActionRead))
	if opt.Mappings != nil {
		api.POST("/mappings/test", mappingsTest(opt.Mappings, ml), need(access.PermMappings, ""))
	}
	if opt.Deliveries != nil {
		da := &deliveryAPI{log: opt.Deliveries, replay: &engine.DeliveryReplay{Log: opt.Deliveries, Render: opt.Rerender}, ml: ml}
		api.GET("/deliveries", da.list, need(access.PermDeliveries, audit.ActionSearch))
		api.GET("/deliveries/:id", da.get, need(access.PermDeliveries, audit.ActionRead))
		api.POST("/deliveries/:id/replay", da.replayOne, need(access.PermDeliveries, audit.ActionReplay))
		api.POST("/deliveries/replay", da.replayAll, need(access.PermDeliveries, audit.ActionReplay))
	}
	if opt.Turnaround != nil {
		ta := &turnaroundAPI{log: opt.Turnaround, sla: opt.TurnaroundSLAs, logger: opt.Logger}
		if ta.sla == nil {
			ta.sla = turnaround.DefaultSLAs()
		}
		api.GET("/turnaround", ta.get, need(access.PermDashboards, ""))
	}
	if opt.Studies != nil {
		api.GET("/studies/:uid", getStudy(opt.Studies, ml), need(access.PermReconciliation, audit.ActionRead))
		rec := &reconciliation{studies: opt.Studies, logger: opt.Logger,
			decide: &engine.Reconciler{Store: opt.Studies, Unlearner: opt.Unlearner, Logger: opt.Logger}}
		api.GET("/reconciliation", rec.list, need(access.PermReconciliation, audit.ActionSearch))
		api.GET("/studies/:uid/history", rec.history, need(access.PermReconciliation, audit.ActionRead))
		api.POST("/studies/:uid/link", rec.link, need(access.PermReconciliation, audit.ActionLink))
		api.POST("/studies/:uid/unlink", rec.unlink, need(access.PermReconciliation, audit.ActionLink))
	}
	if opt.Access.Store != nil {
		registerPeople(api, opt)
	}
	if opt.Critical != nil {
		// The service decides who may (the patient's own physician) and audits each attempt.
		api.POST("/reports/:id/acknowledge", acknowledge(opt.Critical), need(access.PermFHIRRead, ""))
	}
	if opt.Patients != nil && opt.Resources != nil {
		bg := &breakGlassAPI{patients: opt.Patients, gate: gate}
		api.POST("/break-glass", bg.open, need(access.PermBreakGlass, ""))
	}

	if opt.Resources != nil {
		registerFHIR(e.Group(fhirBasePath), opt)
	}
	if opt.DICOMweb != nil {
		search, read := gate.RequireByMethod(access.PermDICOMwebRead, audit.ActionSearch, access.PermDICOMwebWrite, audit.ActionCreate),
			gate.RequireByMethod(access.PermDICOMwebRead, audit.ActionRead, access.PermDICOMwebWrite, audit.ActionCreate)
		opt.DICOMweb.Register(e.Group(opt.DICOMweb.BasePath(), func(next echo.HandlerFunc) echo.HandlerFunc {
			s, r := search(next), read(next)
			return func(c echo.Context) error {
				// QIDO-RS routes end with the level searched; the others retrieve (WADO-RS).
				if p := c.Path(); strings.HasSuffix(p, "/studies") || strings.HasSuffix(p, "/series") || strings.HasSuffix(p, "/instances") {
					return s(c)
				}
				return r(c)
			}
		}))
	}

	// Go runtime profiles for performance work, for admins.
	dbg := e.Group("/debug/pprof", need(access.PermOperations, ""))
	dbg.GET("/*", echo.WrapHandler(http.HandlerFunc(pprof.Index)))
	dbg.GET("/profile", echo.WrapHandler(http.HandlerFunc(pprof.Profile)))
	dbg.GET("/trace", echo.WrapHandler(http.HandlerFunc(pprof.Trace)))
	return e, nil
}

// errorHandler is the one place handler errors become responses. Internal errors are logged
// and answered without detail.
func errorHandler(logger *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		code, msg := http.StatusInternalServerError, "internal error"
		var he *echo.HTTPError
		switch {
		case errors.As(err, &he):
			code = he.Code
			if m, ok := he.Message.(string); ok {
				msg = m
			} else {
				msg = http.StatusText(code)
			}
		case errors.Is(err, engine.ErrNotFound):
			code, msg = http.StatusNotFound, "not found"
		default:
			logger.Error("http request failed", "method", c.Request().Method, "path", c.Path(), "err", err)
		}
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(code)
			return
		}
		_ = c.JSON(code, map[string]string{"error": msg})
	}
}
