// Package postgres is Ferry's production store: engine.Store (the message log, FHIR resources and
// the Modality Worklist) and engine.InstanceStore (received DICOM instances) on PostgreSQL through
// github.com/lib/pq. Several Ferry nodes may share one database; everything that must be unique
// across them (a duplicate MSH-10, …) is a database constraint, never a map in one node's memory.
//
// The SQL both stores share is adapters/sqlstore's, in PostgreSQL's text through this package's
// dialect; what lives here is what was tuned and measured for PostgreSQL alone (the inbound group
// commit, a resource version in one statement, an instance in one statement, and the statements
// the dialect hands sqlstore), with the connections. The schema is in migrations/postgres and is
// applied by Migrate. Commits are durable: Open refuses a session with synchronous_commit off,
// because Ferry acknowledges a message only after its commit returns.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/ferryhealth/ferry/adapters/sqlstore"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/migrations"
)

// Store is engine.Store on PostgreSQL. It is safe for concurrent use.
type Store struct {
	db *sql.DB
	// ingest is a pool of its own for commitOneSQL, the hot path, with session settings that
	// would not suit the other queries: binary_parameters, so that a batch goes over as binary
	// arrays (no hex, no quoting, no parsing of array text), and plan_cache_mode
	// force_generic_plan, so that PostgreSQL plans the statement once per connection instead of
	// on every commit (its custom plans never lose to the generic one, whose cost it
	// overestimates). The message log's filters keep custom plans on db: a generic plan cannot
	// turn LIKE 'ORM%' into an index range. See openIngest.
	ingest *sql.DB

	// mu guards the statements prepared on first use: they name tables that exist only after
	// Migrate, and a Store may be opened before it.
	mu      sync.Mutex
	oneStmt *sql.Stmt            // commitOneSQL, on ingest
	stmts   map[string]*sql.Stmt // statements of fixed text on db, by text (see prepare)

	// Pool is adapters/sqlstore's areas (worklist, turnaround, links, outbox) on this store's pool.
	sqlstore.Pool
}

// Open connects to the database dsn names (a postgres:// URL or key=value DSN, as lib/pq takes)
// and pings it. A search_path parameter in dsn selects the schema. It fails when the session's
// synchronous_commit is off: a commit would return before it is on disk.
func Open(ctx context.Context, dsn string) (*Store, error) {
	connector, err := pq.NewConnector(dsn)
	if err != nil {
		return nil, fmt.Errorf("opening postgres: %w", err)
	}
	connector.Dialer(newDialer()) // dialer.go: a server cut off breaks the connection in seconds
	db := sql.OpenDB(connector)
	// The HTTP API's queries, the group commits that race another node (the usual ones run on the
	// ingest pool) and the workers that come later share this pool; keep enough connections idle
	// that they rarely reconnect.
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32) // as many as may be open: a connection closed for want of an idle slot is opened again, its statements prepared again
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connecting to postgres: %w", err)
	}
	var syncCommit string
	if err := db.QueryRowContext(ctx, "SHOW synchronous_commit").Scan(&syncCommit); err != nil {
		db.Close()
		return nil, fmt.Errorf("reading synchronous_commit: %w", err)
	}
	if syncCommit == "off" {
		db.Close()
		return nil, errors.New("postgres has synchronous_commit=off: a commit could be lost after Ferry ACKs it; " +
			"turn it on for this role or database, or add synchronous_commit=on to the URL")
	}
	ingest, err := openIngest(ctx, db, dsn)
	if err != nil {
		db.Close()
		return nil, err
	}
	s := &Store{db: db, ingest: ingest}
	s.Pool = sqlstore.Pool{S: shared, C: reader{s: s}, Begin: s.Begin}
	return s, nil
}

