package fhir_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ferryhealth/ferry/fhir"
)

// entries renders index entries as "param system|value" lines, sorted, for comparison.
func entries(es []fhir.IndexEntry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Param + " " + e.System + "|" + e.Value
	}
	slices.Sort(out)
	return out
}

func TestIndex(t *testing.T) {
	t.Parallel()
	cases := []struct {
		typ, file string
		want      []string
	}{
		{"Patient", "patient.json", []string{
			"_id |pat-0001",
			"_lastUpdated |2026-11-27T07:50:33.123Z",
			"active |true",
			"birthdate |1980-01-02",
			"family |angstrom",
			"family |muller-ludenscheidt",
			"gender http://hl7.org/fhir/administrative-gender|female",
			"given |jose",
			"given |maria",
			"identifier http://hl7.org/fhir/sid/us-ssn|999-00-1234",
			"identifier urn:oid:1.2.840.114350.1.13.1|MRN123456",
			"link |Patient/pat-0000",
			"name |angstrom",
			"name |dr.",
			"name |jose",
			"name |jose muller-ludenscheidt",
			"name |maria",
			"name |muller-ludenscheidt",
		}},
		{"ServiceRequest", "servicerequest.json", []string{
			"_id |sr-0001",
			"_lastUpdated |2026-11-27T07:50:33.000Z",
			"authored |2026-11-27T07:45:00.000Z",
			"code http://loinc.org|36643-5",
			"code urn:oid:1.2.840.114350.1.13.1.4|71046",
			"encounter |Encounter/enc-0001",
			"identifier urn:oid:1.2.840.114350.1.13.1.2|ORD1001",
			"identifier urn:oid:1.2.840.114350.1.13.1.3|ACC2002",
			"intent http://hl7.org/fhir/request-intent|order",
			"occurrence |2026-11-27T15:00:00.000Z",
			"patient |Patient/pat-0001",
			"priority http://hl7.org/fhir/request-priority|stat",
			"requester |Practitioner/prac-0001",
			"status http://hl7.org/fhir/request-status|active",
			"subject |Patient/pat-0001",
		}},
		{"Practitioner", "practitioner.json", []string{
			"_id |prac-0001",
			"_lastUpdated |2026-11-27T07:50:33.000Z",
			"family |referring",
			"given |r.",
			"given |rita",
			"identifier http://hl7.org/fhir/sid/us-npi|1234567893",
			"name |dr",
			"name |r.",
			"name |referring",
			"name |rita",
		}},
		{"Encounter", "encounter.json", []string{
			"_id |enc-0001",
			"_lastUpdated |2026-11-27T07:50:33.000Z",
			"class http://terminology.hl7.org/CodeSystem/v3-ActCode|AMB",
			"date |2026-11-27T07:30:00.000Z",
			"identifier urn:oid:1.2.840.114350.1.13.1.5|V778899",
			"patient |Patient/pat-0001",
			"status http://hl7.org/fhir/encounter-status|in-progress",
			"subject |Patient/pat-0001",
		}},
		{"Organization", "organization.json", []string{
			"_id |org-stmarys",
			"_lastUpdated |2026-11-27T07:50:33.000Z",
			"identifier urn:ferry:facility|STMARYS",
			"name |saint mary",
			"name |st mary's hospital",
		}},
		{"ImagingStudy", "imagingstudy.json", []string{
			"_id |is-0001",
			"_lastUpdated |2026-11-27T09:10:00.000Z",
			"basedon |ServiceRequest/sr-0001",
			"dicom-class urn:ietf:rfc:3986|urn:oid:1.2.840.10008.5.1.4.1.1.2",
			"identifier urn:dicom:uid|urn:oid:1.2.826.0.1.3680043.10.1081.1.1",
			"identifier |ACC123",
			"modality http://dicom.nema.org/resources/ontology/DCM|CT",
			"patient |Patient/pat-0001",
			"series |1.2.826.0.1.3680043.10.1081.2.1",
			"started |2026-11-27T09:05:33.000Z",
			"status http://hl7.org/fhir/imagingstudy-status|available",
			"subject |Patient/pat-0001",
		}},
		{"DiagnosticReport", "diagnosticreport.json", []string{
			"_id |dr-0001",
			"_lastUpdated |2026-11-27T10:42:10.000Z",
			"based-on |ServiceRequest/sr-0001",
			"category http://terminology.hl7.org/CodeSystem/v2-0074|RAD",
			"code http://loinc.org|24627-2",
			"date |2026-11-27T09:05:33.000Z",
			"identifier urn:ferry:report|RPT-0001",
			"issued |2026-11-27T10:42:10.000Z",
			"patient |Patient/pat-0001",
			"results-interpreter |Practitioner/prac-0001",
			"status http://hl7.org/fhir/diagnostic-report-status|final",
			"subject |Patient/pat-0001",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.typ, func(t *testing.T) {
			t.Parallel()
			data := readTestdata(t, tc.file)
			got, err := fhir.Index(tc.typ, data)
			if err != nil {
				t.Fatal(err)
			}
			if g := entries(got); !slices.Equal(g, tc.want) {
				t.Errorf("entries:\n got %q\nwant %q", g, tc.want)
			}
			// Every parameter indexed is one SearchParams declares for the type.
			for _, e := range got {
				if _, ok := fhir.LookupSearchParam(tc.typ, e.Param); !ok {
					t.Errorf("indexed %q, which SearchParams(%s) does not declare", e.Param, tc.typ)
				}
			}
		})
	}
}

func TestIndexCases(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, typ, in string
		want          []string
		wantErr       string
	}{
		{"unknown type: _id and _lastUpdated only", "Observation",
			`{"resourceType":"Observation","id":"o1","meta":{"lastUpdated":"2026-11-27T23:59:59.9999+00:00"},"status":"final","subject":{"reference":"Patient/p1"}}`,
			[]string{"_id |o1", "_lastUpdated |2026-11-27T23:59:59.999Z"}, ""},
		{"subject that is not a Patient has no patient entry", "ServiceRequest",
			`{"resourceType":"ServiceRequest","id":"s","status":"draft","intent":"plan","subject":{"reference":"Group/g1"}}`,
			[]string{"_id |s", "intent http://hl7.org/fhir/request-intent|plan", "status http://hl7.org/fhir/request-status|draft", "subject |Group/g1"}, ""},
		{"occurrence period and absolute, versioned and contained references", "ServiceRequest",
			`{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"https://ehr.example/fhir/Patient/p9/_history/3"},
			  "requester":{"reference":"#pr1"},"encounter":{"reference":"urn:uuid:0d5e3c4a-3a4b-4d2c-9a55-1b8e0a2f0c11"},
			  "occurrencePeriod":{"start":"2026-11","end":"2026-12-01T00:00:00+01:00"}}`,
			[]string{"intent http://hl7.org/fhir/request-intent|order", "occurrence |2026-11", "occurrence |2026-11-30T23:00:00.000Z",
				"patient |Patient/p9", "status http://hl7.org/fhir/request-status|active", "subject |Patient/p9"}, ""},
		{"inactive patient, year-only birth date", "Patient",
			`{"resourceType":"Patient","active":false,"birthDate":"1931"}`,
			[]string{"active |false", "birthdate |1931"}, ""},
		{"ImagingStudy: study and series endpoints, modalities and SOP classes deduplicated", "ImagingStudy",
			`{"resourceType":"ImagingStudy","id":"is1","meta":{"lastUpdated":"2026-11-27T08:00:00Z"},
			  "identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.3"},
			    {"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"ACSN"}]},"system":"urn:oid:1.2.840.114350.1.13.1.3","value":"ACC2002"}],
			  "status":"available","subject":{"reference":"Patient/p1"},"basedOn":[{"reference":"ServiceRequest/sr1"}],
			  "started":"2026-11-27T09:15:30.5+01:00","referrer":{"reference":"Practitioner/pr1"},"endpoint":[{"reference":"Endpoint/dicomweb"}],
			  "series":[
			    {"uid":"1.2.3.1","modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"},
			     "instance":[{"uid":"1.2.3.1.1","sopClass":{"system":"urn:ietf:rfc:3986","code":"urn:oid:1.2.840.10008.5.1.4.1.1.2"}},
			                 {"uid":"1.2.3.1.2","sopClass":{"system":"urn:ietf:rfc:3986","code":"urn:oid:1.2.840.10008.5.1.4.1.1.2"}}]},
			    {"uid":"1.2.3.2","modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"SR"},"endpoint":[{"reference":"Endpoint/wado-uri"}],
			     "instance":[{"uid":"1.2.3.2.1","sopClass":{"system":"urn:ietf:rfc:3986","code":"urn:oid:1.2.840.10008.5.1.4.1.1.88.22"}}]},
			    {"uid":"1.2.3.3","modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"}}]}`,
			[]string{"_id |is1", "_lastUpdated |2026-11-27T08:00:00.000Z",
				"basedon |ServiceRequest/sr1",
				"dicom-class urn:ietf:rfc:3986|urn:oid:1.2.840.10008.5.1.4.1.1.2",
				"dicom-class urn:ietf:rfc:3986|urn:oid:1.2.840.10008.5.1.4.1.1.88.22",
				"endpoint |Endpoint/dicomweb", "endpoint |Endpoint/wado-uri",
				"identifier urn:dicom:uid|urn:oid:1.2.3", "identifier urn:oid:1.2.840.114350.1.13.1.3|ACC2002",
				"modality http://dicom.nema.org/resources/ontology/DCM|CT", "modality http://dicom.nema.org/resources/ontology/DCM|SR",
				"patient |Patient/p1", "referrer |Practitioner/pr1",
				"series |1.2.3.1", "series |1.2.3.2", "series |1.2.3.3",
				"started |2026-11-27T08:15:30.500Z",
				"status http://hl7.org/fhir/imagingstudy-status|available", "subject |Patient/p1"}, ""},
		{"ImagingStudy: date-only start, subject a Device, no series", "ImagingStudy",
			`{"resourceType":"ImagingStudy","status":"entered-in-error","subject":{"reference":"Device/d1"},"started":"2026-11-27",
			  "modality":[{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"MR"}]}`,
			[]string{"started |2026-11-27", "status http://hl7.org/fhir/imagingstudy-status|entered-in-error", "subject |Device/d1"}, ""},
		{"ImagingStudy: bad started", "ImagingStudy",
			`{"resourceType":"ImagingStudy","status":"available","subject":{"reference":"Patient/p1"},"started":"20261127"}`, nil, "started"},
		{"ImagingStudy: series not a list", "ImagingStudy", `{"resourceType":"ImagingStudy","series":{}}`, nil, "indexing ImagingStudy"},
		{"Endpoint: Ferry's DICOMweb service", "Endpoint",
			`{"resourceType":"Endpoint","id":"dicomweb","identifier":[{"system":"urn:ferry:endpoint","value":"dicomweb"}],"status":"active",
			  "connectionType":{"system":"http://terminology.hl7.org/CodeSystem/endpoint-connection-type","code":"dicom-wado-rs"},
			  "name":"Ferry DICOMweb","managingOrganization":{"reference":"Organization/org1"},
			  "payloadType":[{"text":"DICOM"},{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/endpoint-payload-type","code":"any"}]}],
			  "payloadMimeType":["application/dicom"],"address":"https://ferry.example/dicomweb"}`,
			[]string{"_id |dicomweb",
				"connection-type http://terminology.hl7.org/CodeSystem/endpoint-connection-type|dicom-wado-rs",
				"identifier urn:ferry:endpoint|dicomweb", "name |ferry dicomweb", "organization |Organization/org1",
				"payload-type http://terminology.hl7.org/CodeSystem/endpoint-payload-type|any",
				"status http://hl7.org/fhir/endpoint-status|active"}, ""},
		{"bad birth date", "Patient", `{"resourceType":"Patient","birthDate":"02/01/1980"}`, nil, "birthdate"},
		{"bad lastUpdated", "Patient", `{"resourceType":"Patient","meta":{"lastUpdated":"yesterday"}}`, nil, "meta.lastUpdated"},
		{"not JSON", "Patient", `{"resourceType":`, nil, "indexing Patient"},
		{"wrong JSON type", "Patient", `{"resourceType":"Patient","name":"Smith"}`, nil, "indexing Patient"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := fhir.Index(tc.typ, []byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Index = %v, %v; want an error about %s", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g := entries(got); !slices.Equal(g, tc.want) {
				t.Errorf("entries:\n got %q\nwant %q", g, tc.want)
			}
			for _, e := range got {
				if _, ok := fhir.LookupSearchParam(tc.typ, e.Param); !ok {
					t.Errorf("indexed %q, which SearchParams(%s) does not declare", e.Param, tc.typ)
				}
			}
		})
	}
}

