package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ferryhealth/ferry/adapters/sqlstore"
	"github.com/ferryhealth/ferry/engine"
)

// Tx is engine.Tx on SQLite: a BEGIN IMMEDIATE transaction on the one writer connection, so
// there is one writer at a time; a second Begin, and CommitInbound, wait for it to end. Don't call
// the Store's writing methods from inside a Tx: they wait for the connection the Tx holds. Reads
// of the Store (other goroutines) run on the read-only pool and see only committed data.
//
// After a failed step Tx refuses every step but RollbackToSavepoint and Rollback, as PostgreSQL
// does (adapters/postgres.Tx), although SQLite would carry on: the engine then handles a failure
// alike on both stores, and a PutResource that failed half way is always undone.
type Tx struct {
	s  *Store
	tx *sql.Tx
	// TxState is the savepoint, Commit and Rollback, and the rule that a failed step refuses
	// those after it (Usable, Check), as both stores keep them.
	sqlstore.TxState
	// TxSteps are the steps of adapters/sqlstore (worklist, turnaround, links, outbox) on this
	// transaction, guarded by it (Usable, Check). Made once, in Begin.
	sqlstore.TxSteps
}

var _ engine.Tx = (*Tx)(nil)

// txStatements are the statements a Tx runs prepared: Begin prepares them on the writer before it
// takes the writer's connection (see Store.prepare).
var txStatements = append([]string{insertSQL, findAcceptedSQL, claimPendingSQL, finishPendingSQL,
	currentResourceSQL, resourceVersionSQL, resourceHistorySQL, resolveKeySQL, resourceByKeysSQL,
	currentVersionSQL, putHeadSQL, insertVersionSQL,
	deleteIndexSQL, insertIndexSQL, heldKeysSQL, releaseKeySQL, claimKeySQL}, shared.TxStatements()...)

// Begin starts a BEGIN IMMEDIATE transaction on the writer connection (the writer's _txlock),
// waiting for the one before it to end.
func (s *Store) Begin(ctx context.Context) (engine.Tx, error) {
	for _, query := range txStatements {
		if _, err := s.prepare(ctx, s.writer, query); err != nil {
			return nil, fmt.Errorf("beginning transaction: %w", err)
		}
	}
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("beginning transaction: %w", interpretError(err))
	}
	t := &Tx{s: s, tx: tx, TxState: sqlstore.NewTxState(theDialect, tx)}
	t.TxSteps = sqlstore.TxSteps{S: shared, C: reader{s: s, tx: t}, G: t}
	return t, nil
}

// stmt returns query, which Begin prepared, bound to the transaction.
func (t *Tx) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	stmt, err := t.s.prepared(t.s.writer, query)
	if err != nil {
		return nil, err
	}
	return t.tx.StmtContext(ctx, stmt), nil
}

// InsertInbound stores m with the duplicate rule, through the code CommitInbound stores each
// message of a batch with (insertMessage).
func (t *Tx) InsertInbound(ctx context.Context, m *engine.InboundMessage) error {
	if err := t.Usable(); err != nil {
		return err
	}
	if err := shared.ValidateBatch([]*engine.InboundMessage{m}); err != nil {
		return err
	}
	insert, err := t.stmt(ctx, insertSQL)
	if err != nil {
		return err
	}
	findAccepted, err := t.stmt(ctx, findAcceptedSQL)
	if err != nil {
		return err
	}
	stored := storableMessage(m)
	if err := insertMessage(ctx, insert, findAccepted, &stored); err != nil {
		return t.Check(fmt.Errorf("inserting inbound message: %w", err))
	}
	applyStored(m, &stored)
	return nil
}

// claimPendingSQL reads the oldest pending messages through the partial index
// inbound_messages_pending, named: without statistics SQLite would walk inbound_messages_status
// (every accepted message) instead. No lock is needed: the transaction is the one writer until it
// ends.
const claimPendingSQL = `SELECT ` + messageColumns + ` FROM inbound_messages INDEXED BY inbound_messages_pending
WHERE status = 'accepted' AND pending = 1
ORDER BY id
LIMIT ?`

