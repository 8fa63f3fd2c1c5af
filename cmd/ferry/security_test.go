package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCheckAdminToken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, token string
		ok          bool
	}{
		{"24 bytes hex (the old generated token)", strings.Repeat("0123456789abcdef", 3), false},
		{"32 bytes hex", strings.Repeat("0123456789abcdef", 4), true},
		{"32 bytes base64url", "q3Jx_8Vb0-2mZrT9LwYc4NfHk6Ps1DgAeUoRiWn7XtE", true},
		{"42 base64url characters", "q3Jx_8Vb0-2mZrT9LwYc4NfHk6Ps1DgAeUoRiWn7Xt", false},
		{"change-me", "change-me", false},
		{"long but repetitive", strings.Repeat("change-me-", 6), false},
		{"the test token", testAdminToken, true},
	} {
		if err := checkAdminToken(tc.token); (err == nil) != tc.ok {
			t.Errorf("%s: checkAdminToken = %v, want ok=%v", tc.name, err, tc.ok)
		} else if err != nil && strings.Contains(err.Error(), tc.token) {
			t.Errorf("%s: the error shows the token", tc.name)
		}
	}
}

// Secrets from files and the environment: a short admin token is refused at start; the database
// password joins the PostgreSQL URL from FERRY_DATABASE_PASSWORD, FERRY_DATABASE_PASSWORD_FILE or
// database_password_file, never both with a password in the URL. (t.Setenv: not parallel.)
func TestSecretsFromFilesAndEnvironment(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	goodToken := strings.Repeat("0123456789abcdef", 4)
	tokenFile := write("token", goodToken+"\n")
	pwFile := write("pw", "s3cr3t p@ss:/word\n")
	emptyFile := write("empty", "\n")
	const pg = "database: postgres://ferry@db.internal:5432/ferry?sslmode=verify-full\n"

	for _, tc := range []struct {
		name    string
		env     map[string]string
		yaml    string
		wantErr string // "" for none
		wantDB  string
		wantTok string
	}{
		{name: "short admin token in the environment", env: map[string]string{"FERRY_ADMIN_TOKEN": "t"}, wantErr: "admin_token: a token of 1 characters is shorter than 32 random bytes"},
		{name: "short admin token in the config", yaml: "admin_token: change-me\n", wantErr: "admin_token: a token of 9 characters"},
		{name: "admin token from a file", yaml: "admin_token_file: " + tokenFile + "\n", wantTok: goodToken},
		{name: "admin token file from the environment", env: map[string]string{"FERRY_ADMIN_TOKEN_FILE": tokenFile}, wantTok: goodToken},
		{name: "admin token twice", env: map[string]string{"FERRY_ADMIN_TOKEN": strings.Repeat("fedcba9876543210", 4)}, yaml: "admin_token_file: " + tokenFile + "\n", wantErr: "admin_token_file: admin_token (or FERRY_ADMIN_TOKEN) is set too"},
		{name: "password from the environment", env: map[string]string{"FERRY_DATABASE_PASSWORD": "pw-from-env"}, yaml: pg,
			wantDB: "postgres://ferry:pw-from-env@db.internal:5432/ferry?sslmode=verify-full"},
		{name: "password file from the environment", env: map[string]string{"FERRY_DATABASE_PASSWORD_FILE": pwFile}, yaml: pg,
			wantDB: "postgres://ferry:s3cr3t%20p%40ss%3A%2Fword@db.internal:5432/ferry?sslmode=verify-full"},
		{name: "password file in the config", yaml: pg + "database_password_file: " + pwFile + "\n",
			wantDB: "postgres://ferry:s3cr3t%20p%40ss%3A%2Fword@db.internal:5432/ferry?sslmode=verify-full"},
		{name: "password in the URL and a file", yaml: "database: postgres://ferry:inline@db/ferry\ndatabase_password_file: " + pwFile + "\n",
			wantErr: "database_password_file: the database URL carries a password too"},
		{name: "empty password file", yaml: pg + "database_password_file: " + emptyFile + "\n", wantErr: "database_password_file: " + emptyFile + " is empty"},
		{name: "missing password file", yaml: pg + "database_password_file: " + filepath.Join(dir, "none") + "\n", wantErr: "database_password_file: open"},
		{name: "password for SQLite", env: map[string]string{"FERRY_DATABASE_PASSWORD": "x"}, wantErr: "FERRY_DATABASE_PASSWORD: a database password is for a postgres:// database"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"FERRY_ADMIN_TOKEN", "FERRY_ADMIN_TOKEN_FILE", "FERRY_DATABASE_PASSWORD", "FERRY_DATABASE_PASSWORD_FILE", "FERRY_DATABASE_URL"} {
				t.Setenv(k, tc.env[k])
			}
			cfg, err := loadTestConfig(t, tc.yaml)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Validate: %v, want %q", err, tc.wantErr)
				}
				for _, secret := range []string{"pw-from-env", "s3cr3t", "inline", "change-me"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("the error shows a secret: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantDB != "" && cfg.Database != tc.wantDB {
				t.Errorf("database = %q, want %q", cfg.Database, tc.wantDB)
			}
			if tc.wantTok != "" && cfg.AdminToken != tc.wantTok {
				t.Errorf("admin token not read from the file")
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("a second Validate: %v", err)
			}
		})
	}
}

