package fhir_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/fhir"
)

// Everything Ferry emits must pass its own Validator.

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := fhir.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOperationOutcomeValid(t *testing.T) {
	t.Parallel()
	cases := map[string]*fhir.OperationOutcome{
		"plain":                            fhir.NewOperationOutcome(fhir.SeverityError, fhir.IssueNotFound, "Patient/x is not known"),
		"no diagnostics":                   fhir.NewOperationOutcome(fhir.SeverityFatal, fhir.IssueException, ""),
		"expression":                       fhir.NewOperationOutcome(fhir.SeverityWarning, fhir.IssueNotSupported, "ignored", "birthdate"),
		"resourceType forgotten":           {Issue: []fhir.OutcomeIssue{{Severity: fhir.SeverityInformation, Code: fhir.IssueInformational, Diagnostics: "ok"}}},
		"empty expression":                 fhir.NewOperationOutcome(fhir.SeverityError, fhir.IssueNotSupported, "unknown parameter", ""),
		"control characters and bad UTF-8": fhir.NewOperationOutcome(fhir.SeverityError, fhir.IssueInvalid, "bad \x00 value \xff\x1b", "a\x01b", " \x00 "),
		"long diagnostics":                 fhir.NewOperationOutcome(fhir.SeverityError, fhir.IssueInvalid, strings.Repeat("é", 5000)),
	}
	for name, oo := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := marshal(t, oo)
			mustValid(t, b)
			if !strings.Contains(string(b), `"resourceType":"OperationOutcome"`) {
				t.Errorf("no resourceType: %s", b)
			}
		})
	}
}

func TestValidationErrorOutcome(t *testing.T) {
	t.Parallel()
	err := newValidator(t).Validate([]byte(`{"resourceType":"Patient","gender":"x","name":[{"family":""}]}`))
	var ve *fhir.ValidationError
	if !errors.As(err, &ve) {
		t.Fatal(err)
	}
	var oo struct {
		Issue []struct {
			Severity, Code, Diagnostics string
			Expression                  []string
		}
	}
	b := marshal(t, ve.OperationOutcome())
	mustValid(t, b)
	if err := json.Unmarshal(b, &oo); err != nil {
		t.Fatal(err)
	}
	if len(oo.Issue) != 2 {
		t.Fatalf("issues: %s", b)
	}
	for _, is := range oo.Issue {
		if is.Severity != "error" || len(is.Expression) != 1 || is.Diagnostics == "" {
			t.Errorf("issue %+v", is)
		}
	}
}

func TestSearchsetValid(t *testing.T) {
	t.Parallel()
	base := "https://ferry.example/fhir/r4"
	pat := fhir.StoredResource{Type: "Patient", ID: "pat-0001", VersionID: 2, LastUpdated: time.Now(), JSON: readTestdata(t, "patient.json")}
	sr := fhir.StoredResource{Type: "ServiceRequest", ID: "sr-0001", VersionID: 1, LastUpdated: time.Now(), JSON: readTestdata(t, "servicerequest.json")}
	links := []fhir.BundleLink{{Relation: "self", URL: base + "/Patient?_count=2"}, {Relation: "next", URL: base + "/Patient?_count=2&_offset=2"}}
	for name, b := range map[string]*fhir.Bundle{
		"empty, total known":   fhir.NewSearchset(base, nil, 0, links[:1]),
		"two, total unknown":   fhir.NewSearchset(base, []fhir.StoredResource{pat, sr}, -1, links),
		"one, total known":     fhir.NewSearchset(base, []fhir.StoredResource{pat}, 1, nil),
		"history of a patient": fhir.NewHistory(base, []fhir.StoredResource{pat, {Type: "Patient", ID: "pat-0001", VersionID: 1, LastUpdated: time.Now(), JSON: readTestdata(t, "patient.json")}}, links[:1]),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data := marshal(t, b)
			mustValid(t, data)
			var got struct {
				Type  string
				Total *int
				Entry []struct {
					FullURL  string
					Resource map[string]any
				}
			}
			if err := json.Unmarshal(data, &got); err != nil {
				t.Fatal(err)
			}
			for _, e := range got.Entry {
				if want := base + "/" + e.Resource["resourceType"].(string) + "/" + e.Resource["id"].(string); e.FullURL != want {
					t.Errorf("fullUrl %q, want %q", e.FullURL, want)
				}
			}
		})
	}
}

// TestSearchsetKeepsResourceBytes: an entry's resource is the stored JSON as it is, unknown
// elements and all; nothing is round-tripped through a model.
func TestSearchsetKeepsResourceBytes(t *testing.T) {
	t.Parallel()
	raw := `{"resourceType":"Patient","id":"p1","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">A &amp; B</div>"},` +
		`"extension":[{"url":"urn:ferry:x","valueString":"kept"}],"_birthDate":{"extension":[{"url":"urn:ferry:y","valueCode":"unknown"}]}}`
	b := marshal(t, fhir.NewSearchset("http://x/fhir/r4", []fhir.StoredResource{{Type: "Patient", ID: "p1", JSON: []byte(raw)}}, 1, nil))
	if !strings.Contains(string(b), raw) {
		t.Errorf("resource changed in the Bundle:\n%s", b)
	}
	mustValid(t, b)
}

func TestCapabilityStatementValid(t *testing.T) {
	t.Parallel()
	cs := fhir.NewCapabilityStatement(fhir.CapabilityOptions{BaseURL: "https://ferry.example/fhir/r4", SoftwareVersion: "v1.2.3", Date: time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)})
	data := marshal(t, cs)
	mustValid(t, data)
	var got struct {
		FHIRVersion string
		Rest        []struct {
			Resource []struct {
				Type        string
				Interaction []struct{ Code string }
				SearchParam []struct{ Name, Type, Definition string }
			}
		}
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got.FHIRVersion != "4.0.1" || len(got.Rest) != 1 {
		t.Fatalf("statement: %s", data)
	}
	var types []string
	for _, r := range got.Rest[0].Resource {
		types = append(types, r.Type)
		if len(r.Interaction) != 4 {
			t.Errorf("%s: interactions %v", r.Type, r.Interaction)
		}
		// The statement lists exactly the parameters the server answers.
		want := fhir.SearchParams(r.Type)
		if len(r.SearchParam) != len(want) {
			t.Errorf("%s: %d search params, SearchParams has %d", r.Type, len(r.SearchParam), len(want))
		}
		for i, p := range r.SearchParam {
			if i < len(want) && (p.Name != want[i].Name || p.Type != string(want[i].Type) || !strings.HasPrefix(p.Definition, "http://hl7.org/fhir/SearchParameter/")) {
				t.Errorf("%s: param %+v, want %+v", r.Type, p, want[i])
			}
		}
	}
	if strings.Join(types, ",") != strings.Join(fhir.SearchTypes(), ",") {
		t.Errorf("types %v, want %v", types, fhir.SearchTypes())
	}
}

func TestValidateDeepNesting(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat(`{"url":"urn:x","extension":[`, 150) + `{"url":"urn:x","valueString":"x"}` + strings.Repeat(`]}`, 150)
	in := `{"resourceType":"Patient","extension":[` + deep + `]}`
	var ve *fhir.ValidationError
	if err := newValidator(t).Validate([]byte(in)); !errors.As(err, &ve) {
		t.Fatalf("Validate = %v, want a *ValidationError", err)
	}
}
