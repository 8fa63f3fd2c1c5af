package main

import (
	"context"
	"fmt"
	"io"
)

// migrate applies the embedded migrations to the configured store and exits.
func migrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", stderr)
	sf := addStoreFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	st, kind, cfg, err := openMigrated(ctx, *sf.config, *sf.db)
	if err != nil {
		return err
	}
	defer st.Close()
	fmt.Fprintf(stdout, "%s store %s is up to date\n", kind, redactURL(cfg.Database))
	return nil
}

// openMigrated opens the store that --config and --db name (as migrate, users, tokens and audit
// take them) and applies the pending migrations.
func openMigrated(ctx context.Context, configPath, db string) (store, string, *Config, error) {
	cfg, err := loadConfig(configPath)
	if err != nil {
		return nil, "", nil, err
	}
	if db != "" {
		cfg.Database = db
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, "", nil, fmt.Errorf("invalid config:\n%w", err)
	}
	st, kind, err := openStore(ctx, cfg.Database)
	if err != nil {
		return nil, "", nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, "", nil, fmt.Errorf("migrating %s store: %w", kind, err)
	}
	return st, kind, cfg, nil
}
