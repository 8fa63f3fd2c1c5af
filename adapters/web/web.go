// Package web is Ferry's server-rendered pages (html/template, go:embed): the sign-in
// page, sign-out and the signed-in home page; the physician's report list and report page
// (physician.go) and the analyst console (console.go). Pages work without JavaScript and at phone width,
// carry a strict Content-Security-Policy, and every form carries a CSRF token.
//
// Sessions are the store's (engine/access): the browser holds only a random ID in an HttpOnly,
// SameSite=Lax cookie (Secure under TLS), so any node serves them and signing out ends a session
// on every node. Sign-ins, successful or not, and sign-outs are audited.
package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
)

//go:embed templates/*.html
var templateFiles embed.FS

// Options configures the pages. Access is required.
type Options struct {
	Access *access.Service
	Audit  AuditTrail // nil: nothing recorded
	Logger *slog.Logger
	// SSO, when set, offers single sign-on on the sign-in page (sso.go).
	SSO *SSO
	// Console, when set, serves the analyst console under /console (console.go).
	Console *Console
	// Physician, when set, serves the physician's report list at / and the report pages at
	// /reports/{id} (physician.go).
	Physician *Physician
	// Critical, when set, shows a critical report's acknowledgement, or the form that makes it,
	// and serves POST /reports/{id}/acknowledge (critical.go).
	Critical CriticalAcks
	// Studies, when set, serves the study page /studies/{StudyInstanceUID} (study.go).
	Studies *Studies
	Now     func() time.Time
}

// SessionCookie is the name of the web session's cookie. The API accepts the session too, when
// cmd/ferry gives it this name (httpapi.Options.SessionCookie).
const SessionCookie = "ferry_session"

// AuditTrail records audit events (audit.Recorder). Record returns once the event is committed.
type AuditTrail interface {
	Record(ctx context.Context, e *audit.Event) error
}

// loginCookie holds the sign-in form's CSRF token until the form is posted (double submit: a
// page of another site can neither read it nor set it).
const loginCookie = "ferry_login"

// maxFormBody caps a sign-in or sign-out form.
const maxFormBody = 16 << 10

type pages struct {
	opt   Options
	login *template.Template
	home  *template.Template
	study *template.Template
	csp   string
	phys  *physician
}

// Register adds the pages to e: GET and POST /login, POST /logout, GET /; with
// Options.Physician, POST / (the report search) and GET /reports/{id}.
func Register(e *echo.Echo, opt Options) error {
	if opt.Access == nil {
		return errors.New("web: Options.Access is required")
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	p := &pages{opt: opt}
	var err error
	if p.login, err = template.ParseFS(templateFiles, "templates/layout.html", "templates/login.html"); err != nil {
		return fmt.Errorf("web: parsing the sign-in page: %w", err)
	}
	if p.home, err = template.ParseFS(templateFiles, "templates/layout.html", "templates/home.html"); err != nil {
		return fmt.Errorf("web: parsing the home page: %w", err)
	}
	if p.csp, err = contentSecurityPolicy(p.login); err != nil {
		return err
	}
	limit := func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			c.Request().Body = http.MaxBytesReader(c.Response(), c.Request().Body, maxFormBody)
			return next(c)
		}
	}
	e.GET("/login", p.loginPage, p.headers)
	e.POST("/login", p.signIn, p.headers, limit)
	e.POST("/logout", p.signOut, p.headers, limit)
	e.GET("/", p.homePage, p.headers)
	if opt.SSO != nil {
		opt.SSO.register(e, p)
	}
	if opt.Physician != nil {
		if p.phys, err = registerPhysician(e, p, opt.Physician, limit); err != nil {
			return err
		}
	}
	if opt.Studies != nil {
		if p.study, err = parseStudyPage(); err != nil {
			return fmt.Errorf("web: parsing the study page: %w", err)
		}
		e.GET("/studies/:uid", p.studyPage, p.headers)
	}
	if opt.Critical != nil {
		e.POST("/reports/:id/acknowledge", p.acknowledge, p.headers, limit)
	}
	if opt.Console != nil {
		if err := registerConsole(e, p, opt.Console, limit); err != nil {
			return err
		}
	}
	return nil
}

