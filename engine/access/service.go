package access

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ferryhealth/ferry/engine"
)

// Store keeps users, tokens and sessions (adapters/sqlstore on either database). Lookups of
// what does not exist return engine.ErrNotFound; PutUser of a taken name engine.ErrConflict.
type Store interface {
	PutUser(ctx context.Context, u *User) error
	User(ctx context.Context, name string) (*User, error)
	Users(ctx context.Context) ([]*User, error)
	// DisableUser sets the user's DisabledAt (once: a second call keeps the first time).
	DisableUser(ctx context.Context, name string, at time.Time) error
	PutToken(ctx context.Context, t *Token) error
	Token(ctx context.Context, id string) (*Token, error)
	// Tokens returns the tokens of user, or every user's for "", newest first.
	Tokens(ctx context.Context, user string) ([]*Token, error)
	// RevokeToken sets the token's RevokedAt (once).
	RevokeToken(ctx context.Context, id string, at time.Time) error
	PutSession(ctx context.Context, s *Session) error
	Session(ctx context.Context, idHash []byte) (*Session, error)
	TouchSession(ctx context.Context, idHash []byte, at time.Time) error
	DeleteSession(ctx context.Context, idHash []byte) error
	// DeleteSessions ends every session of user.
	DeleteSessions(ctx context.Context, user string) error
	// CountLoginFailure counts a failed login of account from address at now, once against
	// each; a count whose first failure is at or before windowStart starts again at 1.
	CountLoginFailure(ctx context.Context, account, address string, now, windowStart time.Time) error
	// LoginFailures returns the counts against account and against address whose first
	// failure is after windowStart (0 for none).
	LoginFailures(ctx context.Context, account, address string, windowStart time.Time) (accountN, addressN int, err error)
	// ClearLoginFailures forgets account's count.
	ClearLoginFailures(ctx context.Context, account string) error
}

// ErrUnauthenticated is every failed authentication: no or a wrong token, an expired or revoked
// one, a disabled user, a wrong password, an unknown name, an ended session. Callers answer it
// alike (401) so that the answer tells an attacker nothing about which it was; the audit trail
// and Failure say which.
var ErrUnauthenticated = errors.New("not authenticated")

// ErrThrottled is a login refused because its account or address failed too often lately.
var ErrThrottled = fmt.Errorf("%w: too many failed logins, try again later", ErrUnauthenticated)

// Failure is ErrUnauthenticated with the reason, for the audit trail (never for the caller).
type Failure struct {
	Reason string // "unknown user", "wrong password", "disabled", "expired", "revoked", …
	User   string // the user named, when there was one
}

func (f *Failure) Error() string { return ErrUnauthenticated.Error() + ": " + f.Reason }
func (f *Failure) Unwrap() error { return ErrUnauthenticated }

// Session timeouts, unless the Service sets its own.
const (
	DefaultIdleTimeout     = 30 * time.Minute
	DefaultAbsoluteTimeout = 12 * time.Hour
	// touchEvery: a session's SeenAt is written at most this often, so that a page's requests do
	// not each write to the store.
	touchEvery = time.Minute
)

