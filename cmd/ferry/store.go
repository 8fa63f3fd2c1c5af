package main

import (
	"context"
	"fmt"
	"net/url"

	"github.com/ferryhealth/ferry/adapters/postgres"
	"github.com/ferryhealth/ferry/adapters/sqlite"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
	"github.com/ferryhealth/ferry/engine/critical"
	"github.com/ferryhealth/ferry/engine/outbox"
	"github.com/ferryhealth/ferry/engine/turnaround"
	"github.com/ferryhealth/ferry/migrations"
)

// store is what ferry needs of either store.
type store interface {
	engine.Store
	engine.InstanceStore
	engine.LinkStore
	engine.DerivationQueue
	outbox.Store
	turnaround.Reader
	engine.ErrorQueue
	engine.MappingHistory // the console's mapping and code-table revisions
	// TextWindowEnd: where a free-text search of the message log stopped (the console's
	// "look further back").
	TextWindowEnd(ctx context.Context, f engine.MessageFilter) (int64, error)
	engine.SearchKeyBackfill
	access.Store        // users, API tokens, web sessions
	access.PatientStore // who may see which patient, break-glass grants
	audit.Reader
	critical.Store      // critical results and their acknowledgement
	critical.AlertStore // and their overdue alert
	Migrate(ctx context.Context) error
	MigrateUp(ctx context.Context) (migrations.Applied, error) // Migrate, saying what it applied
}

// openStore opens the store a database URL names (sqlite:PATH or postgres://…).
func openStore(ctx context.Context, url string) (st store, kind string, err error) {
	kind, target, err := storeKind(url)
	if err != nil {
		return nil, "", err
	}
	switch kind {
	case "postgres":
		if target, err = postgresDeadlines(target); err != nil {
			return nil, "", err
		}
		st, err = postgres.Open(ctx, target)
	default:
		st, err = sqlite.Open(ctx, target)
	}
	if err != nil {
		return nil, "", fmt.Errorf("opening %s store: %w", kind, err)
	}
	return st, kind, nil
}

// postgresSessionDefaults are the connection settings Ferry adds to a postgres:// URL unless the
// URL sets them (issue 18, docs/operations.md): a connection attempt gives up after 5 s, and the
// server drops the session of a Ferry node it can no longer reach — a partition, a host gone —
// within seconds (keepalives, TCP user timeout) and aborts a transaction left idle for a
// minute, so that node's locks do not hold the other nodes up. The client side of the same
// (keepalives, user timeout) is adapters/postgres's dialer; the commit's deadline is
// commit.timeout.
var postgresSessionDefaults = [][2]string{
	{"connect_timeout", "5"},
	{"tcp_keepalives_idle", "5"},
	{"tcp_keepalives_interval", "2"},
	{"tcp_keepalives_count", "3"},
	{"tcp_user_timeout", "10000"},
	{"idle_in_transaction_session_timeout", "60000"},
}

// postgresDeadlines returns dsn with postgresSessionDefaults added where it does not set them.
func postgresDeadlines(dsn string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("database URL %s: %w", redactURL(dsn), err)
	}
	q := u.Query()
	for _, kv := range postgresSessionDefaults {
		if !q.Has(kv[0]) {
			q.Set(kv[0], kv[1])
		}
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}