// TestIndexImagingStudyExample indexes the official R4 ImagingStudy example from the shared
// corpus, which the validator accepts (TestIndex covers Ferry's own ImagingStudy everywhere).
func TestIndexImagingStudyExample(t *testing.T) {
	t.Parallel()
	name := filepath.Join(corpusDir, "ImagingStudy", "ImagingStudy-example.json")
	data, err := os.ReadFile(name)
	if err != nil {
		t.Skipf("shared FHIR corpus not found at %s (it is in CI, not in a user's clone; TestIndex covers Ferry's own ImagingStudy): %v", corpusDir, err)
	}
	if err := newValidator(t).Validate(data); err != nil {
		t.Fatal(err)
	}
	got, err := fhir.Index("ImagingStudy", data)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"_id |example",
		"dicom-class urn:ietf:rfc:3986|urn:oid:1.2.840.10008.5.1.4.1.1.2",
		"identifier urn:dicom:uid|urn:oid:2.16.124.113543.6003.1154777499.30246.19789.3503430045",
		"modality http://dicom.nema.org/resources/ontology/DCM|CT",
		"patient |Patient/dicom",
		"series |2.16.124.113543.6003.2588828330.45298.17418.2723805630",
		"started |2011-01-01T08:01:20.000Z",
		"status http://hl7.org/fhir/imagingstudy-status|available",
		"subject |Patient/dicom",
	}
	if g := entries(got); !slices.Equal(g, want) {
		t.Errorf("entries:\n got %q\nwant %q", g, want)
	}
}

