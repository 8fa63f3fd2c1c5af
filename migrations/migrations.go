// Package migrations holds Ferry's database schema as goose SQL migrations, one directory per
// dialect, embedded in the binary. The stores in adapters/postgres and adapters/sqlite apply them
// with goose's Provider API; `ferry migrate` and `ferry serve` call those stores' Migrate.
//
// Each dialect carries the same versions with the same meaning: a change to the schema adds one
// file to each directory, numbered alike, and never edits a migration that has shipped.
package migrations

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
)

//go:embed postgres/*.sql sqlite/*.sql
var files embed.FS

// Postgres is the PostgreSQL migrations, for goose.NewProvider(goose.DialectPostgres, db, Postgres).
var Postgres fs.FS = sub("postgres")

// SQLite is the SQLite migrations, for goose.NewProvider(goose.DialectSQLite3, db, SQLite).
var SQLite fs.FS = sub("sqlite")

// Applied says what one run of a store's migrations did: the versions it applied, in order (none
// when the schema was already up to date), and the schema's version after the run.
type Applied struct {
	Versions []int64
	Now      int64
}

// Summarize turns what goose's Provider.Up returned into Applied, reading the schema's version
// after the run.
func Summarize(ctx context.Context, p *goose.Provider, results []*goose.MigrationResult) (Applied, error) {
	var a Applied
	for _, r := range results {
		a.Versions = append(a.Versions, r.Source.Version)
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return a, fmt.Errorf("reading the schema version: %w", err)
	}
	a.Now = v
	return a, nil
}

func sub(dir string) fs.FS {
	f, err := fs.Sub(files, dir)
	if err != nil {
		// Unreachable: dir is a constant that go:embed has already checked.
		panic("migrations: " + err.Error())
	}
	return f
}
