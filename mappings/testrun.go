package mappings

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/ferryhealth/ferry/hl7"
)

// TestFile is an analyst's tests for a mapping: a *_test.yaml beside it — beside an inbound
// mapping (Tests) or beside an outbound one in outbound/ (Outbound, OutboundTests).
type TestFile struct {
	File  string
	Tests []TestCase `yaml:"tests"`
	// Facility is the sending facility (MSH-4) whose directory holds the file, "" for the
	// site's: outbound tests render with that facility's mappings unless a test names another.
	// (Inbound tests pick the facility by their message's MSH-4.)
	Facility string `yaml:"-"`
	// Outbound names the outbound mapping an outbound/NAME_test.yaml tests.
	Outbound      string             `yaml:"-"`
	OutboundTests []OutboundTestCase `yaml:"-"`
}

// OutboundTestCase is one test of an outbound mapping: resources by role (FHIR JSON written as
// YAML or JSON) and the message's envelope, and what the rendered message must hold — the
// decoded value at each HL7 path under expect, the segments in order, or an error.
type OutboundTestCase struct {
	Name      string         `yaml:"name"`
	Facility  string         `yaml:"facility"` // render with this facility's mappings
	Resources map[string]any `yaml:"resources"`
	Message   TestEnvelope   `yaml:"message"`
	// Expect maps an HL7 path (docs/hl7-paths.md) to its decoded value: "OBR-25": F,
	// "PID-3[2].4": SSN, "OBX[3]-5": "…"; "" means empty or absent.
	Expect   map[string]any `yaml:"expect"`
	Segments []string       `yaml:"segments"` // the segment IDs in order
	Error    *ExpectedError `yaml:"error"`
}

// TestEnvelope is an outbound test's OutboundMessage; control_id defaults to TEST0001, time to
// 2026-01-01T12:00:00Z, zone to UTC.
type TestEnvelope struct {
	ControlID            string `yaml:"control_id"`
	Time                 string `yaml:"time"`
	Version              string `yaml:"version"`
	SendingApplication   string `yaml:"sending_application"`
	SendingFacility      string `yaml:"sending_facility"`
	ReceivingApplication string `yaml:"receiving_application"`
	ReceivingFacility    string `yaml:"receiving_facility"`
	ProcessingID         string `yaml:"processing_id"`
	Zone                 string `yaml:"zone"` // IANA name, e.g. America/Chicago
}

func (e TestEnvelope) message() (OutboundMessage, error) {
	m := OutboundMessage{ControlID: cmpOr(e.ControlID, "TEST0001"), Version: e.Version,
		SendingApplication: e.SendingApplication, SendingFacility: e.SendingFacility,
		ReceivingApplication: e.ReceivingApplication, ReceivingFacility: e.ReceivingFacility,
		ProcessingID: e.ProcessingID}
	t, err := time.Parse(time.RFC3339Nano, cmpOr(e.Time, "2026-01-01T12:00:00Z"))
	if err != nil {
		return m, fmt.Errorf("message.time: want an RFC 3339 time like 2026-11-27T10:15:00-05:00: %v", err)
	}
	m.Time = t
	if e.Zone != "" {
		if m.Zone, err = time.LoadLocation(e.Zone); err != nil {
			return m, fmt.Errorf("message.zone: %v", err)
		}
	}
	return m, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestCase is one test: an input message and what the mapping must make of it — the exact
// output of the keys under expect, output containing what is under contains, or an error.
type TestCase struct {
	Name     string         `yaml:"name"`
	Message  string         `yaml:"message"`
	Expect   map[string]any `yaml:"expect"`
	Contains map[string]any `yaml:"contains"`
	Error    *ExpectedError `yaml:"error"`
}

// ExpectedError is the error a test expects: its ERR code and field (e.g. 103 at OBR-4.1), and
// text it contains.
type ExpectedError struct {
	Code  int    `yaml:"code"`
	Field string `yaml:"field"`
	Text  string `yaml:"text"`
}

// TestResult is the outcome of one test case.
type TestResult struct {
	File    string   `json:"file"`
	Name    string   `json:"name"`
	Mapping string   `json:"mapping,omitempty"` // the mapping version applied
	Passed  bool     `json:"passed"`
	Details []string `json:"details,omitempty"` // what differed
}

// LoadTests reads every *_test.yaml in the layer's top directory (inbound mappings' tests) and
// in its outbound/ directory (outbound mappings' tests).
func LoadTests(layer fs.FS) ([]TestFile, error) {
	entries, err := fs.ReadDir(layer, ".")
	if err != nil {
		return nil, err
	}
	var out []TestFile
	var probs Problems
	outbound, p, err := loadOutboundTests(layer)
	if err != nil {
		return nil, err
	}
	probs = append(probs, p...)
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), "_test.yaml") {
			continue
		}
		name := path.Join(layerName(layer), e.Name())
		data, err := fs.ReadFile(layer, e.Name())
		if err != nil {
			return nil, err
		}
		tf := TestFile{File: name}
		if err := yaml.UnmarshalWithOptions(data, &tf, yaml.Strict()); err != nil {
			probs = append(probs, yamlProblem(name, err))
			continue
		}
		for i, tc := range tf.Tests {
			if tc.Name == "" || tc.Message == "" {
				probs = append(probs, Problem{File: name, Path: fmt.Sprintf("tests[%d]", i), Message: "a test needs a name and a message"})
			}
			if (tc.Error != nil) == (tc.Expect != nil || tc.Contains != nil) {
				probs = append(probs, Problem{File: name, Path: fmt.Sprintf("tests[%d]", i), Message: "a test expects either output (expect:/contains:) or an error (error:)"})
			}
		}
		out = append(out, tf)
	}
	out = append(out, outbound...)
	if len(probs) > 0 {
		return nil, probs
	}
	return out, nil
}

