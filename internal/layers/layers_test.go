// Package layers holds no code: its test checks the package map of docs/architecture.md — which
// of Ferry's packages may import which — against every non-test import in the repository, so the
// design stays as drawn.
package layers

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/ferryhealth/ferry/"

// The format packages (outside bytes in, Go values out) and the shared helpers every layer may use.
var (
	formats = []string{"hl7", "fhir", "dicom", "mappings"}
	helpers = []string{"internal/"}
)

// rules: for a package (the longest matching prefix wins), the Ferry packages it may import. A
// prefix ending in "/" covers the packages below it; otherwise it names one package and those
// below it.
var rules = []struct {
	pkg string
	may []string
}{
	{"cmd/", []string{""}}, // the composition root wires everything
	{"adapters/postgres", join([]string{"adapters/sqlstore", "engine", "migrations"}, formats, helpers)},
	{"adapters/sqlite", join([]string{"adapters/sqlstore", "engine", "migrations"}, formats, helpers)},
	{"adapters/", join([]string{"engine"}, formats, helpers)}, // an adapter never imports another
	// The outbox's transports serve the outbox alone.
	{"adapters/delivery", join([]string{"engine/outbox"}, formats, helpers)},
	// The access matrix, a suite both stores run (as engine/storetest): the HTTP edge, with the
	// DICOMweb routes it mounts, on a store.
	{"adapters/httpapi/accesstest", join([]string{"adapters/httpapi", "adapters/dicomweb", "adapters/sqlite", "engine"}, formats, helpers)},
	{"engine", join([]string{"engine"}, formats, helpers)}, // the domain (and its parts) knows no adapter
	// Parts split off the engine (issue 16) stand alone: the engine imports them, not they it.
	{"engine/outbox", join(formats, helpers)},
	{"engine/turnaround", join(formats, helpers)},
	{"mappings", join([]string{"hl7", "fhir"}, helpers)},
	{"hl7", helpers},
	{"fhir", helpers},
	{"dicom", join([]string{"dicom"}, helpers)},
	{"internal/", helpers},
	{"migrations", nil},
}

// debts are imports the map forbids that are still there, each with the work that removes it.
// The test fails when one is no longer needed, so the list only shrinks.
var debts = map[[2]string]string{}

func join(lists ...[]string) []string { return slices.Concat(lists...) }

func covers(prefix, pkg string) bool {
	if prefix == "" {
		return true
	}
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(pkg, prefix)
	}
	return pkg == prefix || strings.HasPrefix(pkg, prefix+"/")
}

func ruleFor(pkg string) ([]string, bool) {
	best, found := -1, false
	var may []string
	for _, r := range rules {
		if covers(r.pkg, pkg) && len(r.pkg) > best {
			best, may, found = len(r.pkg), r.may, true
		}
	}
	return may, found
}

// imports returns, per Ferry package (path below the module), the Ferry packages its non-test
// files import.
func imports(t *testing.T, root string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		dir, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := filepath.ToSlash(dir)
		if _, ok := out[pkg]; !ok {
			out[pkg] = nil
		}
		for _, im := range f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			if rest, ok := strings.CutPrefix(p, module); ok && !slices.Contains(out[pkg], rest) {
				out[pkg] = append(out[pkg], rest)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPackagesImportOnlyWhatTheMapAllows(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: %v", root, err)
	}
	graph := imports(t, root)
	if len(graph) < 10 {
		t.Fatalf("only %d packages found under %s", len(graph), root)
	}
	used := map[[2]string]bool{}
	for pkg, deps := range graph {
		may, ok := ruleFor(pkg)
		if !ok {
			t.Errorf("%s: no rule says what it may import; add it to docs/architecture.md and this test", pkg)
			continue
		}
		for _, dep := range deps {
			if slices.ContainsFunc(may, func(prefix string) bool { return covers(prefix, dep) }) {
				continue
			}
			if why, ok := debts[[2]string{pkg, dep}]; ok {
				used[[2]string{pkg, dep}] = true
				t.Logf("known debt: %s imports %s (%s)", pkg, dep, why)
				continue
			}
			t.Errorf("%s imports %s, which docs/architecture.md does not allow", pkg, dep)
		}
	}
	for d, why := range debts {
		if !used[d] {
			t.Errorf("%s no longer imports %s (%s): remove the debt from this test", d[0], d[1], why)
		}
	}
}
