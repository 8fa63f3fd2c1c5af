package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/lib/pq"

	"github.com/ferryhealth/ferry/adapters/sqlstore"
	"github.com/ferryhealth/ferry/engine"
)

// Tx is engine.Tx on PostgreSQL: a READ COMMITTED transaction on one connection of the main
// pool. Each step is one statement, prepared once per connection, in one round trip;
// PutResource included. Like every engine.Tx it is used by one goroutine.
//
// After a statement fails PostgreSQL refuses every statement of the transaction until it rolls
// back to a savepoint; Tx keeps to that itself, and says so, before sending anything (see
// usable). A PutResource that finds a newer version refuses the transaction the same way, though
// PostgreSQL would not, so that the engine handles every ErrConflict alike, on either store.
type Tx struct {
	s  *Store
	tx *sql.Tx
	// Tx is the savepoint, Commit and Rollback, the rule that a failed step refuses those
	// after it (Usable, Check), and adapters/sqlstore's steps on this transaction. Made in Begin.
	*sqlstore.Tx
}

// txStatements are the statements a Tx prepares: Begin prepares them on the pool before it takes
// a connection for the transaction, so that no step waits for a second connection.
var txStatements = append([]string{insertOneSQL, insertBatchSQL, putResourceSQL}, shared.TxStatements()...)

// Begin starts a READ COMMITTED transaction on the main pool. Its writes lock what they change
// (a resource's current-version row, a key, an accepted message's key) until it ends, so a node
// racing on the same resource, key or message waits for it, then sees its outcome.
func (s *Store) Begin(ctx context.Context) (engine.Tx, error) {
	for _, query := range txStatements {
		if _, err := s.prepare(ctx, query); err != nil {
			return nil, fmt.Errorf("beginning transaction: %w", err)
		}
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return nil, fmt.Errorf("beginning transaction: %w", interpretError(err))
	}
	t := &Tx{s: s, tx: tx}
	t.Tx = shared.NewTx(tx, reader{s: s, tx: tx})
	return t, nil
}

// insertOneSQL inserts one message of a Tx, or nothing when an accepted message holds its key
// (then it returns no row). One row of scalar parameters: no arrays to build and parse and no
// CTE, for about half the server time of insertBatchSQL with one message.
const insertOneSQL = `
INSERT INTO inbound_messages (channel, received_at, peer_addr, raw, sending_application,
	sending_facility, message_type, control_id, version, status, ack, ack_code, error,
	duplicate_of, mapping_version, pending, processing_error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, nullif($14::bigint, 0), $15, $16, $17)
ON CONFLICT (sending_application, sending_facility, control_id)
	WHERE status = 'accepted' AND control_id <> '' DO NOTHING
RETURNING id`

// InsertInbound stores m with the duplicate rule: insertOneSQL, and when an accepted message
// holds m's key, the statements CommitInbound runs after a race (insertBatch), which store m as
// its duplicate. If another transaction holds m's key, the insert waits for it to end; if it
// commits, m is its duplicate.
func (t *Tx) InsertInbound(ctx context.Context, m *engine.InboundMessage) error {
	if err := t.Usable(); err != nil {
		return err
	}
	msgs := []*engine.InboundMessage{m}
	if err := shared.ValidateBatch(msgs); err != nil {
		return err
	}
	one, err := t.s.prepare(ctx, insertOneSQL)
	if err != nil {
		return err
	}
	cols := columnsOf(msgs)
	out := make([]outcome, 1)
	err = t.tx.StmtContext(ctx, one).QueryRowContext(ctx, cols.channel[0],
		cols.receivedAt[0].UTC().Truncate(time.Microsecond), cols.peerAddr[0], cols.raw[0],
		cols.app[0], cols.facility[0], cols.msgType[0], cols.controlID[0], cols.version[0],
		cols.status[0], cols.ack[0], cols.ackCode[0], cols.errText[0], cols.duplicateOf[0],
		cols.mappingVersion[0], cols.pending[0], cols.processingError[0]).Scan(&out[0].id)
	if errors.Is(err, sql.ErrNoRows) {
		// An accepted message holds the key: store m as its duplicate.
		var batch *sql.Stmt
		if batch, err = t.s.prepare(ctx, insertBatchSQL); err != nil {
			return err
		}
		err = insertBatch(ctx, t.tx, batch, cols, out)
	} else if err == nil && len(cols.keyOrd) > 0 {
		// insertBatch indexes the keys of the messages it stores; insertOneSQL does not.
		_, err = t.tx.ExecContext(ctx, insertKeysSQL, pq.Int64Array{out[0].id}, cols.keyKind, cols.keyValue)
	}
	if err != nil {
		return t.Check(fmt.Errorf("inserting inbound message: %w", interpretError(err)))
	}
	cols.applyTo(m, 0, out[0])
	return nil
}

