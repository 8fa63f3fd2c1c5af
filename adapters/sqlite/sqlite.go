// Package sqlite is Ferry's embedded store: engine.Store (the message log, FHIR resources and the
// Modality Worklist) and engine.InstanceStore (received DICOM instances) in one SQLite file
// through modernc.org/sqlite (pure Go, no cgo). It serves a single node; the same engine code runs
// on it and on adapters/postgres.
//
// The database runs in WAL mode with synchronous=FULL, so a commit returns only after the WAL is
// fsynced: Ferry acknowledges a message only after that. Writes go through one connection, so
// group commits queue in Go instead of contending for SQLite's lock; reads use a pool of
// read-only connections, which WAL lets run beside the writer. The SQL both stores share is
// adapters/sqlstore's, through this package's dialect; what lives here is written for SQLite's one
// writer (the inbound group commit, a resource version, an instance) and the statements the
// dialect hands sqlstore. The schema is in migrations/sqlite and is applied by Migrate.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/pressly/goose/v3"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/ferryhealth/ferry/adapters/sqlstore"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/migrations"
)

// Store is engine.Store on SQLite. It is safe for concurrent use.
type Store struct {
	writer *sql.DB // one connection: every write, in turn
	reader *sql.DB // read-only connections for queries

	// mu guards the statements prepared on first use: they name tables that exist only after
	// Migrate, and a Store may be opened before it.
	mu    sync.Mutex
	stmts map[stmtKey]*sql.Stmt

	// Pool is adapters/sqlstore's areas (worklist, turnaround, links, outbox) on this store's
	// pools: reads on the read-only pool, the outbox's updates on the writer.
	sqlstore.Pool
}

// stmtKey names a prepared statement: its text and the pool it is prepared on.
type stmtKey struct {
	db    *sql.DB
	query string
}

// busyTimeoutMillis is how long a connection waits for another process's lock (a `ferry migrate`
// beside `ferry serve`, a backup) before it gives up with SQLITE_BUSY.
const busyTimeoutMillis = 10000

// Open opens, or creates, the database file at path (e.g. ./ferry-data/ferry.db), creating its
// directory if needed, and checks that it answers. Call Migrate before use.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("sqlite path %q: want a file path without ? or #", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("creating sqlite directory: %w", err)
	}
	// The file holds patient data: readable by Ferry's user only. SQLite gives the -wal and -shm
	// files the main file's mode. An existing file keeps the mode it has.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating sqlite file: %w", err)
	}
	f.Close()
	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)", busyTimeoutMillis)
	// IMMEDIATE: a transaction takes the write lock at BEGIN, so it never fails half-way for
	// want of upgrading a read lock. FULL: the WAL is fsynced at every commit.
	writer, err := sql.Open("sqlite", path+"?"+common+
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("opening sqlite %s: %w", path, err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)
	if err := checkWriter(ctx, writer); err != nil {
		writer.Close()
		return nil, fmt.Errorf("opening sqlite %s: %w", path, err)
	}
	// The writer has created the file and switched it to WAL (a setting the file keeps), so the
	// readers open it as it is.
	reader, err := sql.Open("sqlite", path+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("opening sqlite %s: %w", path, err)
	}
	reader.SetMaxOpenConns(max(4, runtime.GOMAXPROCS(0)))
	reader.SetMaxIdleConns(max(4, runtime.GOMAXPROCS(0)))
	if err := reader.PingContext(ctx); err != nil {
		writer.Close()
		reader.Close()
		return nil, fmt.Errorf("opening sqlite %s: %w", path, interpretError(err))
	}
	s := &Store{writer: writer, reader: reader}
	s.Pool = sqlstore.Pool{S: shared, C: readerOf(s), Begin: s.Begin}
	return s, nil
}

// checkWriter confirms the durability settings took: an unsupported file system can leave
// journal_mode as it was without an error.
func checkWriter(ctx context.Context, db *sql.DB) error {
	var mode string
	var sync int
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return interpretError(err)
	}
	if err := db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
		return interpretError(err)
	}
	if !strings.EqualFold(mode, "wal") || sync != 2 {
		return fmt.Errorf("journal_mode=%s synchronous=%d, want wal and 2 (FULL)", mode, sync)
	}
	return nil
}

