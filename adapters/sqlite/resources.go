package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/ferryhealth/ferry/adapters/sqlstore"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/fhir"
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
	// Tx is the savepoint, Commit and Rollback, the rule that a failed step refuses those
	// after it (Usable, Check), and adapters/sqlstore's steps on this transaction. Made in Begin.
	*sqlstore.Tx
}

// txStatements are the statements a Tx runs prepared: Begin prepares them on the writer before it
// takes the writer's connection (see Store.prepare).
var txStatements = append([]string{insertSQL, findAcceptedSQL, insertKeySQL,
	currentVersionSQL, putHeadSQL, insertVersionSQL,
	deleteIndexSQL, deleteIndexEntrySQL, insertIndexSQL, heldKeysSQL, releaseKeySQL, claimKeySQL}, shared.TxStatements()...)

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
	t := &Tx{s: s, tx: tx}
	t.Tx = shared.NewTx(tx, reader{s: s, tx: t})
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
	insertKey, err := t.stmt(ctx, insertKeySQL)
	if err != nil {
		return err
	}
	stored := storableMessage(m)
	if err := (inserter{insert, findAccepted, insertKey}).message(ctx, &stored); err != nil {
		return t.Check(fmt.Errorf("inserting inbound message: %w", err))
	}
	applyStored(m, &stored)
	return nil
}

// claimPendingSQL reads the oldest pending messages through the partial index
// inbound_messages_pending, named: without statistics SQLite would walk inbound_messages_status
// (every accepted message) instead. No lock is needed: the transaction is the one writer until it
// ends.
const claimPendingSQL = `SELECT ` + sqlstore.MessageColumns + ` FROM inbound_messages INDEXED BY inbound_messages_pending
WHERE status = 'accepted' AND pending = 1
ORDER BY id
LIMIT ?`

