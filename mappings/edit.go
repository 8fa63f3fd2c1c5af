package mappings

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// FileKind is what a file of a mappings directory holds.
type FileKind string

const (
	KindMapping  FileKind = "mapping"  // an inbound mapping: HL7 v2 → resources and worklist entries
	KindOutbound FileKind = "outbound" // an outbound mapping: a report → ORU^R01
	KindTable    FileKind = "table"    // a code table
	KindPartial  FileKind = "partial"  // a part several mappings include
	KindTest     FileKind = "test"     // an analyst's tests (*_test.yaml)
)

// File is one file of the mappings in force, as the console lists it.
type File struct {
	// Facility is the sending facility (MSH-4) whose directory holds the file, "" for the site's
	// (mappings.dir) or the shipped ones.
	Facility string
	// Shipped: built into Ferry. An edit is saved to mappings.dir, where it overrides it.
	Shipped bool
	// Overridden: a file of the same path in mappings.dir replaces this shipped one.
	Overridden bool
	Path       string // inside its directory, slash-separated: "orm_o01.yaml", "tables/procedures.yaml"
	Kind       FileKind
	Version    string // a mapping's version (what messages record), "" for other kinds
	Content    []byte
}

// Direction is "inbound" or "outbound" for a mapping or its tests, "" for a table or partial.
func (f File) Direction() string {
	switch {
	case f.Kind == KindOutbound || (f.Kind == KindTest && strings.HasPrefix(f.Path, "outbound/")):
		return "outbound"
	case f.Kind == KindMapping || f.Kind == KindTest:
		return "inbound"
	}
	return ""
}

// filePathRE is the paths the console may write: a file of a mappings directory's top level or
// of its outbound/, tables/ or partials/ directory, named as mappings and tables are.
var filePathRE = regexp.MustCompile(`^(?:(?:outbound|tables|partials)/)?[a-z0-9][a-z0-9_.-]{0,79}\.yaml$`)

// kindOf says what the file at p (a path filePathRE allows) holds.
func kindOf(p string) FileKind {
	dir, name := path.Split(p)
	switch {
	case strings.HasSuffix(name, "_test.yaml") && (dir == "" || dir == "outbound/"):
		return KindTest
	case dir == "outbound/":
		return KindOutbound
	case dir == "tables/":
		return KindTable
	case dir == "partials/":
		return KindPartial
	}
	return KindMapping
}

// CheckPath reports whether p names a file the console may write, and why not.
func CheckPath(p string) error {
	// Tests live beside mappings only: the loader reads no *_test.yaml in tables/ or partials/.
	misplacedTest := strings.HasSuffix(p, "_test.yaml") && (strings.HasPrefix(p, "tables/") || strings.HasPrefix(p, "partials/"))
	if !filePathRE.MatchString(p) || strings.Contains(p, "..") || misplacedTest {
		return fmt.Errorf("%q is not a mapping, table, partial or test file (NAME.yaml, outbound/NAME.yaml, tables/NAME.yaml, partials/NAME.yaml)", p)
	}
	return nil
}

// dirOf is the directory a facility's files are written to ("" for the site's: mappings.dir).
func (c Config) dirOf(facility string) (string, error) {
	if facility == "" {
		if c.Dir == "" {
			return "", errors.New("no mappings.dir is configured: the shipped mappings cannot be edited here (set mappings.dir, docs/mappings.md)")
		}
		return c.Dir, nil
	}
	d, ok := c.Facilities[facility]
	if !ok {
		return "", fmt.Errorf("facility %q has no mappings directory (facilities[].mappings)", facility)
	}
	return d, nil
}

// Files lists every file of the mappings in force: the shipped ones, the site's and each
// facility's, each with the version of the mapping it is (from set, the set in force).
func (c Config) Files(set *Set) ([]File, error) {
	versions := map[string]string{}
	if set != nil {
		for _, m := range set.Mappings() {
			versions[m.File] = m.Version
		}
		for _, o := range set.Outbounds() {
			versions[o.File] = o.Version()
		}
	}
	site := map[string]bool{}
	var siteFiles []File
	if c.Dir != "" {
		fs, err := listFiles(DirFS(c.Dir), "", false, versions)
		if err != nil {
			return nil, err
		}
		for _, f := range fs {
			site[f.Path] = true
		}
		siteFiles = fs
	}
	out, err := listFiles(Shipped(), "", true, versions)
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Overridden = site[out[i].Path]
	}
	out = append(out, siteFiles...)
	for _, fac := range slices.Sorted(maps.Keys(c.Facilities)) {
		fs, err := listFiles(DirFS(c.Facilities[fac]), fac, false, versions)
		if err != nil {
			return nil, err
		}
		out = append(out, fs...)
	}
	return out, nil
}