// finishPendingSQL clears pending and records the outcome; no row when id is not a pending
// message.
const finishPendingSQL = `UPDATE inbound_messages
SET pending = 0, mapping_version = ?2, processing_error = ?3
WHERE id = ?1 AND status = 'accepted' AND pending = 1`

// ClaimPending returns up to limit pending messages, oldest first. The transaction holds the
// one writer connection, so no other transaction claims them meanwhile; if it rolls back, they
// are pending still.
func (t *Tx) ClaimPending(ctx context.Context, limit int) ([]*engine.InboundMessage, error) {
	if err := t.Usable(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	stmt, err := t.stmt(ctx, claimPendingSQL)
	if err != nil {
		return nil, err
	}
	rows, err := stmt.QueryContext(ctx, limit)
	if err != nil {
		return nil, t.Check(fmt.Errorf("claiming pending messages: %w", interpretError(err)))
	}
	defer rows.Close()
	var out []*engine.InboundMessage
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, t.Check(fmt.Errorf("claiming pending messages: %w", interpretError(err)))
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, t.Check(fmt.Errorf("claiming pending messages: %w", interpretError(err)))
	}
	return out, nil
}

// FinishPending clears Pending of message id and stores mappingVersion and processingError (as
// valid UTF-8, storableText). engine.ErrNotFound when id is not an accepted, pending message
// (the transaction goes on).
func (t *Tx) FinishPending(ctx context.Context, id int64, mappingVersion, processingError string) error {
	if err := t.Usable(); err != nil {
		return err
	}
	stmt, err := t.stmt(ctx, finishPendingSQL)
	if err != nil {
		return err
	}
	res, err := stmt.ExecContext(ctx, id, storableText(mappingVersion), storableText(processingError))
	if err != nil {
		return t.Check(fmt.Errorf("finishing pending message %d: %w", id, interpretError(err)))
	}
	if n, err := res.RowsAffected(); err != nil {
		return t.Check(fmt.Errorf("finishing pending message %d: %w", id, err))
	} else if n == 0 {
		return fmt.Errorf("finishing pending message %d: %w", id, engine.ErrNotFound)
	}
	return nil
}

const (
	currentVersionSQL = `SELECT version_id FROM resources WHERE type = ? AND id = ?`
	putHeadSQL        = `
INSERT INTO resources (type, id, version_id, last_updated) VALUES (?, ?, ?, ?)
ON CONFLICT (type, id) DO UPDATE SET version_id = excluded.version_id, last_updated = excluded.last_updated`
	insertVersionSQL = `
INSERT INTO resource_versions (type, id, version_id, last_updated, json) VALUES (?, ?, ?, ?, ?)`
	deleteIndexSQL = `DELETE FROM resource_index WHERE type = ? AND id = ?`
	insertIndexSQL = `
INSERT INTO resource_index (type, id, param, system, value) VALUES (?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING`
	heldKeysSQL   = `SELECT key FROM resource_keys WHERE type = ? AND id = ?`
	releaseKeySQL = `DELETE FROM resource_keys WHERE type = ? AND key = ?`
	claimKeySQL   = `INSERT INTO resource_keys (type, key, id) VALUES (?, ?, ?)`
)

// PutResource adds r as the new current version. There is one writer, so it checks first and
// writes after: ErrConflict when r.VersionID is not the current version + 1 or a key of r.Keys is
// held by another resource of the type, and then nothing of r is written. The key table's primary
// key stays the rule (a violation is ErrConflict too).
func (t *Tx) PutResource(ctx context.Context, r *engine.Resource) error {
	if err := t.Usable(); err != nil {
		return err
	}
	if err := shared.ValidateResource(r); err != nil {
		return err
	}
	if err := t.putResource(ctx, r); err != nil {
		return t.Check(fmt.Errorf("storing %s/%s version %d: %w", r.Type, r.ID, r.VersionID, err))
	}
	return nil
}

