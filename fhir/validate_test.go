package fhir_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ferryhealth/ferry/fhir"
)

// corpusDir holds the official R4 examples (../shared/corpus, not part of the repository).
const corpusDir = "../../shared/corpus/fhir/examples"

var (
	validatorOnce sync.Once
	validator     *fhir.Validator
	validatorErr  error
)

func newValidator(t testing.TB) *fhir.Validator {
	t.Helper()
	validatorOnce.Do(func() { validator, validatorErr = fhir.NewValidator() })
	if validatorErr != nil {
		t.Fatal(validatorErr)
	}
	return validator
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mustValid fails the test unless data is valid FHIR; exported for the other test files.
func mustValid(t testing.TB, data []byte) {
	t.Helper()
	if err := newValidator(t).Validate(data); err != nil {
		var ve *fhir.ValidationError
		if errors.As(err, &ve) {
			for _, is := range ve.Issues {
				t.Errorf("%s: %s (%s) %s", is.Expression, is.Message, is.Code, is.Detail)
			}
		}
		t.Fatalf("invalid: %v\n%s", err, data)
	}
}

func TestValidateFixtures(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"patient.json", "servicerequest.json", "practitioner.json", "encounter.json", "organization.json", "imagingstudy.json", "diagnosticreport.json"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			mustValid(t, readTestdata(t, name))
		})
	}
}

// issue is the part of a fhir.Issue a test pins: where and of which type.
type issue struct {
	expr string
	code fhir.IssueType
}

func TestValidateIssues(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   string
		want []issue // every issue, in any order
	}{
		{"not JSON", `{"resourceType":`, []issue{{"", fhir.IssueStructure}}},
		{"array", `[1]`, []issue{{"", fhir.IssueStructure}}},
		{"no resourceType", `{"id":"x"}`, []issue{{"resourceType", fhir.IssueRequired}}},
		{"unknown type", `{"resourceType":"Pateint"}`, []issue{{"Pateint", fhir.IssueStructure}}},
		{"service request missing everything required",
			`{"resourceType":"ServiceRequest","id":"sr1"}`,
			[]issue{{"ServiceRequest.status", fhir.IssueRequired}, {"ServiceRequest.intent", fhir.IssueRequired}, {"ServiceRequest.subject", fhir.IssueRequired}}},
		{"every parse problem at once",
			`{"resourceType":"Patient","gender":"x","birthDate":"1980-02-30","foo":1,"active":"yes"}`,
			[]issue{{"Patient.gender", fhir.IssueValue}, {"Patient.birthDate", fhir.IssueValue}, {"Patient", fhir.IssueStructure}, {"Patient.active", fhir.IssueValue}}},
		{"bad id and missing link.other",
			`{"resourceType":"Patient","id":"a b","link":[{"type":"seealso"}]}`,
			[]issue{{"Patient.id", fhir.IssueValue}, {"Patient.link[0].other", fhir.IssueRequired}}},
		{"reference to a wrong type",
			`{"resourceType":"Patient","managingOrganization":{"reference":"Practitioner/1"}}`,
			[]issue{{"Patient.managingOrganization", fhir.IssueValue}}},
		{"instant without zone",
			`{"resourceType":"Patient","meta":{"lastUpdated":"2026-11-27T08:00:00"}}`,
			[]issue{{"Patient.meta.lastUpdated", fhir.IssueValue}}},
		{"encounter without class",
			`{"resourceType":"Encounter","status":"planned"}`,
			[]issue{{"Encounter.class", fhir.IssueRequired}}},
		// Ferry's own checks, which google/fhir lets through.
		{"empty values",
			`{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.3","value":""}],"name":[],"maritalStatus":{}}`,
			[]issue{{"Patient.identifier[0].value", fhir.IssueValue}, {"Patient.name", fhir.IssueStructure}, {"Patient.maritalStatus", fhir.IssueInvariant}}},
		{"duplicate property",
			`{"resourceType":"Patient","gender":"male","name":[{"family":"A","family":"B"}],"gender":"female"}`,
			[]issue{{"Patient.name[0]", fhir.IssueStructure}, {"Patient", fhir.IssueStructure}}},
		{"resourceType not first",
			`{"id":"p1","name":[{"given":[""]}],"resourceType":"Patient"}`,
			[]issue{{"Patient.name[0].given[0]", fhir.IssueValue}}},
		{"org-1", `{"resourceType":"Organization","active":true}`, []issue{{"Organization", fhir.IssueInvariant}}},
		{"bdl-1 bdl-2 bdl-3 bdl-4",
			`{"resourceType":"Bundle","type":"collection","total":1,"entry":[{"resource":{"resourceType":"Organization","name":"x"},"search":{"mode":"match"},"request":{"method":"GET","url":"Organization"},"response":{"status":"200"}}]}`,
			[]issue{{"Bundle.total", fhir.IssueInvariant}, {"Bundle.entry[0].search", fhir.IssueInvariant}, {"Bundle.entry[0].request", fhir.IssueInvariant}, {"Bundle.entry[0].response", fhir.IssueInvariant}}},
		{"history entry without request and response",
			`{"resourceType":"Bundle","type":"history","entry":[{"fullUrl":"http://x/fhir/r4/Organization/o1","resource":{"resourceType":"Organization","id":"o1","name":"x"}}]}`,
			[]issue{{"Bundle.entry[0].request", fhir.IssueInvariant}, {"Bundle.entry[0].response", fhir.IssueInvariant}}},
		{"problem inside a Bundle entry",
			`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Patient","gender":"x"},"search":{"mode":"match"}}]}`,
			[]issue{{"Bundle.entry[0].resource.Patient.gender", fhir.IssueValue}}},
	}
	v := newValidator(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := v.Validate([]byte(tc.in))
			var ve *fhir.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate = %v, want a *ValidationError", err)
			}
			var got []issue
			for _, is := range ve.Issues {
				got = append(got, issue{is.Expression, is.Code})
				if is.Message == "" {
					t.Errorf("%s: issue without a message", is.Expression)
				}
			}
			key := func(a, b issue) int { return strings.Compare(a.expr+string(a.code), b.expr+string(b.code)) }
			slices.SortFunc(got, key)
			want := slices.Clone(tc.want)
			slices.SortFunc(want, key)
			if !slices.Equal(got, want) {
				t.Errorf("issues:\n got %v\nwant %v\n(%v)", got, want, err)
			}
			// Every issue becomes an OperationOutcome issue, and that outcome is valid FHIR.
			oo, err := json.Marshal(ve.OperationOutcome())
			if err != nil {
				t.Fatal(err)
			}
			mustValid(t, oo)
		})
	}
}

