package httpapi

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
)

// Access control (docs/security.md, "People and access"): every route but /healthz, /readyz and
// the login page needs an identity — an API token (Authorization: Bearer) or a web session
// (Options.SessionCookie) — and the permission its route names. A request without a valid identity is
// answered 401 whatever was wrong with it; one whose role lacks the permission 403. Both are
// audited, and so is every access to patient data, allowed or not.

// CSRFHeader carries a session's CSRF token on a state-changing API request made with the
// session's cookie (forms carry it as the csrf_token field).
const CSRFHeader = "X-CSRF-Token"

// Authenticator says who a request is (access.Service).
type Authenticator interface {
	AuthenticateToken(ctx context.Context, text string) (*access.Identity, error)
	Session(ctx context.Context, id string) (*access.Identity, *access.Session, error)
}

// AuditTrail records audit events (audit.Recorder). Record returns once the event is committed.
type AuditTrail interface {
	Record(ctx context.Context, e *audit.Event) error
}

// Context keys of what the gate learns about a request.
const (
	identityKey     = "ferry.identity"
	sessionKey      = "ferry.session"
	auditPatientKey = "ferry.audit.patient"
)

// IdentityOf returns the identity the gate admitted the request with (nil before the gate).
func IdentityOf(c echo.Context) *access.Identity {
	id, _ := c.Get(identityKey).(*access.Identity)
	return id
}

// SessionOf returns the web session of the request, nil when it came with a token.
func SessionOf(c echo.Context) *access.Session {
	s, _ := c.Get(sessionKey).(*access.Session)
	return s
}

// SetAuditPatient names the patient ("Patient/ID") a request concerned, for its audit event
// (the event of a change too, when it is not committed yet).
func SetAuditPatient(c echo.Context, patient string) {
	if patient == "" {
		return
	}
	c.Set(auditPatientKey, patient)
	if p := audit.PendingIn(c.Request().Context()); p != nil && p.Event.Patient == "" {
		p.Event.Patient = patient
	}
}

// Gate authenticates requests, checks their permission and audits them.
type Gate struct {
	Auth Authenticator
	// SessionCookie names the web session's cookie (adapters/web's); "": only bearer tokens.
	SessionCookie string
	Trail         AuditTrail // nil: nothing recorded (tests of other things)
	Logger        *slog.Logger
	Now           func() time.Time
	// Limits says that the readers behind the routes limit each identity to the patients it
	// reaches (access.Reader, access.Studies); without it a Limited identity is refused (403).
	Limits bool
}

func (g *Gate) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

