package main

import (
	"context"
	"fmt"

	"github.com/ferryhealth/ferry/adapters/postgres"
	"github.com/ferryhealth/ferry/adapters/sqlite"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
)

// store is what ferry needs of either store.
type store interface {
	engine.Store
	engine.InstanceStore
	engine.LinkStore
	engine.DerivationQueue
	engine.Outbox
	engine.TurnaroundReader
	access.Store // users, API tokens, web sessions
	audit.Reader
	Migrate(ctx context.Context) error
}

// openStore opens the store a database URL names (sqlite:PATH or postgres://…).
func openStore(ctx context.Context, url string) (st store, kind string, err error) {
	kind, target, err := storeKind(url)
	if err != nil {
		return nil, "", err
	}
	switch kind {
	case "postgres":
		st, err = postgres.Open(ctx, target)
	default:
		st, err = sqlite.Open(ctx, target)
	}
	if err != nil {
		return nil, "", fmt.Errorf("opening %s store: %w", kind, err)
	}
	return st, kind, nil
}
