package main

import (
	"context"
	"fmt"
	"io"

	"github.com/ferryhealth/ferry/migrations"
)

// migrate applies the embedded migrations to the configured store and exits.
func migrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", stderr)
	sf := addStoreFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	st, kind, cfg, applied, err := openMigrated(ctx, *sf.config, *sf.db)
	if err != nil {
		return err
	}
	defer st.Close()
	switch n := len(applied.Versions); n {
	case 0:
		fmt.Fprintf(stdout, "%s store %s was already up to date (schema version %d)\n", kind, redactURL(cfg.Database), applied.Now)
	default:
		fmt.Fprintf(stdout, "%s store %s: applied %d migration%s (%d to %d); now at schema version %d\n",
			kind, redactURL(cfg.Database), n, plural(n), applied.Versions[0], applied.Versions[n-1], applied.Now)
	}
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// openMigrated opens the store that --config and --db name (as migrate, users, tokens and audit
// take them) and applies the pending migrations.
func openMigrated(ctx context.Context, configPath, db string) (store, string, *Config, migrations.Applied, error) {
	var none migrations.Applied
	cfg, err := loadConfig(configPath)
	if err != nil {
		return nil, "", nil, none, err
	}
	if db != "" {
		cfg.Database = db
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, "", nil, none, fmt.Errorf("invalid config:\n%w", err)
	}
	st, kind, err := openStore(ctx, cfg.Database)
	if err != nil {
		return nil, "", nil, none, err
	}
	applied, err := st.MigrateUp(ctx)
	if err != nil {
		st.Close()
		return nil, "", nil, none, fmt.Errorf("migrating %s store: %w", kind, err)
	}
	return st, kind, cfg, applied, nil
}
