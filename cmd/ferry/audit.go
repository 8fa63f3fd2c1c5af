package main

import (
	"context"
	"fmt"
	"io"

	"github.com/ferryhealth/ferry/engine/audit"
)

// auditCmd is `ferry audit verify`: it reads the whole audit trail and checks its hash chain
// (docs/security.md, "The audit trail"). Exit status 1 when the chain is broken.
func auditCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const usage = "usage: ferry audit verify [--config FILE] [--db URL]"
	if len(args) == 0 || args[0] != "verify" {
		return groupUsage(args, usage, stdout, stderr)
	}
	fs := newFlagSet("audit verify", stderr)
	sf := addStoreFlags(fs)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	st, _, _, _, err := openMigrated(ctx, *sf.config, *sf.db)
	if err != nil {
		return err
	}
	defer st.Close()
	res, err := audit.Verify(ctx, st)
	if err != nil {
		return err
	}
	if res.Broken != 0 {
		fmt.Fprintf(stdout, "audit trail BROKEN at event %d: %s (%d events read)\n", res.Broken, res.Reason, res.Events)
		return exitCode(1)
	}
	fmt.Fprintf(stdout, "audit trail intact: %d events, each chained to the one before\n", res.Events)
	return nil
}