// contentSecurityPolicy allows the pages' one inline style by its hash, and nothing else: no
// scripts at all, forms posted only here, never framed.
func contentSecurityPolicy(t *template.Template) (string, error) {
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "login.html", view{Title: "x"}); err != nil {
		return "", fmt.Errorf("web: rendering for the CSP: %w", err)
	}
	_, rest, _ := strings.Cut(b.String(), "<style>")
	style, _, ok := strings.Cut(rest, "</style>")
	if !ok {
		return "", errors.New("web: the layout has no <style>")
	}
	sum := sha256.Sum256([]byte(style))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
		"'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'", nil
}

// headers sets the pages' security headers.
func (p *pages) headers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", p.csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		return next(c)
	}
}

// view is what the templates show.
type view struct {
	Title, User, Role, CSRF string
	// The sign-in page.
	Error, Username, Next, SSO string
	// The home page.
	Idle, Absolute string
	// Wide pages (the console's tables) use the screen's width; Refresh reloads a page every
	// that many seconds (a meta refresh: live without a script).
	Wide    bool
	Refresh int
	// Console links to the analyst console from the home page.
	Console bool
}

func (p *pages) render(c echo.Context, status int, t *template.Template, name string, v any) error {
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, name, v); err != nil {
		return fmt.Errorf("rendering %s: %w", name, err)
	}
	return c.HTMLBlob(status, b.Bytes())
}

// secure reports whether the request came over TLS (here, or at a trusted proxy): cookies are
// then Secure.
func secure(c echo.Context) bool { return c.Scheme() == "https" }

func (p *pages) loginPage(c echo.Context) error {
	return p.showLogin(c, http.StatusOK, "", "")
}

// showLogin renders the sign-in form with a fresh form token.
func (p *pages) showLogin(c echo.Context, status int, username, problem string) error {
	token := randomToken()
	c.SetCookie(&http.Cookie{Name: loginCookie, Value: token, Path: "/login", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: secure(c), MaxAge: 3600})
	v := view{Title: "Sign in", CSRF: token, Error: problem, Username: username, Next: localPath(c.FormValue("next"))}
	if p.opt.SSO != nil {
		v.SSO = p.opt.SSO.cfg.Name
	}
	return p.render(c, status, p.login, "login.html", v)
}

func (p *pages) signIn(c echo.Context) error {
	cookie, err := c.Cookie(loginCookie)
	if err != nil || cookie.Value == "" || subtle.ConstantTimeCompare([]byte(cookie.Value), []byte(c.FormValue("csrf_token"))) != 1 {
		return p.showLogin(c, http.StatusBadRequest, "", "The sign-in form had expired. Please sign in again.")
	}
	name, password := strings.TrimSpace(c.FormValue("username")), c.FormValue("password")
	ctx := c.Request().Context()
	id, sess, ident, err := p.opt.Access.Login(ctx, name, password, c.RealIP())
	e := &audit.Event{Action: audit.ActionLogin, Outcome: audit.OutcomeSuccess, Agent: name, Entity: "password sign-in"}
	if err != nil {
		e.Outcome = audit.OutcomeMinor
		var f *access.Failure
		if errors.As(err, &f) {
			e.Detail = f.Reason
		} else {
			e.Outcome, e.Detail = audit.OutcomeSerious, "store error"
		}
		p.record(c, e)
		if !errors.Is(err, access.ErrUnauthenticated) {
			return err
		}
		problem := "Wrong user name or password."
		if f != nil && f.Reason == "throttled" {
			problem = "Too many failed sign-ins. Please wait a quarter of an hour, then try again."
		}
		return p.showLogin(c, http.StatusUnauthorized, name, problem)
	}
	e.Role = string(ident.Role)
	p.record(c, e)
	p.startSession(c, id, sess)
	return c.Redirect(http.StatusSeeOther, localPath(c.FormValue("next")))
}

