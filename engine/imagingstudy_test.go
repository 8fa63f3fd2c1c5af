package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/fhir"
)

// testValidator is built once: loading google/fhir's descriptors takes a while.
var testValidator = sync.OnceValues(fhir.NewValidator)

// checkResource renders content as a full resource of typ, as the engine stores it, and fails
// unless fhir.Validator accepts it and fhir.Index indexes it.
func checkResource(t testing.TB, typ string, content map[string]any) []fhir.IndexEntry {
	t.Helper()
	v, err := testValidator()
	if err != nil {
		t.Fatal(err)
	}
	body, err := resourceJSON(typ, "id-0001", 1, time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC), "", content)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate(body); err != nil {
		detail := ""
		if ve := (*fhir.ValidationError)(nil); errors.As(err, &ve) {
			for _, is := range ve.Issues {
				detail += "\n  " + is.Expression + ": " + is.Message + " " + is.Detail
			}
		}
		t.Fatalf("%s does not validate: %v%s\n%s", typ, err, detail, body)
	}
	entries, err := fhir.Index(typ, body)
	if err != nil {
		t.Fatalf("%s does not index: %v\n%s", typ, err, body)
	}
	return entries
}

// renderJSON is v as the engine renders it (keys sorted), for comparison.
func renderJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := marshalJSON(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// decodeJSON is the map[string]any of a JSON object written in a test.
func decodeJSON(t testing.TB, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("%v\n%s", err, s)
	}
	return m
}

const orderJSON = `{
  "identifier": [
    {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PLAC"}]},
     "system": "urn:oid:1.2.840.114350.1.13.1.2", "value": "ORD1001"},
    {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]},
     "system": "urn:oid:1.2.840.114350.1.13.1.3", "value": "ACC2002"}
  ],
  "status": "active",
  "intent": "order",
  "code": {"coding": [{"system": "http://loinc.org", "code": "36643-5", "display": "XR Chest 2 Views"}], "text": "XR CHEST 2V"},
  "subject": {"reference": "Patient/pat-0001"},
  "requester": {"reference": "Practitioner/prac-0001", "display": "Dr Referring"},
  "reasonCode": [{"text": "Cough for three weeks"}]
}`

// studyInput is a linked two-series chest X-ray with its report (an SR), as the stores give it.
func studyInput(t testing.TB) imagingStudyInput {
	const uid = "1.2.840.113619.2.55.3.1"
	return imagingStudyInput{
		Study: &Study{
			StudyInstanceUID: uid, AccessionNumber: "ACC2002 ", StudyDate: "20261127", StudyTime: "091530.5",
			StudyDescription: "XR CHEST 2V ", StudyID: "1", ModalitiesInStudy: []string{"CR", "SR"},
			NumberOfSeries: 2, NumberOfInstances: 3,
		},
		Series: []*Series{
			{SeriesInstanceUID: uid + ".1", StudyInstanceUID: uid, Modality: "CR", SeriesNumber: " 1", SeriesDescription: "PA ", NumberOfInstances: 2},
			{SeriesInstanceUID: uid + ".2", StudyInstanceUID: uid, Modality: "SR", SeriesNumber: "100", NumberOfInstances: 1},
		},
		Instances: map[string][]*Instance{
			uid + ".1": {
				{Header: dicom.Header{SOPInstanceUID: uid + ".1.1", SOPClassUID: "1.2.840.10008.5.1.4.1.1.1", InstanceNumber: "1"}},
				{Header: dicom.Header{SOPInstanceUID: uid + ".1.2", SOPClassUID: "1.2.840.10008.5.1.4.1.1.1", InstanceNumber: "2"}},
			},
			uid + ".2": {
				{Header: dicom.Header{SOPInstanceUID: uid + ".2.1", SOPClassUID: "1.2.840.10008.5.1.4.1.1.88.22", InstanceNumber: "1"}},
			},
		},
		PatientID:  "pat-0001",
		Order:      decodeJSON(t, orderJSON),
		OrderID:    "sr-0001",
		Status:     "available",
		EndpointID: dicomWebEndpointID,
	}
}