// Service authenticates requests and manages users, tokens and sessions. With no Store it knows
// only BootstrapToken.
type Service struct {
	Store Store
	// BootstrapToken is FERRY_ADMIN_TOKEN / ferry-data/admin-token: an admin identity without a
	// user ("" for none).
	BootstrapToken string
	// IdleTimeout and AbsoluteTimeout end a web session after that long unused, or that long
	// after login (0: the defaults).
	IdleTimeout, AbsoluteTimeout time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// AddUser stores a new user, with password's hash when password is not "".
func (s *Service) AddUser(ctx context.Context, u *User, password string) error {
	u.CreatedAt = s.now()
	u.DisabledAt = time.Time{}
	if password != "" {
		h, err := HashPassword(password)
		if err != nil {
			return err
		}
		u.PasswordHash = h
	}
	if err := u.Validate(); err != nil {
		return err
	}
	if err := s.Store.PutUser(ctx, u); err != nil {
		if errors.Is(err, engine.ErrConflict) {
			return fmt.Errorf("user %s already exists: %w", u.Name, err)
		}
		return err
	}
	return nil
}

// DisableUser disables the user and ends their sessions; their tokens stop working.
func (s *Service) DisableUser(ctx context.Context, name string) error {
	if err := s.Store.DisableUser(ctx, name, s.now()); err != nil {
		return err
	}
	return s.Store.DeleteSessions(ctx, name)
}

// CreateToken makes a token for user, valid for ttl (0: no expiry), and returns its text, to be
// shown once. A system user's token needs scopes; other users' tokens act with their role and
// take none.
func (s *Service) CreateToken(ctx context.Context, user string, scopes []Permission, ttl time.Duration) (string, *Token, error) {
	u, err := s.Store.User(ctx, user)
	if err != nil {
		return "", nil, fmt.Errorf("user %s: %w", user, err)
	}
	if u.Disabled() {
		return "", nil, fmt.Errorf("user %s is disabled", user)
	}
	switch {
	case u.Role == RoleSystem && len(scopes) == 0:
		return "", nil, fmt.Errorf("a token of system user %s needs at least one scope (%v)", user, Scopes)
	case u.Role != RoleSystem && len(scopes) > 0:
		return "", nil, fmt.Errorf("user %s acts with role %s: scopes are for system users' tokens", user, u.Role)
	case ttl < 0:
		return "", nil, errors.New("a token's lifetime cannot be negative")
	}
	for _, sc := range scopes {
		if _, err := ParseScope(string(sc)); err != nil {
			return "", nil, err
		}
	}
	now := s.now()
	var expires time.Time
	if ttl > 0 {
		expires = now.Add(ttl)
	}
	text, t := newToken(user, slices.Clone(scopes), now, expires)
	if err := s.Store.PutToken(ctx, t); err != nil {
		return "", nil, err
	}
	return text, t, nil
}

// RevokeToken revokes the token with id; it stops working at once on every node.
func (s *Service) RevokeToken(ctx context.Context, id string) error {
	return s.Store.RevokeToken(ctx, id, s.now())
}

// AuthenticateToken returns the identity a bearer token carries: the bootstrap admin, or an API
// token's user. Every failure is ErrUnauthenticated (a *Failure says why).
func (s *Service) AuthenticateToken(ctx context.Context, text string) (*Identity, error) {
	if s.BootstrapToken != "" && subtle.ConstantTimeCompare([]byte(text), []byte(s.BootstrapToken)) == 1 {
		return &Identity{User: BootstrapAdmin, Role: RoleAdmin}, nil
	}
	id, ok := tokenID(text)
	if !ok || s.Store == nil {
		return nil, &Failure{Reason: "not a token"}
	}
	t, err := s.Store.Token(ctx, id)
	if errors.Is(err, engine.ErrNotFound) {
		return nil, &Failure{Reason: "unknown token"}
	}
	if err != nil {
		return nil, fmt.Errorf("reading token %s: %w", id, err)
	}
	if subtle.ConstantTimeCompare(hashSecret(text), t.SecretHash) != 1 {
		return nil, &Failure{Reason: "wrong token secret", User: t.User}
	}
	now := s.now()
	switch {
	case !t.RevokedAt.IsZero():
		return nil, &Failure{Reason: "revoked token", User: t.User}
	case !t.Usable(now):
		return nil, &Failure{Reason: "expired token", User: t.User}
	}
	ident, err := s.identity(ctx, t.User)
	if err != nil {
		return nil, err
	}
	ident.TokenID, ident.Scopes = t.ID, t.Scopes
	return ident, nil
}

// identity returns the identity of user name, ErrUnauthenticated when it is gone or disabled.
func (s *Service) identity(ctx context.Context, name string) (*Identity, error) {
	u, err := s.Store.User(ctx, name)
	if errors.Is(err, engine.ErrNotFound) {
		return nil, &Failure{Reason: "unknown user", User: name}
	}
	if err != nil {
		return nil, fmt.Errorf("reading user: %w", err)
	}
	if u.Disabled() {
		return nil, &Failure{Reason: "disabled user", User: name}
	}
	return &Identity{User: u.Name, Role: u.Role, Practitioners: u.Practitioners, Facilities: u.Facilities}, nil
}

// Login checks name's password, from address, and opens a web session. It returns the session
// ID for the cookie (shown to the browser only) and the session. Throttled attempts fail with
// ErrThrottled before the password is checked.
func (s *Service) Login(ctx context.Context, name, password, address string) (string, *Session, *Identity, error) {
	now := s.now()
	switch ok, err := s.loginAllowed(ctx, name, address, now); {
	case err != nil:
		return "", nil, nil, err
	case !ok:
		return "", nil, nil, &Failure{Reason: "throttled", User: name}
	}
	u, err := s.Store.User(ctx, name)
	switch {
	case errors.Is(err, engine.ErrNotFound):
		checkPassword(dummyHash, password) // costs what a real check costs
		return "", nil, nil, s.loginFailed(ctx, name, address, now, "unknown user")
	case err != nil:
		return "", nil, nil, fmt.Errorf("reading user: %w", err)
	}
	ok, err := checkPassword(u.PasswordHash, password)
	if err != nil || !ok {
		return "", nil, nil, s.loginFailed(ctx, name, address, now, "wrong password")
	}
	if u.Disabled() {
		return "", nil, nil, &Failure{Reason: "disabled user", User: name}
	}
	if err := s.Store.ClearLoginFailures(ctx, name); err != nil {
		return "", nil, nil, err
	}
	id, sess, err := s.OpenSession(ctx, u.Name)
	if err != nil {
		return "", nil, nil, err
	}
	return id, sess, &Identity{User: u.Name, Role: u.Role, Practitioners: u.Practitioners, Facilities: u.Facilities, Session: sess.IDHash}, nil
}

// OpenSession opens a web session for user (after a password or single sign-on login) and
// returns its ID for the cookie.
func (s *Service) OpenSession(ctx context.Context, user string) (string, *Session, error) {
	now := s.now()
	_, absolute := s.SessionTimeouts()
	id := randomText(32)
	sess := &Session{IDHash: hashSecret(id), User: user, CSRFToken: randomText(32), CreatedAt: now, SeenAt: now,
		ExpiresAt: now.Add(absolute)}
	if err := s.Store.PutSession(ctx, sess); err != nil {
		return "", nil, fmt.Errorf("opening session: %w", err)
	}
	return id, sess, nil
}

// Session returns the identity and session of a session cookie's ID. A session past its idle or
// absolute timeout is ended; it and every other failure are ErrUnauthenticated.
func (s *Service) Session(ctx context.Context, id string) (*Identity, *Session, error) {
	if id == "" || len(id) > 64 || s.Store == nil {
		return nil, nil, &Failure{Reason: "no session"}
	}
	h := hashSecret(id)
	sess, err := s.Store.Session(ctx, h)
	if errors.Is(err, engine.ErrNotFound) {
		return nil, nil, &Failure{Reason: "unknown or ended session"}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading session: %w", err)
	}
	now := s.now()
	idle, _ := s.SessionTimeouts()
	if !now.Before(sess.ExpiresAt) || now.Sub(sess.SeenAt) >= idle {
		if err := s.Store.DeleteSession(ctx, h); err != nil {
			return nil, nil, fmt.Errorf("ending a timed-out session: %w", err)
		}
		return nil, nil, &Failure{Reason: "session timed out", User: sess.User}
	}
	ident, err := s.identity(ctx, sess.User)
	if err != nil {
		return nil, nil, err
	}
	if now.Sub(sess.SeenAt) >= touchEvery {
		if err := s.Store.TouchSession(ctx, h, now); err != nil {
			return nil, nil, fmt.Errorf("touching session: %w", err)
		}
		sess.SeenAt = now
	}
	ident.Session = h
	return ident, sess, nil
}

// Logout ends the session of id, on every node (it is deleted from the store).
func (s *Service) Logout(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	return s.Store.DeleteSession(ctx, hashSecret(id))
}

// SessionTimeouts returns the idle and absolute timeouts of web sessions in force.
func (s *Service) SessionTimeouts() (idle, absolute time.Duration) {
	idle, absolute = DefaultIdleTimeout, DefaultAbsoluteTimeout
	if s.IdleTimeout > 0 {
		idle = s.IdleTimeout
	}
	if s.AbsoluteTimeout > 0 {
		absolute = s.AbsoluteTimeout
	}
	return idle, absolute
}

// randomText returns n random bytes in base64url.
func randomText(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