// openIngest opens Store.ingest: the same server, database and settings as dsn, plus the
// session settings that pool exists for, those of them the server has (db tells):
// plan_cache_mode (PostgreSQL 12+) and, where the server is built with lz4 (PostgreSQL 14+),
// default_toast_compression lz4, which compresses a raw message of more than about 2 KB several
// times faster than the default pglz, inside the commit. Values stored either way read the same.
func openIngest(ctx context.Context, db *sql.DB, dsn string) (*sql.DB, error) {
	cfg, err := pq.NewConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("opening postgres: %w", err)
	}
	cfg.BinaryParameters = true
	if cfg.Runtime == nil {
		cfg.Runtime = map[string]string{}
	}
	var genericPlans, lz4 bool
	err = db.QueryRowContext(ctx, `SELECT
		coalesce(bool_or(name = 'plan_cache_mode'), false),
		coalesce(bool_or(name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)), false)
		FROM pg_settings WHERE name IN ('plan_cache_mode', 'default_toast_compression')`).Scan(&genericPlans, &lz4)
	if err != nil {
		return nil, fmt.Errorf("reading server settings: %w", err)
	}
	if genericPlans {
		cfg.Runtime["plan_cache_mode"] = "force_generic_plan"
	}
	if lz4 {
		cfg.Runtime["default_toast_compression"] = "lz4"
	}
	connector, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("opening postgres: %w", err)
	}
	connector.Dialer(newDialer())
	ingest := sql.OpenDB(connector)
	// A group-commit worker holds one connection while it commits; the pool opens them as
	// workers need them, and keeps them.
	ingest.SetMaxOpenConns(16)
	ingest.SetMaxIdleConns(16)
	ingest.SetConnMaxIdleTime(5 * time.Minute)
	return ingest, nil
}

// DB returns the connection pool, for the packages that keep their own tables in this database.
// Close closes it.
func (s *Store) DB() *sql.DB { return s.db }

// Close closes the statements and the connection pool.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.oneStmt != nil {
		s.oneStmt.Close()
		s.oneStmt = nil
	}
	for query, stmt := range s.stmts {
		stmt.Close()
		delete(s.stmts, query)
	}
	s.mu.Unlock()
	return errors.Join(s.ingest.Close(), s.db.Close())
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("pinging postgres: %w", interpretError(err))
	}
	return nil
}

// CheckMaintenance reports whether PostgreSQL keeps the planner's statistics and the tables
// fresh by itself: an error naming what is off when autovacuum (or the track_counts it needs)
// is off for the server, or autovacuum_enabled is false on one of Ferry's tables. Ferry's hot
// statements are shaped to keep their plans without statistics (issue 18 item 4), but without
// autovacuum dead rows pile up and every other plan ages; the operator should know
// (docs/operations.md).
func (s *Store) CheckMaintenance(ctx context.Context) error {
	var autovacuum, trackCounts string
	var off []string
	err := s.db.QueryRowContext(ctx, `SELECT current_setting('autovacuum'), current_setting('track_counts'),
	ARRAY(SELECT c.relname FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace
		AND c.reloptions @> '{autovacuum_enabled=false}' ORDER BY c.relname)`).Scan(&autovacuum, &trackCounts, (*pq.StringArray)(&off))
	if err != nil {
		return fmt.Errorf("reading autovacuum settings: %w", interpretError(err))
	}
	switch {
	case autovacuum != "on":
		return errors.New("autovacuum is off: dead rows and stale planner statistics accumulate; turn it on, or run VACUUM ANALYZE regularly")
	case trackCounts != "on":
		return errors.New("track_counts is off, so autovacuum never runs: turn it on, or run VACUUM ANALYZE regularly")
	case len(off) > 0:
		return fmt.Errorf("autovacuum is off for %s (autovacuum_enabled = false): run VACUUM ANALYZE on them regularly, or turn it on", strings.Join(off, ", "))
	}
	return nil
}

// Migrate applies the pending migrations from migrations.Postgres to the current schema (the
// first of search_path that exists). It holds an advisory lock named after that schema while it
// runs, so nodes starting together migrate once; running it again is a no-op.
func (s *Store) Migrate(ctx context.Context) error {
	_, err := s.MigrateUp(ctx)
	return err
}

// MigrateUp is Migrate, saying what it applied.
func (s *Store) MigrateUp(ctx context.Context) (migrations.Applied, error) {
	var schema string
	if err := s.db.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return migrations.Applied{}, fmt.Errorf("reading current schema: %w", err)
	}
	h := fnv.New64a()
	h.Write([]byte("ferry migrations " + schema))
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(int64(h.Sum64())),
		lock.WithLockTimeout(1, 600), // poll every second, for up to 10 minutes
	)
	if err != nil {
		return migrations.Applied{}, fmt.Errorf("creating migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, s.db, migrations.Postgres,
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
		goose.WithLogger(goose.NopLogger()),
	)
	if err != nil {
		return migrations.Applied{}, fmt.Errorf("loading migrations: %w", err)
	}
	// Not p.Close: it would close s.db.
	results, err := p.Up(ctx)
	if err != nil {
		return migrations.Applied{}, fmt.Errorf("applying migrations to schema %s: %w", schema, err)
	}
	return migrations.Summarize(ctx, p, results)
}

