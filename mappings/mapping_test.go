package mappings

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ferryhealth/ferry/hl7"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func shippedSet(t testing.TB) *Set {
	t.Helper()
	s, err := Load(Source{Base: []fs.FS{Shipped()}})
	if err != nil {
		t.Fatalf("shipped mappings have problems:\n%v", err)
	}
	return s
}

// TestShippedMappingTests runs every *_test.yaml beside the shipped mappings, as
// `ferry mappings test` does.
func TestShippedMappingTests(t *testing.T) {
	s := shippedSet(t)
	files, err := LoadTests(Shipped())
	if err != nil {
		t.Fatal(err)
	}
	results := s.Run(files)
	if len(results) < 10 {
		t.Fatalf("only %d shipped mapping tests ran", len(results))
	}
	for _, r := range results {
		t.Run(r.Name, func(t *testing.T) {
			if !r.Passed {
				t.Errorf("%s: %s\n%s", r.File, r.Name, strings.Join(r.Details, "\n"))
			}
		})
	}
}

// corpusDir is the shared corpus of real messages written by others (../shared, present in CI,
// absent from a user's clone); ownDir holds Ferry's own order and ADT fixtures, always present.
const (
	corpusDir = "../../shared/corpus/hl7v2"
	ownDir    = "testdata/messages"
)