// TestSearchParamTargets: every reference parameter names the types it may point to, and no
// type declares a parameter twice.
func TestSearchParamTargets(t *testing.T) {
	t.Parallel()
	for _, typ := range fhir.SearchTypes() {
		seen := map[string]bool{}
		for _, p := range fhir.SearchParams(typ) {
			if seen[p.Name] {
				t.Errorf("%s: %s declared twice", typ, p.Name)
			}
			seen[p.Name] = true
			if (p.Type == fhir.ParamReference) != (len(p.Targets) > 0) {
				t.Errorf("%s.%s: type %s with targets %v", typ, p.Name, p.Type, p.Targets)
			}
			if !strings.HasPrefix(p.Definition, "http://hl7.org/fhir/SearchParameter/") {
				t.Errorf("%s.%s: definition %q", typ, p.Name, p.Definition)
			}
		}
	}
}

func TestNormalizeString(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"Smith":                         "smith",
		"  Müller-Lüdenscheidt\tJOSÉ  ": "muller-ludenscheidt jose",
		"O'Brien   Van\n\nDer":          "o'brien van der",
		"Ångström":                      "angstrom",
		"ÇELİK":                         "celik",
		"Nguyễn Văn":                    "nguyen van",
		"":                              "",
		"   ":                           "",
		"straße":                        "straße", // no decomposition: kept as is
		"Zoë\u00a0Saldaña":              "zoe saldana",
		"e\u0301":                       "e", // already decomposed
		string([]byte{0xff, 'A', 0xfe}): "\ufffda\ufffd",
	} {
		if got := fhir.NormalizeString(in); got != want {
			t.Errorf("NormalizeString(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseDateQuery(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in, op, value, err string
	}{
		{"1980", "prefix", "1980", ""},
		{"eq1980-01", "prefix", "1980-01", ""},
		{"ge1980-01-02", "ge", "1980-01-02", ""},
		{"lt1980-01-02", "lt", "1980-01-02", ""},
		{"gt1980", "ge", "1981", ""},
		{"gt1980-12", "ge", "1981-01", ""},
		{"le2026-11-27", "lt", "2026-11-28", ""},
		{"le2024-02-28", "lt", "2024-02-29", ""},
		{"eq2026-11-27T08:50+01:00", "prefix", "2026-11-27T07:50", ""},
		{"gt2026-11-27T07:50:33Z", "ge", "2026-11-27T07:50:34", ""},
		{"le2026-11-27T23:59:59Z", "lt", "2026-11-28T00:00:00", ""},
		{"2026-11-27T07:50:33.123Z", "prefix", "2026-11-27T07:50:33.123Z", ""},
		{"gt2026-11-27T07:50:33.123Z", "ge", "2026-11-27T07:50:33.124Z", ""},
		{"ge2026-11-27T07:50:33", "ge", "2026-11-27T07:50:33", ""}, // no zone: UTC
		{"ne1980", "", "", "not supported"},
		{"xx1980", "", "", "unknown date prefix"},
		{"1980-13", "", "", "want YYYY"},
		{"2026-11-27T07", "", "", "want YYYY"},
		{"", "", "", "want YYYY"},
	}
	for _, tc := range cases {
		got, err := fhir.ParseDateQuery(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseDateQuery(%q) = %+v, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got.Op != tc.op || got.Value != tc.value {
			t.Errorf("ParseDateQuery(%q) = %+v, %v; want %s %s", tc.in, got, err, tc.op, tc.value)
		}
	}
}

// TestDateQueryOrder checks ParseDateQuery against the index: for stored values of every
// precision, lexical comparison gives the answer FHIR's date search wants.
func TestDateQueryOrder(t *testing.T) {
	t.Parallel()
	stored := []string{"1979", "1980", "1980-01", "1980-01-01", "1980-06-15", "1980-12-31", "1981-01-01",
		"1980-06-15T00:00:00.000Z", "1980-06-15T23:59:59.999Z", "1980-06-16T00:00:00.000Z"}
	match := func(c fhir.DateCondition, v string) bool {
		switch c.Op {
		case "prefix":
			return strings.HasPrefix(v, c.Value)
		case "ge":
			return v >= c.Value
		case "lt":
			return v < c.Value
		}
		panic(c.Op)
	}
	cases := []struct {
		query string
		want  []string
	}{
		{"1980", []string{"1980", "1980-01", "1980-01-01", "1980-06-15", "1980-12-31", "1980-06-15T00:00:00.000Z", "1980-06-15T23:59:59.999Z", "1980-06-16T00:00:00.000Z"}},
		{"1980-06-15", []string{"1980-06-15", "1980-06-15T00:00:00.000Z", "1980-06-15T23:59:59.999Z"}},
		{"gt1980-06-15", []string{"1980-12-31", "1981-01-01", "1980-06-16T00:00:00.000Z"}},
		{"le1980-06-15", []string{"1979", "1980", "1980-01", "1980-01-01", "1980-06-15", "1980-06-15T00:00:00.000Z", "1980-06-15T23:59:59.999Z"}},
		{"lt1980", []string{"1979"}},
		{"ge1981", []string{"1981-01-01"}},
	}
	for _, tc := range cases {
		c, err := fhir.ParseDateQuery(tc.query)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, v := range stored {
			if match(c, v) {
				got = append(got, v)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s (%s %s):\n got %q\nwant %q", tc.query, c.Op, c.Value, got, tc.want)
		}
	}
}

func TestReferenceTypeID(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"Patient/123":                             "Patient 123",
		"Patient/123/_history/4":                  "Patient 123",
		"https://x.example/fhir/r4/Encounter/e.1": "Encounter e.1",
		"#contained":                              " ",
		"urn:uuid:123":                            " ",
		"123":                                     " ",
		"patient/123":                             " ",
		"Patient/":                                " ",
		"":                                        " ",
	} {
		typ, id := fhir.ReferenceTypeID(in)
		if got := typ + " " + id; got != want {
			t.Errorf("ReferenceTypeID(%q) = %q, want %q", in, got, want)
		}
	}
}

func BenchmarkIndex(b *testing.B) {
	for _, c := range []struct{ typ, file string }{{"Patient", "patient.json"}, {"ServiceRequest", "servicerequest.json"}} {
		data := readTestdata(b, c.file)
		b.Run(c.typ, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := fhir.Index(c.typ, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