// TestValidationErrorKeepsPHIOut checks the split between what may be logged and what may not:
// values from the resource appear in Detail only, never in Error() or Message.
func TestValidationErrorKeepsPHIOut(t *testing.T) {
	t.Parallel()
	err := newValidator(t).Validate([]byte(`{"resourceType":"Patient","birthDate":"SMITH-JOHN","JOHNSMITH":1,"name":[{"family":"X","family":"Y"}]}`))
	var ve *fhir.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate = %v", err)
	}
	if s := err.Error(); strings.Contains(s, "SMITH") {
		t.Errorf("Error() quotes the resource: %s", s)
	}
	var details []string
	for _, is := range ve.Issues {
		if strings.Contains(is.Message, "SMITH") || strings.Contains(is.Expression, "SMITH") {
			t.Errorf("issue %+v quotes the resource outside Detail", is)
		}
		details = append(details, is.Detail)
	}
	if !slices.Contains(details, "JOHNSMITH") {
		t.Errorf("the unknown element's name is not in any Detail: %q", details)
	}
}

func TestValidatorConcurrent(t *testing.T) {
	t.Parallel()
	v := newValidator(t)
	good, bad := readTestdata(t, "servicerequest.json"), []byte(`{"resourceType":"ServiceRequest"}`)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if err := v.Validate(good); err != nil {
					t.Error(err)
				}
				if err := v.Validate(bad); err == nil {
					t.Error("an empty ServiceRequest passed")
				}
			}
		})
	}
	wg.Wait()
}

// TestValidateCorpus validates the official R4 examples of the types Ferry emits and serves.
func TestValidateCorpus(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(corpusDir); err != nil {
		t.Skipf("shared FHIR corpus not found at %s (it is in CI, not in a user's clone; TestValidateFixtures covers Ferry's own resources): %v", corpusDir, err)
	}
	v := newValidator(t)
	n := 0
	for _, typ := range []string{"Patient", "ServiceRequest", "Practitioner", "Encounter", "Organization"} {
		files, _ := filepath.Glob(filepath.Join(corpusDir, typ, "*.json"))
		for _, f := range files {
			n++
			t.Run(filepath.Base(f), func(t *testing.T) {
				t.Parallel()
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				if err := v.Validate(data); err != nil {
					t.Error(err)
				}
				if _, err := fhir.Index(typ, data); err != nil {
					t.Errorf("Index: %v", err)
				}
			})
		}
	}
	if n == 0 {
		t.Fatalf("no examples under %s", corpusDir)
	}
}

func BenchmarkValidate(b *testing.B) {
	v := newValidator(b)
	for _, name := range []string{"patient.json", "servicerequest.json"} {
		data := readTestdata(b, name)
		b.Run(strings.TrimSuffix(name, ".json"), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if err := v.Validate(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
