package mappings

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"

	"github.com/ferryhealth/ferry/hl7"
)

// Mapping is one loaded and validated mapping file, ready to apply. Safe for concurrent use.
type Mapping struct {
	Name        string // "orm_o01"
	Description string
	Messages    []string // MSH-9 code^trigger it applies to, e.g. "ORM^O01"
	File        string   // where it was loaded from, for errors
	// Version identifies exactly what was applied: the mapping's declared version and a digest
	// of its file and the code tables, e.g. "orm_o01@1+3fa2c9d1". Recorded with every message.
	Version string

	root   node
	paths  []hl7.Path // the paths the template reads, by their index in fieldValue and v(ctx, i)
	shared []int      // by index in paths: the slot in state.kept of a path several nodes read, else -1
	nkept  int        // slots in state.kept
	tables map[string]*Table
	loc    *time.Location
}

// mappingFile is a mapping's YAML as written; output stays a YAML node so that the compiler can
// say on which line a problem is.
type mappingFile struct {
	Mapping     string   `yaml:"mapping"`
	Version     int      `yaml:"version"`
	Description string   `yaml:"description"`
	Messages    []string `yaml:"messages"`
	// TimeZone is used for HL7 times written without an offset (an IANA name, e.g.
	// "America/Chicago"); default UTC. A facility's override mapping can set its own.
	TimeZone string   `yaml:"timezone"`
	Output   ast.Node `yaml:"output"`
}

// Problem is one thing wrong with a mapping or a code table: where (file, line, template path)
// and what.
type Problem struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	s := p.File
	if p.Line > 0 {
		s += fmt.Sprintf(":%d", p.Line)
	}
	if p.Path != "" {
		s += ": " + p.Path
	}
	return s + ": " + p.Message
}

// Problems is every problem found while loading; it is the error Load returns.
type Problems []Problem

func (ps Problems) Error() string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.String())
	}
	return b.String()
}

var messageTypeRE = regexp.MustCompile(`^[A-Z][A-Z0-9]{2}\^[A-Z0-9]{3}$`)

// compileMapping parses and compiles one mapping file against the tables it may use.
func compileMapping(file string, data []byte, tables map[string]*Table, partials map[string]file) (*Mapping, Problems) {
	var mf mappingFile
	if err := yaml.UnmarshalWithOptions(data, &mf, yaml.Strict()); err != nil {
		return nil, Problems{yamlProblem(file, err)}
	}
	c := &compiler{file: file, tables: tables, partials: partials}
	m := &Mapping{Name: mf.Mapping, Description: mf.Description, Messages: mf.Messages, File: file, tables: tables, loc: time.UTC}
	top := func(format string, args ...any) {
		c.problems = append(c.problems, Problem{File: file, Message: fmt.Sprintf(format, args...)})
	}
	if mf.Mapping == "" {
		top("mapping: a name is required (e.g. mapping: orm_o01)")
	} else if want := strings.TrimSuffix(path.Base(file), path.Ext(file)); want != mf.Mapping {
		top("mapping: the name %q differs from the file name %q", mf.Mapping, want)
	}
	if mf.Version < 1 {
		top("version: a positive number is required; raise it with each change")
	}
	if len(mf.Messages) == 0 {
		top("messages: list the message types it maps, e.g. [ORM^O01]")
	}
	for _, t := range mf.Messages {
		if !messageTypeRE.MatchString(t) {
			top("messages: %q is not a message type like ORM^O01", t)
		}
	}
	if mf.TimeZone != "" {
		loc, err := time.LoadLocation(mf.TimeZone)
		if err != nil {
			top("timezone: %v", err)
		} else {
			m.loc = loc
		}
	}
	if mf.Output == nil {
		top("output: the template is required")
	} else {
		m.root = c.compile(mf.Output, "output")
		c.checkTables(data)
	}
	m.paths = c.paths
	m.shared, m.nkept = c.sharedReads()
	if len(c.problems) > 0 {
		return nil, c.problems
	}
	m.Version = versionOf(mf.Mapping, mf.Version, data, tables, partials)
	return m, nil
}

// versionOf is what a mapping records with each use: its name, its declared version and a
// digest of its file, the code tables and the partials, e.g. "orm_o01@1+3fa2c9d1".
func versionOf(name string, version int, data []byte, tables map[string]*Table, partials map[string]file) string {
	h := sha256.New()
	h.Write(data)
	for _, name := range sortedKeys(tables) {
		h.Write([]byte(name))
		h.Write(tables[name].digest[:])
	}
	for _, name := range sortedKeys(partials) {
		h.Write([]byte(name))
		h.Write(partials[name].data)
	}
	return fmt.Sprintf("%s@%d+%s", name, version, hex.EncodeToString(h.Sum(nil))[:8])
}

var tableRefRE = regexp.MustCompile(`(?:lookup|has)\(\s*"([^"]*)"|codeable\(\s*"[^"]*"\s*,\s*"([^"]*)"`)