// handledMessages returns the messages below dir that the shipped mappings handle (by MSH-9),
// named by their path below dir (batches split, each message its own entry).
func handledMessages(t *testing.T, s *Set, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".hl7") {
			return err
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		batch, err := hl7.SplitBatch(raw)
		if err != nil {
			batch = [][]byte{raw}
		}
		for _, one := range batch {
			h, err := hl7.ReadHeader(one)
			if err != nil || s.For(h.SendingFacility, h.MessageCode+"^"+h.TriggerEvent) == nil {
				continue
			}
			rel, _ := filepath.Rel(dir, p)
			name := strings.NewReplacer("/", "__", ".hl7", "").Replace(rel)
			if _, dup := out[name]; dup {
				name += "__" + h.ControlID
			}
			out[name] = one
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGoldenOwn maps each of Ferry's own order and ADT fixtures (testdata/messages: every order
// control, both order message types, the ADT events, merges, escapes, bad dates, unknown codes)
// with the shipped mappings and compares the output, or the error an AE would carry, with
// testdata/golden/own__NAME.json. It runs everywhere, a user's clone included.
// go test ./mappings -run TestGoldenOwn -update rewrites them.
func TestGoldenOwn(t *testing.T) {
	s := shippedSet(t)
	msgs := handledMessages(t, s, ownDir)
	if len(msgs) < 20 {
		t.Fatalf("only %d of Ferry's own fixtures have a shipped mapping", len(msgs))
	}
	checkGolden(t, s, msgs, "own__")
}

// TestGoldenCorpus does the same for every ORM/OMI/ADT message of the shared corpus
// (testdata/golden/NAME.json); it needs ../shared and says so when it is absent.
func TestGoldenCorpus(t *testing.T) {
	if _, err := os.Stat(corpusDir); err != nil {
		t.Skipf("shared corpus not found at %s (it is in CI, not in a user's clone; TestGoldenOwn covers Ferry's own fixtures): %v", corpusDir, err)
	}
	s := shippedSet(t)
	msgs := handledMessages(t, s, corpusDir)
	if len(msgs) < 50 {
		t.Fatalf("only %d corpus messages have a shipped mapping", len(msgs))
	}
	checkGolden(t, s, msgs, "")
}

// checkGolden maps each message and compares the result with testdata/golden/PREFIX+NAME.json
// (rewritten under -update).
func checkGolden(t *testing.T, s *Set, msgs map[string][]byte, prefix string) {
	t.Helper()
	mapped := 0
	for name, raw := range msgs {
		t.Run(name, func(t *testing.T) {
			res, err := s.Try(raw)
			var got any
			switch {
			case err != nil:
				got = map[string]any{"not_mapped": firstLine(err.Error())}
			default:
				if res.Error == nil {
					mapped++
				}
				res.Mapping = regexp.MustCompile(`\+[0-9a-f]+$`).ReplaceAllString(res.Mapping, "")
				got = res
			}
			b, _ := json.MarshalIndent(got, "", "  ")
			b = append(b, '\n')
			golden := filepath.Join("testdata", "golden", prefix+name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, b, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("no golden file (run with -update): %v", err)
			}
			if !bytes.Equal(want, b) {
				t.Errorf("output differs from %s (run with -update after checking):\n%s", golden, b)
			}
		})
	}
	t.Logf("%d of %d messages mapped without error", mapped, len(msgs))
}

func TestLintReportsEveryProblemWithFileAndLine(t *testing.T) {
	broken := fstest.MapFS{
		"orm_o01.yaml": {Data: []byte(`mapping: orm_o01
version: 2
messages: [ORM^O01]
output:
  patient:
    use: patient
    birthDate: =date(PID-7.x)
    gender: =gender(PID-8
  orders:
    each: ORC-1.2
    code: =codeable("OBR-4", "no_such_table")
`)},
		"tables/priority.yaml": {Data: []byte("table: priority\nmissing: sometimes\nrows: {S: {priority: stat}}\n")},
		"extra.yaml":           {Data: []byte("mapping: wrong_name\nversion: 0\nmessages: [ORM-O01]\noutput: {}\n")},
	}
	_, err := Load(Source{Base: []fs.FS{Shipped(), broken}})
	probs, ok := err.(Problems)
	if !ok {
		t.Fatalf("Load: want Problems, got %v", err)
	}
	text := probs.Error()
	for _, want := range []string{
		"shipped/orm_o01.yaml:7: output.patient.birthDate",             // bad path in an expression
		"shipped/orm_o01.yaml:8: output.patient.gender",                // unclosed call
		"shipped/orm_o01.yaml:10: output.orders.each",                  // each over a component
		`shipped/orm_o01.yaml:11: no code table named "no_such_table"`, // unknown table
		`tables/priority.yaml: missing: want empty, error or default`,
		`extra.yaml: mapping: the name "wrong_name" differs from the file name "extra"`,
		"extra.yaml: version: a positive number is required",
		`extra.yaml: messages: "ORM-O01" is not a message type`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("problems lack %q; got:\n%s", want, text)
		}
	}
}

func TestFacilityOverride(t *testing.T) {
	site := fstest.MapFS{}
	// STMARYS insists on known procedure codes: its procedures table answers a missing code with
	// ERR 103 at OBR-4.
	strict := fstest.MapFS{"tables/procedures.yaml": {Data: []byte(`table: procedures
missing: error
rows:
  "71260": {system: "http://loinc.org", code: "24627-2", scheme: LN, display: "CT Chest", modality: CT}
`)}}
	s, err := Load(Source{Base: []fs.FS{Shipped(), site}, Facilities: map[string]fs.FS{"STMARYS": strict}})
	if err != nil {
		t.Fatal(err)
	}
	msg := func(facility, code string) []byte {
		return []byte("MSH|^~\\&|RIS|" + facility + "|FERRY|FERRY|20261127083000||ORM^O01|X1|P|2.3\r" +
			"PID|1||123^^^STMARYS^MR||DOE^JANE\rORC|NW|PL1\rOBR|1|PL1||" + code + "^SOME EXAM^C4\r")
	}
	for _, tc := range []struct {
		facility, code string
		wantErr        bool
	}{
		{"STMARYS", "71260", false},
		{"STMARYS", "99999", true},
		{"OTHER", "99999", false}, // the site's table keeps the hospital's code alone
	} {
		res, err := s.Try(msg(tc.facility, tc.code))
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Error != nil; got != tc.wantErr {
			t.Errorf("%s %s: error = %+v, want error %v", tc.facility, tc.code, res.Error, tc.wantErr)
		}
		if res.Error != nil && (res.Error.Code != 103 || res.Error.Field != "OBR-4.1") {
			t.Errorf("%s %s: want ERR 103 at OBR-4.1, got %+v", tc.facility, tc.code, res.Error)
		}
	}
}

func TestReloaderKeepsWorkingMappingsOnBrokenEdit(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) {
		t.Helper()
		p := filepath.Join(dir, "tables", "priority.yaml")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		// Make the change visible to a filesystem with coarse modification times.
		later := time.Now().Add(time.Duration(len(body)) * time.Second)
		_ = os.Chtimes(p, later, later)
	}
	write("table: priority\nrows: {S: {priority: asap, dicom: HIGH}}\n")
	r, err := NewReloader(Config{Dir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := r.Current()
	write("table: priority\nrows: [not, a, map]\n")
	if r.Check() {
		t.Fatal("a broken table was put in force")
	}
	if r.Current() != first {
		t.Fatal("the working set was replaced by a broken one")
	}
	write("table: priority\nrows: {S: {priority: stat, dicom: STAT}}\n\n")
	if !r.Check() {
		t.Fatal("a fixed table was not loaded")
	}
	v1 := first.For("", "ORM^O01").Version
	v2 := r.Current().For("", "ORM^O01").Version
	if v1 == v2 {
		t.Errorf("the mapping version did not change with its table: %s", v1)
	}
}

func TestParseTS(t *testing.T) {
	utc := time.UTC
	for _, tc := range []struct {
		in, date, dateTime string
		bad                bool
	}{
		{in: "1980", date: "1980", dateTime: "1980"},
		{in: "198001", date: "1980-01", dateTime: "1980-01"},
		{in: "19800102", date: "1980-01-02", dateTime: "1980-01-02"},
		{in: "198001021230", date: "1980-01-02", dateTime: "1980-01-02T12:30:00Z"},
		{in: "20261127083000-0500", date: "2026-11-27", dateTime: "2026-11-27T08:30:00-05:00"},
		{in: "20261127083000.123+0130", date: "2026-11-27", dateTime: "2026-11-27T08:30:00.123+01:30"},
		{in: "2026112708", date: "2026-11-27", dateTime: "2026-11-27T08:00:00Z"},
		{in: "20260230", bad: true},
		{in: "2026-11-27", bad: true},
		{in: "202611270860", bad: true},
		{in: "20261127083000-05", bad: true},
		{in: "1980010", bad: true},
	} {
		st := &state{loc: utc}
		d, err := fnDate(st, []any{tc.in})
		if tc.bad {
			if err == nil {
				t.Errorf("date(%q) = %v, want an error", tc.in, d)
			}
			continue
		}
		if err != nil || d != tc.date {
			t.Errorf("date(%q) = %v, %v; want %s", tc.in, d, err, tc.date)
		}
		dt, err := fnDateTime(st, []any{tc.in})
		if err != nil || dt != tc.dateTime {
			t.Errorf("datetime(%q) = %v, %v; want %s", tc.in, dt, err, tc.dateTime)
		}
	}
}

func TestRewriteKeepsStringsAndRewritesPaths(t *testing.T) {
	c := &compiler{}
	got, err := c.rewrite(`PID-5.1 + " PID-5 " + first(OBR[2]-4.1, 'x') + name("PID-5")`)
	if err != nil {
		t.Fatal(err)
	}
	want := `v(ctx, 0) + " PID-5 " + first(ctx, v(ctx, 1), 'x') + name(ctx, "PID-5")`
	if got != want {
		t.Errorf("rewrite:\n got  %s\n want %s", got, want)
	}
	if !slices.Equal([]string{pathText(c.paths[0]), pathText(c.paths[1])}, []string{"PID-5.1", "OBR[2]-4.1"}) {
		t.Errorf("paths: %v", c.paths)
	}
}

// BenchmarkApplyORM maps a typical order (no validation, no store): the mapping engine's share of
// the ≥2,500 orders/s per core goal.
func BenchmarkApplyORM(b *testing.B) {
	s := shippedSet(b)
	files, err := LoadTests(Shipped())
	if err != nil {
		b.Fatal(err)
	}
	raw := []byte(files[slices.IndexFunc(files, func(f TestFile) bool { return strings.HasSuffix(f.File, "orm_o01_test.yaml") })].Tests[0].Message)
	msg, err := hl7.Parse(raw)
	if err != nil {
		b.Fatal(err)
	}
	m := s.For("STMARYS", "ORM^O01")
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Apply(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyORU maps a dictation system's report of 40 TX lines (an OBX each, one with a
// critical flag): the conclusion and the critical-finding flag read every OBX.
func BenchmarkApplyORU(b *testing.B) {
	s := shippedSet(b)
	var raw strings.Builder
	raw.WriteString("MSH|^~\\&|PSCRIBE|RADGROUP|FERRY|FERRY|20261127104215-0500||ORU^R01^ORU_R01|PS000101|P|2.5.1|||AL|NE\r" +
		"PID|1||000123^^^STMARYS^MR||DOE^JANE^Q||19800102|F\r" +
		"PV1|1|O|||||||||||||||||V1001^^^STMARYS^VN\r" +
		"ORC|RE|PL1001^RIS|FL2001^PACS||CM\r" +
		"OBR|1|PL1001^RIS|FL2001^PACS|71260^CT CHEST W/O CONTRAST^C4|||20261127090533-0500|||||||||1234^SMITH^ROBERT^J^^^MD^^STMARYS||ACC3001||||20261127104210-0500||CT|F|||||||1234567893&NAKAMURA&KEIKO&A&&&MD&&NPI\r")
	for i := 1; i <= 40; i++ {
		flag := ""
		if i == 40 {
			flag = "AA"
		}
		fmt.Fprintf(&raw, "OBX|%d|TX|18782-3^Radiology Study observation (narrative)^LN|1|FINDINGS: line %d of the report, no focal consolidation and no pleural effusion.|||%s|||F\r", i, i, flag)
	}
	msg, err := hl7.Parse([]byte(raw.String()))
	if err != nil {
		b.Fatal(err)
	}
	m := s.For("RADGROUP", "ORU^R01")
	out, err := m.Apply(msg)
	if err != nil {
		b.Fatal(err)
	}
	report := out["report"].(map[string]any)
	if n := strings.Count(report["conclusion"].(string), "\n"); n != 39 || report["extension"] == nil {
		b.Fatalf("conclusion of %d lines, extension %v", n+1, report["extension"])
	}
	b.SetBytes(int64(raw.Len()))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Apply(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTextAndLookupsReadEveryOccurrence: text() and lookups() read a field in every segment
// that has it (or the one each: binds), every repetition, in message order.
func TestTextAndLookupsReadEveryOccurrence(t *testing.T) {
	t.Parallel()
	site := fstest.MapFS{
		"obs.yaml": {Data: []byte(`mapping: obs
version: 1
messages: [ORU^R01]
output:
  all: '=text("OBX-5")'
  typed: '=text("OBX-5", "OBX-2", ["TX", "FT"])'
  second: '=text("OBX-5.2", "OBX-2", "TX")'
  per:
    - each: OBX
      text: '=text("OBX-5")'
  rows: '=lookups("flags", "OBX-8.1")'
  codes: '=lookups("flags", "OBX-8.1", "code")'
  strict: '=lookups("strict", "OBX-8.1")'
`)},
		"tables/flags.yaml":  {Data: []byte("table: flags\nmissing: empty\nrows: {HH: {code: high}, LL: {code: low}}\n")},
		"tables/strict.yaml": {Data: []byte("table: strict\nmissing: error\nrows: {N: {code: normal}, HH: {code: high}, LL: {code: low}}\n")},
	}
	s, err := Load(Source{Base: []fs.FS{site}})
	if err != nil {
		t.Fatal(err)
	}
	parse := func(obx ...string) *hl7.Message {
		msg, err := hl7.Parse([]byte("MSH|^~\\&|A|B|C|D|20261127083000||ORU^R01|X1|P|2.5.1\r" + strings.Join(obx, "\r") + "\r"))
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	out, err := s.For("B", "ORU^R01").Apply(parse(
		`OBX|1|TX|||a|||N`,
		`OBX|2|CE|||X^coded|||N~ZZ^Unknown`,
		`OBX|3|FT|||e\.br\f||||||F`,
		`OBX|4|TX`,
	))
	if err == nil {
		t.Fatalf("ZZ is not in the strict table: want ERR 103, got %v", out)
	}
	var me *Error
	if !errors.As(err, &me) || me.Code != hl7.CodeTableValueNotFound || pathText(me.Path) != "OBX[2]-8[2].1" {
		t.Fatalf("want ERR 103 at OBX[2]-8[2].1, got %v", err)
	}
	out, err = s.For("B", "ORU^R01").Apply(parse(
		`OBX|1|TX|||a^b \T\ c~~d|||N`,
		`OBX|2|CE|||X^coded|||HH^High~LL~N`,
		`OBX|3|FT|||e\.br\f||||||F`,
		`OBX|4|TX`,
	))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"all":    "a^b & c\n\nd\nX^coded\ne\nf\n",
		"typed":  "a^b & c\n\nd\ne\nf\n",
		"second": "b & c\n\n\n",
		"per":    []any{map[string]any{"text": "a^b & c\n\nd"}, map[string]any{"text": "X^coded"}, map[string]any{"text": "e\nf"}},
		"rows":   []any{map[string]any{"code": "high"}, map[string]any{"code": "low"}},
		"codes":  []any{"high", "low"},
		"strict": []any{map[string]any{"code": "normal"}, map[string]any{"code": "high"}, map[string]any{"code": "low"}, map[string]any{"code": "normal"}},
	}
	for k, w := range want {
		if got, _ := json.Marshal(out[k]); string(got) != mustJSON(t, w) {
			t.Errorf("%s = %s, want %s", k, got, mustJSON(t, w))
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
