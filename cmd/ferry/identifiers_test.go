package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestIdentifiersTest: `ferry identifiers test` passes the shipped example, and names the file
// and the test when an expectation fails or the rules do not load.
func TestIdentifiersTest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	failing := write("failing.yaml", `authorities: [{name: A, system: "urn:a", issuers: [A], normalize: [{drop_leading_zeros: true}]}]
tests: [{issuer: A, value: "007", want: "007"}]`)
	broken := write("broken.yaml", `authorities: [{name: A}]`)
	for _, tc := range []struct {
		name  string
		files []string
		code  int
		want  []string
	}{
		{"the example", []string{"../../engine/patientid/testdata/STMARYS.yaml"}, 0, []string{"ok   ../../engine/patientid/testdata/STMARYS.yaml (10 tests)"}},
		{"a failing test", []string{failing}, 1, []string{"FAIL " + failing + `: test 1 (A "007"): want |007; PatientID 007 read as 7 under A rule 1 (leading zeros dropped)`}},
		{"rules that do not load", []string{broken}, 1, []string{"FAIL " + broken + ": an authority needs a name and a system"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(context.Background(), append([]string{"identifiers", "test"}, tc.files...), &out, &errb)
			var code exitCode
			if errors.As(err, &code) && int(code) != tc.code || err == nil && tc.code != 0 || err != nil && !errors.As(err, &code) {
				t.Errorf("err %v, want exit %d", err, tc.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output %q, want a line with %q", out.String(), w)
				}
			}
		})
	}
}