func (t *Tx) putResource(ctx context.Context, r *engine.Resource) error {
	keys := make([]string, len(r.Keys))
	for i, k := range r.Keys {
		keys[i] = storableText(k)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)

	// Check.
	stmt, err := t.stmt(ctx, currentVersionSQL)
	if err != nil {
		return err
	}
	var current int64
	if err := stmt.QueryRowContext(ctx, r.Type, r.ID).Scan(&current); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return interpretError(err)
	}
	if r.VersionID != current+1 {
		return fmt.Errorf("the current version is %d: %w", current, engine.ErrConflict)
	}
	holder, err := t.stmt(ctx, resolveKeySQL)
	if err != nil {
		return err
	}
	var claim []string // keys no resource holds yet
	for _, k := range keys {
		var id string
		switch err := holder.QueryRowContext(ctx, r.Type, k).Scan(&id); {
		case errors.Is(err, sql.ErrNoRows):
			claim = append(claim, k)
		case err != nil:
			return interpretError(err)
		case id != r.ID:
			return fmt.Errorf("a key is held by %s/%s: %w", r.Type, id, engine.ErrConflict)
		}
	}

	// Write.
	lastUpdated := r.LastUpdated.UnixNano()
	if err := t.exec(ctx, putHeadSQL, r.Type, r.ID, r.VersionID, lastUpdated); err != nil {
		return err
	}
	if err := t.exec(ctx, insertVersionSQL, r.Type, r.ID, r.VersionID, lastUpdated, r.JSON); err != nil {
		return err
	}
	if current > 0 {
		if err := t.exec(ctx, deleteIndexSQL, r.Type, r.ID); err != nil {
			return err
		}
	}
	if len(r.Index) > 0 {
		insert, err := t.stmt(ctx, insertIndexSQL)
		if err != nil {
			return err
		}
		for _, e := range r.Index {
			_, err := insert.ExecContext(ctx, r.Type, r.ID, sqlstore.IndexText(e.Param), sqlstore.IndexText(e.System), sqlstore.IndexText(e.Value))
			if err != nil {
				return interpretError(err)
			}
		}
	}
	if current > 0 {
		held, err := t.heldKeys(ctx, r.Type, r.ID)
		if err != nil {
			return err
		}
		for _, k := range held {
			if _, keep := slices.BinarySearch(keys, k); !keep {
				if err := t.exec(ctx, releaseKeySQL, r.Type, k); err != nil {
					return err
				}
			}
		}
	}
	for _, k := range claim {
		if err := t.exec(ctx, claimKeySQL, r.Type, k, r.ID); err != nil {
			return err
		}
	}
	return nil
}

// heldKeys returns the keys typ/id holds.
func (t *Tx) heldKeys(ctx context.Context, typ, id string) ([]string, error) {
	stmt, err := t.stmt(ctx, heldKeysSQL)
	if err != nil {
		return nil, err
	}
	rows, err := stmt.QueryContext(ctx, typ, id)
	if err != nil {
		return nil, interpretError(err)
	}
	defer rows.Close()
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, interpretError(err)
		}
		keys = append(keys, k)
	}
	return keys, interpretError(rows.Err())
}

// exec runs a statement Begin prepared.
func (t *Tx) exec(ctx context.Context, query string, args ...any) error {
	stmt, err := t.stmt(ctx, query)
	if err != nil {
		return err
	}
	_, err = stmt.ExecContext(ctx, args...)
	return interpretError(err)
}

// reader runs the reads of engine.ResourceReader and engine.WorklistReader on the read-only pool
// (a Store's: committed data) or on a transaction (a Tx's, which sees its own writes).
type reader struct {
	s  *Store
	tx *Tx // nil: the read-only pool
}

// stmt returns query prepared: on the read-only pool, or, for a Tx, as Begin prepared it.
func (rd reader) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if rd.tx != nil {
		return rd.tx.stmt(ctx, query)
	}
	return rd.s.prepare(ctx, rd.s.reader, query)
}