// insertBatchSQL inserts a batch in one round trip, inside the transaction that CommitInbound
// runs when commitOneSQL lost a race. The batch arrives as parallel arrays, one per
// column, so the statement text is the same for every batch size and is prepared once per
// connection. It draws an ID for every message in batch order, then inserts all but the deferred
// ones (later messages of the batch with an earlier message's key, see columns.deferred), skipping
// any that collide with an accepted message on the duplicate key. It returns each message's ID
// and whether its row went in. Rows go in sorted by key, so that two transactions with
// overlapping keys wait for each other in one order and never deadlock. A message that does not
// go in becomes a duplicate (insertDuplicatesSQL), which is never pending and takes no mapping
// version or processing error.
const insertBatchSQL = `
WITH batch AS MATERIALIZED (
	SELECT nextval('inbound_messages_id_seq') AS id, b.*
	FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::bytea[], $5::text[], $6::text[],
		$7::text[], $8::text[], $9::text[], $10::text[], $11::bytea[], $12::text[], $13::text[],
		$14::bigint[], $15::bool[], $16::text[], $17::bool[], $18::text[])
		WITH ORDINALITY AS b(channel, received_at, peer_addr, raw, sending_application,
			sending_facility, message_type, control_id, version, status, ack, ack_code, error,
			duplicate_of, deferred, mapping_version, pending, processing_error, ord)
),
search_keys AS (
	-- Every message's keys, those left to insertDuplicatesSQL included: all have their ID here.
	INSERT INTO message_search_keys (kind, value, message_id)
	SELECT k.kind, k.value, b.id
	FROM unnest($19::bigint[], $20::text[], $21::text[]) AS k(ord, kind, value)
	JOIN batch b ON b.ord = k.ord
),
inserted AS (
	INSERT INTO inbound_messages (id, channel, received_at, peer_addr, raw, sending_application,
		sending_facility, message_type, control_id, version, status, ack, ack_code, error,
		duplicate_of, mapping_version, pending, processing_error)
	SELECT id, channel, received_at, peer_addr, raw, sending_application, sending_facility,
		message_type, control_id, version, status, ack, ack_code, error, nullif(duplicate_of, 0),
		mapping_version, pending, processing_error
	FROM batch
	WHERE NOT deferred
	ORDER BY sending_application, sending_facility, control_id, ord
	ON CONFLICT (sending_application, sending_facility, control_id)
		WHERE status = 'accepted' AND control_id <> '' DO NOTHING
	RETURNING id
)
SELECT batch.id, inserted.id IS NOT NULL
FROM batch LEFT JOIN inserted ON inserted.id = batch.id
ORDER BY batch.ord`

// insertDuplicatesSQL stores the messages whose key belongs to an accepted message as
// duplicates of it, with its ACK; a duplicate is not processed, so it is not pending and has no
// mapping version or processing error (the columns' defaults). Under READ COMMITTED this
// statement sees every original: those committed before the transaction, those a racing node
// committed while the batch insert waited on them, and those inserted earlier in this
// transaction.
const insertDuplicatesSQL = `
INSERT INTO inbound_messages (id, channel, received_at, peer_addr, raw, sending_application,
	sending_facility, message_type, control_id, version, status, ack, ack_code, error, duplicate_of)
SELECT d.id, d.channel, d.received_at, d.peer_addr, d.raw, d.sending_application,
	d.sending_facility, d.message_type, d.control_id, d.version, 'duplicate', o.ack, o.ack_code,
	d.error, o.id
FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::text[], $5::bytea[], $6::text[],
	$7::text[], $8::text[], $9::text[], $10::text[], $11::text[])
	AS d(id, channel, received_at, peer_addr, raw, sending_application, sending_facility,
		message_type, control_id, version, error)
JOIN inbound_messages o
	ON o.sending_application = d.sending_application
	AND o.sending_facility = d.sending_facility
	AND o.control_id = d.control_id
	AND o.status = 'accepted' AND o.control_id <> ''
RETURNING id, duplicate_of, ack, ack_code`

