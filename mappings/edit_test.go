package mappings_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferryhealth/ferry/mappings"
)

// TestEditorSave: a save is loaded and tested before it is written — a broken table or one that
// fails a shipped test is refused and nothing changes; a good one is written atomically (no
// temporary file left), recorded, and in force at once; Sync then finds nothing new to record.
func TestEditorSave(t *testing.T) {
	t.Parallel()
	site, general := t.TempDir(), t.TempDir()
	shipped, err := fs.ReadFile(mappings.Shipped(), "tables/procedures.yaml")
	if err != nil {
		t.Fatal(err)
	}
	strict := strings.Replace(string(shipped), "\nmissing: empty\n", "\nmissing: error\n", 1)
	table := filepath.Join(site, "tables", "procedures.yaml")
	if err := os.MkdirAll(filepath.Dir(table), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(table, []byte(strict), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := mappings.Config{Dir: site, Facilities: map[string]string{"GENERAL": general}}
	r, err := mappings.NewReloader(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ed := &mappings.Editor{Config: cfg, Reloader: r}
	recorded := map[string]string{} // facility/path → content last recorded
	record := func(f mappings.File) error {
		key := f.Facility + "/" + f.Path
		if recorded[key] != string(f.Content) {
			recorded[key] = string(f.Content)
		}
		return nil
	}
	if err := ed.Sync(record); err != nil || recorded["/tables/procedures.yaml"] != strict || len(recorded) != 1 {
		t.Fatalf("Sync at start: %v, recorded %d files; want the site's table alone", err, len(recorded))
	}
	order := "MSH|^~\\&|RIS|STMARYS|FERRY|FERRY|20261127083000||ORM^O01|E1|P|2.3.1\rPID|1||9^^^STMARYS^MR||DOE^JANE\rORC|NW|PL1^RIS||||||||||1^SMITH\rOBR|1|PL1^RIS||99999^EXAM^C4|||||||||||||||ACC1|||||CT\r"
	if res, err := r.Current().Try([]byte(order)); err != nil || res.Error == nil || res.Error.Code != 103 {
		t.Fatalf("the strict table maps 99999: %+v, %v", res, err)
	}
	unchanged := func(what string) {
		t.Helper()
		if b, _ := os.ReadFile(table); string(b) != strict {
			t.Fatalf("%s changed the file", what)
		}
	}
	calls := 0
	never := func() error { calls++; return nil }
	for _, c := range []struct{ name, content, want string }{
		{"broken YAML", "table: procedures\nrows: [\n", "procedures.yaml"},
		{"a bad missing:", "table: procedures\nmissing: sometimes\nrows:\n  X: {code: 1}\n", "missing: want empty, error or default"},
		{"a table another mapping needs removed", "table: procedurez\nrows:\n  X: {code: 1}\n", "the name \"procedurez\" differs"},
	} {
		cand, err := ed.Save("", "tables/procedures.yaml", []byte(c.content), never)
		if err != nil || cand.OK() || !strings.Contains(cand.Problems.Error(), c.want) {
			t.Errorf("%s: OK %v, %v, problems %q; want refused with %q", c.name, cand != nil && cand.OK(), err, cand.Problems.Error(), c.want)
		}
		unchanged(c.name)
	}
	// 71260 mapped to another LOINC code: loads, but the shipped orm_o01 tests fail.
	wrong := strings.Replace(strict, `"71260":  {system: "http://loinc.org", code: "24627-2"`, `"71260":  {system: "http://loinc.org", code: "11111-1"`, 1)
	if wrong == strict {
		t.Fatal("the shipped table's 71260 row changed shape: fix the test")
	}
	cand, err := ed.Save("", "tables/procedures.yaml", []byte(wrong), never)
	if err != nil || cand.OK() || cand.Failed == 0 || len(cand.Problems) != 0 {
		t.Fatalf("a table that fails the tests: %v, %d failed, problems %v; want refused by the tests", err, cand.Failed, cand.Problems)
	}
	unchanged("a table failing the tests")
	if calls != 0 {
		t.Fatalf("a refused save was recorded %d times", calls)
	}

	fixed := strings.Replace(strict, "\nrows:\n", "\nrows:\n  \"99999\": {system: \"http://loinc.org\", code: \"24627-2\", scheme: LN, display: \"CT Chest\", modality: CT}\n", 1)
	cand, err = ed.Save("", "tables/procedures.yaml", []byte(fixed), func() error {
		calls++
		return record(mappings.File{Path: "tables/procedures.yaml", Content: []byte(fixed)})
	})
	if err != nil || !cand.OK() || calls != 1 || len(cand.Results) == 0 {
		t.Fatalf("the fix: %v, OK %v, recorded %d times, %d tests run", err, cand.OK(), calls, len(cand.Results))
	}
	if b, _ := os.ReadFile(table); string(b) != string(fixed) {
		t.Fatal("the fix is not on disk")
	}
	if res, err := r.Current().Try([]byte(order)); err != nil || res.Error != nil {
		t.Fatalf("the fix is not in force after the save: %+v, %v", res, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(table))
	if len(entries) != 1 {
		t.Fatalf("the tables directory holds %d files after the save, want 1 (no temporary file left)", len(entries))
	}
	before := len(recorded)
	if err := ed.Sync(func(f mappings.File) error {
		if recorded[f.Facility+"/"+f.Path] != string(f.Content) {
			t.Errorf("Sync after the save found %s changed: the save's record was not first", f.Path)
		}
		return nil
	}); err != nil || len(recorded) != before {
		t.Fatal(err)
	}

	// A facility's new file: written into its directory, listed as the facility's.
	if cand, err := ed.Save("GENERAL", "tables/procedures.yaml", []byte(fixed), func() error { return nil }); err != nil || !cand.OK() {
		t.Fatalf("a facility's override: %v, %+v", err, cand)
	}
	files, err := cfg.Files(r.Current())
	if err != nil {
		t.Fatal(err)
	}
	var sawShipped, sawSite, sawFacility, sawVersion bool
	for _, f := range files {
		switch {
		case f.Shipped && f.Path == "tables/procedures.yaml":
			sawShipped = f.Overridden
		case !f.Shipped && f.Facility == "" && f.Path == "tables/procedures.yaml":
			sawSite = true
		case f.Facility == "GENERAL" && f.Path == "tables/procedures.yaml":
			sawFacility = true
		case f.Shipped && f.Path == "orm_o01.yaml":
			sawVersion = strings.HasPrefix(f.Version, "orm_o01@") && f.Direction() == "inbound"
		}
	}
	if !sawShipped || !sawSite || !sawFacility || !sawVersion {
		t.Errorf("Files: shipped overridden %v, site %v, facility %v, mapping version %v", sawShipped, sawSite, sawFacility, sawVersion)
	}
}

// TestCheckPath: the console writes only the files a mappings directory holds, never outside it.
func TestCheckPath(t *testing.T) {
	t.Parallel()
	for p, ok := range map[string]bool{
		"orm_o01.yaml": true, "orm_o01_test.yaml": true, "tables/procedures.yaml": true, "partials/order.yaml": true,
		"outbound/oru_r01.yaml": true, "outbound/oru_r01_test.yaml": true,
		"../orm_o01.yaml": false, "tables/../../x.yaml": false, "/etc/x.yaml": false, "other/x.yaml": false,
		"orm_o01.yml": false, "tables/x_test.yaml": false, "": false, "tables/": false, ".hidden.yaml": false,
	} {
		if err := mappings.CheckPath(p); (err == nil) != ok {
			t.Errorf("CheckPath(%q): %v, want allowed %v", p, err, ok)
		}
	}
	if _, err := (mappings.Config{}).Try("", "tables/procedures.yaml", nil); err == nil {
		t.Error("a save with no mappings.dir was allowed (the shipped files are read only)")
	}
	if _, err := (mappings.Config{Dir: t.TempDir()}).Try("NOSUCH", "tables/procedures.yaml", nil); err == nil {
		t.Error("a save for a facility without a directory was allowed")
	}
}