// QueryShape runs a query whose text takes one of a few shapes: prepared on the read-only pool;
// in a transaction, unprepared (SQLite parses it in process; preparing on the writer would wait
// for the connection the transaction holds).
func (rd reader) QueryShape(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if rd.tx != nil {
		return rd.tx.tx.QueryContext(ctx, query, args...)
	}
	stmt, err := rd.s.prepare(ctx, rd.s.reader, query)
	if err != nil {
		return nil, err
	}
	return stmt.QueryContext(ctx, args...)
}

// query runs a query of varying text, unprepared.
func (rd reader) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if rd.tx != nil {
		return rd.tx.tx.QueryContext(ctx, query, args...)
	}
	return rd.s.reader.QueryContext(ctx, query, args...)
}

// currentResourceSQL reads the current version with the keys the resource holds, as a JSON
// array (engine.ResourceReader: Resource returns them, for the next PutResource).
const currentResourceSQL = `
SELECT v.version_id, v.last_updated, v.json,
       (SELECT json_group_array(key) FROM (SELECT k.key FROM resource_keys k WHERE k.type = r.type AND k.id = r.id ORDER BY k.key))
FROM resources r
JOIN resource_versions v ON v.type = r.type AND v.id = r.id AND v.version_id = r.version_id
WHERE r.type = ? AND r.id = ?`

const resourceVersionSQL = `
SELECT version_id, last_updated, json FROM resource_versions
WHERE type = ? AND id = ? AND version_id = ?`

const resourceHistorySQL = `
SELECT version_id, last_updated, json FROM resource_versions
WHERE type = ? AND id = ?
ORDER BY version_id DESC`

const resolveKeySQL = `SELECT id FROM resource_keys WHERE type = ? AND key = ?`

// resourceByKeysSQL finds, in one statement, the current version of the resource holding the
// first of the keys ?2 (a JSON array) that any resource of type ?1 holds: each key is a
// primary-key probe of resource_keys, in the array's order, then the current version as
// currentResourceSQL reads it. CROSS JOIN fixes the loop order (SQLite keeps its left side
// outside): left to itself, the planner walks every key of the type and scans the array for each.
const resourceByKeysSQL = `
SELECT r.id, v.version_id, v.last_updated, v.json,
       (SELECT json_group_array(key) FROM (SELECT h.key FROM resource_keys h WHERE h.type = r.type AND h.id = r.id ORDER BY h.key))
FROM json_each(?2) q
CROSS JOIN resource_keys k ON k.type = ?1 AND k.key = q.value
JOIN resources r ON r.type = k.type AND r.id = k.id
JOIN resource_versions v ON v.type = r.type AND v.id = r.id AND v.version_id = r.version_id
ORDER BY q.key
LIMIT 1`

// scanResource reads the version_id, last_updated and json columns into r.
func scanResource(row interface{ Scan(...any) error }, r *engine.Resource) error {
	var lastUpdated int64
	if err := row.Scan(&r.VersionID, &lastUpdated, &r.JSON); err != nil {
		return err
	}
	r.LastUpdated = time.Unix(0, lastUpdated).UTC()
	return nil
}

func (rd reader) resource(ctx context.Context, typ, id string) (*engine.Resource, error) {
	if !sqlstore.ValidType(typ) || !sqlstore.ValidID(id) {
		return nil, fmt.Errorf("reading %s/%s: %w", typ, id, engine.ErrNotFound)
	}
	stmt, err := rd.stmt(ctx, currentResourceSQL)
	if err != nil {
		return nil, err
	}
	r := &engine.Resource{Type: typ, ID: id}
	var lastUpdated int64
	var keys string
	if err := stmt.QueryRowContext(ctx, typ, id).Scan(&r.VersionID, &lastUpdated, &r.JSON, &keys); err != nil {
		return nil, fmt.Errorf("reading %s/%s: %w", typ, id, interpretError(err))
	}
	r.LastUpdated = time.Unix(0, lastUpdated).UTC()
	if err := json.Unmarshal([]byte(keys), &r.Keys); err != nil {
		return nil, fmt.Errorf("reading %s/%s keys: %w", typ, id, err)
	}
	return r, nil
}