// loadOutboundTests reads outbound/*_test.yaml.
func loadOutboundTests(layer fs.FS) ([]TestFile, Problems, error) {
	entries, err := fs.ReadDir(layer, "outbound")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var out []TestFile
	var probs Problems
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), "_test.yaml") {
			continue
		}
		name := path.Join(layerName(layer), "outbound", e.Name())
		data, err := fs.ReadFile(layer, path.Join("outbound", e.Name()))
		if err != nil {
			return nil, nil, err
		}
		var doc struct {
			Tests []OutboundTestCase `yaml:"tests"`
		}
		if err := yaml.UnmarshalWithOptions(data, &doc, yaml.Strict()); err != nil {
			probs = append(probs, yamlProblem(name, err))
			continue
		}
		for i, tc := range doc.Tests {
			at := fmt.Sprintf("tests[%d]", i)
			if tc.Name == "" || tc.Resources == nil {
				probs = append(probs, Problem{File: name, Path: at, Message: "a test needs a name and resources (report, patient, order …)"})
			}
			if (tc.Error != nil) == (tc.Expect != nil || tc.Segments != nil) {
				probs = append(probs, Problem{File: name, Path: at, Message: "a test expects either a message (expect:/segments:) or an error (error:)"})
			}
		}
		out = append(out, TestFile{File: name, Outbound: strings.TrimSuffix(e.Name(), "_test.yaml"), OutboundTests: doc.Tests})
	}
	return out, probs, nil
}

// Run runs every test in files against the set.
func (s *Set) Run(files []TestFile) []TestResult {
	var out []TestResult
	for _, f := range files {
		for _, tc := range f.Tests {
			r := s.runOne(tc)
			r.File = f.File
			out = append(out, r)
		}
		for _, tc := range f.OutboundTests {
			r := s.runOutbound(f, tc)
			r.File = f.File
			out = append(out, r)
		}
	}
	return out
}

func (s *Set) runOutbound(f TestFile, tc OutboundTestCase) TestResult {
	r := TestResult{Name: tc.Name}
	fail := func(format string, args ...any) TestResult {
		r.Details = append(r.Details, fmt.Sprintf(format, args...))
		return r
	}
	facility := cmpOr(tc.Facility, f.Facility)
	o := s.Outbound(facility, f.Outbound)
	if o == nil {
		return fail("no outbound mapping %q for facility %q", f.Outbound, facility)
	}
	r.Mapping = o.Version()
	msg, err := tc.Message.message()
	if err != nil {
		return fail("%v", err)
	}
	resources := map[string]any{}
	for role, res := range tc.Resources {
		resources[role] = normalize(res) // the shapes encoding/json gives the engine
	}
	raw, err := o.Render(OutboundInput{Resources: resources, Message: msg})
	if tc.Error != nil {
		var me *Error
		switch {
		case err == nil:
			return fail("expected an error, the message rendered")
		case !errors.As(err, &me):
			return fail("%v", err)
		}
		if tc.Error.Code != 0 && tc.Error.Code != int(me.Code) {
			r.Details = append(r.Details, fmt.Sprintf("error code: want %d, got %d (%s)", tc.Error.Code, me.Code, me.Text))
		}
		if tc.Error.Text != "" && !strings.Contains(me.Text, tc.Error.Text) {
			r.Details = append(r.Details, fmt.Sprintf("error text: want it to contain %q, got %q", tc.Error.Text, me.Text))
		}
		r.Passed = len(r.Details) == 0
		return r
	}
	if err != nil {
		return fail("rendering failed: %v", err)
	}
	m, err := hl7.Parse(raw)
	if err != nil {
		return fail("the rendered message does not parse: %v", err)
	}
	for _, p := range sortedKeys(tc.Expect) {
		want := str(tc.Expect[p])
		got, err := m.Get(p)
		if err != nil {
			r.Details = append(r.Details, fmt.Sprintf("%s: %v", p, err))
			continue
		}
		if got != want {
			r.Details = append(r.Details, fmt.Sprintf("%s differs:\n  want %q\n  got  %q", p, want, got))
		}
	}
	if tc.Segments != nil {
		var got []string
		for _, sg := range m.Segments() {
			got = append(got, sg.Name())
		}
		if !slices.Equal(got, tc.Segments) {
			r.Details = append(r.Details, fmt.Sprintf("segments differ:\n  want %s\n  got  %s", strings.Join(tc.Segments, " "), strings.Join(got, " ")))
		}
	}
	r.Passed = len(r.Details) == 0
	return r
}

