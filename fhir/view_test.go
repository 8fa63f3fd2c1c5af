package fhir

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

// r4Examples holds the official R4 examples (../shared/corpus, not part of the repository).
const r4Examples = "../../shared/corpus/fhir/examples"

// readContent reads a resource file as its content tree and its type.
func readContent(t *testing.T, path string) (string, map[string]any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var head struct {
		ResourceType string `json:"resourceType"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	c, err := DecodeContent(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return head.ResourceType, c
}

func TestViewsReadTheFieldsFerryUses(t *testing.T) {
	t.Parallel()
	_, pc := readContent(t, "testdata/patient.json")
	p := PatientOf(pc)
	if len(p.Identifier) != 2 || p.Identifier[0].TypeCode() != "MR" || p.Identifier[0].Value != "MRN123456" ||
		p.Identifier[0].System != "urn:oid:1.2.840.114350.1.13.1" || p.Identifier[0].Assigner != "STMARYS" || p.Identifier[1].TypeCode() != "" {
		t.Errorf("Patient.identifier: %+v", p.Identifier)
	}
	if len(p.Name) != 2 || p.Name[0].Use != "official" || p.Name[0].Family != "Müller-Lüdenscheidt" ||
		!slices.Equal(p.Name[0].Given, []string{"José", "Maria"}) || !slices.Equal(p.Name[0].Prefix, []string{"Dr."}) {
		t.Errorf("Patient.name: %+v", p.Name)
	}
	if p.Gender != "female" || p.BirthDate != "1980-01-02" || p.Active == nil || !*p.Active {
		t.Errorf("Patient gender %q, birthDate %q, active %v", p.Gender, p.BirthDate, p.Active)
	}
	if len(p.Link) != 1 || p.Link[0].Type != "replaces" || p.Link[0].Other.Reference != "Patient/pat-0000" {
		t.Errorf("Patient.link: %+v", p.Link)
	}

	_, sc := readContent(t, "testdata/servicerequest.json")
	sr := ServiceRequestOf(sc)
	if sr.Status != "active" || sr.Priority != "stat" || sr.Identifier[0].TypeCode() != "PLAC" || sr.Identifier[1].Value != "ACC2002" {
		t.Errorf("ServiceRequest status %q, priority %q, identifier %+v", sr.Status, sr.Priority, sr.Identifier)
	}
	if typ, id := sr.Subject.TypeID(); typ != "Patient" || id != "pat-0001" {
		t.Errorf("ServiceRequest.subject: %s/%s", typ, id)
	}
	if sr.Requester.Display != "Dr Referring" || sr.Encounter.Reference != "Encounter/enc-0001" {
		t.Errorf("ServiceRequest requester %+v, encounter %+v", sr.Requester, sr.Encounter)
	}
	if sr.Code.Label() != "XR CHEST 2V" || !sr.Code.HasCode("71046") || len(sr.ReasonCode) != 1 || sr.ReasonCode[0].Text != "Cough for three weeks" {
		t.Errorf("ServiceRequest code %+v, reasonCode %+v", sr.Code, sr.ReasonCode)
	}
	if sr.OccurrenceDateTime != "2026-11-27T10:00:00-05:00" || sr.AuthoredOn != "2026-11-27T07:45:00Z" {
		t.Errorf("ServiceRequest occurrence %q, authoredOn %q", sr.OccurrenceDateTime, sr.AuthoredOn)
	}
	if !reflect.DeepEqual(sr.Code.Tree(), sc["code"]) || !reflect.DeepEqual(sr.Requester.Tree(), sc["requester"]) {
		t.Error("ServiceRequest code or requester Tree is not the element as read")
	}

	_, dc := readContent(t, "testdata/views/diagnosticreport.json")
	dr := DiagnosticReportOf(dc)
	if dr.Status != "final" || dr.Conclusion != "No acute findings." || dr.Code.Label() != "XR Chest 2 Views" {
		t.Errorf("DiagnosticReport status %q, conclusion %q, code %+v", dr.Status, dr.Conclusion, dr.Code)
	}
	if len(dr.BasedOn) != 2 || dr.BasedOn[0].Reference != "ServiceRequest/sr-0001" || dr.BasedOn[0].Identifier != nil ||
		dr.BasedOn[1].Identifier == nil || dr.BasedOn[1].Identifier.TypeCode() != "ACSN" || dr.BasedOn[1].Identifier.Value != "ACC1001" {
		t.Errorf("DiagnosticReport.basedOn: %+v", dr.BasedOn)
	}
	if dr.Subject.Reference != "#p1" || dr.Subject.Identifier == nil || dr.Subject.Identifier.Value != "MRN-77" {
		t.Errorf("DiagnosticReport.subject: %+v", dr.Subject)
	}
	if len(dr.Contained) != 1 || ResourceType(dr.Contained[0]) != "Patient" || LogicalID(dr.Contained[0]) != "p1" ||
		PatientOf(dr.Contained[0]).BirthDate != "1970-05-06" {
		t.Errorf("DiagnosticReport.contained: %+v", dr.Contained)
	}
	if len(dr.Extension) != 2 || !dr.Extension[0].ValueBoolean || dr.Extension[1].ValueString != "Night desk 3" {
		t.Errorf("DiagnosticReport.extension: %+v", dr.Extension)
	}
	if len(dr.Category) != 1 || !dr.Category[0].HasCode("RAD") || len(dr.ImagingStudy) != 1 || len(dr.ResultsInterpreter) != 1 {
		t.Errorf("DiagnosticReport category %+v, imagingStudy %+v, resultsInterpreter %+v", dr.Category, dr.ImagingStudy, dr.ResultsInterpreter)
	}
	if len(dr.PresentedForm) != 2 || dr.PresentedForm[1].ContentType != "text/html" || dr.PresentedForm[1].Data != "PHA+Tm8gYWN1dGU8L3A+" {
		t.Errorf("DiagnosticReport.presentedForm: %+v", dr.PresentedForm)
	}

	_, ic := readContent(t, "testdata/views/imagingstudy.json")
	is := ImagingStudyOf(ic)
	if is.Started != "2026-11-27T08:40:00+01:00" || len(is.Identifier) != 2 || is.Identifier[1].TypeCode() != "ACSN" {
		t.Errorf("ImagingStudy started %q, identifier %+v", is.Started, is.Identifier)
	}

	// Absent or mistyped fields read as absent.
	if got := PatientOf(map[string]any{"gender": 1, "name": "x", "identifier": []any{"y"}}); got.Gender != "" || got.Name != nil ||
		len(got.Identifier) != 1 || !reflect.DeepEqual(got.Identifier[0], Identifier{}) {
		t.Errorf("PatientOf(mistyped): %+v", got)
	}
}

// TestReadModifyWriteKeepsWhatViewsDoNotName changes resources as the engine does — a view read,
// then one element changed through this package — and checks that every other element, with
// its extensions and the elements no view names, is written back exactly as it was read. Ferry's
// own fixtures always; the official R4 examples in ../shared/corpus too when they are there.
func TestReadModifyWriteKeepsWhatViewsDoNotName(t *testing.T) {
	t.Parallel()
	files := []string{"testdata/patient.json", "testdata/servicerequest.json",
		"testdata/views/diagnosticreport.json", "testdata/views/imagingstudy.json"}
	if corpus, err := filepath.Glob(filepath.Join(r4Examples, "*", "*.json")); err == nil && len(corpus) > 0 {
		for _, f := range corpus {
			switch filepath.Base(filepath.Dir(f)) {
			case "Patient", "ServiceRequest", "DiagnosticReport", "ImagingStudy":
				files = append(files, f)
			}
		}
	} else {
		t.Logf("the R4 examples in %s are absent: Ferry's own fixtures only", r4Examples)
	}
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			typ, c := readContent(t, f)
			_, before := readContent(t, f) // a second, untouched copy
			changed := map[string]bool{}
			switch typ {
			case "Patient":
				p := PatientOf(c)
				AppendTo(c, "link", map[string]any{"other": map[string]any{"reference": "Patient/survivor"}, "type": "replaced-by"})
				c["active"] = false
				changed["link"], changed["active"] = true, true
				if got := PatientOf(c); len(got.Link) != len(p.Link)+1 || !reflect.DeepEqual(got.Identifier, p.Identifier) {
					t.Errorf("after the change: links %d (was %d), identifiers changed: %v", len(got.Link), len(p.Link), !reflect.DeepEqual(got.Identifier, p.Identifier))
				}
			case "ServiceRequest":
				AppendTo(c, "extension", map[string]any{"url": "https://ferryhealth.github.io/fhir/StructureDefinition/sending-facility", "valueString": "STMARYS"})
				c["subject"] = map[string]any{"reference": "Patient/survivor"}
				changed["extension"], changed["subject"] = true, true
				if got := ServiceRequestOf(c); got.Subject.Reference != "Patient/survivor" {
					t.Errorf("subject after the change: %+v", got.Subject)
				}
			case "DiagnosticReport":
				for _, form := range DiagnosticReportOf(c).PresentedForm {
					if form.Data != "" {
						form.ReplaceData("PHA+c2FmZTwvcD4=")
						changed["presentedForm"] = true
					}
				}
				AppendTo(c, "category", map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD"}}})
				changed["category"] = true
			case "ImagingStudy":
				c["subject"] = map[string]any{"reference": "Patient/survivor"}
				changed["subject"] = true
			default:
				t.Fatalf("no change written for %s", typ)
			}
			after, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			var written map[string]any
			if err := json.Unmarshal(after, &written); err != nil {
				t.Fatal(err)
			}
			for k, want := range before {
				if changed[k] {
					continue
				}
				if !reflect.DeepEqual(written[k], want) {
					t.Errorf("%s changed: %v, was %v", k, written[k], want)
				}
			}
			for k := range written {
				if _, ok := before[k]; !ok && !changed[k] {
					t.Errorf("%s appeared", k)
				}
			}
			// The change lists grew by one, the earlier elements as they were.
			for k := range changed {
				was, _ := before[k].([]any)
				now, ok := written[k].([]any)
				if k == "presentedForm" || !ok {
					continue
				}
				if len(now) != len(was)+1 || (len(was) > 0 && !reflect.DeepEqual(now[:len(was)], was)) {
					t.Errorf("%s: the earlier elements changed", k)
				}
			}
			if _, ok := changed["presentedForm"]; ok {
				for i, x := range written["presentedForm"].([]any) {
					form, old := x.(map[string]any), before["presentedForm"].([]any)[i].(map[string]any)
					if _, has := old["data"]; !has {
						continue
					}
					if form["data"] != "PHA+c2FmZTwvcD4=" || form["hash"] != nil || form["size"] != nil {
						t.Errorf("presentedForm[%d]: data, hash and size not replaced: %v", i, form)
					}
					for _, k := range []string{"contentType", "language", "title", "creation", "url"} {
						if !reflect.DeepEqual(form[k], old[k]) {
							t.Errorf("presentedForm[%d].%s changed", i, k)
						}
					}
				}
			}
			// The resource written back is still valid R4 (the fixtures and examples are).
			var head map[string]any
			_ = json.Unmarshal(raw, &head)
			written["resourceType"], written["id"] = typ, head["id"]
			body, _ := json.Marshal(written)
			if err := v.Validate(body); err != nil {
				t.Errorf("written back, not valid R4: %v", err)
			}
		})
	}
}

// BenchmarkViews reads each view from its content tree, as the engine does per resource it
// looks at (a linking candidate, a report's order): the tree is decoded already.
func BenchmarkViews(b *testing.B) {
	for _, tt := range []struct {
		file string
		view func(map[string]any)
	}{
		{"testdata/patient.json", func(c map[string]any) { _ = PatientOf(c) }},
		{"testdata/servicerequest.json", func(c map[string]any) { _ = ServiceRequestOf(c) }},
		{"testdata/views/diagnosticreport.json", func(c map[string]any) { _ = DiagnosticReportOf(c) }},
	} {
		raw, err := os.ReadFile(tt.file)
		if err != nil {
			b.Fatal(err)
		}
		c, err := DecodeContent(raw)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(filepath.Base(tt.file), func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				tt.view(c)
			}
		})
	}
}
