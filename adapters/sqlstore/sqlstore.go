// Package sqlstore is the SQL Ferry's two stores share, written once: adapters/postgres
// (production) and adapters/sqlite (embedded) each supply a Dialect, for what their engines spell
// differently, and a Conn, for how they prepare and where they run a statement (a pool, the
// writer, a transaction); the areas here hold the statements and the code that runs them and reads
// their rows: the message log's reads and pending processing, resources and their search, DICOM
// instances and studies, the worklist, the turnaround clocks, study links, the outbox, and the
// transaction's plumbing (Tx). A store's own package keeps only what it tunes for its engine and
// has measured — the inbound group commit, writing a resource version, storing an instance — with
// its connections and migrations; a tuned statement the shared code runs comes from the dialect.
//
// Statements are written with ? placeholders and rebound once, in New, to the dialect's; a query
// built per call (a filter's shape) asks the dialect for each placeholder, adding its arguments in
// the order their placeholders stand in the text.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ferryhealth/ferry/engine"
)

// Dialect is what one SQL engine spells its own way. Its methods are called on every statement a
// shared area runs, so they must be cheap and safe for concurrent use.
type Dialect interface {
	// Placeholder returns the text of the n-th parameter of a statement (1-based): $n on
	// PostgreSQL, ? on SQLite.
	Placeholder(n int) string
	// InterpretError maps a driver error to the sentinels callers test with errors.Is
	// (engine.ErrNotFound for sql.ErrNoRows, engine.ErrConflict for a unique violation the
	// engine answers, the store's own retry sentinels); others pass unchanged.
	InterpretError(err error) error
	// Time returns t as the dialect's time columns hold it, and NULL or its "not set" value for
	// the zero time; an error when the column cannot hold t.
	Time(t time.Time) (any, error)
	// TimeOrNull returns an expression of column that is NULL where the column holds no time
	// (its "not set" value), the time otherwise.
	TimeOrNull(column string) string
	// TimeNone returns the literal a time column holds for no time: NULL, 0.
	TimeNone() string
	// TimeUnset returns a condition true where column holds no time. It is written as the
	// dialect's partial indexes are, so that a query with it can use them.
	TimeUnset(column string) string
	// TimeSet returns a condition true where column holds a time, as the partial indexes write it.
	TimeSet(column string) string

	// List returns values as one parameter: a text[] on PostgreSQL, a JSON array on SQLite.
	List(values []string) any
	// InList returns a condition true where column equals an element of the List parameter
	// placeholder.
	InList(column, placeholder string) string
	// ListHas returns a condition true where the list column (text[], a JSON array) holds the
	// text parameter placeholder.
	ListHas(column, placeholder string) string
	// ListScanner returns a Scan destination that reads a list column into dest.
	ListScanner(dest *[]string) any
	// ListOf returns an expression that collects the rows of subquery, one column named value,
	// into a list column, in the subquery's order.
	ListOf(subquery string) string

	// Prefix returns a condition true where column starts with prefix, byte for byte: case
	// sensitive, no wildcards (% and _ are themselves). arg adds a parameter and returns its
	// placeholder. The condition must be answerable as a range of a btree on column.
	Prefix(column, prefix string, arg func(any) string) string
	// Contains returns a condition true where the bytes of the blob column contain the blob
	// parameter placeholder, byte for byte.
	Contains(column, placeholder string) string
	// SearchOrder returns the expression SearchResources orders a page by, newest first:
	// r.last_updated, or a form of it that keeps the planner from walking the ordered index
	// when filters narrow the search (filtered).
	SearchOrder(filtered bool) string
	// ResourceByKeys returns the dialect's statement for Store.ResourceByKeys.
	ResourceByKeys() ResourceByKeysStatement
	// ClaimPendingSQL returns the statement that reads up to its one parameter pending messages
	// (MessageColumns), oldest first, so that no other transaction claims them until the one
	// that runs it ends.
	ClaimPendingSQL() string
}