func TestImagingStudyContent(t *testing.T) {
	t.Parallel()
	berlin := mustZone(t, "Europe/Berlin")
	cases := []struct {
		name string
		edit func(in *imagingStudyInput)
		// want holds the expected JSON of top-level elements; a name mapped to "" must be absent.
		want map[string]string
	}{
		{"linked to an order", func(*imagingStudyInput) {}, map[string]string{
			"identifier": `[{"system":"urn:dicom:uid","value":"urn:oid:1.2.840.113619.2.55.3.1"},` +
				`{"system":"urn:oid:1.2.840.114350.1.13.1.3","type":{"coding":[{"code":"ACSN","system":"http://terminology.hl7.org/CodeSystem/v2-0203"}]},"value":"ACC2002"}]`,
			"status":            `"available"`,
			"subject":           `{"reference":"Patient/pat-0001"}`,
			"basedOn":           `[{"reference":"ServiceRequest/sr-0001"}]`,
			"started":           `"2026-11-27T09:15:30.5Z"`,
			"modality":          `[{"code":"CR","system":"http://dicom.nema.org/resources/ontology/DCM"},{"code":"SR","system":"http://dicom.nema.org/resources/ontology/DCM"}]`,
			"numberOfSeries":    `2`,
			"numberOfInstances": `3`,
			"description":       `"XR CHEST 2V"`,
			"procedureCode":     `[{"coding":[{"code":"36643-5","display":"XR Chest 2 Views","system":"http://loinc.org"}],"text":"XR CHEST 2V"}]`,
			"referrer":          `{"display":"Dr Referring","reference":"Practitioner/prac-0001"}`,
			"reasonCode":        `[{"text":"Cough for three weeks"}]`,
			"endpoint":          `[{"reference":"Endpoint/dicomweb"}]`,
			"series": `[{"description":"PA","instance":[` +
				`{"number":1,"sopClass":{"code":"urn:oid:1.2.840.10008.5.1.4.1.1.1","system":"urn:ietf:rfc:3986"},"uid":"1.2.840.113619.2.55.3.1.1.1"},` +
				`{"number":2,"sopClass":{"code":"urn:oid:1.2.840.10008.5.1.4.1.1.1","system":"urn:ietf:rfc:3986"},"uid":"1.2.840.113619.2.55.3.1.1.2"}],` +
				`"modality":{"code":"CR","system":"http://dicom.nema.org/resources/ontology/DCM"},"number":1,"numberOfInstances":2,"uid":"1.2.840.113619.2.55.3.1.1"},` +
				`{"instance":[{"number":1,"sopClass":{"code":"urn:oid:1.2.840.10008.5.1.4.1.1.88.22","system":"urn:ietf:rfc:3986"},"uid":"1.2.840.113619.2.55.3.1.2.1"}],` +
				`"modality":{"code":"SR","system":"http://dicom.nema.org/resources/ontology/DCM"},"number":100,"numberOfInstances":1,"uid":"1.2.840.113619.2.55.3.1.2"}]`,
		}},
		{"linked to a patient only", func(in *imagingStudyInput) { in.Order, in.OrderID = nil, "" }, map[string]string{
			"identifier": `[{"system":"urn:dicom:uid","value":"urn:oid:1.2.840.113619.2.55.3.1"},` +
				`{"type":{"coding":[{"code":"ACSN","system":"http://terminology.hl7.org/CodeSystem/v2-0203"}]},"value":"ACC2002"}]`,
			"basedOn": "", "procedureCode": "", "referrer": "", "reasonCode": "",
		}},
		{"order without an accession", func(in *imagingStudyInput) {
			in.Order["identifier"] = in.Order["identifier"].([]any)[:1]
		}, map[string]string{
			"identifier": `[{"system":"urn:dicom:uid","value":"urn:oid:1.2.840.113619.2.55.3.1"},` +
				`{"type":{"coding":[{"code":"ACSN","system":"http://terminology.hl7.org/CodeSystem/v2-0203"}]},"value":"ACC2002"}]`,
			"basedOn": `[{"reference":"ServiceRequest/sr-0001"}]`,
		}},
		{"order's placer number equal to the accession does not give its system", func(in *imagingStudyInput) {
			in.Study.AccessionNumber = "ORD1001"
		}, map[string]string{
			"identifier": `[{"system":"urn:dicom:uid","value":"urn:oid:1.2.840.113619.2.55.3.1"},` +
				`{"type":{"coding":[{"code":"ACSN","system":"http://terminology.hl7.org/CodeSystem/v2-0203"}]},"value":"ORD1001"}]`,
		}},
		{"no accession, no description, no date", func(in *imagingStudyInput) {
			in.Study.AccessionNumber, in.Study.StudyDescription, in.Study.StudyDate = "  ", " ", ""
		}, map[string]string{
			"identifier":  `[{"system":"urn:dicom:uid","value":"urn:oid:1.2.840.113619.2.55.3.1"}]`,
			"description": "", "started": "",
		}},
		{"order with neither code, reason nor requester", func(in *imagingStudyInput) {
			delete(in.Order, "code")
			delete(in.Order, "requester")
			in.Order["reasonCode"] = []any{}
		}, map[string]string{"procedureCode": "", "reasonCode": "", "referrer": "", "basedOn": `[{"reference":"ServiceRequest/sr-0001"}]`}},
		{"requester a PractitionerRole", func(in *imagingStudyInput) {
			in.Order["requester"] = map[string]any{"reference": "https://ehr.example/fhir/PractitionerRole/r1"}
		}, map[string]string{"referrer": `{"reference":"https://ehr.example/fhir/PractitionerRole/r1"}`}},
		{"requester an Organization or contained: no referrer", func(in *imagingStudyInput) {
			in.Order["requester"] = map[string]any{"reference": "Organization/o1"}
		}, map[string]string{"referrer": ""}},
		{"requester contained: no referrer", func(in *imagingStudyInput) {
			in.Order["requester"] = map[string]any{"reference": "#pr1"}
		}, map[string]string{"referrer": ""}},
		{"study time in a zone, summer time", func(in *imagingStudyInput) {
			in.Zone, in.Study.StudyDate, in.Study.StudyTime = berlin, "20260715", "0930"
		}, map[string]string{"started": `"2026-07-15T09:30:00+02:00"`}},
		{"study date without time", func(in *imagingStudyInput) { in.Zone, in.Study.StudyTime = berlin, "" },
			map[string]string{"started": `"2026-11-27"`}},
		{"invalid date: no started", func(in *imagingStudyInput) { in.Study.StudyDate = "20261131" },
			map[string]string{"started": ""}},
		{"DICOM padding trimmed", func(in *imagingStudyInput) {
			in.Study.StudyInstanceUID += "\x00"
			in.Study.ModalitiesInStudy = []string{" CR", "CR ", ""}
			in.Series = in.Series[:1]
			in.Series[0].SeriesInstanceUID += "\x00"
			in.Series[0].Modality = "CR "
			in.Instances = map[string][]*Instance{in.Series[0].SeriesInstanceUID: {
				{Header: dicom.Header{SOPInstanceUID: "1.2.3\x00", SOPClassUID: "1.2.840.10008.5.1.4.1.1.1\x00", InstanceNumber: " 7 "}}}}
		}, map[string]string{
			"identifier": `[{"system":"urn:dicom:uid","value":"urn:oid:1.2.840.113619.2.55.3.1"},` +
				`{"system":"urn:oid:1.2.840.114350.1.13.1.3","type":{"coding":[{"code":"ACSN","system":"http://terminology.hl7.org/CodeSystem/v2-0203"}]},"value":"ACC2002"}]`,
			"modality": `[{"code":"CR","system":"http://dicom.nema.org/resources/ontology/DCM"}]`,
			"series": `[{"description":"PA","instance":[{"number":7,"sopClass":{"code":"urn:oid:1.2.840.10008.5.1.4.1.1.1","system":"urn:ietf:rfc:3986"},"uid":"1.2.3"}],` +
				`"modality":{"code":"CR","system":"http://dicom.nema.org/resources/ontology/DCM"},"number":1,"numberOfInstances":2,"uid":"1.2.840.113619.2.55.3.1.1"}]`,
			"numberOfSeries": `2`, "numberOfInstances": `3`,
		}},
		{"empty modality: OT for the series, none for the study", func(in *imagingStudyInput) {
			in.Study.ModalitiesInStudy = []string{""}
			in.Series = in.Series[1:]
			in.Series[0].Modality = "  "
			in.Instances = nil
		}, map[string]string{
			"modality": "",
			"series":   `[{"modality":{"code":"OT","system":"http://dicom.nema.org/resources/ontology/DCM"},"number":100,"numberOfInstances":1,"uid":"1.2.840.113619.2.55.3.1.2"}]`,
		}},
		{"numbers that are not unsignedInts left out", func(in *imagingStudyInput) {
			in.Series = in.Series[1:]
			in.Series[0].SeriesNumber = "1a"
			for _, inst := range in.Instances[in.Series[0].SeriesInstanceUID] {
				inst.InstanceNumber = "-3"
			}
			in.Instances[in.Series[0].SeriesInstanceUID] = append(in.Instances[in.Series[0].SeriesInstanceUID],
				&Instance{Header: dicom.Header{SOPInstanceUID: "1.2.4", SOPClassUID: "1.2.840.10008.5.1.4.1.1.88.22", InstanceNumber: "2147483648"}},
				&Instance{Header: dicom.Header{SOPInstanceUID: "1.2.5", SOPClassUID: "1.2.840.10008.5.1.4.1.1.88.22", InstanceNumber: "+2147483647"}})
		}, map[string]string{
			"series": `[{"instance":[{"sopClass":{"code":"urn:oid:1.2.840.10008.5.1.4.1.1.88.22","system":"urn:ietf:rfc:3986"},"uid":"1.2.840.113619.2.55.3.1.2.1"},` +
				`{"sopClass":{"code":"urn:oid:1.2.840.10008.5.1.4.1.1.88.22","system":"urn:ietf:rfc:3986"},"uid":"1.2.4"},` +
				`{"number":2147483647,"sopClass":{"code":"urn:oid:1.2.840.10008.5.1.4.1.1.88.22","system":"urn:ietf:rfc:3986"},"uid":"1.2.5"}],` +
				`"modality":{"code":"SR","system":"http://dicom.nema.org/resources/ontology/DCM"},"numberOfInstances":3,"uid":"1.2.840.113619.2.55.3.1.2"}]`,
			// Counts are never below what is listed.
			"numberOfSeries": `2`, "numberOfInstances": `3`,
		}},
		{"store counts behind the listing; an instance without SOP class counted, not listed", func(in *imagingStudyInput) {
			in.Study.NumberOfSeries, in.Study.NumberOfInstances = 1, 1
			in.Series[0].NumberOfInstances = 0
			in.Instances[in.Series[0].SeriesInstanceUID][1].SOPClassUID = ""
			in.Instances[in.Series[1].SeriesInstanceUID] = append(in.Instances[in.Series[1].SeriesInstanceUID],
				&Instance{Header: dicom.Header{SOPInstanceUID: "1.2.6", SOPClassUID: "1.2.840.10008.5.1.4.1.1.88.22"}})
		}, map[string]string{"numberOfSeries": `2`, "numberOfInstances": `4`}},
		{"no series yet", func(in *imagingStudyInput) {
			in.Series, in.Instances, in.Study.NumberOfSeries, in.Study.NumberOfInstances = nil, nil, 0, 0
		}, map[string]string{"series": "", "numberOfSeries": `0`, "numberOfInstances": `0`}},
		{"text FHIR cannot carry", func(in *imagingStudyInput) {
			in.Study.StudyDescription = "XR\x1b$BCHEST\x00 \xff"
			in.Study.AccessionNumber = "\x00\x00"
			in.Study.ModalitiesInStudy = []string{"C  T\t"}
		}, map[string]string{
			"description": "\"XR\uFFFD$BCHEST\uFFFD \uFFFD\"",
			"identifier":  `[{"system":"urn:dicom:uid","value":"urn:oid:1.2.840.113619.2.55.3.1"}]`,
			"modality":    `[{"code":"C T","system":"http://dicom.nema.org/resources/ontology/DCM"}]`,
		}},
		{"unlinked after publication", func(in *imagingStudyInput) { in.Status = "entered-in-error" },
			map[string]string{"status": `"entered-in-error"`}},
		{"no endpoint", func(in *imagingStudyInput) { in.EndpointID = "" }, map[string]string{"endpoint": ""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := studyInput(t)
			tc.edit(&in)
			got, err := imagingStudyContent(in)
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.want {
				v, ok := got[name]
				switch {
				case want == "" && ok:
					t.Errorf("%s = %s, want it absent", name, renderJSON(t, v))
				case want != "" && !ok:
					t.Errorf("%s absent, want %s", name, want)
				case want != "":
					if g := renderJSON(t, v); g != want {
						t.Errorf("%s:\n got %s\nwant %s", name, g, want)
					}
				}
			}
			checkResource(t, "ImagingStudy", got)
		})
	}
}

