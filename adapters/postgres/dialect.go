package postgres

import (
	"context"
	"database/sql"
	"strconv"
	"time"

	"github.com/lib/pq"

	"github.com/ferryhealth/ferry/adapters/sqlstore"
)

// shared is the SQL both stores share (adapters/sqlstore), in PostgreSQL's text.
var shared = sqlstore.New(theDialect)

// theDialect is PostgreSQL's dialect, for shared and for transactions.
var theDialect = dialect{placeholders: &placeholders}

// dialect is sqlstore.Dialect for PostgreSQL: $n parameters, timestamptz kept to the
// microsecond with NULL for "not set", and interpretError.
type dialect struct {
	// placeholders are $0…$64, written once: a filter's query asks for one per condition. A
	// field, not a package variable read by the methods, so that shared is initialized after it.
	placeholders *[65]string
}

var (
	_ sqlstore.Dialect       = dialect{}
	_ sqlstore.Areas         = (*Store)(nil)
	_ sqlstore.TxAreas       = (*Tx)(nil)
	_ sqlstore.OutboxDialect = dialect{} // the outbox's statements tuned for this engine
)

var placeholders = func() [65]string {
	var p [65]string
	for i := range p {
		p[i] = "$" + strconv.Itoa(i)
	}
	return p
}()

func (d dialect) Placeholder(n int) string {
	if n < len(d.placeholders) {
		return d.placeholders[n]
	}
	return "$" + strconv.Itoa(n)
}

func (dialect) InterpretError(err error) error { return interpretError(err) }

func (dialect) Time(t time.Time) (any, error) { return nullTimestamp(t), nil }

func (dialect) TimeOrNull(column string) string { return column }

func (dialect) TimeUnset(column string) string { return column + " IS NULL" }

func (dialect) TimeSet(column string) string { return column + " IS NOT NULL" }

var (
	_ sqlstore.Conn = reader{}
)

// Exec runs query prepared (Store.prepare), in the transaction if there is one.
func (rd reader) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	stmt, err := rd.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return stmt.ExecContext(ctx, args...)
}

// Query runs query prepared (Store.prepare), in the transaction if there is one.
func (rd reader) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	stmt, err := rd.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return stmt.QueryContext(ctx, args...)
}

func (dialect) TimeNone() string { return "NULL" }

func (dialect) List(values []string) any { return pq.StringArray(values) }

func (dialect) InList(column, placeholder string) string {
	return column + " = ANY(" + placeholder + "::text[])"
}

func (dialect) ListHas(column, placeholder string) string {
	return placeholder + " = ANY(" + column + ")"
}

func (dialect) ListScanner(dest *[]string) any { return (*pq.StringArray)(dest) }

func (dialect) ListOf(subquery string) string { return "ARRAY(" + subquery + ")" }

// Prefix is LIKE with the prefix's metacharacters escaped: in the "C" collation of the
// resource_index and header columns a btree range, once PostgreSQL plans the statement for the
// value (sqlstore runs a prefix search unprepared). A byte range as SQLite writes it would need an
// upper bound that is not valid UTF-8 text.
func (dialect) Prefix(column, prefix string, arg func(any) string) string {
	return column + " LIKE " + arg(escapeLike(prefix)+"%")
}

func (dialect) ClaimPendingSQL() string { return claimPendingSQL }

func (dialect) Contains(column, placeholder string) string {
	return "position(" + placeholder + "::bytea in " + column + ") > 0"
}

func (dialect) SearchOrder(bool) string { return "r.last_updated" }

func (dialect) ResourceByKeys() sqlstore.ResourceByKeysStatement {
	return sqlstore.ResourceByKeysStatement{Query: resourceByKeysSQL, Slots: resourceByKeysSlots}
}

// QueryOnce runs query unprepared, in the transaction if there is one.
func (rd reader) QueryOnce(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return rd.query(ctx, query, args...)
}
