package main

import (
	"context"
	"fmt"
	"io"
)

// migrate applies the embedded migrations to the configured store and exits.
func migrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", stderr)
	configPath := fs.String("config", "", "config file (YAML)")
	db := fs.String("db", "", "database URL: sqlite:PATH or postgres://… (overrides config and FERRY_DATABASE_URL)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	if *db != "" {
		cfg.Database = *db
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid config:\n%w", err)
	}
	st, kind, err := openStore(ctx, cfg.Database)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return fmt.Errorf("migrating %s store: %w", kind, err)
	}
	fmt.Fprintf(stdout, "%s store %s is up to date\n", kind, redactURL(cfg.Database))
	return nil
}