// TestImagingStudyIndexed: what the builder writes is found by the ImagingStudy search
// parameters.
func TestImagingStudyIndexed(t *testing.T) {
	t.Parallel()
	got, err := imagingStudyContent(studyInput(t))
	if err != nil {
		t.Fatal(err)
	}
	entries := map[string]bool{}
	for _, e := range checkResource(t, "ImagingStudy", got) {
		entries[e.Param+" "+e.System+"|"+e.Value] = true
	}
	for _, want := range []string{
		"identifier urn:dicom:uid|urn:oid:1.2.840.113619.2.55.3.1",
		"identifier urn:oid:1.2.840.114350.1.13.1.3|ACC2002",
		"patient |Patient/pat-0001",
		"basedon |ServiceRequest/sr-0001",
		"started |2026-11-27T09:15:30.500Z",
		"modality http://dicom.nema.org/resources/ontology/DCM|SR",
		"status http://hl7.org/fhir/imagingstudy-status|available",
		"referrer |Practitioner/prac-0001",
		"series |1.2.840.113619.2.55.3.1.2",
		"dicom-class urn:ietf:rfc:3986|urn:oid:1.2.840.10008.5.1.4.1.1.88.22",
		"endpoint |Endpoint/dicomweb",
	} {
		if !entries[want] {
			t.Errorf("no index entry %q", want)
		}
	}
}

func TestImagingStudyContentErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		edit func(in *imagingStudyInput)
		want string
	}{
		{"no study", func(in *imagingStudyInput) { in.Study = nil }, "no study"},
		{"study UID not a UID", func(in *imagingStudyInput) { in.Study.StudyInstanceUID = "1.2..3" }, "not a DICOM UID"},
		{"no patient", func(in *imagingStudyInput) { in.PatientID = "" }, "no patient"},
		{"status not an ImagingStudy status", func(in *imagingStudyInput) { in.Status = "final" }, "status"},
		{"series UID not a UID", func(in *imagingStudyInput) { in.Series[1].SeriesInstanceUID = "" }, "series"},
		{"SOP Instance UID not a UID", func(in *imagingStudyInput) {
			in.Instances[in.Series[0].SeriesInstanceUID][0].SOPInstanceUID = "x"
		}, "instance"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := studyInput(t)
			tc.edit(&in)
			got, err := imagingStudyContent(in)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "deriving ImagingStudy") {
				t.Fatalf("imagingStudyContent = %v, %v; want an error about %s", got, err, tc.want)
			}
		})
	}
}

// TestImagingStudyStarted: Study Date and Study Time as ImagingStudy.started (dicomDateTime).
func TestImagingStudyStarted(t *testing.T) {
	t.Parallel()
	newYork, berlin, kolkata := mustZone(t, "America/New_York"), mustZone(t, "Europe/Berlin"), mustZone(t, "Asia/Kolkata")
	cases := []struct {
		name, da, tm string
		zone         *time.Location
		want         string
	}{
		{"date only", "20261127", "", nil, "2026-11-27"},
		{"UTC when no zone", "20261127", "091530", nil, "2026-11-27T09:15:30Z"},
		{"hours only", "20261127", "09", berlin, "2026-11-27T09:00:00+01:00"},
		{"hours and minutes", "20261127", "0915", berlin, "2026-11-27T09:15:00+01:00"},
		{"summer time", "20260715", "091530", berlin, "2026-07-15T09:15:30+02:00"},
		{"half-hour offset", "20261127", "091530", kolkata, "2026-11-27T09:15:30+05:30"},
		{"fraction as written", "20261127", "091530.5", newYork, "2026-11-27T09:15:30.5-05:00"},
		{"six fraction digits", "20261127", "091530.000123", nil, "2026-11-27T09:15:30.000123Z"},
		{"point without digits", "20261127", "091530.", nil, "2026-11-27T09:15:30Z"},
		{"padding", " 20261127 ", "091530 ", nil, "2026-11-27T09:15:30Z"},
		{"retired forms", "2026.11.27", "09:15:30.25", nil, "2026-11-27T09:15:30.25Z"},
		{"retired form without seconds", "20261127", "09:15", nil, "2026-11-27T09:15:00Z"},
		{"leap second rolls over", "20261231", "235960", nil, "2027-01-01T00:00:00Z"},
		// DST: a skipped time is read in standard time, a repeated one as its first occurrence.
		{"skipped by spring forward, New York", "20260308", "023000", newYork, "2026-03-08T03:30:00-04:00"},
		{"skipped by spring forward, Berlin", "20260329", "023000", berlin, "2026-03-29T03:30:00+02:00"},
		{"just after spring forward", "20260308", "033000", newYork, "2026-03-08T03:30:00-04:00"},
		{"just before spring forward", "20260308", "015959", newYork, "2026-03-08T01:59:59-05:00"},
		{"repeated by fall back, New York", "20261101", "013000", newYork, "2026-11-01T01:30:00-04:00"},
		{"repeated by fall back, Berlin", "20261025", "023000", berlin, "2026-10-25T02:30:00+02:00"},
		{"after fall back", "20261101", "023000", newYork, "2026-11-01T02:30:00-05:00"},
		{"offset with seconds given in UTC", "18800101", "120000", time.FixedZone("LMT", 17*60+30), "1880-01-01T11:42:30Z"},
		{"offset beyond 14 hours given in UTC", "20261127", "120000", time.FixedZone("far", -15*3600), "2026-11-28T03:00:00Z"},
		{"year 1", "00010101", "000000", nil, "0001-01-01T00:00:00Z"},
		{"year 9999 rolling over: the date", "99991231", "235960", nil, "9999-12-31"},
		{"invalid time: the date", "20261127", "2400", berlin, "2026-11-27"},
		{"minutes out of range", "20261127", "0960", nil, "2026-11-27"},
		{"seconds out of range", "20261127", "091561", nil, "2026-11-27"},
		{"odd digits", "20261127", "09153", nil, "2026-11-27"},
		{"seven fraction digits", "20261127", "091530.1234567", nil, "2026-11-27"},
		{"fraction without seconds", "20261127", "0915.5", nil, "2026-11-27"},
		{"a range is not a time", "20261127", "0900-1000", nil, "2026-11-27"},
		{"no date", "", "091530", nil, ""},
		{"February 30th", "20260230", "091530", nil, ""},
		{"year 0", "00000101", "", nil, ""},
		{"month 13", "20261301", "", nil, ""},
		{"short", "2026112", "", nil, ""},
		{"letters", "2026112x", "", nil, ""},
		{"a date range", "20261127-", "", nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := dicomDateTime(tc.da, tc.tm, tc.zone)
			if got != tc.want {
				t.Errorf("dicomDateTime(%q, %q, %v) = %q, want %q", tc.da, tc.tm, tc.zone, got, tc.want)
			}
			if got != "" {
				if _, err := fhir.NormalizeDate(got); err != nil {
					t.Errorf("not a FHIR dateTime: %v", err)
				}
			}
		})
	}
}