// checkTables reports code tables a mapping names that do not exist.
func (c *compiler) checkTables(data []byte) {
	for i, line := range strings.Split(string(data), "\n") {
		for _, m := range tableRefRE.FindAllStringSubmatch(line, -1) {
			name := m[1] + m[2]
			if _, ok := c.tables[name]; !ok {
				c.problems = append(c.problems, Problem{File: c.file, Line: i + 1,
					Message: fmt.Sprintf("no code table named %q (tables: %s)", name, strings.Join(sortedKeys(c.tables), ", "))})
			}
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var yamlLineRE = regexp.MustCompile(`^\[(\d+):(\d+)\]\s*`)

func yamlProblem(file string, err error) Problem {
	msg := firstLine(err.Error())
	p := Problem{File: file}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		fmt.Sscan(m[1], &p.Line)
		msg = msg[len(m[0]):]
	}
	p.Message = msg
	return p
}

// Apply maps msg. The result is the template's output: objects as map[string]any, lists as
// []any, values as strings, numbers or booleans, with empty values dropped. A message the
// mapping cannot map gives an *Error saying which field and why.
func (m *Mapping) Apply(msg *hl7.Message) (map[string]any, error) {
	// rebinds starts at 1: the reads state.kept starts with, kept under 0, are none.
	st := &state{m: m, msg: msg, loc: senderZone(msg, m.loc), table: m.tables, rebinds: 1}
	out, err := m.root.eval(st)
	if err != nil {
		var me *Error
		if errors.As(err, &me) {
			return nil, me
		}
		return nil, st.fail(err, m.File)
	}
	obj, _ := out.(map[string]any)
	if obj == nil {
		obj = map[string]any{}
	}
	return obj, nil
}

// Set is every mapping in force: the shipped ones, the site's, and per-facility overrides, for
// both directions (inbound mappings by message type, outbound ones by name).
type Set struct {
	base       layer
	facilities map[string]layer // by sending facility (MSH-4)
}

type layer struct {
	byType   map[string]*Mapping // "ORM^O01" → mapping
	all      []*Mapping
	outbound map[string]*Outbound // "oru_r01" → outbound mapping
}

// For returns the mapping for a message type (MSH-9 code^trigger) from a sending facility: the
// facility's override when it has one, else the site's. nil when none maps it.
func (s *Set) For(facility, messageType string) *Mapping {
	if l, ok := s.facilities[facility]; ok {
		if m := l.byType[messageType]; m != nil {
			return m
		}
	}
	return s.base.byType[messageType]
}

// Mappings lists the site's mappings and then each facility's, for display.
func (s *Set) Mappings() []*Mapping {
	out := slices.Clone(s.base.all)
	for _, f := range sortedKeys(s.facilities) {
		out = append(out, s.facilities[f].all...)
	}
	return out
}

// Outbound returns the outbound mapping named name ("oru_r01") for a facility (MSH-4 of its
// orders): the facility's override when it has one, else the site's. nil when there is none.
func (s *Set) Outbound(facility, name string) *Outbound {
	if l, ok := s.facilities[facility]; ok {
		if o := l.outbound[name]; o != nil {
			return o
		}
	}
	return s.base.outbound[name]
}

// Outbounds lists the site's outbound mappings and then each facility's, for display.
func (s *Set) Outbounds() []*Outbound {
	var out []*Outbound
	for _, l := range append([]layer{s.base}, s.facilityLayers()...) {
		for _, name := range sortedKeys(l.outbound) {
			out = append(out, l.outbound[name])
		}
	}
	return out
}

func (s *Set) facilityLayers() []layer {
	out := make([]layer, 0, len(s.facilities))
	for _, f := range sortedKeys(s.facilities) {
		out = append(out, s.facilities[f])
	}
	return out
}

// Versions lists the version of every mapping in force, inbound then outbound, for logs and
// `ferry mappings lint`.
func (s *Set) Versions() []string {
	var out []string
	for _, m := range s.Mappings() {
		out = append(out, m.Version)
	}
	for _, o := range s.Outbounds() {
		out = append(out, o.Version())
	}
	return out
}

// Source is where mappings are loaded from: Base layers (the shipped mappings first, then the
// site's directory, each overriding files of the same name in the one before) and per-facility
// layers over them.
type Source struct {
	Base       []fs.FS
	Facilities map[string]fs.FS // MSH-4 → directory with that facility's overriding files
}

// Load reads, compiles and checks every mapping and code table in src. It returns all problems
// found (as Problems) and no Set when there is any: a broken edit never replaces a working set.
func Load(src Source) (*Set, error) {
	files, probs := gather(src.Base)
	s := &Set{facilities: map[string]layer{}}
	base, p := build(files)
	probs = append(probs, p...)
	s.base = base
	for _, fac := range sortedKeys(src.Facilities) {
		ff, p := gather([]fs.FS{src.Facilities[fac]})
		probs = append(probs, p...)
		merged := files.overlay(ff)
		l, p := build(merged)
		probs = append(probs, p...)
		// Only the mappings the facility overrides (or whose tables it overrides) are its own.
		own := layer{byType: map[string]*Mapping{}, outbound: map[string]*Outbound{}}
		shared := len(ff.tables) > 0 || len(ff.partials) > 0
		for _, m := range l.all {
			if ff.touches(m.File) || shared {
				own.all = append(own.all, m)
				for _, t := range m.Messages {
					own.byType[t] = m
				}
			}
		}
		for name, o := range l.outbound {
			if ff.touches(o.File) || shared {
				own.outbound[name] = o
			}
		}
		s.facilities[fac] = own
	}
	if len(probs) > 0 {
		return nil, dedupe(probs)
	}
	return s, nil
}

// fileSet is the files of one or more layers: later layers replace files of the same name.
type fileSet struct {
	mappings map[string]file // by base name
	outbound map[string]file // outbound/*.yaml by base name
	tables   map[string]file
	partials map[string]file // by name without .yaml
}

type file struct {
	name string // as shown in problems, e.g. "shipped/orm_o01.yaml" or "/etc/ferry/mappings/orm_o01.yaml"
	data []byte
}

func (f fileSet) overlay(o fileSet) fileSet {
	merge := func(a, b map[string]file) map[string]file {
		out := make(map[string]file, len(a)+len(b))
		for k, v := range a {
			out[k] = v
		}
		for k, v := range b {
			out[k] = v
		}
		return out
	}
	return fileSet{mappings: merge(f.mappings, o.mappings), outbound: merge(f.outbound, o.outbound),
		tables: merge(f.tables, o.tables), partials: merge(f.partials, o.partials)}
}

func (f fileSet) touches(name string) bool {
	for _, m := range f.mappings {
		if m.name == name {
			return true
		}
	}
	for _, m := range f.outbound {
		if m.name == name {
			return true
		}
	}
	return false
}

// gather reads the *.yaml mappings (not *_test.yaml), outbound/*.yaml, tables/*.yaml and
// partials/*.yaml of each layer.
func gather(layers []fs.FS) (fileSet, Problems) {
	fs0 := fileSet{mappings: map[string]file{}, outbound: map[string]file{}, tables: map[string]file{}, partials: map[string]file{}}
	var probs Problems
	for _, l := range layers {
		if l == nil {
			continue
		}
		name := layerName(l)
		read := func(dir string, into map[string]file) {
			entries, err := fs.ReadDir(l, dir)
			if err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					probs = append(probs, Problem{File: path.Join(name, dir), Message: err.Error()})
				}
				return
			}
			for _, e := range entries {
				n := e.Name()
				if e.IsDir() || !strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, "_test.yaml") {
					continue
				}
				data, err := fs.ReadFile(l, path.Join(dir, n))
				if err != nil {
					probs = append(probs, Problem{File: path.Join(name, dir, n), Message: err.Error()})
					continue
				}
				into[n] = file{name: path.Join(name, dir, n), data: data}
			}
		}
		read(".", fs0.mappings)
		read("outbound", fs0.outbound)
		read("tables", fs0.tables)
		read("partials", fs0.partials)
	}
	return fs0, probs
}

