package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
)

// peopleStatements are users', API tokens' and web sessions' statements
// (migrations/*/00020_people.sql), engine/access.Store on either dialect.
type peopleStatements struct {
	putUser, user, users, disableUser                string
	putToken, token, tokens, userTokens, revokeToken string
	putSession, session, touchSession, deleteSession string
	deleteSessions                                   string
	countLoginFailure, loginFailures                 string
	clearLoginFailures, pruneLoginFailures           string
}

const (
	userColumns    = `name, role, practitioners, facilities, password_hash, created_at, disabled_at`
	tokenColumns   = `id, user_name, secret_hash, scopes, created_at, expires_at, revoked_at`
	sessionColumns = `id_hash, user_name, csrf_token, created_at, seen_at, expires_at`
)

func newPeopleStatements(rebind func(string) string, d Dialect) peopleStatements {
	return peopleStatements{
		putUser: rebind(`INSERT INTO users (` + userColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (name) DO NOTHING`),
		user:           rebind(`SELECT ` + userColumns + ` FROM users WHERE name = ?`),
		users:          `SELECT ` + userColumns + ` FROM users ORDER BY name`,
		disableUser:    rebind(`UPDATE users SET disabled_at = coalesce(` + d.TimeOrNull("disabled_at") + `, ?) WHERE name = ?`),
		putToken:       rebind(`INSERT INTO api_tokens (` + tokenColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?)`),
		token:          rebind(`SELECT ` + tokenColumns + ` FROM api_tokens WHERE id = ?`),
		tokens:         `SELECT ` + tokenColumns + ` FROM api_tokens ORDER BY created_at DESC, id`,
		userTokens:     rebind(`SELECT ` + tokenColumns + ` FROM api_tokens WHERE user_name = ? ORDER BY created_at DESC, id`),
		revokeToken:    rebind(`UPDATE api_tokens SET revoked_at = coalesce(` + d.TimeOrNull("revoked_at") + `, ?) WHERE id = ?`),
		putSession:     rebind(`INSERT INTO web_sessions (` + sessionColumns + `) VALUES (?, ?, ?, ?, ?, ?)`),
		session:        rebind(`SELECT ` + sessionColumns + ` FROM web_sessions WHERE id_hash = ?`),
		touchSession:   rebind(`UPDATE web_sessions SET seen_at = ? WHERE id_hash = ?`),
		deleteSession:  rebind(`DELETE FROM web_sessions WHERE id_hash = ?`),
		deleteSessions: rebind(`DELETE FROM web_sessions WHERE user_name = ?`),
		// A count whose first failure is at or before the window's start (?4, ?5) starts again.
		countLoginFailure: rebind(`INSERT INTO login_failures (kind, value, since, n) VALUES (?, ?, ?, 1)
ON CONFLICT (kind, value) DO UPDATE SET
    n = CASE WHEN login_failures.since <= ? THEN 1 ELSE login_failures.n + 1 END,
    since = CASE WHEN login_failures.since <= ? THEN excluded.since ELSE login_failures.since END`),
		loginFailures: rebind(`SELECT kind, n FROM login_failures
WHERE ((kind = 'account' AND value = ?) OR (kind = 'address' AND value = ?)) AND since > ?`),
		clearLoginFailures: rebind(`DELETE FROM login_failures WHERE kind = 'account' AND value = ?`),
		pruneLoginFailures: rebind(`DELETE FROM login_failures WHERE since <= ?`),
	}
}

// maxThrottleKey bounds the account name or address a failed login is counted under (a name
// typed at the login form may be long): longer ones are counted under their first bytes.
const maxThrottleKey = 256

func throttleKey(v string) string {
	v = engine.StorableText(v)
	if len(v) > maxThrottleKey {
		v = strings.ToValidUTF8(v[:maxThrottleKey], "")
	}
	return v
}

// CountLoginFailure counts a failed login of account from address at now (access.Store): each
// count starts again when its first failure is at or before windowStart. Counts expired by then
// are deleted.
func (s *Store) CountLoginFailure(ctx context.Context, c Conn, account, address string, now, windowStart time.Time) error {
	ts, err := s.times(now, windowStart)
	if err != nil {
		return err
	}
	if _, err := c.Exec(ctx, s.pruneLoginFailures, ts[1]); err != nil {
		return fmt.Errorf("counting a failed login: %w", s.d.InterpretError(err))
	}
	for _, k := range []struct{ kind, value string }{{"account", account}, {"address", address}} {
		if _, err := c.Exec(ctx, s.countLoginFailure, k.kind, throttleKey(k.value), ts[0], ts[1], ts[1]); err != nil {
			return fmt.Errorf("counting a failed login: %w", s.d.InterpretError(err))
		}
	}
	return nil
}

// LoginFailures returns the failed logins counted against account and against address since
// their first failure after windowStart (access.Store).
func (s *Store) LoginFailures(ctx context.Context, c Conn, account, address string, windowStart time.Time) (accountN, addressN int, err error) {
	ts, err := s.times(windowStart)
	if err != nil {
		return 0, 0, err
	}
	rows, err := c.Query(ctx, s.loginFailures, throttleKey(account), throttleKey(address), ts[0])
	if err != nil {
		return 0, 0, fmt.Errorf("reading failed logins: %w", s.d.InterpretError(err))
	}
	defer rows.Close()
	for rows.Next() {
		var (
			kind string
			n    int
		)
		if err := rows.Scan(&kind, &n); err != nil {
			return 0, 0, fmt.Errorf("reading failed logins: %w", s.d.InterpretError(err))
		}
		if kind == "account" {
			accountN = n
		} else {
			addressN = n
		}
	}
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("reading failed logins: %w", s.d.InterpretError(err))
	}
	return accountN, addressN, nil
}

