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
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
	"github.com/ferryhealth/ferry/fhir"
)

// The admin API of people and access (docs/security.md): /api/v1/users and /api/v1/tokens,
// the same as `ferry users` and `ferry tokens`, for admins; every change is audited.

type peopleAPI struct {
	svc  *access.Service
	gate *Gate
}

func registerPeople(api *echo.Group, opt Options) {
	p := &peopleAPI{svc: opt.Access, gate: opt.gate}
	need := opt.gate.Require(access.PermUsers, "")
	api.GET("/users", p.listUsers, need)
	api.POST("/users", p.addUser, need)
	api.POST("/users/:name/disable", p.disableUser, need)
	api.GET("/tokens", p.listTokens, need)
	api.POST("/tokens", p.createToken, need)
	api.POST("/tokens/:id/revoke", p.revokeToken, need)
}

// userView is a user as the API shows it: never the password hash.
type userView struct {
	Name          string     `json:"name"`
	Role          string     `json:"role"`
	Practitioners []string   `json:"practitioners,omitempty"`
	Facilities    []string   `json:"facilities,omitempty"`
	HasPassword   bool       `json:"has_password"`
	CreatedAt     time.Time  `json:"created_at"`
	DisabledAt    *time.Time `json:"disabled_at,omitempty"`
}

func viewUser(u *access.User) userView {
	v := userView{Name: u.Name, Role: string(u.Role), Facilities: u.Facilities, HasPassword: u.PasswordHash != "", CreatedAt: u.CreatedAt}
	for _, p := range u.Practitioners {
		v.Practitioners = append(v.Practitioners, p.String())
	}
	if u.Disabled() {
		t := u.DisabledAt
		v.DisabledAt = &t
	}
	return v
}

func (p *peopleAPI) listUsers(c echo.Context) error {
	users, err := p.svc.Store.Users(c.Request().Context())
	if err != nil {
		return err
	}
	out := make([]userView, len(users))
	for i, u := range users {
		out[i] = viewUser(u)
	}
	return c.JSON(http.StatusOK, map[string]any{"users": out})
}

// addUserRequest is POST /api/v1/users.
type addUserRequest struct {
	Name          string   `json:"name"`
	Role          string   `json:"role"`
	Practitioners []string `json:"practitioners"`
	Facilities    []string `json:"facilities"`
	Password      string   `json:"password"`
}

// NewUser builds the user of a name, role, practitioner identifiers ([SYSTEM|]VALUE) and
// facilities as `ferry users add` and POST /api/v1/users take them.
func NewUser(name, role string, practitioners, facilities []string) (*access.User, error) {
	r, err := access.ParseRole(role)
	if err != nil {
		return nil, err
	}
	u := &access.User{Name: name, Role: r, Facilities: facilities}
	for _, s := range practitioners {
		pr, err := access.ParsePractitioner(s)
		if err != nil {
			return nil, err
		}
		u.Practitioners = append(u.Practitioners, pr)
	}
	return u, u.Validate()
}

func (p *peopleAPI) addUser(c echo.Context) error {
	var req addUserRequest
	if err := decodeDecision(c, &req); err != nil {
		return err
	}
	u, err := NewUser(req.Name, req.Role, req.Practitioners, req.Facilities)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	err = p.svc.AddUser(c.Request().Context(), u, req.Password)
	p.audit(c, "add user "+req.Name+" ("+req.Role+")", err)
	switch {
	case errors.Is(err, engine.ErrConflict):
		return echo.NewHTTPError(http.StatusConflict, "user "+req.Name+" already exists")
	case errors.Is(err, access.ErrPasswordPolicy):
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	case err != nil:
		return err
	}
	return c.JSON(http.StatusCreated, viewUser(u))
}