func TestTrustedProxiesConfig(t *testing.T) {
	t.Parallel()
	cfg, err := loadTestConfig(t, "http: {trusted_proxies: [10.1.0.0/16, 192.0.2.7, \"2001:db8::1\"]}\n")
	if err != nil {
		t.Fatal(err)
	}
	nets, _ := cfg.HTTP.trustedProxies()
	var got []string
	for _, n := range nets {
		got = append(got, n.String())
	}
	if strings.Join(got, " ") != "10.1.0.0/16 192.0.2.7/32 2001:db8::1/128" {
		t.Errorf("trusted proxies %v", got)
	}
	if _, err := loadTestConfig(t, "http: {trusted_proxies: [\"10.1.0.0/33\"]}\n"); err == nil || !strings.Contains(err.Error(), `http.trusted_proxies[0]: "10.1.0.0/33" is not a CIDR`) {
		t.Errorf("a bad CIDR: %v", err)
	}
}

// ferry serve refuses to start with an admin token shorter than 32 random bytes, from the
// environment or from an admin-token file an older Ferry generated (24 bytes), and says why
// without printing it (issue 17 item 10).
func TestServeRefusesShortAdminToken(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, dir string, env ...string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, ferryBin, "serve", "--mllp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--dicom", "127.0.0.1:0")
		cmd.Dir = dir
		cmd.Env = append(filteredEnv("FERRY_DATABASE_URL", "FERRY_ADMIN_TOKEN", "FERRY_ADMIN_TOKEN_FILE"), env...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("ferry serve with a short token: %v (want it to exit non-zero)\n%s", err, out)
		}
		return string(out), ee.ExitCode()
	}
	t.Run("environment", func(t *testing.T) {
		t.Parallel()
		const short = "e2e-short-token-0123456789"
		out, status := run(t, t.TempDir(), "FERRY_ADMIN_TOKEN="+short)
		if status == 0 || !strings.Contains(out, "admin_token: a token of 26 characters is shorter than 32 random bytes") || strings.Contains(out, short) {
			t.Errorf("exit %d, output:\n%s", status, out)
		}
	})
	t.Run("old generated file", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "ferry-data"), 0o700)
		old := strings.Repeat("a1b2c3d4e5f6", 4) // 48 hex digits: 24 bytes
		os.WriteFile(filepath.Join(dir, "ferry-data", "admin-token"), []byte(old+"\n"), 0o600)
		out, status := run(t, dir)
		if status == 0 || !strings.Contains(out, "delete it to have a new one generated") || strings.Contains(out, old) {
			t.Errorf("exit %d, output:\n%s", status, out)
		}
	})
	t.Run("a generated token is 32 bytes", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		cmd := exec.Command(ferryBin, "serve", "--mllp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--dicom", "127.0.0.1:0")
		cmd.Dir = dir
		cmd.Env = filteredEnv("FERRY_DATABASE_URL", "FERRY_ADMIN_TOKEN", "FERRY_ADMIN_TOKEN_FILE")
		var stdout lockedBuffer
		cmd.Stdout = &stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		defer func() { cmd.Process.Signal(syscall.SIGTERM); <-exited }()
		awaitOutput(t, &stdout, exited, "the serving line", servingLine.MatchString)
		b, err := os.ReadFile(filepath.Join(dir, "ferry-data", "admin-token"))
		if tok := strings.TrimSpace(string(b)); err != nil || len(tok) != 64 || checkAdminToken(tok) != nil {
			t.Errorf("generated token: %d characters, %v", len(tok), err)
		}
	})
}

// http_tls=true is logged only once the HTTP listener has completed a TLS handshake with Ferry's
// own certificate; a client then reaches /healthz over TLS (issue 17 item 10).
func TestServeLogsHTTPTLSAfterHandshake(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	dir := t.TempDir()
	p := startFerry(t, "sqlite:"+filepath.Join(dir, "ferry.db"), dir, serveOptions{
		Config: fmt.Sprintf("http: {tls: {cert: %s, key: %s}}\n", ca.serverCert, ca.serverKey)})
	// stdout's serving line (what startFerry waits for) may come through its pipe before
	// stderr's "ferry serving" comes through the other: wait for the latter.
	logs := awaitOutput(t, p.stderr, p.exited, "the ferry serving log line", func(log string) bool {
		return strings.Contains(log, `msg="ferry serving"`)
	})
	i, j := strings.Index(logs, "HTTP listener serving TLS"), strings.Index(logs, `msg="ferry serving"`)
	if i < 0 || j < 0 || i > j || !strings.Contains(logs[j:], "http_tls=true") {
		t.Fatalf("want the TLS handshake logged, then http_tls=true; stderr:\n%s", logs)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}}
	resp, err := client.Get("https://" + p.HTTPAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Errorf("GET /healthz over TLS: %d, TLS %v", resp.StatusCode, resp.TLS != nil)
	}
	// Without TLS configured the line says so.
	plain := startFerry(t, "sqlite:"+filepath.Join(t.TempDir(), "ferry.db"), t.TempDir(), serveOptions{})
	plainLogs := awaitOutput(t, plain.stderr, plain.exited, "the ferry serving log line", func(log string) bool {
		return strings.Contains(log, `msg="ferry serving"`)
	})
	if !strings.Contains(plainLogs, "http_tls=false") {
		t.Errorf("plain HTTP: want http_tls=false in the serving line")
	}
}