// ClearLoginFailures forgets account's failed logins (not its addresses', access.Store).
func (s *Store) ClearLoginFailures(ctx context.Context, c Conn, account string) error {
	if _, err := c.Exec(ctx, s.clearLoginFailures, throttleKey(account)); err != nil {
		return fmt.Errorf("clearing failed logins: %w", s.d.InterpretError(err))
	}
	return nil
}

// times returns ts as the dialect keeps them.
func (s *Store) times(ts ...time.Time) ([]any, error) {
	out := make([]any, len(ts))
	for i, t := range ts {
		v, err := s.d.Time(t)
		if err != nil {
			return nil, &InvalidError{err}
		}
		out[i] = v
	}
	return out, nil
}

// PutUser stores a new user; engine.ErrConflict when the name is taken.
func (s *Store) PutUser(ctx context.Context, c Conn, u *access.User) error {
	if err := u.Validate(); err != nil {
		return &InvalidError{err}
	}
	ts, err := s.times(u.CreatedAt, u.DisabledAt)
	if err != nil {
		return err
	}
	ps := make([]string, len(u.Practitioners))
	for i, p := range u.Practitioners {
		ps[i] = p.String()
	}
	res, err := c.Exec(ctx, s.putUser, u.Name, string(u.Role), strings.Join(ps, "\n"),
		strings.Join(u.Facilities, "\n"), u.PasswordHash, ts[0], ts[1])
	if err != nil {
		return fmt.Errorf("storing user %s: %w", u.Name, s.d.InterpretError(err))
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("storing user %s: %w", u.Name, s.d.InterpretError(err))
	} else if n == 0 {
		return fmt.Errorf("storing user %s: %w: the name is taken", u.Name, engine.ErrConflict)
	}
	return nil
}

// User returns the user called name, or engine.ErrNotFound.
func (s *Store) User(ctx context.Context, c Conn, name string) (*access.User, error) {
	var u *access.User
	rows, err := c.Query(ctx, s.user, engine.StorableText(name))
	if err := s.scanOne(rows, err, func(r rowScanner) (err error) { u, err = scanUser(r); return err }); err != nil {
		return nil, fmt.Errorf("reading user: %w", err)
	}
	return u, nil
}

// Users returns every user, by name.
func (s *Store) Users(ctx context.Context, c Conn) ([]*access.User, error) {
	rows, err := c.Query(ctx, s.users)
	if err != nil {
		return nil, fmt.Errorf("reading users: %w", s.d.InterpretError(err))
	}
	out, err := scanAll(s, rows, nil, scanUser)
	if err != nil {
		return nil, fmt.Errorf("reading users: %w", s.d.InterpretError(err))
	}
	return out, nil
}

// DisableUser sets the user's disabled time, keeping an earlier one; engine.ErrNotFound when
// there is no such user.
func (s *Store) DisableUser(ctx context.Context, c Conn, name string, at time.Time) error {
	ts, err := s.times(at)
	if err != nil {
		return err
	}
	return s.execOne(ctx, c, "disabling user "+name, s.disableUser, ts[0], engine.StorableText(name))
}

// PutToken stores a new API token.
func (s *Store) PutToken(ctx context.Context, c Conn, t *access.Token) error {
	ts, err := s.times(t.CreatedAt, t.ExpiresAt, t.RevokedAt)
	if err != nil {
		return err
	}
	scopes := make([]string, len(t.Scopes))
	for i, sc := range t.Scopes {
		scopes[i] = string(sc)
	}
	if _, err := c.Exec(ctx, s.putToken, t.ID, t.User, t.SecretHash, strings.Join(scopes, " "), ts[0], ts[1], ts[2]); err != nil {
		return fmt.Errorf("storing token %s: %w", t.ID, s.d.InterpretError(err))
	}
	return nil
}

// Token returns the token with id, or engine.ErrNotFound.
func (s *Store) Token(ctx context.Context, c Conn, id string) (*access.Token, error) {
	var t *access.Token
	rows, err := c.Query(ctx, s.token, engine.StorableText(id))
	if err := s.scanOne(rows, err, func(r rowScanner) (err error) { t, err = scanToken(r); return err }); err != nil {
		return nil, fmt.Errorf("reading token: %w", err)
	}
	return t, nil
}