// listFiles reads the files of one layer that the loader reads (and the tests).
func listFiles(layer fs.FS, facility string, shipped bool, versions map[string]string) ([]File, error) {
	var out []File
	for _, dir := range []string{".", "outbound", "tables", "partials"} {
		entries, err := fs.ReadDir(layer, dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", path.Join(layerName(layer), dir), err)
		}
		for _, e := range entries {
			p := path.Join(dir, e.Name())
			if e.IsDir() || CheckPath(p) != nil {
				continue
			}
			data, err := fs.ReadFile(layer, p)
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", path.Join(layerName(layer), p), err)
			}
			out = append(out, File{Facility: facility, Shipped: shipped, Path: p, Kind: kindOf(p),
				Version: versions[path.Join(layerName(layer), p)], Content: data})
		}
	}
	return out, nil
}

// File returns the file a facility's layer (or the site's, facility "") has at p: its own, or
// for the site the shipped one it would override; fs.ErrNotExist when neither has it.
func (c Config) File(facility, p string) (File, error) {
	if err := CheckPath(p); err != nil {
		return File{}, err
	}
	if facility != "" || c.Dir != "" {
		dir, err := c.dirOf(facility)
		if err != nil {
			return File{}, err
		}
		data, err := fs.ReadFile(DirFS(dir), p)
		if err == nil {
			return File{Facility: facility, Path: p, Kind: kindOf(p), Content: data}, nil
		}
		if !errors.Is(err, fs.ErrNotExist) || facility != "" {
			return File{}, err
		}
	}
	data, err := fs.ReadFile(Shipped(), p)
	if err != nil {
		return File{}, err
	}
	return File{Path: p, Shipped: true, Kind: kindOf(p), Content: data}, nil
}

// Tests reads the analysts' tests of every layer of src: the base layers' run against the
// site's mappings, a facility's against its overrides (File.Facility set).
func (src Source) Tests() ([]TestFile, error) {
	type testLayer struct {
		fs       fs.FS
		facility string
	}
	var layers []testLayer
	for _, l := range src.Base {
		layers = append(layers, testLayer{fs: l})
	}
	for _, f := range slices.Sorted(maps.Keys(src.Facilities)) {
		layers = append(layers, testLayer{fs: src.Facilities[f], facility: f})
	}
	var files []TestFile
	for _, l := range layers {
		tf, err := LoadTests(l.fs)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for i := range tf {
			tf[i].Facility = l.facility
		}
		files = append(files, tf...)
	}
	return files, nil
}

// Candidate is the mappings as they would be with one file changed: the set they load to (nil
// when they have problems), every problem, and the results of every test.
type Candidate struct {
	Set      *Set
	Problems Problems
	Results  []TestResult
	Failed   int
}

// OK reports whether the change may take effect: it loads without a problem and every test passes.
func (c *Candidate) OK() bool { return c.Set != nil && len(c.Problems) == 0 && c.Failed == 0 }

// Try loads the mappings with the file at p of a facility's layer (the site's for "") holding
// content, and runs every test against them. Nothing is written. The error is for a path that
// may not be written or a directory that cannot be read; problems are in the result.
func (c Config) Try(facility, p string, content []byte) (*Candidate, error) {
	if err := CheckPath(p); err != nil {
		return nil, err
	}
	dir, err := c.dirOf(facility)
	if err != nil {
		return nil, err
	}
	src := c.Source()
	edited := editedFS{dirFS: DirFS(dir).(dirFS), path: p, content: content}
	if facility == "" {
		src.Base[len(src.Base)-1] = edited
	} else {
		src.Facilities[facility] = edited
	}
	cand := &Candidate{}
	set, err := Load(src)
	if err != nil {
		if !errors.As(err, &cand.Problems) {
			return nil, err
		}
	}
	tests, err := src.Tests()
	if err != nil {
		var probs Problems
		if !errors.As(err, &probs) {
			return nil, err
		}
		cand.Problems = append(cand.Problems, probs...)
	}
	if len(cand.Problems) > 0 {
		return cand, nil
	}
	cand.Set = set
	cand.Results = set.Run(tests)
	for _, r := range cand.Results {
		if !r.Passed {
			cand.Failed++
		}
	}
	return cand, nil
}