// DB returns the single write connection, for packages that keep their own tables in this
// database. Everything run on it waits for, and holds up, the inbound group commits: keep its
// transactions short and read through ReadDB. Close closes it.
func (s *Store) DB() *sql.DB { return s.writer }

// ReadDB returns the read-only connection pool, for queries that should not wait for writes.
// Close closes it.
func (s *Store) ReadDB() *sql.DB { return s.reader }

// Close closes the statements and both connection pools.
func (s *Store) Close() error {
	s.mu.Lock()
	for key, st := range s.stmts {
		st.Close()
		delete(s.stmts, key)
	}
	s.mu.Unlock()
	return errors.Join(s.writer.Close(), s.reader.Close())
}

// Ping reports whether both pools answer.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.writer.PingContext(ctx); err != nil {
		return fmt.Errorf("pinging sqlite writer: %w", interpretError(err))
	}
	if err := s.reader.PingContext(ctx); err != nil {
		return fmt.Errorf("pinging sqlite readers: %w", interpretError(err))
	}
	return nil
}

// Migrate applies the pending migrations from migrations.SQLite. Running it again is a no-op.
func (s *Store) Migrate(ctx context.Context) error {
	_, err := s.MigrateUp(ctx)
	return err
}

// MigrateUp is Migrate, saying what it applied.
func (s *Store) MigrateUp(ctx context.Context) (migrations.Applied, error) {
	p, err := goose.NewProvider(goose.DialectSQLite3, s.writer, migrations.SQLite,
		goose.WithDisableGlobalRegistry(true),
		goose.WithLogger(goose.NopLogger()),
	)
	if err != nil {
		return migrations.Applied{}, fmt.Errorf("loading migrations: %w", err)
	}
	// Not p.Close: it would close s.writer.
	results, err := p.Up(ctx)
	if err != nil {
		return migrations.Applied{}, fmt.Errorf("applying migrations: %w", err)
	}
	return migrations.Summarize(ctx, p, results)
}

// insertSQL inserts one message, or nothing when it is accepted and an accepted message already
// has its key (the partial unique index): then it returns no row.
const insertSQL = `
INSERT INTO inbound_messages (channel, received_at, peer_addr, raw, sending_application,
	sending_facility, message_type, control_id, version, status, ack, ack_code, error, duplicate_of,
	mapping_version, pending, processing_error)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, nullif(?, 0), ?, ?, ?)
ON CONFLICT (sending_application, sending_facility, control_id)
	WHERE status = 'accepted' AND control_id <> '' DO NOTHING
RETURNING id`

// findAcceptedSQL finds the accepted message that holds a duplicate key.
const findAcceptedSQL = `
SELECT id, ack, ack_code FROM inbound_messages
WHERE sending_application = ? AND sending_facility = ? AND control_id = ?
	AND status = 'accepted' AND control_id <> ''`

// insertKeySQL indexes one of a message's search keys (engine.SearchKeysOf). A key already there
// (the backfill met a message the intake keyed) is left as it is.
const insertKeySQL = `
INSERT INTO message_search_keys (kind, value, message_id) VALUES (?, ?, ?)
ON CONFLICT DO NOTHING`

// inserter is the statements that store a message, bound to one transaction.
type inserter struct {
	insert, findAccepted, insertKey *sql.Stmt
}

