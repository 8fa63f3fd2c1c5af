package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