// TestImagingStudyEndpoint: the DICOMweb Endpoint ImagingStudy.endpoint refers to is valid and indexed.
func TestImagingStudyEndpoint(t *testing.T) {
	t.Parallel()
	for _, base := range []string{"https://ferry.example/dicomweb", "https://ferry.example/dicomweb/"} {
		e := dicomWebEndpoint(base)
		if e["address"] != "https://ferry.example/dicomweb" {
			t.Errorf("address %v", e["address"])
		}
		entries := map[string]bool{}
		for _, x := range checkResource(t, "Endpoint", e) {
			entries[x.Param+" "+x.System+"|"+x.Value] = true
		}
		for _, want := range []string{
			"status http://hl7.org/fhir/endpoint-status|active",
			"connection-type http://terminology.hl7.org/CodeSystem/endpoint-connection-type|dicom-wado-rs",
			"name |ferry dicomweb",
		} {
			if !entries[want] {
				t.Errorf("no index entry %q", want)
			}
		}
	}
}

// FuzzImagingStudyContent: whatever the modality wrote in the study's text, date, time and
// number fields, the ImagingStudy derived is valid FHIR and indexes.
func FuzzImagingStudyContent(f *testing.F) {
	seeds := [][6]string{
		{"20261127", "091530.5", "XR CHEST 2V", "ACC2002", "CR", "1"},
		{"2026.11.27", "09:15:30", " ", "", "", ""},
		{"20260308", "023000", "\x00", "\xff\xfe", "C  T\t", "-1"},
		{"99991231", "235960.999999", "a\x1bb", "\x01", "OT", "2147483648"},
		{"20261101", "01", "Brust\u00a0li.", "ACSN 1", "MR\u2028", "007"},
		{"", "", "", "", "", ""},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], s[2], s[3], s[4], s[5])
	}
	zones := []*time.Location{nil, mustZone(f, "America/New_York"), mustZone(f, "Europe/Berlin"), mustZone(f, "Asia/Kolkata"),
		mustZone(f, "Pacific/Kiritimati"), time.FixedZone("LMT", 17*60+30)}
	if _, err := testValidator(); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, date, tm, description, accession, modality, seriesNumber string) {
		in := studyInput(t)
		in.Zone = zones[len(date)%len(zones)]
		in.Study.StudyDate, in.Study.StudyTime = date, tm
		in.Study.StudyDescription, in.Study.AccessionNumber = description, accession
		in.Study.ModalitiesInStudy = []string{modality, "CT"}
		in.Series[0].Modality, in.Series[0].SeriesNumber, in.Series[0].SeriesDescription = modality, seriesNumber, description
		in.Instances[in.Series[0].SeriesInstanceUID][0].InstanceNumber = seriesNumber
		in.Order["identifier"] = append(in.Order["identifier"].([]any), map[string]any{
			"type":  map[string]any{"coding": []any{map[string]any{"system": systemV20203, "code": "ACSN"}}},
			"value": accession, "system": "urn:oid:1.2.3"})
		got, err := imagingStudyContent(in)
		if err != nil {
			t.Fatal(err)
		}
		checkResource(t, "ImagingStudy", got)
	})
}

func mustZone(t testing.TB, name string) *time.Location {
	t.Helper()
	z, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(fmt.Errorf("loading zone %s: %w", name, err))
	}
	return z
}
