// Command ferry is Ferry's one binary: serve, migrate, send, inspect, bench and version.
//
//	ferry serve [--config FILE] [--db URL] [--mllp ADDR] [--http ADDR] [--dicom ADDR]
//	ferry migrate [--config FILE] [--db URL]
//	ferry users add|list|disable …, ferry tokens create|list|revoke …, ferry audit verify
//	ferry send --to HOST:PORT FILE…
//	ferry inspect [--json] FILE…
//	ferry bench parse FILE…
//	ferry mappings test|lint [DIR]
//	ferry identifiers test FILE…
//	ferry healthcheck [--url URL]
//	ferry version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errSilent) {
			fmt.Fprintln(os.Stderr, "ferry:", err)
		}
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(int(ec))
		}
		os.Exit(1)
	}
}

// errSilent marks an error already reported to the user.
var errSilent = errors.New("already reported")

// exitCode is an error that asks for a particular exit status.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

const usage = `ferry — HL7/FHIR/DICOM interface engine for teleradiology

Usage:
  ferry serve [--config FILE] [--db URL] [--mllp ADDR] [--http ADDR] [--dicom ADDR]
  ferry migrate [--config FILE] [--db URL]
  ferry users add NAME --role ROLE [--practitioner [SYSTEM|]VALUE]... [--facility CODE]... [--password-stdin]
  ferry users list | disable NAME
  ferry tokens create NAME [--expires 90d] [--scope SCOPE]... | list [NAME] | revoke ID
  ferry audit verify
  ferry send --to HOST:PORT [--timeout D] FILE…
  ferry inspect [--json] FILE…
  ferry bench parse [--repeat N] FILE…
  ferry mappings test|lint [--config FILE] [--json] [DIR]
  ferry identifiers test FILE…  run the tests beside a hospital's identifier rules
  ferry deliveries replay --user NAME --reason TEXT [--destination D] [--report ID] [--url URL]
  ferry reprocess (--id N | [--facility F] [--type T] [--since T]…) [--reason TEXT] [--dry-run] [--dismiss]
  ferry healthcheck [--url URL]
  ferry version

Run "ferry COMMAND --help" for a command's flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// Help asked for anywhere (-h, --help, help) is an answer, not an error: exit status 0.
	if err := dispatch(ctx, args, stdout, stderr); !errors.Is(err, errHelp) {
		return err
	}
	return nil
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitCode(2)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, rest, stdout, stderr)
	case "migrate":
		return migrate(ctx, rest, stdout, stderr)
	case "users":
		return usersCmd(ctx, rest, stdout, stderr)
	case "tokens":
		return tokensCmd(ctx, rest, stdout, stderr)
	case "audit":
		return auditCmd(ctx, rest, stdout, stderr)
	case "send":
		return send(ctx, rest, stdout, stderr)
	case "inspect":
		return inspect(rest, stdout, stderr)
	case "bench":
		return bench(rest, stdout, stderr)
	case "mappings":
		return mappingsCmd(rest, stdout, stderr)
	case "deliveries":
		return deliveriesCmd(ctx, rest, stdout, stderr)
	case "identifiers":
		return identifiersCmd(rest, stdout, stderr)
	case "reprocess":
		return reprocessCmd(ctx, rest, stdout, stderr)
	case "healthcheck":
		return healthcheck(ctx, rest, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "ferry", versionString())
		return nil
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "ferry: unknown command %q\n\n%s", cmd, usage)
	return exitCode(2)
}

func versionString() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "devel+" + rev
}

// newFlagSet returns a flag set that reports errors through run's return value.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ferry "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args, turning -h into a clean exit and other errors into exit status 2.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return exitCode(2)
	}
	return nil
}

var errHelp = fmt.Errorf("%w", errSilent)

// groupUsage answers a command group (users, tokens, audit, …) called without a subcommand it
// knows: its usage on stdout and errHelp when help was asked for, else on stderr and exit status 2.
func groupUsage(args []string, usage string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help", "help":
			fmt.Fprintln(stdout, usage)
			return errHelp
		}
	}
	fmt.Fprintln(stderr, usage)
	return exitCode(2)
}
