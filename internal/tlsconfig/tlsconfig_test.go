package tlsconfig

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestClient(t *testing.T) {
	t.Parallel()
	cfg, err := Client("", "", "", "ehr.example")
	if err != nil || cfg.MinVersion != tls.VersionTLS12 || cfg.ServerName != "ehr.example" || !slices.Equal(cfg.CipherSuites, AEADCipherSuites()) {
		t.Fatalf("Client = %+v, %v", cfg, err)
	}
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("not pem"), 0o600)
	for name, args := range map[string][3]string{
		"missing CA":       {filepath.Join(dir, "none.pem"), "", ""},
		"CA without PEM":   {junk, "", ""},
		"cert without key": {"", junk, ""},
		"unreadable pair":  {"", junk, junk},
	} {
		if _, err := Client(args[0], args[1], args[2], ""); err == nil {
			t.Errorf("%s: Client succeeded", name)
		}
	}
}