// Conn runs a shared area's statements where the store says: on a pool, or inside a transaction
// (which sees its own writes). Errors are the driver's; the area interprets them (Dialect).
type Conn interface {
	// Exec runs a statement of fixed text (one of Store's), prepared as the store prepares its
	// statements. Outside a transaction it runs, and commits, on the store's writing pool.
	Exec(ctx context.Context, query string, args ...any) (sql.Result, error)
	// Query runs a query of fixed text, prepared. Outside a transaction it runs on the store's
	// reading pool; a statement that writes (INSERT … RETURNING) is run only in a transaction.
	Query(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	// QueryShape runs a query whose text takes one of a few shapes (a filter's): prepared once per
	// shape where the store can prepare without taking a second connection.
	QueryShape(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	// QueryOnce runs a query of varying text unprepared, so that PostgreSQL plans it for its
	// arguments (a LIKE prefix, a date range, a list's length).
	QueryOnce(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// Store holds the shared areas' statements in one dialect's text. It is safe for concurrent use.
type Store struct {
	d Dialect
	worklistStatements
	turnaroundStatements
	linkStatements
	outboxStatements
	instanceStatements
	resourceStatements
	messageStatements
	peopleStatements
	auditStatements
	accessStatements
	errorQueueStatements
	mappingRevisionStatements
	criticalStatements
}

// New returns the shared areas in d's text.
func New(d Dialect) *Store {
	s := &Store{d: d}
	s.worklistStatements = newWorklistStatements(s.rebind)
	s.turnaroundStatements = newTurnaroundStatements(s.rebind, d)
	s.linkStatements = newLinkStatements(s.rebind, d)
	s.outboxStatements = newOutboxStatements(s.rebind, d)
	s.instanceStatements = newInstanceStatements(s.rebind)
	s.resourceStatements = newResourceStatements(s.rebind, d)
	s.messageStatements = newMessageStatements(s.rebind, d)
	s.peopleStatements = newPeopleStatements(s.rebind, d)
	s.auditStatements = newAuditStatements(s.rebind)
	s.accessStatements = newAccessStatements(s.rebind, s.d)
	s.errorQueueStatements = newErrorQueueStatements(s.rebind)
	s.mappingRevisionStatements = newMappingRevisionStatements(s.rebind)
	s.criticalStatements = newCriticalStatements(s.rebind, d)
	return s
}

// TxStatements are the fixed statements the shared areas run in a transaction, for a store whose
// Begin prepares every statement of a transaction before it takes its connection.
func (s *Store) TxStatements() []string {
	return append([]string{s.claimPending, s.finishPending, s.currentResource, s.resourceVersion,
		s.resourceHistory, s.resolveKey, s.resourceByKeys.Query, s.putWorklistItem, s.deleteWorklistItem,
		s.markTurnaround, s.studyLinksOfPatient, s.finishStudyDerivation, s.addPatientAccess, s.sharePatientAccess,
		s.message, s.claimReprocessing, s.finishReprocessing},
		slices.Concat(s.putStudyLink, s.outboxTxStatements(), s.auditTxStatements(), s.criticalTxStatements())...)
}

// rebind returns query, written with ? placeholders, with the dialect's. A ? inside a string
// literal or a quoted name would be taken for one: the shared statements have none.
func (s *Store) rebind(query string) string {
	var b []byte
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b = append(b, s.d.Placeholder(n)...)
			continue
		}
		b = append(b, query[i])
	}
	return string(b)
}

// InvalidError is an error found before anything was sent to the database: a transaction it
// comes from is as it was, and a store's Tx need not refuse its further steps.
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

// Invalid reports whether err is an InvalidError: nothing was sent.
func Invalid(err error) bool {
	var inv *InvalidError
	return errors.As(err, &inv)
}

// errNoRow is what queryRow returns for a query that found nothing; InterpretError makes it
// engine.ErrNotFound.
var errNoRow = sql.ErrNoRows

// scanOne reads the first row of rows into dest with scan and closes rows; sql.ErrNoRows when
// there is none. Errors are interpreted.
func (s *Store) scanOne(rows *sql.Rows, err error, scan func(rowScanner) error) error {
	if err != nil {
		return s.d.InterpretError(err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return s.d.InterpretError(err)
		}
		return s.d.InterpretError(errNoRow)
	}
	if err := scan(rows); err != nil {
		return s.d.InterpretError(err)
	}
	return s.d.InterpretError(rows.Close())
}

// scanRow reads the first row of rows with scan, as scanOne does.
func scanRow[T any](s *Store, rows *sql.Rows, err error, scan func(rowScanner) (T, error)) (T, error) {
	var v T
	err = s.scanOne(rows, err, func(r rowScanner) (err error) {
		v, err = scan(r)
		return err
	})
	return v, err
}

// conditions builds a WHERE clause of conditions ANDed, each value a parameter. Arguments are
// added in the order their placeholders stand in the text: a dialect's placeholders may be
// numbered by position (SQLite's ?).
type conditions struct {
	d     Dialect
	where []string
	args  []any
}

// arg adds v and returns its placeholder.
func (c *conditions) arg(v any) string {
	c.args = append(c.args, v)
	return c.d.Placeholder(len(c.args))
}

// text adds v as text a column can hold (engine.StorableText) and returns its placeholder.
func (c *conditions) text(v string) string { return c.arg(engine.StorableText(v)) }

// add ANDs cond, whose arguments are added already.
func (c *conditions) add(cond string) { c.where = append(c.where, cond) }

// clause returns " WHERE …", or "" without conditions.
func (c *conditions) clause() string {
	if len(c.where) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(c.where, " AND ")
}

// scanAll reads every row of rows with scan and closes rows; none is an empty (non-nil) result,
// not an error. err is the query's: when it is set, rows is not read. Errors are interpreted.
func scanAll[T any](s *Store, rows *sql.Rows, err error, scan func(rowScanner) (T, error)) ([]T, error) {
	if err != nil {
		return nil, s.d.InterpretError(err)
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, s.d.InterpretError(err)
		}
		out = append(out, v)
	}
	return out, s.d.InterpretError(rows.Err())
}

// rowScanner is a row to scan: *sql.Rows at the row.
type rowScanner = interface{ Scan(dest ...any) error }

// scanTime scans a time column of either dialect into t: a timestamptz (time.Time) or Unix
// nanoseconds (int64), NULL or 0 being the zero time. Times come out in UTC.
type scanTime struct{ t *time.Time }

func (st scanTime) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*st.t = time.Time{}
	case time.Time:
		*st.t = v.UTC()
	case int64:
		if v == 0 {
			*st.t = time.Time{}
		} else {
			*st.t = time.Unix(0, v).UTC()
		}
	default:
		return fmt.Errorf("scanning a time: unsupported column value of type %T", v)
	}
	return nil
}