// commitOneSQL stores a batch in one autocommit statement, so the usual commit costs one round
// trip: the statement is its own transaction, committed (and flushed, synchronous_commit) before
// PostgreSQL answers ReadyForQuery, and on any error nothing of it is committed.
//
// It draws an ID for every message in batch order, then decides each accepted message with a
// control ID against the statement's snapshot: if an accepted message with its key is committed,
// or an earlier message of the batch has its key (the first of a batch wins), it goes in as a
// duplicate of that original, with its ACK, never pending and with no mapping version or
// processing error (a duplicate is not processed). Rows go in sorted by key, so that two
// statements with overlapping keys wait for each other in one order and never deadlock.
//
// There is no ON CONFLICT: an accepted row that collides with one committed after the snapshot
// (another node, racing on the key) fails the statement with a unique violation on
// inbound_messages_accepted_key, and CommitInbound runs the batch again as a transaction that
// sorts it out (insertBatchSQL, insertDuplicatesSQL). The final SELECT reads the decisions, not
// the INSERT: a data-modifying WITH runs to completion whether or not it is read.
const commitOneSQL = `
WITH batch AS MATERIALIZED (
	SELECT nextval('inbound_messages_id_seq') AS id, b.*,
		b.status = 'accepted' AND b.control_id <> '' AS keyed
	FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::bytea[], $5::text[], $6::text[],
		$7::text[], $8::text[], $9::text[], $10::text[], $11::bytea[], $12::text[], $13::text[],
		$14::bigint[], $15::text[], $16::bool[], $17::text[])
		WITH ORDINALITY AS b(channel, received_at, peer_addr, raw, sending_application,
			sending_facility, message_type, control_id, version, status, ack, ack_code, error,
			duplicate_of, mapping_version, pending, processing_error, ord)
),
search_keys AS (
	-- Each message's search keys (engine.SearchKeysOf), by their message's place in the batch.
	INSERT INTO message_search_keys (kind, value, message_id)
	SELECT k.kind, k.value, b.id
	FROM unnest($18::bigint[], $19::text[], $20::text[]) AS k(ord, kind, value)
	JOIN batch b ON b.ord = k.ord
),
decided AS MATERIALIZED (
	SELECT b.*,
		CASE WHEN o.id IS NOT NULL THEN o.id
			WHEN b.keyed AND first_value(b.id) OVER w <> b.id THEN first_value(b.id) OVER w
		END AS original,
		CASE WHEN o.id IS NOT NULL THEN o.ack ELSE first_value(b.ack) OVER w END AS original_ack,
		CASE WHEN o.id IS NOT NULL THEN o.ack_code ELSE first_value(b.ack_code) OVER w END
			AS original_ack_code
	FROM batch b
	LEFT JOIN LATERAL (
		SELECT o.id, o.ack, o.ack_code
		FROM inbound_messages o
		WHERE b.keyed
			AND o.sending_application = b.sending_application
			AND o.sending_facility = b.sending_facility
			AND o.control_id = b.control_id
			AND o.status = 'accepted' AND o.control_id <> ''
		LIMIT 1 -- one at most (unique); it keeps the subquery a per-message index probe
	) o ON true
	WINDOW w AS (PARTITION BY b.keyed, b.sending_application, b.sending_facility, b.control_id
		ORDER BY b.ord)
),
inserted AS (
	INSERT INTO inbound_messages (id, channel, received_at, peer_addr, raw, sending_application,
		sending_facility, message_type, control_id, version, status, ack, ack_code, error,
		duplicate_of, mapping_version, pending, processing_error)
	SELECT id, channel, received_at, peer_addr, raw, sending_application, sending_facility,
		message_type, control_id, version,
		CASE WHEN original IS NULL THEN status ELSE 'duplicate' END,
		CASE WHEN original IS NULL THEN ack ELSE original_ack END,
		CASE WHEN original IS NULL THEN ack_code ELSE original_ack_code END,
		error, coalesce(original, nullif(duplicate_of, 0)),
		CASE WHEN original IS NULL THEN mapping_version ELSE '' END,
		pending AND original IS NULL,
		CASE WHEN original IS NULL THEN processing_error ELSE '' END
	FROM decided
	ORDER BY sending_application, sending_facility, control_id, ord
)
SELECT id, coalesce(original, 0), CASE WHEN original IS NOT NULL THEN original_ack END,
	CASE WHEN original IS NOT NULL THEN original_ack_code END
FROM decided
ORDER BY ord`

