package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ferryhealth/ferry/adapters/httpapi"
	"github.com/ferryhealth/ferry/engine/access"
)

// People and access from the command line (docs/security.md): the same as /api/v1/users and
// /api/v1/tokens, on the store that --config / --db name.
//
//	ferry users add NAME --role ROLE [--practitioner [SYSTEM|]VALUE]... [--facility CODE]... [--password-stdin]
//	ferry users list
//	ferry users disable NAME
//	ferry tokens create NAME [--expires 90d] [--scope SCOPE]...
//	ferry tokens list [NAME]
//	ferry tokens revoke ID

// stdin is where --password-stdin reads (a variable for tests).
var stdin io.Reader = os.Stdin

// stringList is a flag given once per value.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// storeFlags are --config and --db, as migrate takes them.
type storeFlags struct{ config, db *string }

func addStoreFlags(fs *flag.FlagSet) storeFlags {
	return storeFlags{
		config: fs.String("config", "", "config file (YAML)"),
		db:     fs.String("db", "", "database URL: sqlite:PATH or postgres://… (overrides config and FERRY_DATABASE_URL)"),
	}
}

// operands parses args, whose operands (a NAME or ID) may come before or after the flags, and
// returns them; more than max is a usage error (exit status 2), and so is fewer than min.
func operands(fs *flag.FlagSet, args []string, min, max int, usage string, stderr io.Writer) ([]string, error) {
	var lead []string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		lead, args = args[:1], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	ops := append(lead, fs.Args()...)
	if len(ops) < min || len(ops) > max {
		fmt.Fprintln(stderr, usage)
		return nil, exitCode(2)
	}
	return ops, nil
}

// withPeople runs f with the access service on the store --config / --db name, migrated.
func withPeople(ctx context.Context, sf storeFlags, f func(*access.Service) error) error {
	st, _, _, _, err := openMigrated(ctx, *sf.config, *sf.db)
	if err != nil {
		return err
	}
	defer st.Close()
	return f(&access.Service{Store: st})
}

func usersCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const usage = "usage: ferry users add NAME --role ROLE [--practitioner [SYSTEM|]VALUE]... [--facility CODE]... [--password-stdin] | list | disable NAME"
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		return groupUsage(args, usage, stdout, stderr)
	}
	fs := newFlagSet("users "+args[0], stderr)
	sf := addStoreFlags(fs)
	switch args[0] {
	case "add":
		role := fs.String("role", "", "admin, analyst, physician, radiologist or system")
		var practitioners, facilities stringList
		fs.Var(&practitioners, "practitioner", "a practitioner identifier, [SYSTEM|]VALUE (physician, radiologist; repeatable)")
		fs.Var(&facilities, "facility", "a facility id the user is limited to (repeatable)")
		passwordStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
		names, err := operands(fs, args[1:], 1, 1, usage, stderr)
		if err != nil {
			return err
		}
		u, err := httpapi.NewUser(names[0], *role, practitioners, facilities)
		if err != nil {
			return err
		}
		var password string
		if *passwordStdin {
			line, err := bufio.NewReader(stdin).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("reading the password: %w", err)
			}
			if password = strings.TrimRight(line, "\r\n"); password == "" {
				return errors.New("--password-stdin: standard input held no password")
			}
		}
		return withPeople(ctx, sf, func(svc *access.Service) error {
			if err := svc.AddUser(ctx, u, password); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "added user %s (%s)\n", u.Name, u.Role)
			return nil
		})
	case "list":
		if _, err := operands(fs, args[1:], 0, 0, usage, stderr); err != nil {
			return err
		}
		return withPeople(ctx, sf, func(svc *access.Service) error {
			users, err := svc.Store.Users(ctx)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tROLE\tPRACTITIONERS\tFACILITIES\tPASSWORD\tSTATUS")
			for _, u := range users {
				ps := make([]string, len(u.Practitioners))
				for i, p := range u.Practitioners {
					ps[i] = p.String()
				}
				status := "enabled"
				if u.Disabled() {
					status = "disabled " + u.DisabledAt.Format(time.DateOnly)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", u.Name, u.Role, orDash(strings.Join(ps, " ")),
					orDash(strings.Join(u.Facilities, " ")), yesNo(u.PasswordHash != ""), status)
			}
			return w.Flush()
		})
	case "disable":
		names, err := operands(fs, args[1:], 1, 1, usage, stderr)
		if err != nil {
			return err
		}
		return withPeople(ctx, sf, func(svc *access.Service) error {
			if err := svc.DisableUser(ctx, names[0]); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "disabled user %s: their sessions are ended and their tokens refused\n", names[0])
			return nil
		})
	}
	fmt.Fprintln(stderr, usage)
	return exitCode(2)
}

func tokensCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const usage = "usage: ferry tokens create NAME [--expires 90d] [--scope SCOPE]... | list [NAME] | revoke ID"
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		return groupUsage(args, usage, stdout, stderr)
	}
	fs := newFlagSet("tokens "+args[0], stderr)
	sf := addStoreFlags(fs)
	switch args[0] {
	case "create":
		expires := fs.String("expires", "90d", "lifetime: days (90d), a duration (12h), or 0 for none")
		var scopes stringList
		fs.Var(&scopes, "scope", "what a system user's token may do (repeatable): messages:read, fhir:read, reports:write, dicomweb:read, dicomweb:write, operations")
		names, err := operands(fs, args[1:], 1, 1, usage, stderr)
		if err != nil {
			return err
		}
		ttl, err := access.ParseLifetime(*expires)
		if err != nil {
			return err
		}
		sc, err := access.ParseScopes(scopes)
		if err != nil {
			return err
		}
		return withPeople(ctx, sf, func(svc *access.Service) error {
			text, t, err := svc.CreateToken(ctx, names[0], sc, ttl)
			if err != nil {
				return err
			}
			// The token alone on stdout, for a script to capture; what it is on stderr.
			fmt.Fprintln(stdout, text)
			exp := "never expires"
			if !t.ExpiresAt.IsZero() {
				exp = "expires " + t.ExpiresAt.Format(time.RFC3339)
			}
			fmt.Fprintf(stderr, "token %s for %s, %s; it is shown only now\n", t.ID, t.User, exp)
			return nil
		})
	case "list":
		names, err := operands(fs, args[1:], 0, 1, usage, stderr)
		if err != nil {
			return err
		}
		return withPeople(ctx, sf, func(svc *access.Service) error {
			tokens, err := svc.Store.Tokens(ctx, strings.Join(names, ""))
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tUSER\tSCOPES\tCREATED\tEXPIRES\tREVOKED")
			for _, t := range tokens {
				sc := make([]string, len(t.Scopes))
				for i, s := range t.Scopes {
					sc[i] = string(s)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.User, orDash(strings.Join(sc, " ")),
					t.CreatedAt.Format(time.RFC3339), timeOrDash(t.ExpiresAt), timeOrDash(t.RevokedAt))
			}
			return w.Flush()
		})
	case "revoke":
		ids, err := operands(fs, args[1:], 1, 1, usage, stderr)
		if err != nil {
			return err
		}
		return withPeople(ctx, sf, func(svc *access.Service) error {
			if err := svc.RevokeToken(ctx, ids[0]); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "revoked token %s\n", ids[0])
			return nil
		})
	}
	fmt.Fprintln(stderr, usage)
	return exitCode(2)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func timeOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.RFC3339)
}
