package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// /readyz says not ready while the instance store cannot write (issue 18, item 5): its incoming
// area replaced by a file (which even root cannot create files in), then ready once it is back.
func TestReadyzInstanceStoreCannotWrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startFerry(t, "sqlite:"+filepath.Join(dir, "ferry.db"), dir, serveOptions{})
	if code := p.get(t, "/readyz", nil); code != http.StatusOK {
		t.Fatalf("/readyz at start: %d, want 200", code)
	}
	incoming := filepath.Join(dir, "ferry-data", "dicom", ".incoming")
	if err := os.RemoveAll(incoming); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(incoming, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := httpClient.Get("http://" + p.HTTPAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "instance store") {
		t.Errorf("/readyz while the instance store cannot write: %d %s, want 503 naming the instance store", resp.StatusCode, body)
	}
	if err := os.Remove(incoming); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(incoming, 0o750); err != nil {
		t.Fatal(err)
	}
	if code := p.get(t, "/readyz", nil); code != http.StatusOK {
		t.Errorf("/readyz once the instance store writes again: %d, want 200", code)
	}
}