// commitAttempts bounds the retries of a batch that PostgreSQL aborted to break a deadlock or a
// serialization conflict; the key order in commitOneSQL and insertBatchSQL should make them rare.
const commitAttempts = 3

// CommitInbound stores msgs as engine.MessageStore documents, atomically, and returns once the
// commit is flushed (synchronous_commit). Usually that is one statement, commitOneSQL, in one
// round trip. Only when another node commits an accepted message with a key of the batch while
// the statement runs does that statement fail (nothing of it is committed) and the batch go in
// as one READ COMMITTED transaction: insertBatchSQL, insertDuplicatesSQL for the messages that
// turned out to be duplicates, COMMIT. msgs is updated only after the commit succeeds.
//
// Header text is stored as valid UTF-8 without NULs (PostgreSQL's text takes neither): invalid
// bytes and NULs become U+FFFD, in msgs too, so that one odd header never fails a whole batch.
// Raw and ACK are kept byte for byte.
func (s *Store) CommitInbound(ctx context.Context, msgs []*engine.InboundMessage) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := shared.ValidateBatch(msgs); err != nil {
		return err
	}
	one, batchStmt, err := s.statements(ctx)
	if err != nil {
		return err
	}
	cols := columnsOf(msgs)
	results := make([]outcome, len(msgs))
	raced := false
	for attempt := 1; ; attempt++ {
		if !raced {
			err = commitOne(ctx, one, cols, results)
			if errors.Is(err, errRaced) {
				raced = true
			}
		}
		if raced {
			err = s.commitBatch(ctx, batchStmt, cols, results)
		}
		if err == nil || !errors.Is(err, errRetry) || attempt == commitAttempts {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("committing %d inbound messages: %w", len(msgs), err)
	}
	for i, m := range msgs {
		cols.applyTo(m, i, results[i])
	}
	return nil
}

// commitOne runs commitOneSQL and records each message's outcome in out. It returns an error
// wrapping errRaced when another node committed one of the batch's keys meanwhile.
func commitOne(ctx context.Context, stmt *sql.Stmt, c *columns, out []outcome) error {
	p := newBinaryParams(20, len(c.status), c.dataSize())
	rows, err := stmt.QueryContext(ctx,
		p.texts(c.channel), p.timestamps(c.receivedAt), p.texts(c.peerAddr), p.byteas(c.raw),
		p.texts(c.app), p.texts(c.facility), p.texts(c.msgType), p.texts(c.controlID),
		p.texts(c.version), p.texts(c.status), p.byteas(c.ack), p.texts(c.ackCode),
		p.texts(c.errText), p.int64s(c.duplicateOf), p.texts(c.mappingVersion), p.bools(c.pending),
		p.texts(c.processingError), p.int64s(c.keyOrd), p.texts(c.keyKind), p.texts(c.keyValue))
	// The statement has been sent (lib/pq copies the arguments into its own buffer).
	p.release()
	if err != nil {
		return fmt.Errorf("inserting batch: %w", interpretError(err))
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var (
			o       outcome
			ackCode sql.NullString
		)
		if err := rows.Scan(&o.id, &o.duplicateOf, &o.ack, &ackCode); err != nil {
			return fmt.Errorf("inserting batch: %w", interpretError(err))
		}
		o.ackCode = ackCode.String
		if n < len(out) {
			out[n] = o
		}
		n++
	}
	// Next reports the end only after ReadyForQuery, that is after the commit: an error of the
	// commit itself (or a connection lost before it answered) is in rows.Err.
	if err := rows.Err(); err != nil {
		return fmt.Errorf("inserting batch: %w", interpretError(err))
	}
	if n != len(out) {
		return fmt.Errorf("inserting batch: %d rows returned for %d messages", n, len(out))
	}
	return nil
}

// columns is a batch as parallel arrays, one per column, header text already made storable.
// commitOne sends them as binary arrays (binaryParams); the transaction that sorts out a race
// sends them as pq arrays (text), with deferred.
type columns struct {
	channel, peerAddr                          pq.StringArray
	receivedAt                                 []time.Time
	app, facility, msgType, controlID, version pq.StringArray // MSH-3, -4, -9, -10, -12
	status, ackCode, errText                   pq.StringArray
	raw, ack                                   pq.ByteaArray
	duplicateOf                                pq.Int64Array
	mappingVersion, processingError            pq.StringArray
	// pending is set only for accepted messages: nothing else waits for processing.
	pending pq.BoolArray
	// The batch's search keys, one element per key: its message's place in the batch (from
	// 1, as WITH ORDINALITY counts), kind and value.
	keyOrd            pq.Int64Array
	keyKind, keyValue pq.StringArray
}

