package web

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/labstack/echo/v4"
	"golang.org/x/oauth2"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
)

// SSOConfig is a hospital's single sign-on: an OpenID Connect provider (its issuer), Ferry's
// client there, and the claims that name the user and, optionally, carry their role and
// practitioner identifiers (docs/security.md, "Single sign-on").
type SSOConfig struct {
	// Name is what the sign-in page's button says: "Sign in with {Name}".
	Name string `yaml:"name"`
	// Issuer is the provider's issuer URL (its /.well-known/openid-configuration is read).
	Issuer string `yaml:"issuer"`
	// ClientID and ClientSecret are Ferry's client at the provider (the secret from a file or the
	// environment: cmd/ferry).
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"-"`
	// RedirectURL is Ferry's callback as the browser reaches it:
	// https://ferry.example/login/sso/callback; registered at the provider.
	RedirectURL string `yaml:"redirect_url"`
	// Scopes asked for besides openid (default profile, email).
	Scopes []string `yaml:"scopes"`
	// UsernameClaim names the Ferry user (default preferred_username).
	UsernameClaim string `yaml:"username_claim"`
	// RoleClaim, when set, carries the user's role (admin, analyst, physician, radiologist): a
	// user signing in for the first time is created with it; a known user whose claim says
	// another role is refused until an admin changes one or the other.
	RoleClaim string `yaml:"role_claim"`
	// PractitionerClaim carries practitioner identifiers ([SYSTEM|]VALUE, a string or a list)
	// for a physician or radiologist created at first sign-in.
	PractitionerClaim string `yaml:"practitioner_claim"`
}

// Validate checks c.
func (c *SSOConfig) Validate() error {
	var errs []error
	for name, v := range map[string]string{"issuer": c.Issuer, "client_id": c.ClientID, "redirect_url": c.RedirectURL} {
		if v == "" {
			errs = append(errs, fmt.Errorf("sso.%s: required", name))
		}
	}
	for name, v := range map[string]string{"issuer": c.Issuer, "redirect_url": c.RedirectURL} {
		if u, err := url.Parse(v); v != "" && (err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "") {
			errs = append(errs, fmt.Errorf("sso.%s: %q is not an http(s) URL", name, v))
		}
	}
	if c.ClientSecret == "" {
		errs = append(errs, errors.New("sso: no client secret (sso.client_secret_file or FERRY_SSO_CLIENT_SECRET)"))
	}
	return errors.Join(errs...)
}

// SSO signs users in through an OpenID Connect provider (authorization code flow with PKCE,
// state and nonce). The provider is discovered at the first sign-in, so Ferry starts while it is
// unreachable.
type SSO struct {
	cfg SSOConfig

	mu       sync.Mutex
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	oauth    *oauth2.Config
}

// NewSSO returns the single sign-on of cfg, which must be valid.
func NewSSO(cfg SSOConfig) (*SSO, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.UsernameClaim == "" {
		cfg.UsernameClaim = "preferred_username"
	}
	if cfg.Scopes == nil {
		cfg.Scopes = []string{"profile", "email"}
	}
	if cfg.Name == "" {
		cfg.Name = "single sign-on"
	}
	return &SSO{cfg: cfg}, nil
}

// ssoCookie carries one sign-in's state, nonce, PKCE verifier and destination from the redirect
// to the provider to the callback (10 minutes at most).
const ssoCookie = "ferry_sso"

// connect discovers the provider, once it answers.
func (s *SSO) connect(ctx context.Context) (*oauth2.Config, *oidc.IDTokenVerifier, *oidc.Provider, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.provider == nil {
		p, err := oidc.NewProvider(ctx, s.cfg.Issuer)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("discovering the OpenID provider %s: %w", s.cfg.Issuer, err)
		}
		s.provider = p
		s.verifier = p.Verifier(&oidc.Config{ClientID: s.cfg.ClientID})
		s.oauth = &oauth2.Config{ClientID: s.cfg.ClientID, ClientSecret: s.cfg.ClientSecret, RedirectURL: s.cfg.RedirectURL,
			Endpoint: p.Endpoint(), Scopes: append([]string{oidc.ScopeOpenID}, s.cfg.Scopes...)}
	}
	return s.oauth, s.verifier, s.provider, nil
}

func (s *SSO) register(e *echo.Echo, p *pages) {
	e.GET("/login/sso", func(c echo.Context) error { return s.start(c, p) }, p.headers)
	e.GET("/login/sso/callback", func(c echo.Context) error { return s.callback(c, p) }, p.headers)
}

// start sends the browser to the provider.
func (s *SSO) start(c echo.Context, p *pages) error {
	oc, _, _, err := s.connect(c.Request().Context())
	if err != nil {
		p.opt.Logger.Error("single sign-on unavailable", "err", err)
		return p.showLogin(c, http.StatusBadGateway, "", "Single sign-on is unavailable at the moment. Please try again later.")
	}
	state, nonce, verifier := randomToken(), randomToken(), oauth2.GenerateVerifier()
	next := localPath(c.QueryParam("next"))
	// Lax: the cookie comes back on the provider's top-level redirect to the callback.
	c.SetCookie(&http.Cookie{Name: ssoCookie, Value: strings.Join([]string{state, nonce, verifier, url.QueryEscape(next)}, "."),
		Path: "/login/sso", HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: secure(c), MaxAge: 600})
	return c.Redirect(http.StatusSeeOther, oc.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)))
}

// callback takes the provider's answer: it checks the state, exchanges the code, verifies the ID
// token and its nonce, reads the claims (the ID token's and the userinfo endpoint's), finds or
// creates the Ferry user, and opens a session. Every outcome is audited.
func (s *SSO) callback(c echo.Context, p *pages) error {
	ctx := c.Request().Context()
	e := &audit.Event{Action: audit.ActionLogin, Outcome: audit.OutcomeMinor, Entity: "single sign-on " + s.cfg.Issuer}
	fail := func(reason, problem string) error {
		e.Detail = reason
		p.record(c, e)
		return p.showLogin(c, http.StatusUnauthorized, "", problem)
	}
	c.SetCookie(&http.Cookie{Name: ssoCookie, Path: "/login/sso", MaxAge: -1, HttpOnly: true, Secure: secure(c)})
	ck, err := c.Cookie(ssoCookie)
	if err != nil {
		return fail("no sign-in in progress", "The sign-in had expired. Please sign in again.")
	}
	parts := strings.Split(ck.Value, ".")
	if len(parts) != 4 || subtle.ConstantTimeCompare([]byte(parts[0]), []byte(c.QueryParam("state"))) != 1 {
		return fail("state mismatch", "The sign-in had expired. Please sign in again.")
	}
	if errCode := c.QueryParam("error"); errCode != "" {
		return fail("provider refused: "+errCode, "The single sign-on provider did not sign you in.")
	}
	nonce, verifier := parts[1], parts[2]
	next, _ := url.QueryUnescape(parts[3])
	oc, idv, provider, err := s.connect(ctx)
	if err != nil {
		return fail("provider unavailable", "Single sign-on is unavailable at the moment. Please try again later.")
	}
	tok, err := oc.Exchange(ctx, c.QueryParam("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		return fail("code exchange failed: "+err.Error(), "The single sign-on provider did not sign you in.")
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := idv.Verify(ctx, raw)
	if err != nil {
		return fail("ID token invalid: "+err.Error(), "The single sign-on provider did not sign you in.")
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return fail("nonce mismatch", "The sign-in had expired. Please sign in again.")
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return fail("ID token claims unreadable", "The single sign-on provider did not sign you in.")
	}
	if ui, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok)); err == nil && ui.Subject == idt.Subject {
		extra := map[string]any{}
		if ui.Claims(&extra) == nil {
			for k, v := range extra {
				if _, ok := claims[k]; !ok {
					claims[k] = v
				}
			}
		}
	}
	name, _ := claims[s.cfg.UsernameClaim].(string)
	e.Agent = name
	if name == "" {
		return fail("no "+s.cfg.UsernameClaim+" claim", "Your sign-in did not say who you are to Ferry. Ask your administrator.")
	}
	u, err := s.user(ctx, p.opt.Access, name, claims)
	if err != nil {
		var f *access.Failure
		if errors.As(err, &f) {
			return fail(f.Reason, "Your account cannot use Ferry. Ask your administrator.")
		}
		return err
	}
	id, sess, err := p.opt.Access.OpenSession(ctx, u.Name)
	if err != nil {
		return err
	}
	e.Outcome, e.Role = audit.OutcomeSuccess, string(u.Role)
	p.record(c, e)
	p.startSession(c, id, sess)
	return c.Redirect(http.StatusSeeOther, localPath(next))
}

// user returns the Ferry user a sign-in names, creating it from the role claim when there is one
// and the user is new.
func (s *SSO) user(ctx context.Context, svc *access.Service, name string, claims map[string]any) (*access.User, error) {
	var claimed access.Role
	if s.cfg.RoleClaim != "" {
		v, _ := claims[s.cfg.RoleClaim].(string)
		r, err := access.ParseRole(v)
		if err != nil || r == access.RoleSystem {
			return nil, &access.Failure{Reason: fmt.Sprintf("claim %s %q is not a person's role", s.cfg.RoleClaim, v), User: name}
		}
		claimed = r
	}
	u, err := svc.Store.User(ctx, name)
	switch {
	case errors.Is(err, engine.ErrNotFound) && claimed == "":
		return nil, &access.Failure{Reason: "no such user, and no role claim to create one", User: name}
	case errors.Is(err, engine.ErrNotFound):
		u = &access.User{Name: name, Role: claimed}
		for _, v := range claimStrings(claims[s.cfg.PractitionerClaim]) {
			pr, err := access.ParsePractitioner(v)
			if err != nil {
				return nil, &access.Failure{Reason: "practitioner claim: " + err.Error(), User: name}
			}
			u.Practitioners = append(u.Practitioners, pr)
		}
		if err := svc.AddUser(ctx, u, ""); err != nil {
			if errors.Is(err, engine.ErrConflict) { // another node created it meanwhile
				return s.user(ctx, svc, name, claims)
			}
			return nil, &access.Failure{Reason: "creating the user: " + err.Error(), User: name}
		}
		return u, nil
	case err != nil:
		return nil, err
	case u.Disabled():
		return nil, &access.Failure{Reason: "disabled user", User: name}
	case claimed != "" && claimed != u.Role:
		return nil, &access.Failure{Reason: fmt.Sprintf("role claim %s differs from the user's role %s", claimed, u.Role), User: name}
	}
	return u, nil
}

// claimStrings reads a claim that is a string or a list of strings.
func claimStrings(v any) []string {
	switch v := v.(type) {
	case string:
		if v != "" {
			return []string{v}
		}
	case []any:
		var out []string
		for _, x := range v {
			if s, ok := x.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
