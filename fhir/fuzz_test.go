package fhir_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferryhealth/ferry/fhir"
)

// seedFuzz adds Ferry's fixtures, a few broken inputs and, when ../shared is present, every
// official example of the corpus.
func seedFuzz(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	if _, err := os.Stat(corpusDir); err == nil {
		more, _ := filepath.Glob(filepath.Join(corpusDir, "*", "*.json"))
		files = append(files, more...)
	} else {
		f.Logf("FHIR corpus not found at %s (../shared is absent): seeding from testdata only", corpusDir)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{``, `{`, `[]`, `null`, `{"resourceType":"Patient","name":[{"given":["",null]}]}`,
		`{"resourceType":"Patient","a":{"a":{"a":{"a":[[[[{}]]]]}}}}`, `{"resourceType":"Bundle","type":"history","entry":[{}]}`,
		`{"resourceType":"Patient","birthDate":"1980-02-30","meta":{"lastUpdated":"2026-11-27T08:00:00.1234567890+14:00"}}`,
		"{\"resourceType\":\"Patient\",\"\\u0000\":\"\\\"\"}"} {
		f.Add([]byte(s))
	}
}

// FuzzValidate: Validate never panics and answers nil or a *ValidationError with issues; what it
// accepts, Index indexes without error.
func FuzzValidate(f *testing.F) {
	seedFuzz(f)
	v := newValidator(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		err := v.Validate(data)
		if err != nil {
			var ve *fhir.ValidationError
			if !errors.As(err, &ve) || len(ve.Issues) == 0 {
				t.Fatalf("Validate = %v, want a *ValidationError with issues", err)
			}
			oo, err := fhir.Marshal(ve.OperationOutcome())
			if err != nil {
				t.Fatalf("the OperationOutcome does not marshal: %v", err)
			}
			if err := v.Validate(oo); err != nil {
				t.Fatalf("the OperationOutcome is not valid FHIR: %v\n%s", err, oo)
			}
			return
		}
		var head struct {
			ResourceType string `json:"resourceType"`
		}
		if err := json.Unmarshal(data, &head); err != nil {
			t.Fatalf("valid for Validate, not JSON for encoding/json: %v", err)
		}
		if _, err := fhir.Index(head.ResourceType, data); err != nil {
			t.Fatalf("valid, but Index fails: %v", err)
		}
	})
}

// FuzzIndex: Index never panics on any bytes, whatever the type.
func FuzzIndex(f *testing.F) {
	seedFuzz(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, typ := range []string{"Patient", "ServiceRequest", "Practitioner", "Encounter", "Organization", "Observation"} {
			es, err := fhir.Index(typ, data)
			if err == nil {
				for _, e := range es {
					if e.Value == "" {
						t.Fatalf("%s: empty value for %s", typ, e.Param)
					}
				}
			}
		}
	})
}

// FuzzParseDateQuery: a search value from the URL never panics the date parser, and what it
// accepts is in the indexed form.
func FuzzParseDateQuery(f *testing.F) {
	for _, s := range []string{"1980", "ge1980-01", "le2026-11-27", "gt2026-11-27T07:50:33.123+01:00", "eq2026-11-27T08:00", "ne1", "2026-11-27T", "T"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := fhir.ParseDateQuery(s)
		if err != nil {
			return
		}
		switch c.Op {
		case "prefix", "ge", "lt":
		default:
			t.Fatalf("ParseDateQuery(%q) op %q", s, c.Op)
		}
		if c.Value == "" {
			t.Fatalf("ParseDateQuery(%q) gave an empty value", s)
		}
	})
}