func (rd reader) resourceVersion(ctx context.Context, typ, id string, version int64) (*engine.Resource, error) {
	if !sqlstore.ValidType(typ) || !sqlstore.ValidID(id) {
		return nil, fmt.Errorf("reading %s/%s version %d: %w", typ, id, version, engine.ErrNotFound)
	}
	stmt, err := rd.stmt(ctx, resourceVersionSQL)
	if err != nil {
		return nil, err
	}
	r := &engine.Resource{Type: typ, ID: id}
	if err := scanResource(stmt.QueryRowContext(ctx, typ, id, version), r); err != nil {
		return nil, fmt.Errorf("reading %s/%s version %d: %w", typ, id, version, interpretError(err))
	}
	return r, nil
}

func (rd reader) resourceHistory(ctx context.Context, typ, id string) ([]*engine.Resource, error) {
	if !sqlstore.ValidType(typ) || !sqlstore.ValidID(id) {
		return nil, fmt.Errorf("reading history of %s/%s: %w", typ, id, engine.ErrNotFound)
	}
	stmt, err := rd.stmt(ctx, resourceHistorySQL)
	if err != nil {
		return nil, err
	}
	rows, err := stmt.QueryContext(ctx, typ, id)
	if err != nil {
		return nil, fmt.Errorf("reading history of %s/%s: %w", typ, id, interpretError(err))
	}
	defer rows.Close()
	var out []*engine.Resource
	for rows.Next() {
		r := &engine.Resource{Type: typ, ID: id}
		if err := scanResource(rows, r); err != nil {
			return nil, fmt.Errorf("reading history of %s/%s: %w", typ, id, interpretError(err))
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading history of %s/%s: %w", typ, id, interpretError(err))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("reading history of %s/%s: %w", typ, id, engine.ErrNotFound)
	}
	return out, nil
}

func (rd reader) resolveKey(ctx context.Context, typ, key string) (string, error) {
	if !sqlstore.ValidType(typ) {
		return "", fmt.Errorf("resolving a %s key: %w", typ, engine.ErrNotFound)
	}
	stmt, err := rd.stmt(ctx, resolveKeySQL)
	if err != nil {
		return "", err
	}
	var id string
	if err := stmt.QueryRowContext(ctx, typ, storableText(key)).Scan(&id); err != nil {
		// The key is not logged: it may be an MRN.
		return "", fmt.Errorf("resolving a %s key: %w", typ, interpretError(err))
	}
	return id, nil
}

func (rd reader) resourceByKeys(ctx context.Context, typ string, keys []string) (*engine.Resource, error) {
	if !sqlstore.ValidType(typ) || len(keys) == 0 {
		return nil, fmt.Errorf("finding a %s by key: %w", typ, engine.ErrNotFound)
	}
	stored := make([]string, len(keys))
	for i, k := range keys {
		stored[i] = storableText(k)
	}
	list, err := json.Marshal(stored)
	if err != nil {
		return nil, err
	}
	stmt, err := rd.stmt(ctx, resourceByKeysSQL)
	if err != nil {
		return nil, err
	}
	r := &engine.Resource{Type: typ}
	var (
		lastUpdated int64
		held        string
	)
	if err := stmt.QueryRowContext(ctx, typ, string(list)).Scan(&r.ID, &r.VersionID, &lastUpdated, &r.JSON, &held); err != nil {
		// The keys are not logged: they may hold an MRN.
		return nil, fmt.Errorf("finding a %s by key: %w", typ, interpretError(err))
	}
	r.LastUpdated = time.Unix(0, lastUpdated).UTC()
	if err := json.Unmarshal([]byte(held), &r.Keys); err != nil {
		return nil, fmt.Errorf("reading %s/%s keys: %w", typ, r.ID, err)
	}
	return r, nil
}

// searchResources builds one query for q: the page of current versions (narrow rows, sorted,
// skipped and cut), then the JSON of just that page. Each filter is a semi-join on the index
// entries; values are placeholders, never text of the query.
func (rd reader) searchResources(ctx context.Context, q engine.ResourceQuery) ([]*engine.Resource, error) {
	if !sqlstore.ValidType(q.Type) {
		return nil, nil
	}
	args := []any{q.Type}
	var where strings.Builder
	for _, f := range q.Filters {
		if len(f.Values) == 0 {
			return nil, nil // no value to match: nothing matches
		}
		where.WriteString("\n\tAND r.id IN (SELECT i.id FROM resource_index i WHERE i.type = ?1 AND i.param = ? AND (")
		args = append(args, sqlstore.IndexText(f.Param))
		for j, v := range f.Values {
			if j > 0 {
				where.WriteString(" OR ")
			}
			if v.System != "" {
				where.WriteString("(i.system = ? AND ")
				args = append(args, sqlstore.IndexText(v.System))
			}
			value := sqlstore.IndexText(v.Value)
			switch f.Op {
			case engine.SearchEq:
				where.WriteString("i.value = ?")
				args = append(args, value)
			case engine.SearchPrefix:
				// A prefix as a range of the index: stored text is valid UTF-8, which never holds
				// the byte 0xFF, so exactly the values that start with p lie in [p, p+"\xff").
				where.WriteString("(i.value >= ? AND i.value < ?)")
				args = append(args, value, value+"\xff")
			case engine.SearchGe:
				where.WriteString("i.value >= ?")
				args = append(args, value)
			case engine.SearchGt:
				where.WriteString("i.value > ?")
				args = append(args, value)
			case engine.SearchLe:
				where.WriteString("i.value <= ?")
				args = append(args, value)
			case engine.SearchLt:
				where.WriteString("i.value < ?")
				args = append(args, value)
			default:
				return nil, fmt.Errorf("searching %s: unknown operator %q", q.Type, f.Op)
			}
			if v.System != "" {
				where.WriteString(")")
			}
		}
		where.WriteString("))")
	}
	args = append(args, sqlstore.Limit(q.Count), max(q.Offset, 0))
	// With filters, the unary + keeps SQLite from walking resources_last_updated to return rows
	// in order and probing each against the filters — a scan of every resource of the type when
	// few match (a search by identifier, or for an identifier nobody holds): the index entries
	// drive, and the matches are sorted. Without filters, the ordered index serves the page.
	order := "r.last_updated"
	if len(q.Filters) > 0 {
		order = "+r.last_updated"
	}
	query := `SELECT p.id, p.version_id, p.last_updated, v.json
FROM (
	SELECT r.id, r.version_id, r.last_updated
	FROM resources r
	WHERE r.type = ?1` + where.String() + `
	ORDER BY ` + order + ` DESC, r.id
	LIMIT ? OFFSET ?
) p
JOIN resource_versions v ON v.type = ?1 AND v.id = p.id AND v.version_id = p.version_id
ORDER BY p.last_updated DESC, p.id`

	rows, err := rd.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("searching %s: %w", q.Type, interpretError(err))
	}
	defer rows.Close()
	var out []*engine.Resource
	for rows.Next() {
		r := &engine.Resource{Type: q.Type}
		var lastUpdated int64
		if err := rows.Scan(&r.ID, &r.VersionID, &lastUpdated, &r.JSON); err != nil {
			return nil, fmt.Errorf("searching %s: %w", q.Type, interpretError(err))
		}
		r.LastUpdated = time.Unix(0, lastUpdated).UTC()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("searching %s: %w", q.Type, interpretError(err))
	}
	return out, nil
}