func columnsOf(msgs []*engine.InboundMessage) *columns {
	n := len(msgs)
	c := &columns{
		channel: make([]string, n), receivedAt: make([]time.Time, n), peerAddr: make([]string, n),
		app: make([]string, n), facility: make([]string, n), msgType: make([]string, n),
		controlID: make([]string, n), version: make([]string, n), status: make([]string, n),
		ackCode: make([]string, n), errText: make([]string, n),
		raw: make([][]byte, n), ack: make([][]byte, n), duplicateOf: make([]int64, n),
		mappingVersion: make([]string, n), pending: make([]bool, n), processingError: make([]string, n),
	}
	keys := 0
	for _, m := range msgs {
		keys += len(m.SearchKeys)
	}
	c.keyOrd, c.keyKind, c.keyValue = make([]int64, 0, keys), make([]string, 0, keys), make([]string, 0, keys)
	for i, m := range msgs {
		c.channel[i] = storableText(m.Channel)
		c.receivedAt[i] = m.ReceivedAt
		c.peerAddr[i] = storableText(m.PeerAddr)
		c.raw[i] = sqlstore.NonNil(m.Raw)
		c.app[i] = storableText(m.SendingApplication)
		c.facility[i] = storableText(m.SendingFacility)
		c.msgType[i] = storableText(m.MessageType)
		c.controlID[i] = storableText(m.ControlID)
		c.version[i] = storableText(m.Version)
		c.status[i] = string(m.Status)
		c.ack[i] = sqlstore.NonNil(m.ACK)
		c.ackCode[i] = storableText(m.ACKCode)
		c.errText[i] = storableText(m.Error)
		c.duplicateOf[i] = m.DuplicateOf
		c.mappingVersion[i] = storableText(m.MappingVersion)
		c.pending[i] = m.Pending && m.Status == engine.StatusAccepted
		c.processingError[i] = storableText(m.ProcessingError)
		for _, k := range m.SearchKeys {
			c.keyOrd = append(c.keyOrd, int64(i+1))
			c.keyKind = append(c.keyKind, string(k.Kind))
			c.keyValue = append(c.keyValue, storableText(k.Value))
		}
	}
	return c
}

// dataSize is the bytes of the batch's values, as binaryParams encodes them.
func (c *columns) dataSize() int {
	size := 17 * len(c.status) // received_at, duplicate_of, pending
	size += 12 * len(c.keyOrd) // key_ord, and kind and value's lengths
	for _, col := range [][]string{c.channel, c.peerAddr, c.app, c.facility, c.msgType, c.controlID,
		c.version, c.status, c.ackCode, c.errText, c.mappingVersion, c.processingError, c.keyKind, c.keyValue} {
		for _, v := range col {
			size += len(v)
		}
	}
	for i := range c.raw {
		size += len(c.raw[i]) + len(c.ack[i])
	}
	return size
}

// receivedAtText returns receivedAt as text for a timestamptz array.
func (c *columns) receivedAtText() pq.StringArray {
	out := make(pq.StringArray, len(c.receivedAt))
	for i, t := range c.receivedAt {
		out[i] = t.UTC().Format(timestampLayout)
	}
	return out
}

// deferred marks, for insertBatchSQL, the later accepted messages of the batch with the key of an
// earlier one: the first of a batch wins, whatever order rows go in, and the later ones are
// left to insertDuplicatesSQL.
func (c *columns) deferred() pq.BoolArray {
	out := make(pq.BoolArray, len(c.status))
	seen := make(map[dupKey]bool, len(c.status))
	for i, status := range c.status {
		if status == string(engine.StatusAccepted) && c.controlID[i] != "" {
			k := dupKey{c.app[i], c.facility[i], c.controlID[i]}
			out[i] = seen[k]
			seen[k] = true
		}
	}
	return out
}

