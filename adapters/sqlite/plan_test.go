package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/adapters/sqlstore"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/turnaround"
)

// TestQueryPlans: the statements that must stay index probes as tables grow are planned so on an
// empty database, where SQLite has no statistics to go by (a plan is fixed when a statement is
// prepared).
func TestQueryPlans(t *testing.T) {
	st := emptyStore(t)
	for _, tt := range []struct {
		name  string
		query string
		args  []any
		want  []string // in the plan, in this order
	}{
		{"ResourceByKeys", resourceByKeysSQL, []any{"Patient", `["a","b"]`},
			[]string{"SCAN q VIRTUAL TABLE", "SEARCH k USING PRIMARY KEY (type=? AND key=?)", "SEARCH r USING PRIMARY KEY"}},
		{"ClaimPending", claimPendingSQL, []any{10},
			[]string{"SCAN inbound_messages USING INDEX inbound_messages_pending"}},
		{"DueDeliveries", dialect{}.DueDeliveriesSQL(sqlstore.DeliveryColumns, sqlstore.HeadOfQueue), []any{int64(1), 10, `["A/B"]`},
			[]string{"SEARCH d USING INDEX deliveries_pending_due (next_attempt_at<?)", "USING COVERING INDEX deliveries_pending_queue (queue_key=? AND id<?)"}},
		{"PostponeDestination", dialect{}.PostponeDestinationSQL(), []any{"A/B", "A/B|", "A/B}", int64(2), int64(1)},
			[]string{"SEARCH deliveries USING INDEX deliveries_pending_queue (queue_key>? AND queue_key<?)"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			text := queryPlan(t, st.writer, tt.query, tt.args...)
			at := 0
			for _, w := range tt.want {
				i := strings.Index(text[at:], w)
				if i < 0 {
					t.Fatalf("plan does not have %q (in this order):\n%s", w, text)
				}
				at += i + len(w)
			}
		})
	}
}

// TestSearchPlan: a search by several values of one parameter (the linker's blocking keys) probes
// resource_index_value for each value, from the JSON list, rather than scanning the parameter's
// entries.
func TestSearchPlan(t *testing.T) {
	st := emptyStore(t)
	c := &capturingConn{reader: reader{s: st}}
	q := engine.ResourceQuery{Type: "Patient", Filters: []engine.SearchFilter{{Param: "identifier",
		Op: engine.SearchEq, Values: []engine.SearchValue{{Value: "a"}, {Value: "b"}}}}}
	if _, err := shared.SearchResources(t.Context(), c, q); err != nil {
		t.Fatal(err)
	}
	text := queryPlan(t, st.reader, c.query, c.args...)
	if !strings.Contains(text, "USING COVERING INDEX resource_index_value (type=? AND param=? AND value=?)") {
		t.Errorf("the search does not probe resource_index_value by value:\n%s", text)
	}
}

// capturingConn records the last query it was given to run as a search.
type capturingConn struct {
	reader
	query string
	args  []any
}

func (c *capturingConn) QueryShape(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	c.query, c.args = query, args
	return c.reader.QueryShape(ctx, query, args...)
}

// TestOverduePlan: the overdue query reads the partial index turnaround_awaiting_final — only the
// orders whose study is in and final is not — never the whole table, also on an empty database
// where SQLite has no statistics. (Its WHERE must imply the index's for SQLite to use it.)
func TestOverduePlan(t *testing.T) {
	st := emptyStore(t)
	query, args, err := shared.OverdueQuery(time.Now(), turnaround.DefaultSLAs(), 100)
	if err != nil {
		t.Fatal(err)
	}
	text := queryPlan(t, st.reader, query, args...)
	if !strings.Contains(text, "USING INDEX turnaround_awaiting_final") || strings.Contains(text, "USING PRIMARY KEY") {
		t.Errorf("want the overdue query to read turnaround_awaiting_final alone; plan:\n%s", text)
	}
}

// emptyStore returns a migrated store in a new file: no rows, so no statistics to plan by.
func emptyStore(t *testing.T) *Store {
	t.Helper()
	st, err := Open(t.Context(), filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return st
}

// queryPlan returns SQLite's plan for query on db, a step a line.
func queryPlan(t *testing.T, db *sql.DB, query string, args ...any) string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "\n")
}