// The reads of Store run on the read-only pool and see committed data.

// Resource returns the current version of typ/id, or engine.ErrNotFound.
func (s *Store) Resource(ctx context.Context, typ, id string) (*engine.Resource, error) {
	return reader{s: s}.resource(ctx, typ, id)
}

// ResourceVersion returns one version of typ/id, or engine.ErrNotFound.
func (s *Store) ResourceVersion(ctx context.Context, typ, id string, version int64) (*engine.Resource, error) {
	return reader{s: s}.resourceVersion(ctx, typ, id, version)
}

// ResourceHistory returns every version of typ/id, newest first, or engine.ErrNotFound.
func (s *Store) ResourceHistory(ctx context.Context, typ, id string) ([]*engine.Resource, error) {
	return reader{s: s}.resourceHistory(ctx, typ, id)
}

// ResolveKey returns the id of the resource of typ holding key, or engine.ErrNotFound.
func (s *Store) ResolveKey(ctx context.Context, typ, key string) (string, error) {
	return reader{s: s}.resolveKey(ctx, typ, key)
}

// ResourceByKeys returns the current version of the resource of typ holding the first of keys
// that any resource holds, in one statement, or engine.ErrNotFound.
func (s *Store) ResourceByKeys(ctx context.Context, typ string, keys []string) (*engine.Resource, error) {
	return reader{s: s}.resourceByKeys(ctx, typ, keys)
}

