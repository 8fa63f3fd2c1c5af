package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/audit"
)

// auditStatements are the audit trail's statements (migrations/*/00021_audit.sql).
type auditStatements struct {
	advanceAuditChain, insertAuditEvent, setAuditHead, auditHead string
}

const auditColumns = `seq, recorded_at, action, outcome, agent, role, address, patient, entity, detail, prev_hash, hash`

func newAuditStatements(rebind func(string) string) auditStatements {
	return auditStatements{
		// The UPDATE takes audit_chain's one row lock until the transaction ends: appends are
		// serialized, in seq order, on every node. It returns the new seq and the old head.
		advanceAuditChain: `UPDATE audit_chain SET seq = seq + 1 WHERE id = 1 RETURNING seq, head`,
		insertAuditEvent:  rebind(`INSERT INTO audit_events (` + auditColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		setAuditHead:      rebind(`UPDATE audit_chain SET head = ? WHERE id = 1`),
		auditHead:         `SELECT seq, head FROM audit_chain WHERE id = 1`,
	}
}

// auditTxStatements are the statements AppendAudit runs in a transaction.
func (s *Store) auditTxStatements() []string {
	return []string{s.advanceAuditChain, s.insertAuditEvent, s.setAuditHead}
}

// maxAuditText bounds each text field of an event (an entity is a request line, a detail a
// reason typed by a person).
const maxAuditText = 2048

// AppendAudit appends e to the trail on c, a transaction's: it sets e.Seq, e.PrevHash and e.Hash.
// The event commits with the transaction, or not at all.
func (s *Store) AppendAudit(ctx context.Context, c Conn, e *audit.Event) error {
	if e.RecordedAt.IsZero() || e.Action == "" || e.Outcome == "" {
		return &InvalidError{errors.New("appending audit event: no time, action or outcome")}
	}
	e.RecordedAt = e.RecordedAt.UTC().Truncate(time.Microsecond) // the microsecond both stores keep
	recorded, err := s.d.Time(e.RecordedAt)
	if err != nil {
		return &InvalidError{fmt.Errorf("appending audit event: %w", err)}
	}
	for _, f := range []*string{&e.Agent, &e.Role, &e.Address, &e.Patient, &e.Entity, &e.Detail} {
		*f = engine.StorableText(*f)
		if len(*f) > maxAuditText {
			*f = strings.ToValidUTF8((*f)[:maxAuditText], "")
		}
	}
	rows, err := c.Query(ctx, s.advanceAuditChain)
	var prev []byte
	if err := s.scanOne(rows, err, func(r rowScanner) error { return r.Scan(&e.Seq, &prev) }); err != nil {
		return fmt.Errorf("appending audit event: %w", err)
	}
	e.PrevHash = NonNil(prev)
	e.Hash = e.ChainHash(e.PrevHash)
	if _, err := c.Exec(ctx, s.insertAuditEvent, e.Seq, recorded, string(e.Action), string(e.Outcome), e.Agent, e.Role,
		e.Address, e.Patient, e.Entity, e.Detail, e.PrevHash, e.Hash); err != nil {
		return fmt.Errorf("appending audit event %d: %w", e.Seq, s.d.InterpretError(err))
	}
	if _, err := c.Exec(ctx, s.setAuditHead, e.Hash); err != nil {
		return fmt.Errorf("appending audit event %d: %w", e.Seq, s.d.InterpretError(err))
	}
	return nil
}

// AuditHead returns the chain's head (audit.Reader).
func (s *Store) AuditHead(ctx context.Context, c Conn) (seq int64, hash []byte, err error) {
	rows, err := c.Query(ctx, s.auditHead)
	if err := s.scanOne(rows, err, func(r rowScanner) error { return r.Scan(&seq, &hash) }); err != nil {
		return 0, nil, fmt.Errorf("reading the audit chain's head: %w", err)
	}
	return seq, NonNil(hash), nil
}

// AuditEvents returns the events matching f in seq order (audit.Reader). The text depends only on
// which filters are set (QueryShape).
func (s *Store) AuditEvents(ctx context.Context, c Conn, f audit.Filter) ([]*audit.Event, error) {
	var (
		where []string
		args  []any
	)
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", s.d.Placeholder(len(args))))
	}
	if f.AfterSeq > 0 {
		add("seq > ?", f.AfterSeq)
	}
	if f.Agent != "" {
		add("agent = ?", engine.StorableText(f.Agent))
	}
	if f.Patient != "" {
		add("patient = ?", engine.StorableText(f.Patient))
	}
	if !f.From.IsZero() {
		t, err := s.d.Time(f.From)
		if err != nil {
			return nil, &InvalidError{err}
		}
		add("recorded_at >= ?", t)
	}
	if !f.To.IsZero() {
		t, err := s.d.Time(f.To)
		if err != nil {
			return nil, &InvalidError{err}
		}
		add("recorded_at < ?", t)
	}
	query := "SELECT " + auditColumns + " FROM audit_events"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, Limit(f.Limit))
	query += " ORDER BY seq LIMIT " + s.d.Placeholder(len(args))
	rows, err := c.QueryShape(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("reading audit events: %w", s.d.InterpretError(err))
	}
	out, err := scanAll(s, rows, nil, scanAuditEvent)
	if err != nil {
		return nil, fmt.Errorf("reading audit events: %w", s.d.InterpretError(err))
	}
	return out, nil
}

func scanAuditEvent(r rowScanner) (*audit.Event, error) {
	var (
		e               audit.Event
		action, outcome string
	)
	if err := r.Scan(&e.Seq, scanTime{&e.RecordedAt}, &action, &outcome, &e.Agent, &e.Role, &e.Address, &e.Patient,
		&e.Entity, &e.Detail, &e.PrevHash, &e.Hash); err != nil {
		return nil, err
	}
	e.Action, e.Outcome = audit.Action(action), audit.Outcome(outcome)
	e.PrevHash, e.Hash = NonNil(e.PrevHash), NonNil(e.Hash)
	return &e, nil
}
