package sqlstore

import (
	"context"
	"time"

	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
)

// Users, tokens, sessions (engine/access.Store) and the audit trail's reads (audit.Reader) on a
// store's pools; AppendAudit in its transactions (audit.Appender).
var (
	_ access.Store   = Pool{}
	_ audit.Reader   = Pool{}
	_ audit.Appender = TxSteps{}
)

func (p Pool) PutUser(ctx context.Context, u *access.User) error { return p.S.PutUser(ctx, p.C, u) }

func (p Pool) User(ctx context.Context, name string) (*access.User, error) {
	return p.S.User(ctx, p.C, name)
}

func (p Pool) Users(ctx context.Context) ([]*access.User, error) { return p.S.Users(ctx, p.C) }

func (p Pool) DisableUser(ctx context.Context, name string, at time.Time) error {
	return p.S.DisableUser(ctx, p.C, name, at)
}

func (p Pool) PutToken(ctx context.Context, t *access.Token) error { return p.S.PutToken(ctx, p.C, t) }

func (p Pool) Token(ctx context.Context, id string) (*access.Token, error) {
	return p.S.Token(ctx, p.C, id)
}

func (p Pool) Tokens(ctx context.Context, user string) ([]*access.Token, error) {
	return p.S.Tokens(ctx, p.C, user)
}

func (p Pool) RevokeToken(ctx context.Context, id string, at time.Time) error {
	return p.S.RevokeToken(ctx, p.C, id, at)
}

func (p Pool) PutSession(ctx context.Context, se *access.Session) error {
	return p.S.PutSession(ctx, p.C, se)
}

func (p Pool) Session(ctx context.Context, idHash []byte) (*access.Session, error) {
	return p.S.Session(ctx, p.C, idHash)
}

func (p Pool) TouchSession(ctx context.Context, idHash []byte, at time.Time) error {
	return p.S.TouchSession(ctx, p.C, idHash, at)
}

func (p Pool) DeleteSession(ctx context.Context, idHash []byte) error {
	return p.S.DeleteSession(ctx, p.C, idHash)
}

func (p Pool) DeleteSessions(ctx context.Context, user string) error {
	return p.S.DeleteSessions(ctx, p.C, user)
}

func (p Pool) CountLoginFailure(ctx context.Context, account, address string, now, windowStart time.Time) error {
	return p.S.CountLoginFailure(ctx, p.C, account, address, now, windowStart)
}

func (p Pool) LoginFailures(ctx context.Context, account, address string, windowStart time.Time) (int, int, error) {
	return p.S.LoginFailures(ctx, p.C, account, address, windowStart)
}

func (p Pool) ClearLoginFailures(ctx context.Context, account string) error {
	return p.S.ClearLoginFailures(ctx, p.C, account)
}

func (p Pool) AuditEvents(ctx context.Context, f audit.Filter) ([]*audit.Event, error) {
	return p.S.AuditEvents(ctx, p.C, f)
}

func (p Pool) AuditHead(ctx context.Context) (int64, []byte, error) { return p.S.AuditHead(ctx, p.C) }

func (t TxSteps) AppendAudit(ctx context.Context, e *audit.Event) error {
	if err := t.G.Usable(); err != nil {
		return err
	}
	return t.G.Check(t.S.AppendAudit(ctx, t.C, e))
}
