package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferryhealth/ferry/adapters/sqlstore"
	"github.com/ferryhealth/ferry/engine"
)

// TestQueryPlans: the statements that must stay index probes as tables grow are planned so on an
// empty database, where SQLite has no statistics to go by (a plan is fixed when a statement is
// prepared).
func TestQueryPlans(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
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
			rows, err := st.writer.QueryContext(ctx, "EXPLAIN QUERY PLAN "+tt.query, tt.args...)
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
			text := strings.Join(plan, "\n")
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
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	c := &capturingConn{reader: reader{s: st}}
	q := engine.ResourceQuery{Type: "Patient", Filters: []engine.SearchFilter{{Param: "identifier",
		Op: engine.SearchEq, Values: []engine.SearchValue{{Value: "a"}, {Value: "b"}}}}}
	if _, err := shared.SearchResources(ctx, c, q); err != nil {
		t.Fatal(err)
	}
	rows, err := st.reader.QueryContext(ctx, "EXPLAIN QUERY PLAN "+c.query, c.args...)
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
	text := strings.Join(plan, "\n")
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
