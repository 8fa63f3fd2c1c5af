package fhir_test

import (
	"fmt"
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
		})
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
