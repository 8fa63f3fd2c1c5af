package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/engine/access"
)

// TestUsersAndTokensCLI runs the CLI contract (DESIGN.md "Users") on a real SQLite store: users
// add, list and disable, tokens create (the token alone on stdout, once), list and revoke, and
// audit verify; the token it prints authenticates until revoked.
func TestUsersAndTokensCLI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := "sqlite:" + filepath.Join(t.TempDir(), "ferry.db")
	ferry := func(in string, args ...string) (string, string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		stdin = strings.NewReader(in) // only this test reads it
		err := run(ctx, append(args, "--db", db), &out, &errOut)
		return out.String(), errOut.String(), err
	}
	steps := []struct {
		in      string
		args    []string
		wantOut string // a regexp stdout must match
		wantErr bool
	}{
		{"", []string{"users", "add", "ana", "--role", "analyst"}, `added user ana \(analyst\)`, false},
		{"correct horse battery staple\n", []string{"users", "add", "dr.lee", "--role", "physician", "--practitioner", "http://hl7.org/fhir/sid/us-npi|1234567893",
			"--practitioner", "LEE01", "--facility", "stmarys", "--password-stdin"}, `added user dr.lee \(physician\)`, false},
		{"", []string{"users", "add", "pscribe", "--role", "system"}, `added user pscribe`, false},
		{"", []string{"users", "add", "ana", "--role", "admin"}, ``, true},                          // taken
		{"", []string{"users", "add", "dr.x", "--role", "physician"}, ``, true},                     // no practitioner
		{"", []string{"users", "add", "someone", "--role", "superuser"}, ``, true},                  // no such role
		{"short\n", []string{"users", "add", "p", "--role", "admin", "--password-stdin"}, ``, true}, // too short
		{"", []string{"users", "list"}, `(?s)ana\s+analyst.*dr\.lee\s+physician\s+http://hl7.org/fhir/sid/us-npi\|1234567893 LEE01\s+stmarys\s+yes\s+enabled`, false},
		{"", []string{"tokens", "create", "pscribe"}, ``, true}, // a system token needs a scope
	}
	for _, s := range steps {
		out, errOut, err := ferry(s.in, s.args...)
		if (err != nil) != s.wantErr {
			t.Fatalf("ferry %v: err %v (stderr %s), want error %v", s.args, err, errOut, s.wantErr)
		}
		if !regexp.MustCompile(s.wantOut).MatchString(out) {
			t.Errorf("ferry %v: stdout %q, want it to match %q", s.args, out, s.wantOut)
		}
	}

	out, errOut, err := ferry("", "tokens", "create", "pscribe", "--expires", "30d", "--scope", "reports:write")
	if err != nil {
		t.Fatalf("tokens create: %v %s", err, errOut)
	}
	if !regexp.MustCompile(`^ferry_[0-9a-f]{16}_[A-Za-z0-9_-]{43}\n$`).MatchString(out) {
		t.Fatalf("tokens create printed %q, want the token alone on a line", out)
	}
	token := strings.TrimSpace(out)
	id := strings.Split(token, "_")[1]
	if !strings.Contains(errOut, id) || !strings.Contains(errOut, "expires") {
		t.Errorf("tokens create: stderr %q, want the token's ID and expiry", errOut)
	}

	st, _, _, _, err := openMigrated(ctx, "", db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc := &access.Service{Store: st}
	if ident, err := svc.AuthenticateToken(ctx, token); err != nil || ident.User != "pscribe" || !ident.Grants(access.PermReportsWrite) {
		t.Errorf("the printed token: %+v, %v; want pscribe with reports:write", ident, err)
	}
	if out, _, _ := ferry("", "tokens", "list"); strings.Contains(out, token[len(token)-43:]) || !strings.Contains(out, id) {
		t.Errorf("tokens list: %q, want the ID and never the secret", out)
	}
	if _, _, err := ferry("", "tokens", "revoke", id); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AuthenticateToken(ctx, token); err == nil {
		t.Error("a revoked token still authenticates")
	}
	if _, _, _, err := svc.Login(ctx, "dr.lee", "correct horse battery staple", "127.0.0.1"); err != nil {
		t.Errorf("login with the password given on stdin: %v", err)
	}
	if _, _, err := ferry("", "users", "disable", "dr.lee"); err != nil {
		t.Fatal(err)
	}
	if out, _, _ := ferry("", "users", "list"); !regexp.MustCompile(`dr\.lee .*disabled`).MatchString(out) {
		t.Errorf("users list after disable: %q", out)
	}
	if out, _, err := ferry("", "audit", "verify"); err != nil || !strings.Contains(out, "intact") {
		t.Errorf("audit verify: %q, %v", out, err)
	}
}

// TestAccessConfig: sessions' timeouts and single sign-on are read from the config, the client
// secret from the environment or a file, never the file itself; a half-configured sign-on is
// refused with what it lacks.
func TestAccessConfig(t *testing.T) {
	t.Setenv("FERRY_SSO_CLIENT_SECRET", "")
	secret := filepath.Join(t.TempDir(), "sso-secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadTestConfig(t, "sessions: {idle_timeout: 15m, absolute_timeout: 8h}\n"+
		"sso:\n  name: St Mary's\n  issuer: https://login.stmarys.org/\n  client_id: ferry\n  client_secret_file: "+secret+
		"\n  redirect_url: https://ferry.stmarys.org/login/sso/callback\n  role_claim: ferry_role\n")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SSO == nil || cfg.SSO.ClientSecret != "s3cret" || cfg.SSO.RoleClaim != "ferry_role" || cfg.Sessions.IdleTimeout != 15*time.Minute {
		t.Errorf("config read: %+v %+v", cfg.SSO, cfg.Sessions)
	}
	if sso, err := cfg.sso(); err != nil || sso == nil {
		t.Errorf("cfg.sso(): %v", err)
	}
	if _, err := loadTestConfig(t, "sso:\n  issuer: https://login.stmarys.org/\n"); err == nil ||
		!strings.Contains(err.Error(), "sso.client_id: required") || !strings.Contains(err.Error(), "no client secret") {
		t.Errorf("half an SSO config: %v, want what it lacks", err)
	}
	path := filepath.Join(t.TempDir(), "ferry.yaml")
	if err := os.WriteFile(path, []byte("sso:\n  client_secret: inline\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadConfig(path); err == nil || !strings.Contains(err.Error(), "client_secret") {
		t.Errorf("a client secret in the config file itself: %v, want refused", err)
	}
}
