package sqlstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/ferryhealth/ferry/engine"
)

// MessageColumns are the columns of inbound_messages (migrations/*/00001_inbound_messages.sql,
// 00003_pending_processing.sql) in the order ScanMessage reads them. Writing the log (the inbound
// group commit, a Tx's InsertInbound, claiming pending messages) is each store's own: the hot
// path of every message.
const MessageColumns = `id, channel, received_at, peer_addr, raw, sending_application, sending_facility,
	message_type, control_id, version, status, ack, ack_code, error, coalesce(duplicate_of, 0),
	mapping_version, pending, processing_error`

// messageStatements are the message log's fixed reads and the pending processing's steps.
type messageStatements struct {
	message, claimPending, finishPending string
}

func newMessageStatements(rebind func(string) string, d Dialect) messageStatements {
	return messageStatements{
		message:      rebind(`SELECT ` + MessageColumns + ` FROM inbound_messages WHERE id = ?`),
		claimPending: d.ClaimPendingSQL(),
		// Clears pending and records the outcome; no row when id is not a pending message.
		finishPending: rebind(`UPDATE inbound_messages
SET pending = ?, mapping_version = ?, processing_error = ?
WHERE id = ? AND status = 'accepted' AND pending`),
	}
}

// ClaimPending returns up to limit pending messages, oldest first, claimed until the transaction
// c ends (the dialect's ClaimPendingSQL): a worker on another node skips them; a claimed message
// whose transaction rolls back is claimable again.
func (s *Store) ClaimPending(ctx context.Context, c Conn, limit int) ([]*engine.InboundMessage, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := c.Query(ctx, s.claimPending, limit)
	out, err := scanAll(s, rows, err, ScanMessage)
	if err != nil {
		return nil, fmt.Errorf("claiming pending messages: %w", err)
	}
	return out, nil
}

// FinishPending clears Pending of message id and stores mappingVersion and processingError (as
// valid UTF-8). engine.ErrNotFound when id is not an accepted, pending message (a transaction
// goes on).
func (s *Store) FinishPending(ctx context.Context, c Conn, id int64, mappingVersion, processingError string) error {
	res, err := c.Exec(ctx, s.finishPending, false, engine.StorableText(mappingVersion),
		engine.StorableText(processingError), id)
	var n int64
	if err == nil {
		n, err = res.RowsAffected()
	}
	if err == nil && n == 0 {
		err = engine.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("finishing pending message %d: %w", id, s.d.InterpretError(err))
	}
	return nil
}

// Message returns the message with id, or engine.ErrNotFound.
func (s *Store) Message(ctx context.Context, c Conn, id int64) (*engine.InboundMessage, error) {
	rows, err := c.Query(ctx, s.message, id)
	m, err := scanRow(s, rows, err, ScanMessage)
	if err != nil {
		return nil, fmt.Errorf("reading message %d: %w", id, err)
	}
	return m, nil
}

// Messages returns the messages that match f, newest (highest ID) first. The query is not
// prepared (QueryOnce): the message type is a prefix, which PostgreSQL plans as an index range
// only for its value.
func (s *Store) Messages(ctx context.Context, c Conn, f engine.MessageFilter) ([]*engine.InboundMessage, error) {
	q, err := s.messageConditions(f)
	if err != nil {
		return nil, err
	}
	query := "SELECT " + MessageColumns + " FROM inbound_messages" + q.clause() +
		" ORDER BY id DESC LIMIT " + q.arg(Limit(f.Limit))
	rows, err := c.QueryOnce(ctx, query, q.args...)
	out, err := scanAll(s, rows, err, ScanMessage)
	if err != nil {
		return nil, fmt.Errorf("listing messages: %w", err)
	}
	return out, nil
}

// messageConditions is f as the conditions of a query on inbound_messages.
func (s *Store) messageConditions(f engine.MessageFilter) (conditions, error) {
	q := conditions{d: s.d}
	return q, s.addMessageConditions(&q, f)
}

// addMessageConditions adds f's conditions to q. A free-text filter reads the raw bytes of the
// newest engine.TextScanWindow messages the other conditions select, no more.
func (s *Store) addMessageConditions(q *conditions, f engine.MessageFilter) error {
	if f.Text == "" {
		return s.addIndexedConditions(q, f)
	}
	if len(f.Text) > engine.MaxSearchText {
		return &InvalidError{fmt.Errorf("listing messages: a free text of %d bytes (at most %d)", len(f.Text), engine.MaxSearchText)}
	}
	window := conditions{d: s.d, args: q.args}
	if err := s.addIndexedConditions(&window, f); err != nil {
		return err
	}
	q.args = window.args
	q.add("id IN (SELECT id FROM inbound_messages" + window.clause() + " ORDER BY id DESC LIMIT " +
		strconv.Itoa(engine.TextScanWindow) + ")")
	q.add(s.d.Contains("raw", q.arg([]byte(f.Text))))
	return nil
}

