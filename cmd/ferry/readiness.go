package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/ferryhealth/ferry/adapters/httpapi"
	"github.com/ferryhealth/ferry/engine"
)

// readinessChecks are what /readyz asks besides the store's Ping (issue 18): that the store
// can commit (the committer's last transaction did not fail), and that the instance store can
// write (a probe file in its incoming area: a full disk or a read-only mount fails it); and, as
// a warning that does not make Ferry unready, that the store maintains itself (autovacuum on
// PostgreSQL), when st can say.
func readinessChecks(committer *engine.GroupCommitter, incoming string, st any) []httpapi.ReadinessCheck {
	checks := []httpapi.ReadinessCheck{
		{Name: "commits", Check: func(context.Context) error { return committer.Ready() }},
		{Name: "instance store", Check: func(context.Context) error { return probeWrite(incoming) }},
	}
	if m, ok := st.(maintainedStore); ok {
		checks = append(checks, httpapi.ReadinessCheck{Name: "maintenance", Check: m.CheckMaintenance, Advisory: true})
	}
	return checks
}

// maintainedStore is a store that can say whether its database maintains itself
// (postgres.Store: autovacuum).
type maintainedStore interface {
	CheckMaintenance(ctx context.Context) error
}

// warnMaintenance logs, at start, what maintainedStore.CheckMaintenance finds off.
func warnMaintenance(ctx context.Context, st any, logger *slog.Logger) {
	if m, ok := st.(maintainedStore); ok {
		if err := m.CheckMaintenance(ctx); err != nil {
			logger.Warn("database maintenance: "+err.Error(), "see", "docs/operations.md")
		}
	}
}

// probeSize is what probeWrite writes: a few file system blocks, so that a full disk refuses it
// (creating an empty file needs only an inode).
const probeSize = 16 << 10

// probeWrite writes, fsyncs and removes a small file in dir: nil when dir takes a file as an
// instance's is taken.
func probeWrite(dir string) error {
	f, err := os.CreateTemp(dir, "readyz-*")
	if err != nil {
		return fmt.Errorf("cannot create a file: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(make([]byte, probeSize))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cannot write a file: %w", err)
	}
	return nil
}