// insertKeysSQL indexes the search keys (kinds, values) of one message (the one ID given).
const insertKeysSQL = `
INSERT INTO message_search_keys (kind, value, message_id)
SELECT k.kind, k.value, ($1::bigint[])[1]
FROM unnest($2::text[], $3::text[]) AS k(kind, value)
ON CONFLICT DO NOTHING`

// claimPendingSQL locks the oldest pending messages (the partial index inbound_messages_pending,
// in id order) and skips those another transaction holds. FOR NO KEY UPDATE rather than FOR
// UPDATE: it excludes another claimer and FinishPending's UPDATE alike, but not the FOR KEY SHARE
// lock with which a new duplicate's foreign key checks its original, so a resent message is
// stored and answered without waiting for its original's processing to finish.
const claimPendingSQL = `SELECT ` + sqlstore.MessageColumns + ` FROM inbound_messages
WHERE status = 'accepted' AND pending
ORDER BY id
LIMIT $1
FOR NO KEY UPDATE SKIP LOCKED`

// putResourceSQL adds a version in one statement. $1 type, $2 id, $3 version, $4 last updated,
// $5 JSON, $6–$8 the index entries as parallel arrays (param, system, value; distinct), $9 the
// keys, sorted and distinct.
//
// head moves the resource's current-version row from version $3-1 to $3, or creates it when $3
// is 1. The upsert locks that row, so a transaction racing on the resource waits for this one and
// then, under READ COMMITTED, checks the row as that one left it: the newer version fails the
// WHERE and head is empty. Every other part runs only when head returned its row, so a version
// conflict writes nothing, and the statement answers false.
//
// The version row keeps its index entries (index_entries, migrations/postgres/00150): the entries
// to replace are the previous version's, read from its row by primary key, and only the
// difference is written: entries the version keeps are left alone, so an update that changes one
// value deletes one entry and inserts one; a new resource inserts its entries and probes nothing.
// Each entry is one btree insertion (resource_index has no primary key, only the search index,
// which the deletion goes through). The deletion runs only when there is something to delete
// ($3 > 1 and gone not empty, both one-time filters): under a generic plan made while the table
// had no statistics, PostgreSQL may walk every entry of the type for it (docs/storage.md).
// The previous
// version's row is read in the statement's snapshot, which holds it: the caller read that version before it wrote the next one (that is
// how it knew $3), and if another writer added a version meanwhile, head is empty and nothing is
// written. A key another resource holds fails the statement on resource_keys_pkey (ErrConflict),
// whether that one committed before this statement or while it waited; keys are inserted in
// order, so two transactions claiming the same keys wait for each other instead of deadlocking.
// The data-modifying parts see one snapshot and touch disjoint rows (deleted entries are not in
// the new set; inserted keys are not held by this resource), so their order does not matter.
const putResourceSQL = `
WITH head AS (
	INSERT INTO resources AS r (type, id, version_id, last_updated)
	SELECT $1::text, $2::text, $3::bigint, $4::timestamptz
	WHERE $3::bigint = 1 OR EXISTS (SELECT FROM resources WHERE type = $1::text AND id = $2::text)
	ON CONFLICT (type, id) DO UPDATE
		SET version_id = excluded.version_id, last_updated = excluded.last_updated
		WHERE r.version_id = excluded.version_id - 1
	RETURNING 1
),
version AS (
	INSERT INTO resource_versions (type, id, version_id, last_updated, json, index_entries)
	SELECT $1::text, $2::text, $3::bigint, $4::timestamptz, $5::bytea,
		ARRAY[$6::text[], $7::text[], $8::text[]]
	FROM head
),
entries AS (
	SELECT e.param, e.system, e.value FROM unnest($6::text[], $7::text[], $8::text[]) AS e(param, system, value)
),
previous AS (
	SELECT e.param, e.system, e.value
	FROM resource_versions v,
		unnest(v.index_entries[1:1], v.index_entries[2:2], v.index_entries[3:3]) AS e(param, system, value)
	WHERE v.type = $1::text AND v.id = $2::text AND v.version_id = $3::bigint - 1 AND $3::bigint > 1
),
gone AS (
	SELECT * FROM previous EXCEPT ALL SELECT * FROM entries
),
unindexed AS (
	DELETE FROM resource_index i
	USING gone g
	WHERE i.type = $1::text AND i.param = g.param AND i.value = g.value AND i.id = $2::text
		AND i.system = g.system AND $3::bigint > 1 AND EXISTS (SELECT FROM gone)
		AND EXISTS (SELECT FROM head)
),
indexed AS (
	INSERT INTO resource_index (type, id, param, system, value)
	SELECT $1::text, $2::text, n.param, n.system, n.value
	FROM (SELECT * FROM entries EXCEPT ALL SELECT * FROM previous) n
	WHERE EXISTS (SELECT FROM head)
),
released AS (
	DELETE FROM resource_keys k
	WHERE k.type = $1::text AND k.id = $2::text AND EXISTS (SELECT FROM head)
		AND k.key <> ALL ($9::text[])
),
claimed AS (
	INSERT INTO resource_keys (type, key, id)
	SELECT $1::text, k.key, $2::text
	FROM unnest($9::text[]) AS k(key)
	WHERE EXISTS (SELECT FROM head)
		AND NOT EXISTS (SELECT FROM resource_keys h
			WHERE h.type = $1::text AND h.key = k.key AND h.id = $2::text)
	ORDER BY k.key
)
SELECT EXISTS (SELECT FROM head)`

