package postgres_test

import (
	"context"
	"database/sql"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/ferryhealth/ferry/adapters/sqlite"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/fhir"
	"github.com/ferryhealth/ferry/migrations"
)

// TestIndexEntriesMigrated: migration 00150 on a populated database, on both stores. Resources
// written under the schema before it (their index entries in resource_index alone) keep being
// found, and their next version replaces exactly their entries: the old values stop matching, the
// kept ones stay once, the new ones match. (SQLite's run lives here beside PostgreSQL's, as
// TestSchemaMatchesSQLite does, so that the two share one check.)
func TestIndexEntriesMigrated(t *testing.T) {
	at := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	populate := []string{
		// Patient/a at version 2 (version 1 superseded), Patient/b at version 1.
		`INSERT INTO resources (type, id, version_id, last_updated) VALUES ('Patient', 'a', 2, $1), ('Patient', 'b', 1, $1)`,
		`INSERT INTO resource_versions (type, id, version_id, last_updated, json) VALUES
			('Patient', 'a', 1, $1, CAST('{"resourceType":"Patient","id":"a"}' AS BYTEA)),
			('Patient', 'a', 2, $1, CAST('{"resourceType":"Patient","id":"a"}' AS BYTEA)),
			('Patient', 'b', 1, $1, CAST('{"resourceType":"Patient","id":"b"}' AS BYTEA))`,
		`INSERT INTO resource_index (type, id, param, system, value) VALUES
			('Patient', 'a', 'identifier', 'urn:mrn', 'A1'), ('Patient', 'a', 'family', '', 'doe'),
			('Patient', 'a', 'name', '', 'doe'), ('Patient', 'b', 'family', '', 'doe')`,
	}
	run := func(t *testing.T, st indexEntriesStore, dialect goose.Dialect, fsys fs.FS, lastUpdated any) {
		ctx := t.Context()
		p, err := goose.NewProvider(dialect, st.DB(), fsys,
			goose.WithDisableGlobalRegistry(true), goose.WithLogger(goose.NopLogger()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.DownTo(ctx, 149); err != nil {
			t.Fatalf("migrating down to 149: %v", err)
		}
		for _, q := range populate {
			var args []any
			if strings.Contains(q, "$1") {
				args = append(args, lastUpdated)
			}
			if dialect == goose.DialectSQLite3 {
				q = strings.ReplaceAll(strings.ReplaceAll(q, "$1", "?1"), "BYTEA", "BLOB")
			}
			if _, err := st.DB().ExecContext(ctx, q, args...); err != nil {
				t.Fatalf("populating: %v", err)
			}
		}
		if err := st.Migrate(ctx); err != nil {
			t.Fatalf("migrating up: %v", err)
		}
		checkIndexEntriesMigrated(t, st, at)
	}
	t.Run("postgres", func(t *testing.T) {
		run(t, openTestStore(t), goose.DialectPostgres, migrations.Postgres, at)
	})
	t.Run("sqlite", func(t *testing.T) {
		st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ferry.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if err := st.Migrate(t.Context()); err != nil {
			t.Fatal(err)
		}
		run(t, st, goose.DialectSQLite3, migrations.SQLite, at.UnixNano())
	})
}

// indexEntriesStore is what TestIndexEntriesMigrated needs of a store.
type indexEntriesStore interface {
	engine.Store
	DB() *sql.DB
	Migrate(context.Context) error
}

// checkIndexEntriesMigrated: Patient/a (version 2: identifier urn:mrn|A1, family and name doe)
// and Patient/b (version 1: family doe), written before migration 00150, are found, and a
// version 3 of Patient/a replaces its entries.
func checkIndexEntriesMigrated(t *testing.T, st indexEntriesStore, at time.Time) {
	t.Helper()
	ctx := t.Context()
	search := func(param, system, value string) []string {
		t.Helper()
		got, err := st.SearchResources(ctx, engine.ResourceQuery{Type: "Patient", Filters: []engine.SearchFilter{
			{Param: param, Op: engine.SearchEq, Values: []engine.SearchValue{{System: system, Value: value}}}}})
		if err != nil {
			t.Fatalf("searching %s=%s: %v", param, value, err)
		}
		var ids []string
		for _, r := range got {
			ids = append(ids, r.ID)
		}
		return ids
	}
	want := func(what string, got []string, ids ...string) {
		t.Helper()
		if len(got) != len(ids) {
			t.Errorf("%s: found %v, want %v", what, got, ids)
			return
		}
		for i := range got {
			if got[i] != ids[i] {
				t.Errorf("%s: found %v, want %v", what, got, ids)
				return
			}
		}
	}
	want("family=doe after migrating", search("family", "", "doe"), "a", "b")
	want("identifier=urn:mrn|A1 after migrating", search("identifier", "urn:mrn", "A1"), "a")

	tx, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	r := &engine.Resource{Type: "Patient", ID: "a", VersionID: 3, LastUpdated: at.Add(time.Minute),
		JSON: []byte(`{"resourceType":"Patient","id":"a"}`), Index: []fhir.IndexEntry{
			{Param: "identifier", System: "urn:mrn", Value: "A1"},          // kept
			{Param: "family", Value: "roe"}, {Param: "name", Value: "roe"}, // changed
		}}
	if err := tx.PutResource(ctx, r); err != nil {
		t.Fatalf("PutResource version 3: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	want("family=doe after version 3", search("family", "", "doe"), "b")
	want("name=doe after version 3", search("name", "", "doe"))
	want("family=roe after version 3", search("family", "", "roe"), "a")
	want("identifier=urn:mrn|A1 after version 3", search("identifier", "urn:mrn", "A1"), "a")
	var entries int
	if err := st.DB().QueryRowContext(ctx, "SELECT count(*) FROM resource_index WHERE type = 'Patient' AND id = 'a'").Scan(&entries); err != nil {
		t.Fatal(err)
	}
	if entries != 3 {
		t.Errorf("Patient/a has %d index entries after version 3, want 3", entries)
	}
}