// SearchResources returns the current versions matching q, as engine.ResourceReader documents.
func (s *Store) SearchResources(ctx context.Context, q engine.ResourceQuery) ([]*engine.Resource, error) {
	return reader{s: s}.searchResources(ctx, q)
}

// The reads of Tx run on the transaction and see its writes.

// Resource returns the current version of typ/id, or engine.ErrNotFound.
func (t *Tx) Resource(ctx context.Context, typ, id string) (*engine.Resource, error) {
	if err := t.Usable(); err != nil {
		return nil, err
	}
	r, err := reader{s: t.s, tx: t}.resource(ctx, typ, id)
	return r, t.Check(err)
}

// ResourceVersion returns one version of typ/id, or engine.ErrNotFound.
func (t *Tx) ResourceVersion(ctx context.Context, typ, id string, version int64) (*engine.Resource, error) {
	if err := t.Usable(); err != nil {
		return nil, err
	}
	r, err := reader{s: t.s, tx: t}.resourceVersion(ctx, typ, id, version)
	return r, t.Check(err)
}

// ResourceHistory returns every version of typ/id, newest first, or engine.ErrNotFound.
func (t *Tx) ResourceHistory(ctx context.Context, typ, id string) ([]*engine.Resource, error) {
	if err := t.Usable(); err != nil {
		return nil, err
	}
	rs, err := reader{s: t.s, tx: t}.resourceHistory(ctx, typ, id)
	return rs, t.Check(err)
}

// ResolveKey returns the id of the resource of typ holding key, or engine.ErrNotFound.
func (t *Tx) ResolveKey(ctx context.Context, typ, key string) (string, error) {
	if err := t.Usable(); err != nil {
		return "", err
	}
	id, err := reader{s: t.s, tx: t}.resolveKey(ctx, typ, key)
	return id, t.Check(err)
}

// ResourceByKeys returns the current version of the resource of typ holding the first of keys
// that any resource holds, in one statement, or engine.ErrNotFound.
func (t *Tx) ResourceByKeys(ctx context.Context, typ string, keys []string) (*engine.Resource, error) {
	if err := t.Usable(); err != nil {
		return nil, err
	}
	r, err := reader{s: t.s, tx: t}.resourceByKeys(ctx, typ, keys)
	return r, t.Check(err)
}

// SearchResources returns the current versions matching q, as engine.ResourceReader documents.
func (t *Tx) SearchResources(ctx context.Context, q engine.ResourceQuery) ([]*engine.Resource, error) {
	if err := t.Usable(); err != nil {
		return nil, err
	}
	rs, err := reader{s: t.s, tx: t}.searchResources(ctx, q)
	return rs, t.Check(err)
}
