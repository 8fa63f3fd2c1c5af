package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// Two `ferry serve` on one embedded store: the second is refused and says why; once the first
// has stopped, the store may be served again. (flock is per open file, so one process suffices.)
func TestSecondServeOnOneEmbeddedStoreIsRefused(t *testing.T) {
	db := "sqlite:" + filepath.Join(t.TempDir(), "data", "ferry.db")
	unlock, err := lockEmbeddedStore(db)
	if err != nil {
		t.Fatalf("first lock: %v", err)
	}
	if _, err := lockEmbeddedStore(db); err == nil || !strings.Contains(err.Error(), "already serving the embedded store") {
		t.Fatalf("second serve on the same store: got %v, want refused as already served", err)
	}
	unlock()
	again, err := lockEmbeddedStore(db)
	if err != nil {
		t.Fatalf("after the first stopped: %v", err)
	}
	again()
	if _, err := lockEmbeddedStore("postgres://nobody@127.0.0.1:1/x"); err != nil {
		t.Fatalf("PostgreSQL needs no lock, got %v", err)
	}
}
