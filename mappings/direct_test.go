package mappings

import (
	"io/fs"
	"reflect"
	"testing"
	"testing/fstest"

	"github.com/ferryhealth/ferry/hl7"
)

// TestDirectFormsMatchTheVM applies expressions with their direct forms and again in the VM
// alone: the output, or the error with its code, field, text and place, must be the same. The
// cases cover each operator of the direct form and each way it hands an expression back to the
// VM (a condition that is not a boolean, an operator of expr's runtime that panics, a function
// given the wrong number of arguments, a function's own error).
func TestDirectFormsMatchTheVM(t *testing.T) {
	t.Parallel()
	msg, err := hl7.Parse([]byte("MSH|^~\\&|RIS|STMARYS|FERRY|FERRY|20261127083000-0500||ORM^O01|X1|P|2.3\r" +
		"PID|1||123^^^STMARYS^MR~456^^^SSN^SS||DOE^JANE^Q||19800102|F|||1 MAIN ST^^SPRINGFIELD^IL\r" +
		"ORC|NW|PL1^RIS|||SC\r" +
		"OBR|1|PL1^RIS||71260^CT CHEST^C4|||2026130|||||||||1234^SMITH^ROBERT\r" +
		"OBR|2|PL2^RIS||99999^UNKNOWN^C4\r"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, expr string
		direct     bool // the expression has a direct form
	}{
		{"field", `(PID-5.1)`, true},
		{"function of fields", `first(PID-29, PID-5.2, "x")`, true},
		{"path argument", `names("PID-5")`, true},
		{"nested calls", `datetime(first(OBR-36, OBR-7, ORC-9))`, true}, // ERR 102 at OBR-7
		{"ternary", `ORC-2.1 != "" ? ei("ORC-2", "PLAC") : ei("OBR-2", "PLAC")`, true},
		{"and or not", `PID-8 == "F" && !(PID-7 == "") || PID-30 == "Y"`, true},
		{"and gives its right side", `PID-8 == "F" && PID-5.1`, true},
		{"or gives its right side", `PID-8 == "M" || PID-5.1`, true},
		{"in", `PID-8 in ["M", "F", "O"] ? PID-8 : "O"`, true},
		{"concatenation", `"urn:oid:" + first(PID-3.1, "1.2")`, true},
		{"nil and numbers", `PID-29 != "" ? nil : 1.5`, true},
		{"count", `count("OBR") == 2 ? count("PID-3") : 0`, true},
		{"table", `lookup("procedures", OBR-4.1, "code") != nil ? lookup("procedures", OBR-4.1) : has("procedures", OBR-4.1)`, true},
		{"code not in the table", `lookup("strict", OBR[2]-4.1, "code")`, true}, // ERR 103
		{"required code", `codeable("OBR[2]-4", "strict")`, true},
		{"condition not a boolean", `PID-8 ? "yes" : "no"`, true},
		{"and of text", `PID-8 && PID-5.1`, true},
		{"not of text", `!PID-8`, true},
		{"nil plus text", `lookup("procedures", "NONE") + PID-5.1`, true},
		{"in of text", `PID-8 in PID-5.1`, true},
		{"too few arguments", `lookup("strict")`, false},
		{"function error", `lookups("strict", 7)`, true},
		{"builtin", `upper(PID-5.1)`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := mappingOf(t, tc.expr)
			e, ok := m.root.(*object).vals[0].(*expression)
			if !ok {
				t.Fatalf("%s did not compile to an expression", tc.expr)
			}
			if got := e.direct != nil; got != tc.direct {
				t.Fatalf("%s has a direct form: %v, want %v", tc.expr, got, tc.direct)
			}
			direct, directErr := m.Apply(msg)
			e.direct = nil // this mapping is the test's own
			vm, vmErr := m.Apply(msg)
			if !reflect.DeepEqual(direct, vm) || !reflect.DeepEqual(directErr, vmErr) {
				t.Errorf("%s:\ndirect %#v, %v\nVM     %#v, %v", tc.expr, direct, directErr, vm, vmErr)
			}
		})
	}
}

// mappingOf loads a mapping whose output is the value of one expression.
func mappingOf(t *testing.T, expr string) *Mapping {
	t.Helper()
	site := fstest.MapFS{
		"probe.yaml": {Data: []byte("mapping: probe\nversion: 1\nmessages: [ZPR^Z01]\noutput:\n  value: '=" + expr + "'\n")},
		"tables/strict.yaml": {Data: []byte("table: strict\nmissing: error\n" +
			"rows: {\"71260\": {code: \"24627-2\"}}\n")},
	}
	s, err := Load(Source{Base: []fs.FS{Shipped(), site}})
	if err != nil {
		t.Fatal(err)
	}
	return s.For("STMARYS", "ZPR^Z01")
}

// TestKeptReadsFollowEach reads a path from several nodes (so that it is kept once read) inside
// each: and outside it: every item must see its own segment's value, and the read after the
// loop the first segment's again.
func TestKeptReadsFollowEach(t *testing.T) {
	t.Parallel()
	site := fstest.MapFS{"obs.yaml": {Data: []byte(`mapping: obs
version: 1
messages: [ZOB^Z01]
output:
  items:
    each: OBX
    value: =OBX-5
    again: '=first(OBX-5, "none")'
    flagged: '=OBX-5 == "B" ? "yes" : "no"'
  after: '=first(OBX-5, "none")'
`)}}
	s, err := Load(Source{Base: []fs.FS{site}})
	if err != nil {
		t.Fatal(err)
	}
	m := s.For("X", "ZOB^Z01")
	if m.nkept == 0 {
		t.Fatal("OBX-5 is read by four nodes but not kept")
	}
	msg, err := hl7.Parse([]byte("MSH|^~\\&|A|X|B|Y|20261127||ZOB^Z01|1|P|2.5\rOBX|1|ST|||A\rOBX|2|ST|||B\rOBX|3|ST|||\r"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Apply(msg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"items": []any{
			map[string]any{"value": "A", "again": "A", "flagged": "no"},
			map[string]any{"value": "B", "again": "B", "flagged": "yes"},
			map[string]any{"again": "none", "flagged": "no"},
		},
		"after": "A",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
}
