package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ferryhealth/ferry/adapters/sqlstore"
)

// shared is the SQL both stores share (adapters/sqlstore), in SQLite's text.
var shared = sqlstore.New(theDialect)

// theDialect is SQLite's dialect, for shared and for transactions.
var theDialect = dialect{}

// dialect is sqlstore.Dialect for SQLite: ? parameters, times as Unix nanoseconds with 0 for
// "not set" (the columns are NOT NULL DEFAULT 0), and interpretError.
type dialect struct{}

var (
	_ sqlstore.Dialect       = dialect{}
	_ sqlstore.Areas         = (*Store)(nil)
	_ sqlstore.TxAreas       = (*Tx)(nil)
	_ sqlstore.OutboxDialect = dialect{} // the outbox's statements tuned for this engine
)

func (dialect) Placeholder(int) string { return "?" }

func (dialect) InterpretError(err error) error { return interpretError(err) }

func (dialect) Time(t time.Time) (any, error) {
	if err := checkNanos(t); err != nil {
		return nil, err
	}
	return nanos(t), nil
}

// CheckTime rejects a time that Unix nanoseconds in an int64 cannot hold (sqlstore.TimeChecker).
func (dialect) CheckTime(t time.Time) error { return checkNanos(t) }

func (dialect) TimeOrNull(column string) string { return "nullif(" + column + ", 0)" }

func (dialect) TimeUnset(column string) string { return column + " = 0" }

func (dialect) TimeSet(column string) string { return column + " != 0" }

var _ sqlstore.Conn = reader{}

// Exec runs query prepared: in a transaction as Begin prepared it; else on the writer, where it
// commits on its own.
func (rd reader) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	var (
		stmt *sql.Stmt
		err  error
	)
	if rd.tx != nil {
		stmt, err = rd.tx.stmt(ctx, query)
	} else {
		stmt, err = rd.s.prepare(ctx, rd.s.writer, query)
	}
	if err != nil {
		return nil, err
	}
	return stmt.ExecContext(ctx, args...)
}

// Query runs query prepared: on the read-only pool, or, in a transaction, as Begin prepared it.
func (rd reader) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	stmt, err := rd.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return stmt.QueryContext(ctx, args...)
}

func (dialect) TimeNone() string { return "0" }

// List binds values as one JSON array, read with json_each.
func (dialect) List(values []string) any {
	b, _ := json.Marshal(values) // a []string always encodes
	return string(b)
}

func (dialect) InList(column, placeholder string) string {
	return column + " IN (SELECT value FROM json_each(" + placeholder + "))"
}

func (dialect) ListHas(column, placeholder string) string {
	return "EXISTS (SELECT 1 FROM json_each(" + column + ") WHERE value = " + placeholder + ")"
}

func (dialect) ListScanner(dest *[]string) any { return jsonList{dest} }

func (dialect) ListOf(subquery string) string {
	return "(SELECT json_group_array(value) FROM (" + subquery + "))"
}

// Prefix is a range of the index: stored text is valid UTF-8, which never holds the byte 0xFF, so
// exactly the values that start with prefix lie in [prefix, prefix+"\xff") under SQLite's BINARY
// collation. (SQLite's LIKE folds ASCII case.)
func (dialect) Prefix(column, prefix string, arg func(any) string) string {
	return "(" + column + " >= " + arg(prefix) + " AND " + column + " < " + arg(prefix+"\xff") + ")"
}

// SearchOrder: with filters, the unary + keeps SQLite from walking resources_last_updated to
// return rows in order and probing each against the filters — a scan of every resource of the
// type when few match (a search by identifier, or for an identifier nobody holds): the index
// entries drive, and the matches are sorted. Without filters, the ordered index serves the page.
func (dialect) SearchOrder(filtered bool) string {
	if filtered {
		return "+r.last_updated"
	}
	return "r.last_updated"
}

func (dialect) ClaimPendingSQL() string { return claimPendingSQL }

// Contains: instr compares bytes when both arguments are blobs.
func (dialect) Contains(column, placeholder string) string {
	return "instr(" + column + ", " + placeholder + ") > 0"
}

func (dialect) ResourceByKeys() sqlstore.ResourceByKeysStatement {
	return sqlstore.ResourceByKeysStatement{Query: resourceByKeysSQL}
}

// jsonList scans a JSON array of strings (a list column) into *l.
type jsonList struct{ l *[]string }

func (j jsonList) Scan(v any) error {
	var b []byte
	switch v := v.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	case nil:
		*j.l = nil
		return nil
	default:
		return fmt.Errorf("scanning a list: unsupported column value of type %T", v)
	}
	return json.Unmarshal(b, j.l)
}

// QueryOnce runs query unprepared: on the read-only pool, or in the transaction.
func (rd reader) QueryOnce(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return rd.query(ctx, query, args...)
}

// readerOf returns s's pools as a reader (Open, where a variable named reader hides the type).
func readerOf(s *Store) reader { return reader{s: s} }