// CommitInbound stores msgs in one transaction, as engine.MessageStore documents, and returns
// after the commit is fsynced. Messages go in batch order, so the first of a batch with a key
// wins and later ones see it. msgs is updated only after the commit succeeds.
//
// Header text is stored as valid UTF-8 without NULs, as adapters/postgres must store it: invalid
// bytes and NULs become U+FFFD, in msgs too, so both stores keep and match the same keys. Raw
// and ACK are kept byte for byte.
func (s *Store) CommitInbound(ctx context.Context, msgs []*engine.InboundMessage) (err error) {
	if len(msgs) == 0 {
		return nil
	}
	if err := shared.ValidateBatch(msgs); err != nil {
		return err
	}
	insert, findAccepted, insertKey, err := s.statements(ctx)
	if err != nil {
		return err
	}
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("committing %d inbound messages: %w", len(msgs), interpretError(err))
	}
	defer func() {
		if err != nil {
			tx.Rollback()
			err = fmt.Errorf("committing %d inbound messages: %w", len(msgs), err)
		}
	}()
	ins := inserter{tx.StmtContext(ctx, insert), tx.StmtContext(ctx, findAccepted), tx.StmtContext(ctx, insertKey)}

	stored := make([]engine.InboundMessage, len(msgs))
	for i, m := range msgs {
		stored[i] = storableMessage(m)
		if err := ins.message(ctx, &stored[i]); err != nil {
			return fmt.Errorf("inserting message %d of the batch: %w", i, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", interpretError(err))
	}
	for i, m := range msgs {
		applyStored(m, &stored[i])
	}
	return nil
}

// storableMessage returns a copy of m with its header text as the store keeps it (storableText)
// and its byte fields never nil. Pending stays set only on an accepted message: nothing else
// waits for processing.
func storableMessage(m *engine.InboundMessage) engine.InboundMessage {
	r := *m
	r.Channel = storableText(m.Channel)
	r.PeerAddr = storableText(m.PeerAddr)
	r.Raw = sqlstore.NonNil(m.Raw)
	r.SendingApplication = storableText(m.SendingApplication)
	r.SendingFacility = storableText(m.SendingFacility)
	r.MessageType = storableText(m.MessageType)
	r.ControlID = storableText(m.ControlID)
	r.Version = storableText(m.Version)
	r.ACK = sqlstore.NonNil(m.ACK)
	r.ACKCode = storableText(m.ACKCode)
	r.Error = storableText(m.Error)
	r.MappingVersion = storableText(m.MappingVersion)
	r.Pending = m.Pending && m.Status == engine.StatusAccepted
	r.ProcessingError = storableText(m.ProcessingError)
	return r
}

// message inserts r (storableMessage) with the duplicate rule, and its search keys, inside the
// transaction the statements are bound to, and sets r.ID, and r's duplicate fields when it is
// one. CommitInbound and Tx.InsertInbound both store messages through it.
func (ins inserter) message(ctx context.Context, r *engine.InboundMessage) error {
	err := insertRow(ctx, ins.insert, r)
	if errors.Is(err, sql.ErrNoRows) {
		// An accepted message has this key: store this one as its duplicate.
		err = ins.findAccepted.QueryRowContext(ctx, r.SendingApplication, r.SendingFacility, r.ControlID).
			Scan(&r.DuplicateOf, &r.ACK, &r.ACKCode)
		if err != nil {
			return fmt.Errorf("finding the original of a duplicate: %w", interpretError(err))
		}
		r.Status = engine.StatusDuplicate
		// A duplicate is not processed again: no mapping version, never pending.
		r.MappingVersion, r.Pending, r.ProcessingError = "", false, ""
		err = insertRow(ctx, ins.insert, r)
	}
	if err != nil {
		return interpretError(err)
	}
	return ins.keys(ctx, r.ID, r.SearchKeys)
}

// keys indexes the search keys of message id.
func (ins inserter) keys(ctx context.Context, id int64, keys []engine.SearchKey) error {
	for _, k := range keys {
		if _, err := ins.insertKey.ExecContext(ctx, string(k.Kind), storableText(k.Value), id); err != nil {
			return fmt.Errorf("indexing a search key: %w", interpretError(err))
		}
	}
	return nil
}

// applyStored updates m to what was stored of it (stored, from storableMessage), keeping m's raw
// bytes.
func applyStored(m, stored *engine.InboundMessage) {
	raw := m.Raw
	*m = *stored
	m.Raw = raw
	if len(m.ACK) == 0 {
		m.ACK = nil
	}
}

func insertRow(ctx context.Context, insert *sql.Stmt, m *engine.InboundMessage) error {
	return insert.QueryRowContext(ctx, m.Channel, m.ReceivedAt.UnixNano(), m.PeerAddr, m.Raw,
		m.SendingApplication, m.SendingFacility, m.MessageType, m.ControlID, m.Version,
		string(m.Status), m.ACK, m.ACKCode, m.Error, m.DuplicateOf, m.MappingVersion, m.Pending,
		m.ProcessingError).Scan(&m.ID)
}

// statements returns the write statements, preparing them on first use on the writer
// connection (never inside a transaction: the writer has only the one connection).
func (s *Store) statements(ctx context.Context) (insert, findAccepted, insertKey *sql.Stmt, err error) {
	if insert, err = s.prepare(ctx, s.writer, insertSQL); err != nil {
		return nil, nil, nil, err
	}
	if findAccepted, err = s.prepare(ctx, s.writer, findAcceptedSQL); err != nil {
		return nil, nil, nil, err
	}
	if insertKey, err = s.prepare(ctx, s.writer, insertKeySQL); err != nil {
		return nil, nil, nil, err
	}
	return insert, findAccepted, insertKey, nil
}

// prepare returns query prepared on db, preparing it on first use; database/sql prepares it again,
// once, on each connection of db that runs it. On the writer it must not be called while a
// transaction of the same goroutine holds the writer's one connection: it would wait for it
// forever. Begin prepares every statement a Tx runs before it begins (txStatements). The cache's
// lock is not held while preparing: a prepare on the writer waits for the transaction in
// progress, which must meanwhile be able to find its own statements (prepared).
func (s *Store) prepare(ctx context.Context, db *sql.DB, query string) (*sql.Stmt, error) {
	key := stmtKey{db, query}
	s.mu.Lock()
	stmt := s.stmts[key]
	s.mu.Unlock()
	if stmt != nil {
		return stmt, nil
	}
	stmt, err := db.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("preparing statement: %w", interpretError(err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev := s.stmts[key]; prev != nil { // prepared meanwhile by another caller
		stmt.Close()
		return prev, nil
	}
	if s.stmts == nil {
		s.stmts = map[stmtKey]*sql.Stmt{}
	}
	s.stmts[key] = stmt
	return stmt, nil
}

// prepared returns query if prepare has prepared it on db, else an error: for a Tx, whose
// statements Begin has prepared.
func (s *Store) prepared(db *sql.DB, query string) (*sql.Stmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if stmt := s.stmts[stmtKey{db, query}]; stmt != nil {
		return stmt, nil
	}
	return nil, errors.New("statement not prepared before the transaction began")
}

// interpretError maps driver errors to the sentinels callers test with errors.Is: no rows to
// engine.ErrNotFound; a primary key or unique violation to engine.ErrConflict (inbound messages
// never raise one: their duplicate key is ON CONFLICT DO NOTHING; a resource's version or key
// does). Others pass unchanged; SQLITE_BUSY (another process held the lock past the busy timeout)
// is named as such.
func interpretError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return engine.ErrNotFound
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch code := se.Code(); {
		case code&0xff == sqlite3.SQLITE_BUSY:
			return fmt.Errorf("database locked by another process for over %dms: %w", busyTimeoutMillis, err)
		case code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, code == sqlite3.SQLITE_CONSTRAINT_UNIQUE:
			return fmt.Errorf("%w: %w", engine.ErrConflict, err)
		}
	}
	return err
}

// Both stores accept, store and filter alike: their checks and text rules are adapters/sqlstore's
// (ValidateBatch, ValidateResource, IndexText, Limit, NonNil) and engine's (StorableText).

// storableText returns s as valid UTF-8 without NULs, each invalid byte or NUL replaced by
// U+FFFD: what adapters/postgres can store in text, so keys compare alike in both stores. The
// raw message keeps the original bytes.
func storableText(s string) string { return engine.StorableText(s) }