const (
	// currentVersionSQL reads the current version and its index entries (NULL for a version
	// stored before migration 00150: then every entry is replaced).
	currentVersionSQL = `
SELECT r.version_id, v.index_entries FROM resources r
JOIN resource_versions v ON v.type = r.type AND v.id = r.id AND v.version_id = r.version_id
WHERE r.type = ? AND r.id = ?`
	putHeadSQL = `
INSERT INTO resources (type, id, version_id, last_updated) VALUES (?, ?, ?, ?)
ON CONFLICT (type, id) DO UPDATE SET version_id = excluded.version_id, last_updated = excluded.last_updated`
	insertVersionSQL = `
INSERT INTO resource_versions (type, id, version_id, last_updated, json, index_entries) VALUES (?, ?, ?, ?, ?, ?)`
	deleteIndexSQL      = `DELETE FROM resource_index WHERE type = ? AND id = ?`
	deleteIndexEntrySQL = `
DELETE FROM resource_index WHERE type = ? AND id = ? AND param = ? AND system = ? AND value = ?`
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
	var (
		current  int64
		previous sql.NullString // the current version's index entries
	)
	if err := stmt.QueryRowContext(ctx, r.Type, r.ID).Scan(&current, &previous); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return interpretError(err)
	}
	if r.VersionID != current+1 {
		return fmt.Errorf("the current version is %d: %w", current, engine.ErrConflict)
	}
	var claim []string // keys no resource holds yet
	for _, k := range keys {
		switch id, err := shared.ResolveKey(ctx, t.TxSteps.C, r.Type, k); {
		case errors.Is(err, engine.ErrNotFound):
			claim = append(claim, k)
		case err != nil:
			return err
		case id != r.ID:
			return fmt.Errorf("a key is held by %s/%s: %w", r.Type, id, engine.ErrConflict)
		}
	}

	entries := sqlstore.IndexEntries(r.Index)
	stored, err := encodeIndexEntries(entries)
	if err != nil {
		return err
	}
	remove, add := entries[:0:0], entries // the difference from the current version's entries
	if previous.Valid {
		old, err := decodeIndexEntries(previous.String)
		if err != nil {
			return fmt.Errorf("reading the index entries of version %d: %w", current, err)
		}
		remove, add = indexDifference(old, entries)
	}
	// A version stored before migration 00150 has no entries kept: replace every entry.
	replaceAll := current > 0 && !previous.Valid

	// Write.
	lastUpdated := r.LastUpdated.UnixNano()
	if err := t.exec(ctx, putHeadSQL, r.Type, r.ID, r.VersionID, lastUpdated); err != nil {
		return err
	}
	if err := t.exec(ctx, insertVersionSQL, r.Type, r.ID, r.VersionID, lastUpdated, r.JSON, stored); err != nil {
		return err
	}
	if replaceAll {
		if err := t.exec(ctx, deleteIndexSQL, r.Type, r.ID); err != nil {
			return err
		}
	}
	for _, e := range remove {
		if err := t.exec(ctx, deleteIndexEntrySQL, r.Type, r.ID, e.Param, e.System, e.Value); err != nil {
			return err
		}
	}
	if len(add) > 0 {
		insert, err := t.stmt(ctx, insertIndexSQL)
		if err != nil {
			return err
		}
		for _, e := range add {
			if _, err := insert.ExecContext(ctx, r.Type, r.ID, e.Param, e.System, e.Value); err != nil {
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

// encodeIndexEntries writes a version's index entries (sorted and distinct, sqlstore.IndexEntries)
// as resource_versions.index_entries keeps them: a JSON array of three arrays, the params, the
// systems and the values (migrations/sqlite/00150).
func encodeIndexEntries(entries []fhir.IndexEntry) (string, error) {
	cols := [3][]string{make([]string, len(entries)), make([]string, len(entries)), make([]string, len(entries))}
	for i, e := range entries {
		cols[0][i], cols[1][i], cols[2][i] = e.Param, e.System, e.Value
	}
	b, err := json.Marshal(cols)
	return string(b), err
}

// decodeIndexEntries reads what encodeIndexEntries wrote.
func decodeIndexEntries(s string) ([]fhir.IndexEntry, error) {
	var cols [3][]string
	if err := json.Unmarshal([]byte(s), &cols); err != nil {
		return nil, err
	}
	if len(cols[1]) != len(cols[0]) || len(cols[2]) != len(cols[0]) {
		return nil, fmt.Errorf("%d params, %d systems, %d values", len(cols[0]), len(cols[1]), len(cols[2]))
	}
	out := make([]fhir.IndexEntry, len(cols[0]))
	for i := range out {
		out[i] = fhir.IndexEntry{Param: cols[0][i], System: cols[1][i], Value: cols[2][i]}
	}
	return out, nil
}

// indexDifference returns the entries of old that next lacks and those of next that old lacks.
func indexDifference(old, next []fhir.IndexEntry) (remove, add []fhir.IndexEntry) {
	in := func(list []fhir.IndexEntry) map[fhir.IndexEntry]bool {
		m := make(map[fhir.IndexEntry]bool, len(list))
		for _, e := range list {
			m[e] = true
		}
		return m
	}
	oldSet, nextSet := in(old), in(next)
	for _, e := range old {
		if !nextSet[e] {
			remove = append(remove, e)
		}
	}
	for _, e := range next {
		if !oldSet[e] {
			add = append(add, e)
		}
	}
	return remove, add
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
// for the connection the transaction holds). Past maxPrepared statements it prepares no more,
// whatever shapes clients send.
func (rd reader) QueryShape(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if rd.tx != nil || rd.s.preparedCount() >= maxPrepared {
		return rd.query(ctx, query, args...)
	}
	stmt, err := rd.s.prepare(ctx, rd.s.reader, query)
	if err != nil {
		return nil, err
	}
	return stmt.QueryContext(ctx, args...)
}

// maxPrepared bounds the statements the store keeps prepared, search shapes included.
const maxPrepared = 256

// preparedCount is how many statements the store keeps prepared.
func (s *Store) preparedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.stmts)
}

// query runs a query of varying text, unprepared.
func (rd reader) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if rd.tx != nil {
		return rd.tx.tx.QueryContext(ctx, query, args...)
	}
	return rd.s.reader.QueryContext(ctx, query, args...)
}

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
