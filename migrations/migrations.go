// Package migrations holds Ferry's database schema as goose SQL migrations, one directory per
// dialect, embedded in the binary. The stores in adapters/postgres and adapters/sqlite apply them
// with goose's Provider API; `ferry migrate` and `ferry serve` call those stores' Migrate.
//
// Each dialect carries the same versions with the same meaning: a change to the schema adds one
// file to each directory, numbered alike, and never edits a migration that has shipped.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed postgres/*.sql sqlite/*.sql
var files embed.FS

// Postgres is the PostgreSQL migrations, for goose.NewProvider(goose.DialectPostgres, db, Postgres).
var Postgres fs.FS = sub("postgres")

// SQLite is the SQLite migrations, for goose.NewProvider(goose.DialectSQLite3, db, SQLite).
var SQLite fs.FS = sub("sqlite")

func sub(dir string) fs.FS {
	f, err := fs.Sub(files, dir)
	if err != nil {
		// Unreachable: dir is a constant that go:embed has already checked.
		panic("migrations: " + err.Error())
	}
	return f
}
