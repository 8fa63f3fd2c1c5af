package migrations_test

import (
	"io/fs"
	"reflect"
	"strings"
	"testing"

	"github.com/ferryhealth/ferry/migrations"
)

// TestDialectsInStep: every version exists for both stores, under one name, with both
// directions, so the two schemas never drift apart. (The stores' tests apply them, down and up.)
func TestDialectsInStep(t *testing.T) {
	names := map[string][]string{}
	for dialect, fsys := range map[string]fs.FS{"postgres": migrations.Postgres, "sqlite": migrations.SQLite} {
		files, err := fs.Glob(fsys, "*.sql")
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Fatalf("%s: no migrations embedded", dialect)
		}
		for _, name := range files {
			b, err := fs.ReadFile(fsys, name)
			if err != nil {
				t.Fatal(err)
			}
			for _, annotation := range []string{"-- +goose Up", "-- +goose Down"} {
				if !strings.Contains(string(b), annotation) {
					t.Errorf("%s/%s: no %q", dialect, name, annotation)
				}
			}
		}
		names[dialect] = files
	}
	if !reflect.DeepEqual(names["postgres"], names["sqlite"]) {
		t.Errorf("migrations differ: postgres %v, sqlite %v", names["postgres"], names["sqlite"])
	}
}