// editedFS is a directory layer with one file's content replaced (or added).
type editedFS struct {
	dirFS
	path    string
	content []byte
}

func (e editedFS) ReadFile(name string) ([]byte, error) {
	if name == e.path {
		return slices.Clone(e.content), nil
	}
	return e.dirFS.ReadFile(name)
}

func (e editedFS) ReadDir(name string) ([]fs.DirEntry, error) {
	entries, err := e.dirFS.ReadDir(name)
	dir, base := path.Split(e.path)
	if path.Clean(dir) != path.Clean(name) {
		return entries, err
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, en := range entries {
		if en.Name() == base {
			return entries, nil
		}
	}
	entries = append(entries, editedEntry(base))
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, nil
}

// editedEntry is the directory entry of a file that exists only in the edit.
type editedEntry string

func (e editedEntry) Name() string               { return string(e) }
func (e editedEntry) IsDir() bool                { return false }
func (e editedEntry) Type() fs.FileMode          { return 0 }
func (e editedEntry) Info() (fs.FileInfo, error) { return nil, errors.ErrUnsupported }

// Write replaces the file at p of a facility's directory (the site's for "") with content,
// atomically: a temporary file in the same directory, synced, renamed over the file, and the
// directory synced, so that a reader (the Reloader, another node) sees the old file or the new
// one, never part of one, and a crash keeps one of them.
func (c Config) Write(facility, p string, content []byte) error {
	if err := CheckPath(p); err != nil {
		return err
	}
	dir, err := c.dirOf(facility)
	if err != nil {
		return err
	}
	target := filepath.Join(dir, filepath.FromSlash(p))
	parent := filepath.Dir(target)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("writing %s: %w", target, err)
	}
	// The temporary name does not end in .yaml: a reload at this instant does not read it.
	tmp, err := os.CreateTemp(parent, "."+filepath.Base(target)+".*.tmp")
	if err != nil {
		return fmt.Errorf("writing %s: %w", target, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	_, err = tmp.Write(content)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), target)
	}
	if err == nil {
		err = syncDir(parent)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", target, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Editor changes the mappings in force: a save is tried (loaded and tested) before it is
// written, and the reloader applies it at once. Its saves and the history's records of what is
// on disk (Sync) take turns, so a save is recorded as its author's, never as "files". Safe for
// concurrent use. One node's Editor does not coordinate with another's: docs/mappings.md says
// how several nodes share the directories.
type Editor struct {
	Config   Config
	Reloader *Reloader // nil: the change is applied at the next reload, if any

	mu sync.Mutex
}

// Save tries content as the file at p of a facility's directory (the site's for ""); when it
// loads and every test passes it writes it, calls record (the history: a failed record is
// returned, the file stays written), and has the reloader apply it. Otherwise nothing changes,
// and the candidate says why.
func (e *Editor) Save(facility, p string, content []byte, record func() error) (*Candidate, error) {
	cand, err := e.save(facility, p, content, record)
	if err == nil && cand.OK() && e.Reloader != nil {
		e.Reloader.Check()
	}
	return cand, err
}

func (e *Editor) save(facility, p string, content []byte, record func() error) (*Candidate, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cand, err := e.Config.Try(facility, p, content)
	if err != nil || !cand.OK() {
		return cand, err
	}
	if err := e.Config.Write(facility, p, content); err != nil {
		return nil, err
	}
	return cand, record()
}

// Sync calls record with every file of the site's and the facilities' directories (not the
// shipped ones): the history records those it has not seen with this content.
func (e *Editor) Sync(record func(File) error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	files, err := e.Config.Files(nil)
	if err != nil {
		return err
	}
	var errs []error
	for _, f := range files {
		if !f.Shipped {
			errs = append(errs, record(f))
		}
	}
	return errors.Join(errs...)
}