// Require admits requests whose identity grants perm ("" for any identity). With action set, the
// request is audited as that action after its handler ran, whatever the outcome; refusals are
// audited always.
func (g *Gate) Require(perm access.Permission, action audit.Action) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			id, err := g.identify(c)
			if err != nil {
				var f *access.Failure
				detail := "no credentials"
				agent := ""
				if errors.As(err, &f) {
					detail, agent = f.Reason, f.User
				} else if !errors.Is(err, access.ErrUnauthenticated) {
					g.Logger.Error("authenticating a request failed", "path", c.Path(), "err", err)
					detail = "authentication failed: store error"
				}
				g.record(c, &audit.Event{Action: audit.ActionAccess, Outcome: audit.OutcomeMinor, Agent: agent, Detail: "401: " + detail})
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="ferry"`)
				return echo.NewHTTPError(http.StatusUnauthorized, "authentication required")
			}
			c.Set(identityKey, id)
			if perm != "" && id.Limited() && !g.Limits && perm != access.PermBreakGlass {
				// Without the readers that limit it to its patients, a physician (or a
				// radiologist limited to facilities) would be shown everyone's: refused instead.
				g.record(c, &audit.Event{Action: orAccess(action), Outcome: audit.OutcomeMinor, Agent: id.User, Role: string(id.Role),
					Detail: "403: reads of role " + string(id.Role) + " are not limited to its patients here"})
				return echo.NewHTTPError(http.StatusForbidden, "not permitted for your role")
			}
			if perm != "" && !id.Grants(perm) {
				g.record(c, &audit.Event{Action: orAccess(action), Outcome: audit.OutcomeMinor, Agent: id.User, Role: string(id.Role),
					Detail: "403: role " + string(id.Role) + " lacks " + string(perm)})
				return echo.NewHTTPError(http.StatusForbidden, "not permitted for your role")
			}
			disclosure := &access.Disclosure{}
			ctx := access.WithDisclosure(access.WithIdentity(c.Request().Context(), id), disclosure)
			c.SetRequest(c.Request().WithContext(ctx))
			var pending *audit.Pending
			if changes(action) {
				// A change: its event is appended in the change's own transaction (audit.Changes
				// for resources; the store's link, replay and reprocessing requests).
				pending = &audit.Pending{Event: g.fill(c, &audit.Event{Action: action, Outcome: audit.OutcomeSuccess, Agent: id.User, Role: string(id.Role)})}
				c.SetRequest(c.Request().WithContext(audit.WithPending(c.Request().Context(), pending)))
			}
			err = next(c)
			if action != "" && (pending == nil || !pending.Recorded) {
				e := &audit.Event{Action: action, Outcome: outcomeOf(c, err), Agent: id.User, Role: string(id.Role)}
				switch refused, breakGlass := disclosure.Result(); {
				case refused != "":
					// A record outside the caller's patients: answered 404, audited as refused.
					e.Outcome, e.Patient = audit.OutcomeMinor, refused
					e.Detail = "404: refused: not among the patients of " + id.User
				case breakGlass != "":
					e.Detail = audit.BreakGlassDetail + breakGlass
				}
				g.record(c, e)
			}
			return err
		}
	}
}

// RequireByMethod is Require with the permission and action of the request's method: read for
// GET and HEAD, write for the others (DICOMweb: QIDO-RS and WADO-RS read, STOW-RS writes).
func (g *Gate) RequireByMethod(read access.Permission, readAction audit.Action, write access.Permission, writeAction audit.Action) echo.MiddlewareFunc {
	readMW, writeMW := g.Require(read, readAction), g.Require(write, writeAction)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		r, w := readMW(next), writeMW(next)
		return func(c echo.Context) error {
			if unsafeMethod(c.Request().Method) {
				return w(c)
			}
			return r(c)
		}
	}
}

// changes reports whether a request audited as a is a change, whose event is committed with it.
func changes(a audit.Action) bool {
	switch a {
	case audit.ActionCreate, audit.ActionUpdate, audit.ActionLink, audit.ActionReplay:
		return true
	}
	return false
}

// PerChange returns the request's context carrying an event of its own for one of the several
// changes a request makes (a bulk replay's deliveries): a copy of the request's pending event
// naming entity, committed with that change (audit.PendingIn). The request's own event is then
// recorded after it, as the summary. Without a pending event, ctx unchanged.
func PerChange(c echo.Context, entity, patient string) context.Context {
	ctx := c.Request().Context()
	p := audit.PendingIn(ctx)
	if p == nil {
		return ctx
	}
	e := *p.Event
	e.Entity, e.Patient = entity, patient
	return audit.WithPending(ctx, &audit.Pending{Event: &e})
}

func orAccess(a audit.Action) audit.Action {
	if a == "" {
		return audit.ActionAccess
	}
	return a
}

// identify returns the request's identity: its bearer token's, else its session cookie's. A
// state-changing request made with a session must carry the session's CSRF token.
func (g *Gate) identify(c echo.Context) (*access.Identity, error) {
	ctx := c.Request().Context()
	if h := c.Request().Header.Get(echo.HeaderAuthorization); h != "" {
		// The scheme name is case-insensitive (RFC 7235 §2.1).
		scheme, text, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return nil, &access.Failure{Reason: "not a bearer token"}
		}
		return g.Auth.AuthenticateToken(ctx, strings.TrimSpace(text))
	}
	if g.SessionCookie == "" {
		return nil, &access.Failure{Reason: "no credentials"}
	}
	cookie, err := c.Cookie(g.SessionCookie)
	if err != nil {
		return nil, &access.Failure{Reason: "no credentials"}
	}
	id, sess, err := g.Auth.Session(ctx, cookie.Value)
	if err != nil {
		return nil, err
	}
	if unsafeMethod(c.Request().Method) && !CSRFValid(c, sess) {
		return nil, &access.Failure{Reason: "missing or wrong CSRF token", User: id.User}
	}
	c.Set(sessionKey, sess)
	return id, nil
}

func unsafeMethod(m string) bool {
	return m != http.MethodGet && m != http.MethodHead && m != http.MethodOptions
}

// CSRFValid reports whether the request carries sess's CSRF token, in CSRFHeader or the
// csrf_token form field (synchronizer token pattern; the cookie is SameSite=Lax besides).
func CSRFValid(c echo.Context, sess *access.Session) bool {
	got := c.Request().Header.Get(CSRFHeader)
	if got == "" {
		got = c.FormValue("csrf_token")
	}
	return sess != nil && got != "" && constantTimeEqual(got, sess.CSRFToken)
}

// outcomeOf is the audit outcome of a request that ended with err and the response's status.
func outcomeOf(c echo.Context, err error) audit.Outcome {
	status := c.Response().Status
	if err != nil {
		status = http.StatusInternalServerError
		var he *echo.HTTPError
		var oe *outcomeError
		switch {
		case errors.As(err, &he):
			status = he.Code
		case errors.As(err, &oe):
			status = oe.status
		case errors.Is(err, engine.ErrNotFound):
			status = http.StatusNotFound // as errorHandler answers it
		}
	}
	switch {
	case status >= 500:
		return audit.OutcomeSerious
	case status >= 400:
		return audit.OutcomeMinor
	}
	return audit.OutcomeSuccess
}

// record fills in the request's side of e and records it. A failure to record is logged: the
// request has already been answered or refused.
func (g *Gate) record(c echo.Context, e *audit.Event) {
	if g.Trail == nil {
		return
	}
	g.fill(c, e)
	// The request's context may be ending (a client gone): the event is recorded anyway.
	ctx := context.WithoutCancel(c.Request().Context())
	if err := g.Trail.Record(ctx, e); err != nil {
		g.Logger.Error("recording an audit event failed", "action", e.Action, "agent", e.Agent, "err", err)
	}
}

// fill sets the request's side of e: time, address, entity, patient.
func (g *Gate) fill(c echo.Context, e *audit.Event) *audit.Event {
	e.RecordedAt = g.now()
	e.Address = c.RealIP()
	if e.Entity == "" {
		e.Entity = c.Request().Method + " " + c.Request().URL.RequestURI()
	}
	if p, ok := c.Get(auditPatientKey).(string); ok && e.Patient == "" {
		e.Patient = p
	}
	return e
}

// Record records e as the request's, from its identity (for handlers that audit what they did
// themselves: a login, a change of users).
func (g *Gate) Record(c echo.Context, e *audit.Event) {
	if id := IdentityOf(c); id != nil && e.Agent == "" {
		e.Agent, e.Role = id.User, string(id.Role)
	}
	g.record(c, e)
}

// constantTimeEqual compares two secrets in time that does not depend on where they differ.
func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