// Tokens returns user's tokens (every user's for ""), newest first.
func (s *Store) Tokens(ctx context.Context, c Conn, user string) ([]*access.Token, error) {
	var (
		rows *sql.Rows
		err  error
	)
	if user == "" {
		rows, err = c.Query(ctx, s.tokens)
	} else {
		rows, err = c.Query(ctx, s.userTokens, engine.StorableText(user))
	}
	if err != nil {
		return nil, fmt.Errorf("reading tokens: %w", s.d.InterpretError(err))
	}
	out, err := scanAll(s, rows, nil, scanToken)
	if err != nil {
		return nil, fmt.Errorf("reading tokens: %w", s.d.InterpretError(err))
	}
	return out, nil
}

// RevokeToken sets the token's revoked time, keeping an earlier one; engine.ErrNotFound when
// there is no such token.
func (s *Store) RevokeToken(ctx context.Context, c Conn, id string, at time.Time) error {
	ts, err := s.times(at)
	if err != nil {
		return err
	}
	return s.execOne(ctx, c, "revoking token "+id, s.revokeToken, ts[0], engine.StorableText(id))
}

// PutSession stores a new web session.
func (s *Store) PutSession(ctx context.Context, c Conn, se *access.Session) error {
	ts, err := s.times(se.CreatedAt, se.SeenAt, se.ExpiresAt)
	if err != nil {
		return err
	}
	if _, err := c.Exec(ctx, s.putSession, se.IDHash, se.User, se.CSRFToken, ts[0], ts[1], ts[2]); err != nil {
		return fmt.Errorf("storing session: %w", s.d.InterpretError(err))
	}
	return nil
}

// Session returns the session whose ID hashes to idHash, or engine.ErrNotFound.
func (s *Store) Session(ctx context.Context, c Conn, idHash []byte) (*access.Session, error) {
	var se *access.Session
	rows, err := c.Query(ctx, s.session, idHash)
	if err := s.scanOne(rows, err, func(r rowScanner) (err error) { se, err = scanSession(r); return err }); err != nil {
		return nil, fmt.Errorf("reading session: %w", err)
	}
	return se, nil
}

// TouchSession records a request of the session at at.
func (s *Store) TouchSession(ctx context.Context, c Conn, idHash []byte, at time.Time) error {
	ts, err := s.times(at)
	if err != nil {
		return err
	}
	return s.execOne(ctx, c, "touching session", s.touchSession, ts[0], idHash)
}

// DeleteSession ends one session; one already ended is not an error.
func (s *Store) DeleteSession(ctx context.Context, c Conn, idHash []byte) error {
	if _, err := c.Exec(ctx, s.deleteSession, idHash); err != nil {
		return fmt.Errorf("ending session: %w", s.d.InterpretError(err))
	}
	return nil
}

// DeleteSessions ends every session of user.
func (s *Store) DeleteSessions(ctx context.Context, c Conn, user string) error {
	if _, err := c.Exec(ctx, s.deleteSessions, engine.StorableText(user)); err != nil {
		return fmt.Errorf("ending sessions of %s: %w", user, s.d.InterpretError(err))
	}
	return nil
}

// execOne runs a statement that must change one row: engine.ErrNotFound when it changed none.
func (s *Store) execOne(ctx context.Context, c Conn, what, query string, args ...any) error {
	res, err := c.Exec(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, s.d.InterpretError(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s: %w", what, s.d.InterpretError(err))
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, engine.ErrNotFound)
	}
	return nil
}

func scanUser(r rowScanner) (*access.User, error) {
	var (
		u            access.User
		role, ps, fs string
	)
	if err := r.Scan(&u.Name, &role, &ps, &fs, &u.PasswordHash, scanTime{&u.CreatedAt}, scanTime{&u.DisabledAt}); err != nil {
		return nil, err
	}
	u.Role = access.Role(role)
	for _, line := range lines(ps) {
		p, err := access.ParsePractitioner(line)
		if err != nil {
			return nil, fmt.Errorf("user %s: stored %w", u.Name, err)
		}
		u.Practitioners = append(u.Practitioners, p)
	}
	u.Facilities = lines(fs)
	return &u, nil
}

func scanToken(r rowScanner) (*access.Token, error) {
	var (
		t      access.Token
		scopes string
	)
	if err := r.Scan(&t.ID, &t.User, &t.SecretHash, &scopes, scanTime{&t.CreatedAt}, scanTime{&t.ExpiresAt}, scanTime{&t.RevokedAt}); err != nil {
		return nil, err
	}
	for _, sc := range strings.Fields(scopes) {
		t.Scopes = append(t.Scopes, access.Permission(sc))
	}
	return &t, nil
}

func scanSession(r rowScanner) (*access.Session, error) {
	var se access.Session
	if err := r.Scan(&se.IDHash, &se.User, &se.CSRFToken, scanTime{&se.CreatedAt}, scanTime{&se.SeenAt}, scanTime{&se.ExpiresAt}); err != nil {
		return nil, err
	}
	return &se, nil
}

// lines splits a column of one value per line; "" is none.
func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