// startSession gives the browser the session's cookie and drops the sign-in form's.
func (p *pages) startSession(c echo.Context, id string, sess *access.Session) {
	c.SetCookie(&http.Cookie{Name: SessionCookie, Value: id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: secure(c), Expires: sess.ExpiresAt})
	c.SetCookie(&http.Cookie{Name: loginCookie, Path: "/login", MaxAge: -1, HttpOnly: true, Secure: secure(c)})
}

// session returns the request's session and identity, nil when it has none that is valid.
func (p *pages) session(c echo.Context) (*access.Identity, *access.Session, string) {
	cookie, err := c.Cookie(SessionCookie)
	if err != nil {
		return nil, nil, ""
	}
	ident, sess, err := p.opt.Access.Session(c.Request().Context(), cookie.Value)
	if err != nil {
		if !errors.Is(err, access.ErrUnauthenticated) {
			p.opt.Logger.Error("reading a web session failed", "err", err)
		}
		return nil, nil, ""
	}
	return ident, sess, cookie.Value
}

func (p *pages) signOut(c echo.Context) error {
	ident, sess, id := p.session(c)
	if ident != nil {
		if !sessionForm(c, sess) {
			return echo.NewHTTPError(http.StatusForbidden, "the sign-out form had expired: sign out again from a page")
		}
		if err := p.opt.Access.Logout(c.Request().Context(), id); err != nil {
			return err
		}
		p.record(c, &audit.Event{Action: audit.ActionLogout, Outcome: audit.OutcomeSuccess, Agent: ident.User, Role: string(ident.Role), Entity: "sign-out"})
	}
	c.SetCookie(&http.Cookie{Name: SessionCookie, Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: secure(c)})
	return c.Redirect(http.StatusSeeOther, "/login")
}

func (p *pages) homePage(c echo.Context) error {
	ident, sess, _ := p.session(c)
	if ident == nil {
		return c.Redirect(http.StatusSeeOther, "/login?next="+url.QueryEscape(c.Request().URL.RequestURI()))
	}
	if p.phys != nil && homeRole(ident) {
		return p.phys.home(c, ident, sess)
	}
	idle, absolute := p.opt.Access.SessionTimeouts()
	return p.render(c, http.StatusOK, p.home, "home.html", view{Title: "Signed in", User: ident.User, Role: string(ident.Role),
		CSRF: sess.CSRFToken, Idle: spoken(idle), Absolute: spoken(absolute),
		Console: p.opt.Console != nil && ident.Grants(access.PermMessages)})
}

// record records e with the request's address.
func (p *pages) record(c echo.Context, e *audit.Event) {
	if p.opt.Audit == nil {
		return
	}
	now := time.Now
	if p.opt.Now != nil {
		now = p.opt.Now
	}
	e.RecordedAt, e.Address = now(), c.RealIP()
	if err := p.opt.Audit.Record(context.WithoutCancel(c.Request().Context()), e); err != nil {
		p.opt.Logger.Error("recording an audit event failed", "action", e.Action, "err", err)
	}
}

// localPath returns next when it is a path on this server, "/" otherwise: a sign-in never
// redirects to another site.
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || strings.ContainsAny(next, "\r\n") {
		return "/"
	}
	return next
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// spoken writes d as a person says it: "30 minutes", "12 hours", "1 hour 30 minutes".
func spoken(d time.Duration) string {
	unit := func(n int, one string) string {
		if n == 1 {
			return "1 " + one
		}
		return fmt.Sprintf("%d %ss", n, one)
	}
	h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
	switch {
	case h == 0:
		return unit(m, "minute")
	case m == 0:
		return unit(h, "hour")
	}
	return unit(h, "hour") + " " + unit(m, "minute")
}