// applyTo updates message i of the batch to what was committed.
func (c *columns) applyTo(m *engine.InboundMessage, i int, o outcome) {
	m.ID = o.id
	m.Channel, m.PeerAddr, m.Error = c.channel[i], c.peerAddr[i], c.errText[i]
	m.SendingApplication, m.SendingFacility, m.ControlID = c.app[i], c.facility[i], c.controlID[i]
	m.MessageType, m.Version, m.ACKCode = c.msgType[i], c.version[i], c.ackCode[i]
	m.MappingVersion, m.Pending, m.ProcessingError = c.mappingVersion[i], c.pending[i], c.processingError[i]
	if o.duplicateOf != 0 {
		m.Status, m.DuplicateOf, m.ACK, m.ACKCode = engine.StatusDuplicate, o.duplicateOf, o.ack, o.ackCode
		// A duplicate is not processed again.
		m.MappingVersion, m.Pending, m.ProcessingError = "", false, ""
	}
}

// outcome is what the transaction made of one message.
type outcome struct {
	id          int64
	duplicateOf int64 // non-zero when the store made the message a duplicate of this original
	ack         []byte
	ackCode     string
}

// commitBatch stores the batch c in a transaction of its own (insertBatch), after commitOneSQL
// lost a race.
func (s *Store) commitBatch(ctx context.Context, stmt *sql.Stmt, c *columns, out []outcome) (err error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return interpretError(err)
	}
	if err := insertBatch(ctx, tx, stmt, c, out); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", interpretError(err))
	}
	return nil
}

// insertBatch inserts the batch c inside tx, a READ COMMITTED transaction, with the duplicate
// rule, and records each message's outcome in out: insertBatchSQL (stmt), then, for the messages
// whose key an accepted message holds, insertDuplicatesSQL. It is how CommitInbound stores a batch
// after a race and how Tx.InsertInbound stores its message: one piece of code for the rule inside
// a transaction. A racing transaction that holds a key makes the insert wait for it; if it commits,
// the message becomes its duplicate.
func insertBatch(ctx context.Context, tx *sql.Tx, stmt *sql.Stmt, c *columns, out []outcome) error {
	receivedAt := c.receivedAtText()
	rows, err := tx.StmtContext(ctx, stmt).QueryContext(ctx,
		c.channel, receivedAt, c.peerAddr, c.raw, c.app, c.facility, c.msgType, c.controlID,
		c.version, c.status, c.ack, c.ackCode, c.errText, c.duplicateOf, c.deferred(),
		c.mappingVersion, c.pending, c.processingError, c.keyOrd, c.keyKind, c.keyValue)
	if err != nil {
		return fmt.Errorf("inserting batch: %w", interpretError(err))
	}
	var pending []int // messages not inserted: their key belongs to an accepted message
	n := 0
	for rows.Next() {
		var (
			id       int64
			inserted bool
		)
		if err := rows.Scan(&id, &inserted); err != nil {
			rows.Close()
			return fmt.Errorf("inserting batch: %w", interpretError(err))
		}
		if n < len(out) {
			out[n] = outcome{id: id}
		}
		if !inserted {
			pending = append(pending, n)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("inserting batch: %w", interpretError(err))
	}
	if n != len(out) {
		return fmt.Errorf("inserting batch: %d rows returned for %d messages", n, len(out))
	}
	if len(pending) > 0 {
		if err := insertDuplicates(ctx, tx, c, receivedAt, pending, out); err != nil {
			return err
		}
	}
	return nil
}

// insertDuplicates runs insertDuplicatesSQL for the messages at pending and records each one's
// original and ACK in out.
func insertDuplicates(ctx context.Context, tx *sql.Tx, c *columns, receivedAt pq.StringArray, pending []int, out []outcome) error {
	n := len(pending)
	pick := func(col []string) pq.StringArray {
		picked := make([]string, n)
		for j, i := range pending {
			picked[j] = col[i]
		}
		return picked
	}
	ids := make(pq.Int64Array, n)
	raw := make(pq.ByteaArray, n)
	byID := make(map[int64]int, n)
	for j, i := range pending {
		ids[j], raw[j] = out[i].id, c.raw[i]
		byID[out[i].id] = i
	}
	rows, err := tx.QueryContext(ctx, insertDuplicatesSQL, ids, pick(c.channel), pick(receivedAt),
		pick(c.peerAddr), raw, pick(c.app), pick(c.facility), pick(c.msgType), pick(c.controlID),
		pick(c.version), pick(c.errText))
	if err != nil {
		return fmt.Errorf("inserting duplicates: %w", interpretError(err))
	}
	defer rows.Close()
	found := 0
	for rows.Next() {
		var o outcome
		if err := rows.Scan(&o.id, &o.duplicateOf, &o.ack, &o.ackCode); err != nil {
			return fmt.Errorf("inserting duplicates: %w", interpretError(err))
		}
		i, ok := byID[o.id]
		if !ok {
			return fmt.Errorf("inserting duplicates: unexpected row %d returned", o.id)
		}
		out[i] = o
		found++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("inserting duplicates: %w", interpretError(err))
	}
	if found != n {
		// Only a change to an accepted row between the two statements can cause this: retry.
		return fmt.Errorf("inserting duplicates: %d of %d originals not found: %w", n-found, n, errRetry)
	}
	return nil
}

// statements returns commitOneSQL (on the ingest pool) and insertBatchSQL prepared, preparing
// them on first use.
// database/sql prepares each again on each connection that runs it, once.
func (s *Store) statements(ctx context.Context) (one, batch *sql.Stmt, err error) {
	s.mu.Lock()
	if s.oneStmt == nil {
		if s.oneStmt, err = s.ingest.PrepareContext(ctx, commitOneSQL); err != nil {
			s.oneStmt = nil
			s.mu.Unlock()
			return nil, nil, fmt.Errorf("preparing batch statement: %w", interpretError(err))
		}
	}
	one = s.oneStmt
	s.mu.Unlock()
	if batch, err = s.prepare(ctx, insertBatchSQL); err != nil {
		return nil, nil, err
	}
	return one, batch, nil
}

// prepare returns query prepared on the main pool, preparing it on first use. It serves the
// statements of fixed text that run often: a prepared statement costs one round trip, where lib/pq
// (without binary_parameters) spends two on a query with arguments, one to parse it and one to run
// it. database/sql prepares it again, once, on each connection that runs it, a transaction's
// included (Tx.StmtContext).
func (s *Store) prepare(ctx context.Context, query string) (*sql.Stmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if stmt := s.stmts[query]; stmt != nil {
		return stmt, nil
	}
	stmt, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("preparing statement: %w", interpretError(err))
	}
	if s.stmts == nil {
		s.stmts = map[string]*sql.Stmt{}
	}
	s.stmts[query] = stmt
	return stmt, nil
}

