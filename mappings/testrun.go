package mappings

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"reflect"
	"sort"
	"strings"

	"github.com/goccy/go-yaml"

	"github.com/ferryhealth/ferry/hl7"
)

// TestFile is an analyst's tests for a mapping: a *_test.yaml beside it.
type TestFile struct {
	File  string
	Tests []TestCase `yaml:"tests"`
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

// LoadTests reads every *_test.yaml in the layer's top directory.
func LoadTests(layer fs.FS) ([]TestFile, error) {
	entries, err := fs.ReadDir(layer, ".")
	if err != nil {
		return nil, err
	}
	var out []TestFile
	var probs Problems
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
	if len(probs) > 0 {
		return nil, probs
	}
	return out, nil
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
	}
	return out
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
