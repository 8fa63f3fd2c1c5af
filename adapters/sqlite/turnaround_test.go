package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/engine"
)

// TestOverduePlan: the overdue query reads the partial index turnaround_awaiting_final — only the
// orders whose study is in and final is not — never the whole table, also on an empty database
// where SQLite has no statistics. (Its WHERE must imply the index's for SQLite to use it.)
func TestOverduePlan(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	query, args, err := shared.OverdueQuery(time.Now(), engine.DefaultSLAs(), 100)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := st.reader.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
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
	if !strings.Contains(text, "USING INDEX turnaround_awaiting_final") || strings.Contains(text, "USING PRIMARY KEY") {
		t.Errorf("want the overdue query to read turnaround_awaiting_final alone; plan:\n%s", text)
	}
}
