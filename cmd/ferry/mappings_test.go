package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `ferry mappings lint` refuses what `ferry serve` refuses (a mappings directory or a facility's
// directory that is not there), says of each mapping which file and which direction it is, and
// catches a code table value too long for the DICOM worklist field it fills (issue 14, "Day one").
func TestMappingsLint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	t.Run("sound", func(t *testing.T) {
		out, errOut, status := runFerry(t, dir, "mappings", "lint")
		if status != 0 {
			t.Fatalf("exit status %d, stderr %q", status, errOut)
		}
		for _, want := range []string{"ok  inbound   shipped/orm_o01.yaml", "ok  outbound  shipped/outbound/oru_r01.yaml"} {
			if !strings.Contains(out, want) {
				t.Errorf("missing %q in:\n%s", want, out)
			}
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		_, errOut, status := runFerry(t, dir, "mappings", "lint", filepath.Join(dir, "no-such-dir"))
		if status != 1 || !strings.Contains(errOut, "mappings.dir") || !strings.Contains(errOut, "is not a directory") {
			t.Errorf("exit status %d, stderr %q; want 1 and the directory named", status, errOut)
		}
	})
	t.Run("facility directory with a typo", func(t *testing.T) {
		cfg := filepath.Join(dir, "ferry.yaml")
		body := "facilities:\n  - id: SMH\n    sending_facility: SMH\n    mappings: " + filepath.Join(dir, "smh-mapings") + "\n"
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, errOut, status := runFerry(t, dir, "mappings", "lint", "--config", cfg)
		if status != 1 || !strings.Contains(errOut, "facilities (SMH).mappings") {
			t.Errorf("exit status %d, stderr %q; want 1 and the facility's key named", status, errOut)
		}
	})
	t.Run("coding scheme too long for its DICOM field", func(t *testing.T) {
		site := filepath.Join(dir, "site")
		if err := os.MkdirAll(filepath.Join(site, "tables"), 0o755); err != nil {
			t.Fatal(err)
		}
		table := "table: procedures\nmissing: empty\nrows:\n" +
			`  "71260": {system: "http://loinc.org", code: "24627-2", scheme: "urn:oid:2.16.840.1.113883.6.1.99", display: "CT Chest", modality: CT}` + "\n"
		if err := os.WriteFile(filepath.Join(site, "tables", "procedures.yaml"), []byte(table), 0o600); err != nil {
			t.Fatal(err)
		}
		out, _, status := runFerry(t, dir, "mappings", "lint", site)
		if status != 1 || !strings.Contains(out, `code table "procedures", row "71260": scheme`) ||
			!strings.Contains(out, "Coding Scheme Designator (SH), which holds at most 16") {
			t.Errorf("exit status %d, stdout:\n%s\nwant 1 and the row and field named", status, out)
		}
	})
}