// layerName names a layer in problems: its directory when it is one (see DirFS), else "shipped".
func layerName(l fs.FS) string {
	if d, ok := l.(interface{ Dir() string }); ok {
		return d.Dir()
	}
	return "shipped"
}

func build(files fileSet) (layer, Problems) {
	var probs Problems
	tables := map[string]*Table{}
	for _, n := range sortedKeys(files.tables) {
		f := files.tables[n]
		t, p := parseTable(f.name, f.data)
		probs = append(probs, p...)
		if t != nil {
			tables[t.Name] = t
		}
	}
	partials := map[string]file{}
	for n, f := range files.partials {
		partials[strings.TrimSuffix(n, ".yaml")] = f
	}
	l := layer{byType: map[string]*Mapping{}, outbound: map[string]*Outbound{}}
	for _, n := range sortedKeys(files.outbound) {
		f := files.outbound[n]
		o, p := compileOutbound(f.name, f.data, tables, partials)
		probs = append(probs, p...)
		if o != nil {
			l.outbound[o.Name] = o
		}
	}
	for _, n := range sortedKeys(files.mappings) {
		f := files.mappings[n]
		m, p := compileMapping(f.name, f.data, tables, partials)
		probs = append(probs, p...)
		if m == nil {
			continue
		}
		for _, t := range m.Messages {
			if other, ok := l.byType[t]; ok {
				probs = append(probs, Problem{File: f.name, Message: fmt.Sprintf("messages: %s is also mapped by %s", t, other.File)})
			}
			l.byType[t] = m
		}
		l.all = append(l.all, m)
	}
	return l, probs
}

// dedupe drops repeats: a broken partial or table is reported once, not once per mapping using it.
func dedupe(ps Problems) Problems {
	seen := map[Problem]bool{}
	out := ps[:0]
	for _, p := range ps {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// senderZone is the time zone for times written without an offset: HL7 v2.5.1 §2.A.22 says
// such a time is the sender's local time, and MSH-7's offset (when it has one) says what that
// is; otherwise the mapping's timezone.
func senderZone(msg *hl7.Message, fallback *time.Location) *time.Location {
	if t, err := parseTS(msg.Value("MSH-7")); err == nil && t.offset != nil {
		return time.FixedZone("", *t.offset)
	}
	return fallback
}