// TextWindowEnd returns, for a free-text filter, the lowest ID its bounded scan read (the page
// after it starts there: BeforeID), or 0 when the scan reached the oldest message the other
// filters select.
func (s *Store) TextWindowEnd(ctx context.Context, c Conn, f engine.MessageFilter) (int64, error) {
	f.Text = ""
	q := conditions{d: s.d}
	if err := s.addIndexedConditions(&q, f); err != nil {
		return 0, err
	}
	query := "SELECT coalesce(min(id), 0), count(*) FROM (SELECT id FROM inbound_messages" + q.clause() +
		" ORDER BY id DESC LIMIT " + strconv.Itoa(engine.TextScanWindow) + ") w"
	rows, err := c.QueryOnce(ctx, query, q.args...)
	type end struct{ low, n int64 }
	e, err := scanRow(s, rows, err, func(r rowScanner) (end, error) {
		var e end
		return e, r.Scan(&e.low, &e.n)
	})
	if err != nil {
		return 0, fmt.Errorf("finding the end of a free-text scan: %w", err)
	}
	if e.n < engine.TextScanWindow {
		return 0, nil
	}
	return e.low, nil
}

// addIndexedConditions adds f's conditions but free text to q: each is answered by an index.
func (s *Store) addIndexedConditions(q *conditions, f engine.MessageFilter) error {
	for _, k := range f.SearchKeys() {
		q.add("id IN (SELECT message_id FROM message_search_keys WHERE kind = " + q.arg(string(k.Kind)) +
			" AND value = " + q.text(k.Value) + ")")
	}
	if f.ID > 0 {
		q.add("id = " + q.arg(f.ID))
	}
	if f.ControlID != "" {
		q.add("control_id = " + q.text(f.ControlID))
	}
	if f.MessageType != "" {
		q.add(s.d.Prefix("message_type", engine.StorableText(f.MessageType), q.arg))
	}
	if f.Status != "" {
		q.add("status = " + q.arg(string(f.Status)))
	}
	if f.SendingFacility != "" {
		q.add("sending_facility = " + q.text(f.SendingFacility))
	}
	for _, bound := range []struct {
		at time.Time
		op string
	}{{f.Since, ">="}, {f.Until, "<"}} {
		if bound.at.IsZero() {
			continue
		}
		at, err := s.d.Time(bound.at)
		if err != nil {
			return &InvalidError{fmt.Errorf("listing messages received %s %s: %w", bound.op, bound.at, err)}
		}
		q.add("received_at " + bound.op + " " + q.arg(at))
	}
	if f.BeforeID > 0 {
		q.add("id < " + q.arg(f.BeforeID))
	}
	if f.InErrorQueue {
		q.add(inErrorQueueSQL)
	}
	return nil
}

// ScanMessage reads a row of MessageColumns.
func ScanMessage(row interface{ Scan(...any) error }) (*engine.InboundMessage, error) {
	var (
		m      engine.InboundMessage
		status string
	)
	err := row.Scan(&m.ID, &m.Channel, scanTime{&m.ReceivedAt}, &m.PeerAddr, &m.Raw, &m.SendingApplication,
		&m.SendingFacility, &m.MessageType, &m.ControlID, &m.Version, &status, &m.ACK, &m.ACKCode,
		&m.Error, &m.DuplicateOf, &m.MappingVersion, &m.Pending, &m.ProcessingError)
	if err != nil {
		return nil, err
	}
	m.Status = engine.Status(status)
	if m.Raw == nil {
		m.Raw = []byte{}
	}
	if len(m.ACK) == 0 {
		m.ACK = nil
	}
	return &m, nil
}

// BackfillSearchKeys gives search keys to up to limit messages stored before the keys were kept
// (migration 00120: message_search_backfill.below, walked downwards), keysOf reading each raw
// message, and returns how many it read; 0 when none is left. Each step is idempotent (keys go in
// ON CONFLICT DO NOTHING, the mark moves after them), so nodes running it at once, or a node
// stopped midway, only repeat work.
func (s *Store) BackfillSearchKeys(ctx context.Context, c Conn, limit int, keysOf func(raw []byte) []engine.SearchKey) (int, error) {
	rows, err := c.Query(ctx, `SELECT below FROM message_search_backfill`)
	below, err := scanRow(s, rows, err, func(r rowScanner) (int64, error) {
		var v int64
		return v, r.Scan(&v)
	})
	if err != nil || below <= 1 {
		return 0, err
	}
	type stored struct {
		id  int64
		raw []byte
	}
	rows, err = c.Query(ctx, s.rebind(`SELECT id, raw FROM inbound_messages WHERE id < ? ORDER BY id DESC LIMIT ?`), below, limit)
	msgs, err := scanAll(s, rows, err, func(r rowScanner) (stored, error) {
		var m stored
		return m, r.Scan(&m.id, &m.raw)
	})
	if err != nil {
		return 0, fmt.Errorf("reading messages to index: %w", err)
	}
	insert := s.rebind(`INSERT INTO message_search_keys (kind, value, message_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`)
	next := int64(1) // done, unless a full batch leaves older messages
	for _, m := range msgs {
		for _, k := range keysOf(m.raw) {
			if _, err := c.Exec(ctx, insert, string(k.Kind), engine.StorableText(k.Value), m.id); err != nil {
				return 0, fmt.Errorf("indexing message %d: %w", m.id, s.d.InterpretError(err))
			}
		}
	}
	if len(msgs) == limit {
		next = msgs[len(msgs)-1].id
	}
	if _, err := c.Exec(ctx, s.rebind(`UPDATE message_search_backfill SET below = ?`), next); err != nil {
		return 0, fmt.Errorf("moving the backfill's mark: %w", s.d.InterpretError(err))
	}
	return len(msgs), nil
}