// PutResource adds r as the new current version in one statement (putResourceSQL): ErrConflict
// when r.VersionID is not the current version + 1 or a key of r.Keys is held by another resource
// of the type, and then nothing of r is written.
func (t *Tx) PutResource(ctx context.Context, r *engine.Resource) error {
	if err := t.Usable(); err != nil {
		return err
	}
	if err := shared.ValidateResource(r); err != nil {
		return err
	}
	entries := sqlstore.IndexEntries(r.Index)
	n := len(entries)
	params, systems, values := make(pq.StringArray, n), make(pq.StringArray, n), make(pq.StringArray, n)
	for i, e := range entries {
		params[i], systems[i], values[i] = e.Param, e.System, e.Value
	}
	keys := make(pq.StringArray, len(r.Keys))
	for i, k := range r.Keys {
		keys[i] = storableText(k)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)

	stmt, err := t.s.prepare(ctx, putResourceSQL)
	if err != nil {
		return err
	}
	var applied bool
	err = t.tx.StmtContext(ctx, stmt).QueryRowContext(ctx, r.Type, r.ID, r.VersionID,
		r.LastUpdated.UTC().Truncate(time.Microsecond), r.JSON, params, systems, values, keys).Scan(&applied)
	if err == nil && !applied {
		err = fmt.Errorf("version %d does not follow the current one: %w", r.VersionID, engine.ErrConflict)
	}
	if err != nil {
		return t.Check(fmt.Errorf("storing %s/%s version %d: %w", r.Type, r.ID, r.VersionID, interpretError(err)))
	}
	return nil
}