func (p *peopleAPI) disableUser(c echo.Context) error {
	name := c.Param("name")
	err := p.svc.DisableUser(c.Request().Context(), name)
	p.audit(c, "disable user "+name, err)
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// tokenView is a token as the API lists it: never its hash.
type tokenView struct {
	ID        string     `json:"id"`
	User      string     `json:"user"`
	Scopes    []string   `json:"scopes,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	// Token is the token itself, in the answer to its creation only.
	Token string `json:"token,omitempty"`
}

func viewToken(t *access.Token) tokenView {
	v := tokenView{ID: t.ID, User: t.User, CreatedAt: t.CreatedAt}
	for _, s := range t.Scopes {
		v.Scopes = append(v.Scopes, string(s))
	}
	if !t.ExpiresAt.IsZero() {
		e := t.ExpiresAt
		v.ExpiresAt = &e
	}
	if !t.RevokedAt.IsZero() {
		r := t.RevokedAt
		v.RevokedAt = &r
	}
	return v
}

func (p *peopleAPI) listTokens(c echo.Context) error {
	tokens, err := p.svc.Store.Tokens(c.Request().Context(), c.QueryParam("user"))
	if err != nil {
		return err
	}
	out := make([]tokenView, len(tokens))
	for i, t := range tokens {
		out[i] = viewToken(t)
	}
	return c.JSON(http.StatusOK, map[string]any{"tokens": out})
}

// createTokenRequest is POST /api/v1/tokens. Expires is a duration ("90d", "12h"); "" is
// access.DefaultTokenLifetime, "0" never.
type createTokenRequest struct {
	User    string   `json:"user"`
	Expires string   `json:"expires"`
	Scopes  []string `json:"scopes"`
}

func (p *peopleAPI) createToken(c echo.Context) error {
	var req createTokenRequest
	if err := decodeDecision(c, &req); err != nil {
		return err
	}
	ttl, err := access.ParseLifetime(req.Expires)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	scopes, err := access.ParseScopes(req.Scopes)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	text, t, err := p.svc.CreateToken(c.Request().Context(), req.User, scopes, ttl)
	what := "create token for " + req.User
	if t != nil {
		what += " (" + t.ID + ")"
	}
	p.audit(c, what, err)
	switch {
	case errors.Is(err, engine.ErrNotFound):
		return echo.NewHTTPError(http.StatusNotFound, "no user "+req.User)
	case err != nil:
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	v := viewToken(t)
	v.Token = text
	return c.JSON(http.StatusCreated, v)
}

func (p *peopleAPI) revokeToken(c echo.Context) error {
	id := c.Param("id")
	err := p.svc.RevokeToken(c.Request().Context(), id)
	p.audit(c, "revoke token "+id, err)
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// actingUser is who an audited decision is recorded under: the identity's user, or — under the
// shared bootstrap token, which names nobody — the user the request typed.
func actingUser(c echo.Context, typed string) string {
	if id := IdentityOf(c); id != nil && id.User != access.BootstrapAdmin {
		return id.User
	}
	return strings.TrimSpace(typed)
}

// audit records a change of users or tokens.
func (p *peopleAPI) audit(c echo.Context, what string, err error) {
	e := &audit.Event{Action: audit.ActionAdmin, Outcome: audit.OutcomeSuccess, Entity: what}
	if err != nil {
		e.Outcome, e.Detail = audit.OutcomeMinor, err.Error()
	}
	p.gate.Record(c, e)
}

// auditSearch serves GET /fhir/r4/AuditEvent?agent=&patient=&date=: the trail as a searchset
// Bundle, oldest first, _count per page (at most 1000).
func auditSearch(r audit.Reader) echo.HandlerFunc {
	return func(c echo.Context) error {
		q := c.QueryParams()
		f := audit.Filter{Agent: q.Get("agent"), Patient: q.Get("patient"), Limit: defaultPageSize}
		if p := f.Patient; p != "" && !strings.Contains(p, "/") {
			f.Patient = "Patient/" + p
		}
		for _, d := range q["date"] {
			if err := auditDates(d, &f); err != nil {
				return fhirErr(http.StatusBadRequest, fhir.IssueInvalid, err.Error(), "date")
			}
		}
		if n, err := strconv.Atoi(q.Get("_count")); err == nil && n > 0 {
			f.Limit = min(n, maxPageSize)
		}
		if n, err := strconv.ParseInt(q.Get("_after"), 10, 64); err == nil && n > 0 {
			f.AfterSeq = n
		}
		evs, err := r.AuditEvents(c.Request().Context(), f)
		if err != nil {
			return err
		}
		matches := make([]fhir.StoredResource, len(evs))
		for i, e := range evs {
			body, err := e.Resource()
			if err != nil {
				return err
			}
			matches[i] = fhir.StoredResource{Type: "AuditEvent", ID: strconv.FormatInt(e.Seq, 10), VersionID: 1, LastUpdated: e.RecordedAt, JSON: body}
		}
		links := []fhir.BundleLink{{Relation: "self", URL: baseURL(c) + "/AuditEvent?" + q.Encode()}}
		if len(evs) == f.Limit {
			next := c.QueryParams()
			next.Set("_after", strconv.FormatInt(evs[len(evs)-1].Seq, 10))
			links = append(links, fhir.BundleLink{Relation: "next", URL: baseURL(c) + "/AuditEvent?" + next.Encode()})
		}
		return writeFHIR(c, http.StatusOK, fhir.NewSearchset(baseURL(c), matches, -1, links))
	}
}

var auditEpoch, auditEnd = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)

// auditDates narrows f by a FHIR date search value (fhir.ParseDateQuery: "ge2026-03-01",
// "lt2026-03-01T10:00:00Z", "2026-03" for all of March).
func auditDates(v string, f *audit.Filter) error {
	conds := []string{v}
	if c, err := fhir.ParseDateQuery(v); err != nil {
		return err
	} else if c.Op == "prefix" { // eq: the whole period, from its start to the next's
		conds = []string{"ge" + strings.TrimPrefix(v, "eq"), "le" + strings.TrimPrefix(v, "eq")}
	}
	for _, v := range conds {
		c, err := fhir.ParseDateQuery(v)
		if err != nil {
			return err
		}
		var t time.Time
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02", "2006-01", "2006"} {
			if t, err = time.Parse(layout, c.Value); err == nil {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("date %q: %w", v, err)
		}
		// Every store holds 1900 to 2200 (SQLite keeps nanoseconds in an int64); no event lies
		// outside.
		switch t = t.UTC(); {
		case t.Before(auditEpoch):
			t = auditEpoch
		case t.After(auditEnd):
			t = auditEnd
		}
		if c.Op == "ge" {
			f.From = t
		} else { // lt
			f.To = t
		}
	}
	return nil
}