// preparedCount is how many statements the store keeps prepared.
func (s *Store) preparedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.stmts)
}

// errRetry marks an error after which the whole transaction may be tried again.
var errRetry = errors.New("transaction aborted by a concurrent one")

// errRaced marks a commitOneSQL that failed because another transaction committed an accepted
// message with one of the batch's keys after the statement's snapshot.
var errRaced = errors.New("an accepted message with the same key was committed concurrently")

// interpretError maps driver errors to the sentinels callers test with errors.Is: no rows to
// engine.ErrNotFound; deadlocks and serialization failures to errRetry and engine.ErrConflict (a
// concurrent transaction got in the way: a batch is retried, a Tx's message answered AE so that
// its sender retries); a unique violation on the duplicate key to errRaced; one on a resource's
// version or key (another transaction wrote that version, or holds that key), or on a report
// version's delivery to a destination, to engine.ErrConflict.
// Others pass unchanged.
func interpretError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return engine.ErrNotFound
	case pq.As(err, pqerror.TRDeadlockDetected, pqerror.TRSerializationFailure) != nil:
		return fmt.Errorf("%w: %w: %w", errRetry, engine.ErrConflict, err)
	}
	if pe := pq.As(err, pqerror.UniqueViolation); pe != nil {
		switch pe.Constraint {
		case "inbound_messages_accepted_key":
			return fmt.Errorf("%w: %w", errRaced, err)
		case "resource_versions_pkey", "resources_pkey", "resource_keys_pkey", "deliveries_report_destination_key":
			return fmt.Errorf("%w: %w", engine.ErrConflict, err)
		}
	}
	return err
}

// dupKey is the duplicate rule's key: MSH-3, MSH-4, MSH-10.
type dupKey struct{ application, facility, controlID string }

// timestampLayout writes a time for a timestamptz array, truncated to PostgreSQL's microseconds.
const timestampLayout = "2006-01-02 15:04:05.999999Z07:00"

// storableText returns s as PostgreSQL's text can hold it: valid UTF-8 without NULs, each
// invalid byte or NUL replaced by U+FFFD. Header fields come from outside bytes; an odd one must
// not fail the batch it is in. The raw message keeps the original bytes.
func storableText(s string) string { return engine.StorableText(s) }

// escapeLike escapes LIKE's wildcards so that s matches only itself.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}