func (s *Set) runOne(tc TestCase) TestResult {
	r := TestResult{Name: tc.Name}
	fail := func(format string, args ...any) TestResult {
		r.Details = append(r.Details, fmt.Sprintf(format, args...))
		return r
	}
	res, err := s.Try([]byte(tc.Message))
	if res != nil {
		r.Mapping = res.Mapping
	}
	if err != nil && res == nil {
		return fail("%v", err)
	}
	if tc.Error != nil {
		if res.Error == nil {
			return fail("expected an error (ERR %d at %s), the message mapped", tc.Error.Code, tc.Error.Field)
		}
		got := res.Error
		if tc.Error.Code != 0 && tc.Error.Code != got.Code {
			r.Details = append(r.Details, fmt.Sprintf("error code: want %d, got %d (%s)", tc.Error.Code, got.Code, got.Text))
		}
		if tc.Error.Field != "" && tc.Error.Field != got.Field {
			r.Details = append(r.Details, fmt.Sprintf("error field: want %s, got %s", tc.Error.Field, got.Field))
		}
		if tc.Error.Text != "" && !strings.Contains(got.Text, tc.Error.Text) {
			r.Details = append(r.Details, fmt.Sprintf("error text: want it to contain %q, got %q", tc.Error.Text, got.Text))
		}
		r.Passed = len(r.Details) == 0
		return r
	}
	if res.Error != nil {
		return fail("mapping failed: %s at %s (ERR %d)", res.Error.Text, res.Error.Field, res.Error.Code)
	}
	gotAny := normalize(res.Output)
	got, _ := gotAny.(map[string]any)
	for _, k := range sortedKeys(tc.Expect) {
		want := normalize(tc.Expect[k])
		if !reflect.DeepEqual(want, got[k]) {
			r.Details = append(r.Details, fmt.Sprintf("%s differs:\n  want %s\n  got  %s", k, compact(want), compact(got[k])))
		}
	}
	if tc.Contains != nil {
		r.Details = append(r.Details, containsDiff("", normalize(tc.Contains), gotAny)...)
	}
	r.Passed = len(r.Details) == 0
	return r
}

// TryResult is a message put through the mapping in force: its output or the error it gives.
type TryResult struct {
	Mapping string         `json:"mapping"` // the mapping version applied
	Output  map[string]any `json:"output,omitempty"`
	Error   *TryError      `json:"error,omitempty"`
}

// TryError is a mapping error as an ERR segment would say it.
type TryError struct {
	Code  int    `json:"code"`
	Field string `json:"field,omitempty"`
	Text  string `json:"text"`
	Where string `json:"where,omitempty"` // mapping file, line and template path
}

// Try maps one message with the mapping for its sending facility and type, for the test
// runner and POST /api/v1/mappings/test. The error is only for a message that cannot be
// parsed or that no mapping handles; a mapping error is in the result.
func (s *Set) Try(raw []byte) (*TryResult, error) {
	msg, err := hl7.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("the message does not parse: %w", err)
	}
	h := msg.Header()
	mt := h.MessageCode + "^" + h.TriggerEvent
	m := s.For(h.SendingFacility, mt)
	if m == nil {
		return nil, fmt.Errorf("no mapping handles %s from %q", mt, h.SendingFacility)
	}
	res := &TryResult{Mapping: m.Version}
	out, err := m.Apply(msg)
	if err != nil {
		var me *Error
		if !errors.As(err, &me) {
			return nil, err
		}
		res.Error = &TryError{Code: int(me.Code), Text: me.Text, Where: me.Where}
		if me.Path.Segment != "" {
			res.Error.Field = pathText(me.Path)
		}
		return res, nil
	}
	res.Output = out
	return res, nil
}

// normalize turns YAML-decoded and mapped values into one comparable form (JSON's).
func normalize(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	_ = json.Unmarshal(b, &out)
	if m, ok := out.(map[string]any); ok {
		return m
	}
	return out
}

func compact(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// containsDiff lists where got lacks what want has: objects by key, lists item by item (each
// wanted item must match some item of got), values equal.
func containsDiff(at string, want, got any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want an object, got %s", orRoot(at), compact(got))}
		}
		var out []string
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			out = append(out, containsDiff(joinPath(at, k), w[k], g[k])...)
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want a list, got %s", orRoot(at), compact(got))}
		}
		var out []string
		for i, wi := range w {
			found := false
			for _, gi := range g {
				if len(containsDiff("", wi, gi)) == 0 {
					found = true
					break
				}
			}
			if !found {
				out = append(out, fmt.Sprintf("%s[%d]: no item contains %s", orRoot(at), i, compact(wi)))
			}
		}
		return out
	default:
		if !reflect.DeepEqual(want, got) {
			return []string{fmt.Sprintf("%s: want %s, got %s", orRoot(at), compact(want), compact(got))}
		}
		return nil
	}
}

func orRoot(at string) string {
	if at == "" {
		return "(output)"
	}
	return at
}