// maxPrepared bounds the statements the store keeps prepared, search shapes included.
const maxPrepared = 256

// reader runs the reads of engine.ResourceReader and engine.WorklistReader on the pool (a
// Store's) or on a transaction (a Tx's, which sees its own writes).
type reader struct {
	s  *Store
	tx *sql.Tx // nil: the pool
}

// stmt returns query prepared (Store.prepare), bound to the transaction if there is one.
func (rd reader) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	stmt, err := rd.s.prepare(ctx, query)
	if err != nil || rd.tx == nil {
		return stmt, err
	}
	return rd.tx.StmtContext(ctx, stmt), nil
}

// QueryShape runs a query whose text takes one of a few shapes: prepared (Store.prepare) on the
// pool; in a transaction, prepared if the pool has prepared it already, else unprepared, because
// preparing on the pool would take a second connection. Past maxPrepared statements it prepares no
// more, whatever shapes clients send.
func (rd reader) QueryShape(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if rd.tx == nil {
		if rd.s.preparedCount() >= maxPrepared {
			return rd.query(ctx, query, args...)
		}
		stmt, err := rd.s.prepare(ctx, query)
		if err != nil {
			return nil, err
		}
		return stmt.QueryContext(ctx, args...)
	}
	rd.s.mu.Lock()
	stmt := rd.s.stmts[query]
	rd.s.mu.Unlock()
	if stmt != nil {
		return rd.tx.StmtContext(ctx, stmt).QueryContext(ctx, args...)
	}
	return rd.tx.QueryContext(ctx, query, args...)
}

// query runs a query of varying text, unprepared: PostgreSQL plans it for its arguments, which
// turns a LIKE prefix into an index range.
func (rd reader) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if rd.tx != nil {
		return rd.tx.QueryContext(ctx, query, args...)
	}
	return rd.s.db.QueryContext(ctx, query, args...)
}

// resourceByKeysSQL finds, in one statement, the current version of the resource holding the
// first of the keys $2…$9 that any resource of type $1 holds (unused slots are NULL and match
// nothing), then reads it as currentResourceSQL does.
//
// Its shape keeps the plan to primary-key probes whatever the tables' statistics say: each key is
// a scalar subquery on resource_keys (one probe, in order; OFFSET 0 keeps it from being inlined
// twice), and the first id found is an InitPlan that resources and resource_versions are probed
// with. A join of the keys with resource_keys instead can be planned as a hash join over a scan
// of the whole table when the tables were small at planning time, and a prepared statement keeps
// that plan as they grow.
//
// Eight parameters rather than one array: the planner takes an array parameter for ten elements,
// so the generic plan looks several times dearer than a custom one for the usual one or two keys
// and PostgreSQL would plan the statement at every execution (0.15–0.4 ms, several times the
// execution). With a fixed number of slots both plans cost the same and the generic one is kept.
const resourceByKeysSQL = `
SELECT r.id, v.version_id, v.last_updated, v.json,
       ARRAY(SELECT h.key FROM resource_keys h WHERE h.type = r.type AND h.id = r.id ORDER BY h.key)
FROM resources r
JOIN resource_versions v ON v.type = r.type AND v.id = r.id AND v.version_id = r.version_id
WHERE r.type = $1 AND r.id = (
	SELECT held.id
	FROM (SELECT q.ord, (SELECT k.id FROM resource_keys k WHERE k.type = $1 AND k.key = q.key) AS id
		FROM unnest(ARRAY[$2, $3, $4, $5, $6, $7, $8, $9]::text[]) WITH ORDINALITY AS q(key, ord)
		OFFSET 0) held
	WHERE held.id IS NOT NULL
	ORDER BY held.ord
	LIMIT 1)`

// resourceByKeysSlots is the number of keys resourceByKeysSQL takes; more keys take one more
// execution per eight, in order, until one finds the resource.
const resourceByKeysSlots = 8
