package sqlstore

import (
	"errors"
	"strconv"
	"testing"
	"time"
)

// testDialect numbers its parameters as PostgreSQL does.
type testDialect struct{}

func (testDialect) Placeholder(n int) string        { return "$" + strconv.Itoa(n) }
func (testDialect) InterpretError(err error) error  { return err }
func (testDialect) Time(t time.Time) (any, error)   { return t, nil }
func (testDialect) TimeNone() string                { return "NULL" }
func (testDialect) TimeOrNull(column string) string { return column }
func (testDialect) TimeUnset(column string) string  { return column + " IS NULL" }
func (testDialect) TimeSet(column string) string    { return column + " IS NOT NULL" }
func (testDialect) List(values []string) any        { return values }
func (testDialect) InList(column, p string) string  { return column + " = ANY(" + p + ")" }
func (testDialect) ListHas(column, p string) string { return p + " = ANY(" + column + ")" }
func (testDialect) ListScanner(dest *[]string) any  { return dest }
func (testDialect) ListOf(subquery string) string   { return "ARRAY(" + subquery + ")" }
func (testDialect) SearchOrder(bool) string         { return "r.last_updated" }
func (testDialect) Prefix(column, prefix string, arg func(any) string) string {
	return column + " LIKE " + arg(prefix+"%")
}
func (testDialect) ClaimPendingSQL() string          { return "SELECT 1" }
func (testDialect) Contains(column, p string) string { return "instr(" + column + ", " + p + ") > 0" }
func (testDialect) ResourceByKeys() ResourceByKeysStatement {
	return ResourceByKeysStatement{Query: "SELECT 1"}
}

func TestRebind(t *testing.T) {
	s := New(testDialect{})
	for _, tc := range []struct{ in, want string }{
		{"SELECT 1", "SELECT 1"},
		{"a = ? AND b = ?", "a = $1 AND b = $2"},
		{"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"},
	} {
		if got := s.rebind(tc.in); got != tc.want {
			t.Errorf("rebind(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestScanTime(t *testing.T) {
	at := time.Date(2026, 11, 5, 8, 30, 0, 123456789, time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		name string
		v    any
		want time.Time
	}{
		{"NULL", nil, time.Time{}},
		{"no time (0)", int64(0), time.Time{}},
		{"timestamptz", at, at.UTC()},
		{"Unix nanoseconds", at.UnixNano(), at.UTC()},
	} {
		got := time.Now()
		if err := (scanTime{&got}).Scan(tc.v); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !got.Equal(tc.want) || got.Location() != time.UTC && !got.IsZero() {
			t.Errorf("%s: %v, want %v in UTC", tc.name, got, tc.want)
		}
	}
	var got time.Time
	if err := (scanTime{&got}).Scan("2026-11-05"); err == nil {
		t.Error("scanning text: nil error, want one")
	}
}

func TestInvalid(t *testing.T) {
	inner := errors.New("no ServiceRequestID")
	err := error(&InvalidError{inner})
	if !Invalid(err) || !errors.Is(err, inner) || err.Error() != inner.Error() {
		t.Errorf("InvalidError %v: Invalid %v, Is inner %v", err, Invalid(err), errors.Is(err, inner))
	}
	if Invalid(inner) {
		t.Error("Invalid(plain error) = true")
	}
}

// A dialect with neither StudyLinkStatement nor OutboxDialect gets the portable link statements
// and no outbox statements to prepare.
func TestPortableDefaults(t *testing.T) {
	s := New(testDialect{})
	if len(s.putStudyLink) != 3 || s.putStudyLink[2] != s.queueDerivation {
		t.Errorf("putStudyLink = %d statements, want the portable three ending in the queue", len(s.putStudyLink))
	}
	if got := s.outboxTxStatements(); got != nil {
		t.Errorf("outbox statements without an OutboxDialect: %d", len(got))
	}
}
