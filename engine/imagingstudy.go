package engine

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ferryhealth/ferry/fhir"
)

// This file derives the FHIR R4 ImagingStudy of a linked study, and the Endpoint it points to,
// following https://hl7.org/fhir/R4/imagingstudy.html (its DICOM mappings and implementation
// notes) and the IHE conventions it cites. Pure functions: no I/O, no store.

// dicomWebEndpointID is the id of the Endpoint resource describing Ferry's DICOMweb service
// (dicomWebEndpoint), which every ImagingStudy's endpoint refers to.
const dicomWebEndpointID = "dicomweb"

// Systems of the codes and identifiers an ImagingStudy carries.
const (
	// systemDICOMUID: a DICOM UID as an Identifier, value "urn:oid:<uid>" (R4 ImagingStudy notes,
	// "DICOM Study Instance UID").
	systemDICOMUID = "urn:dicom:uid"
	// systemDCM: DICOM modality codes (PS3.16 CID 29, DCM coding scheme).
	systemDCM = "http://dicom.nema.org/resources/ontology/DCM"
	// systemURI: a SOP Class UID as a Coding, code "urn:oid:<uid>" (R4 ImagingStudy.series.instance.sopClass).
	systemURI = "urn:ietf:rfc:3986"
	// systemV20203: HL7 v2 table 0203, identifier types (ACSN: accession number).
	systemV20203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
	// systemEndpointConnection: R4 Endpoint.connectionType codes (dicom-wado-rs).
	systemEndpointConnection = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
)

// modalityOther is the modality of a series that has none: OT, Other (PS3.3 C.7.3.1.1.1).
// ImagingStudy.series.modality is 1..1 in R4.
const modalityOther = "OT"

// imagingStudyInput is everything an ImagingStudy is derived from.
type imagingStudyInput struct {
	Study     *Study
	Series    []*Series              // the study's series (InstanceStore.StudySeries order)
	Instances map[string][]*Instance // by SeriesInstanceUID, in instance order
	// PatientID is the Ferry Patient the study is linked to (required: ImagingStudy.subject is 1..1).
	PatientID string
	// Order is the linked ServiceRequest's content (decoded FHIR JSON), nil when the study is
	// linked to a patient only. OrderID is its id, "" when none.
	Order   map[string]any
	OrderID string
	// Status is the ImagingStudy.status: "available", or "entered-in-error" for a study unlinked
	// after it was published.
	Status string
	// Zone is the zone of DICOM dates and times without Timezone Offset From UTC (0008,0201);
	// nil is UTC.
	Zone *time.Location
	// EndpointID is the id of the DICOMweb Endpoint resource (dicomWebEndpoint); "" = no endpoint.
	EndpointID string
}

// imagingStudyContent derives the content of an ImagingStudy — the resource without
// resourceType, id and meta, which resourceJSON adds — from a linked study:
//
//   - identifier: the Study Instance UID (0020,000D) as urn:dicom:uid|urn:oid:<uid>, and the
//     Accession Number (0008,0050) typed ACSN (v2-0203), with the system of the order's ACSN
//     identifier of the same value when there is one (R4 ImagingStudy notes);
//   - status, subject (Patient), basedOn (the ServiceRequest, when linked to an order);
//   - started: Study Date (0008,0020) and Study Time (0008,0030) as a dateTime in in.Zone (the
//     date alone without a usable time; nothing without a valid date);
//   - modality: Modalities in Study (0008,0061), distinct, as DCM Codings;
//   - numberOfSeries, numberOfInstances: the store's counts, never fewer than the series and
//     instances listed (R4: "may be larger than the number of … elements this Resource contains");
//   - description: Study Description (0008,1030);
//   - procedureCode, reasonCode and referrer: the order's code, reasonCode and requester (when
//     the requester is a Practitioner or PractitionerRole, the types referrer allows);
//   - endpoint: Endpoint/<in.EndpointID>;
//   - series: uid (0020,000E), number (0020,0011), modality (0008,0060; OT when empty),
//     description (0008,103E), numberOfInstances, and each instance's uid (0008,0018), sopClass
//     (0008,0016) as urn:ietf:rfc:3986|urn:oid:<uid> and number (0020,0013). An instance
//     without a valid SOP Class UID is counted but not listed (sopClass is 1..1).
//
// DICOM padding (spaces, NULs after UIDs) is trimmed; text FHIR cannot carry (control
// characters, invalid UTF-8) becomes U+FFFD; numbers that are not unsignedInts are left out;
// empty values are never emitted (FHIR forbids them). The order's code, reasonCode and
// requester are shared with in.Order, not copied; neither map is modified afterwards.
//
// It fails when no correct caller could ask: no study, a study, series or SOP Instance UID that
// is not a DICOM UID (intake refuses those), no patient, or a status R4 does not define.
func imagingStudyContent(in imagingStudyInput) (map[string]any, error) {
	if in.Study == nil {
		return nil, errors.New("deriving ImagingStudy: no study")
	}
	uid := dicomUID(in.Study.StudyInstanceUID)
	if !validUID(uid) {
		return nil, fmt.Errorf("deriving ImagingStudy: study %q: not a DICOM UID", limit(uid, 70))
	}
	switch in.Status {
	case "registered", "available", "cancelled", "entered-in-error", "unknown": // imagingstudy-status (required)
	default:
		return nil, fmt.Errorf("deriving ImagingStudy of study %s: status %q is not an ImagingStudy status", uid, limit(in.Status, 30))
	}
	if in.PatientID == "" {
		return nil, fmt.Errorf("deriving ImagingStudy of study %s: no patient (ImagingStudy.subject is 1..1)", uid)
	}
	order := fhir.ServiceRequestOf(in.Order)

	c := map[string]any{
		"status":  in.Status,
		"subject": reference("Patient", in.PatientID),
	}
	ids := []any{map[string]any{"system": systemDICOMUID, "value": "urn:oid:" + uid}}
	if acc := dicomText(in.Study.AccessionNumber); acc != "" {
		id := map[string]any{
			"type":  map[string]any{"coding": []any{map[string]any{"system": systemV20203, "code": "ACSN"}}},
			"value": acc,
		}
		if sys := orderAccessionSystem(order, acc); sys != "" {
			id["system"] = sys
		}
		ids = append(ids, id)
	}
	c["identifier"] = ids
	if in.OrderID != "" {
		c["basedOn"] = []any{reference("ServiceRequest", in.OrderID)}
	}
	if started := dicomDateTime(in.Study.StudyDate, in.Study.StudyTime, in.Zone); started != "" {
		c["started"] = started
	}
	var modalities []any
	seen := map[string]bool{}
	for _, m := range in.Study.ModalitiesInStudy {
		if code := dicomCode(m); code != "" && !seen[code] {
			seen[code] = true
			modalities = append(modalities, map[string]any{"system": systemDCM, "code": code})
		}
	}
	if len(modalities) > 0 {
		c["modality"] = modalities
	}
	if d := dicomText(in.Study.StudyDescription); d != "" {
		c["description"] = d
	}
	if code := order.Code.Tree(); len(code) > 0 {
		c["procedureCode"] = []any{code}
	}
	if len(order.ReasonCode) > 0 {
		reasons := make([]any, len(order.ReasonCode))
		for i, r := range order.ReasonCode {
			reasons[i] = r.Tree()
		}
		c["reasonCode"] = reasons
	}
	if req := order.Requester; req.Tree() != nil {
		if typ, _ := req.TypeID(); typ == "Practitioner" || typ == "PractitionerRole" {
			c["referrer"] = req.Tree()
		}
	}
	if in.EndpointID != "" {
		c["endpoint"] = []any{reference("Endpoint", in.EndpointID)}
	}

	series := make([]any, 0, len(in.Series))
	listed := 0
	for _, s := range in.Series {
		if s == nil {
			continue
		}
		m, n, err := imagingSeries(s, in.Instances[s.SeriesInstanceUID])
		if err != nil {
			return nil, fmt.Errorf("deriving ImagingStudy of study %s: %w", uid, err)
		}
		series = append(series, m)
		listed += n
	}
	if len(series) > 0 {
		c["series"] = series
	}
	c["numberOfSeries"] = unsignedInt(max(in.Study.NumberOfSeries, len(series)))
	c["numberOfInstances"] = unsignedInt(max(in.Study.NumberOfInstances, listed))
	return c, nil
}

// imagingSeries is one ImagingStudy.series, and its numberOfInstances.
func imagingSeries(s *Series, instances []*Instance) (map[string]any, int, error) {
	uid := dicomUID(s.SeriesInstanceUID)
	if !validUID(uid) {
		return nil, 0, fmt.Errorf("series %q: not a DICOM UID", limit(uid, 70))
	}
	modality := dicomCode(s.Modality)
	if modality == "" {
		modality = modalityOther
	}
	m := map[string]any{
		"uid":      uid,
		"modality": map[string]any{"system": systemDCM, "code": modality},
	}
	if n, ok := dicomUnsignedInt(s.SeriesNumber); ok {
		m["number"] = n
	}
	if d := dicomText(s.SeriesDescription); d != "" {
		m["description"] = d
	}
	list := make([]any, 0, len(instances))
	for _, inst := range instances {
		if inst == nil {
			continue
		}
		sop := dicomUID(inst.SOPInstanceUID)
		if !validUID(sop) {
			return nil, 0, fmt.Errorf("series %s: instance %q: not a DICOM UID", uid, limit(sop, 70))
		}
		class := dicomUID(inst.SOPClassUID)
		if !validUID(class) {
			continue // sopClass is 1..1: counted below, not listed
		}
		im := map[string]any{
			"uid":      sop,
			"sopClass": map[string]any{"system": systemURI, "code": "urn:oid:" + class},
		}
		if n, ok := dicomUnsignedInt(inst.InstanceNumber); ok {
			im["number"] = n
		}
		list = append(list, im)
	}
	count := max(s.NumberOfInstances, len(instances))
	m["numberOfInstances"] = unsignedInt(count)
	if len(list) > 0 {
		m["instance"] = list
	}
	return m, count, nil
}

// orderAccessionSystem is the system of the order's accession (its ACSN identifier) whose value
// is acc, "" when the order has none or it has no system.
func orderAccessionSystem(order fhir.ServiceRequest, acc string) string {
	for _, id := range order.Identifier {
		if strings.TrimSpace(id.Value) != acc || id.TypeCode() != "ACSN" {
			continue
		}
		if id.System != "" {
			return id.System
		}
	}
	return ""
}

// dicomWebEndpoint is the content of the Endpoint resource describing Ferry's DICOMweb service
// at baseURL (an absolute URL such as "https://ferry.example/dicomweb"): WADO-RS
// (endpoint-connection-type dicom-wado-rs) serving DICOM, as the R4 ImagingStudy example's
// Endpoint does. A trailing slash is dropped: DICOMweb clients append "/studies/…".
func dicomWebEndpoint(baseURL string) map[string]any {
	return map[string]any{
		"status":          "active",
		"connectionType":  map[string]any{"system": systemEndpointConnection, "code": "dicom-wado-rs"},
		"name":            "Ferry DICOMweb",
		"payloadType":     []any{map[string]any{"text": "DICOM"}},
		"payloadMimeType": []any{"application/dicom"},
		"address":         strings.TrimRight(baseURL, "/"),
	}
}

// dicomUID is a UI value without its padding: a trailing NUL (PS3.5 6.2, UI), and the spaces
// some modalities add anyway.
func dicomUID(s string) string {
	return strings.Trim(s, " \x00")
}

// dicomText is a DICOM string value as a FHIR string: leading and trailing spaces (DICOM pads
// to an even length, PS3.5 6.2) and other white space trimmed; invalid UTF-8 and control
// characters FHIR strings exclude (all of C0 but tab, CR and LF) as U+FFFD.
func dicomText(s string) string {
	s = strings.TrimFunc(s, func(r rune) bool { return r == 0 || unicode.IsSpace(r) })
	clean := utf8.ValidString(s)
	for i := 0; clean && i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			clean = false
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s { // ranging over invalid UTF-8 yields U+FFFD
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' {
			r = utf8.RuneError
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

// dicomCode is a DICOM CS value as a FHIR code: dicomText with inner runs of white space as one
// space (a code is [^\s]+(\s[^\s]+)*).
func dicomCode(s string) string {
	return strings.Join(strings.Fields(dicomText(s)), " ")
}

// dicomUnsignedInt is an IS value (PS3.5 6.2) as a FHIR unsignedInt (0 to 2^31-1); false when it
// is empty, not a number or out of that range.
func dicomUnsignedInt(is string) (int, bool) {
	n, ok := IntegerString(is)
	if !ok || n < 0 || n > math.MaxInt32 {
		return 0, false
	}
	return int(n), true
}

// unsignedInt clamps a count to FHIR unsignedInt's range.
func unsignedInt(n int) int {
	return min(max(n, 0), math.MaxInt32)
}

// dicomDateTime combines a DA (YYYYMMDD; the retired YYYY.MM.DD too, PS3.5 6.2) and a TM
// (HH, HHMM, HHMMSS or HHMMSS.F to HHMMSS.FFFFFF; the retired HH:MM:SS too) into a FHIR
// dateTime in zone (nil: UTC), with the offset in force at that instant ("2026-11-27T09:15:30.5+01:00").
// A missing or invalid time gives the date alone ("2026-11-27"); a missing or invalid date
// gives "". Seconds of 60 (a leap second, which TM allows) roll over to the next minute; DST
// changes are read as wallClock says. An offset FHIR cannot write (seconds, or beyond ±14:00, as
// some zones' local mean time before 1900 has) is given in UTC instead.
func dicomDateTime(da, tm string, zone *time.Location) string {
	y, mo, d, ok := dicomDate(dicomText(da))
	if !ok {
		return ""
	}
	date := fmt.Sprintf("%04d-%02d-%02d", y, mo, d)
	h, mi, sec, nanos, frac, ok := dicomTime(dicomText(tm))
	if !ok {
		return date
	}
	if zone == nil {
		zone = time.UTC
	}
	t := wallClock(time.Date(y, mo, d, h, mi, sec, nanos, time.UTC), zone)
	if _, off := t.Zone(); off%60 != 0 || off > 14*3600 || off < -14*3600 {
		t = t.UTC()
	}
	if t.Year() < 1 || t.Year() > 9999 {
		return date
	}
	layout := "2006-01-02T15:04:05"
	if frac > 0 {
		layout += "." + strings.Repeat("0", frac)
	}
	return t.Format(layout + "Z07:00")
}

// wallClock is the instant at which the clocks of zone show wall (a time whose fields are read,
// its own zone ignored). time.Date does not say which instant it picks for a wall-clock time a
// DST change skips or repeats, and picks differently in different zones; Ferry reads both in the
// offset in force before the change: a skipped 02:30 is 02:30 standard time (03:30 summer time),
// a repeated 01:30 the first one. A modality whose clock was not yet changed wrote the first; the
// second occurrence is indistinguishable. It assumes no two changes within 36 hours of wall.
func wallClock(wall time.Time, zone *time.Location) time.Time {
	offset := func(t time.Time) time.Duration {
		_, off := t.In(zone).Zone()
		return time.Duration(off) * time.Second
	}
	before := offset(wall.Add(-36 * time.Hour))
	t := wall.Add(-before)
	if offset(t) != before {
		// Not that offset's time: after the change, unless wall falls in the gap it makes.
		after := offset(wall.Add(36 * time.Hour))
		if u := wall.Add(-after); offset(u) == after {
			t = u
		}
	}
	return t.In(zone)
}

// dicomDate parses a DA value; false when it is not a calendar date from year 1.
func dicomDate(s string) (int, time.Month, int, bool) {
	if len(s) == 10 && s[4] == '.' && s[7] == '.' {
		s = s[:4] + s[5:7] + s[8:]
	}
	if len(s) != 8 || !allDigits(s) {
		return 0, 0, 0, false
	}
	y, mo, d := atoi(s[:4]), time.Month(atoi(s[4:6])), atoi(s[6:])
	if y < 1 || mo < 1 || mo > 12 || d < 1 {
		return 0, 0, 0, false
	}
	if t := time.Date(y, mo, d, 0, 0, 0, 0, time.UTC); t.Day() != d {
		return 0, 0, 0, false // February 30th
	}
	return y, mo, d, true
}

// dicomTime parses a TM value into hour, minute, second, nanoseconds and the number of
// fraction digits written; false when it is not a time.
func dicomTime(s string) (h, mi, sec, nanos, frac int, ok bool) {
	if len(s) >= 5 && s[2] == ':' {
		// Retired HH:MM[:SS[.F…]] (PS3.5 6.2, TM, for ACR-NEMA 2.0 compatibility).
		s = s[:2] + s[3:]
		if len(s) >= 7 && s[4] == ':' {
			s = s[:4] + s[5:]
		}
	}
	whole, fraction, dot := strings.Cut(s, ".")
	switch {
	case len(whole) != 2 && len(whole) != 4 && len(whole) != 6, !allDigits(whole):
		return 0, 0, 0, 0, 0, false
	case dot && (len(whole) != 6 || len(fraction) > 6 || fraction != "" && !allDigits(fraction)):
		return 0, 0, 0, 0, 0, false
	}
	h = atoi(whole[:2])
	if len(whole) >= 4 {
		mi = atoi(whole[2:4])
	}
	if len(whole) == 6 {
		sec = atoi(whole[4:6])
	}
	if h > 23 || mi > 59 || sec > 60 {
		return 0, 0, 0, 0, 0, false
	}
	if fraction != "" { // "HHMMSS." (no digits after the point) is read as HHMMSS
		nanos = atoi(fraction + strings.Repeat("0", 9-len(fraction)))
		frac = len(fraction)
	}
	return h, mi, sec, nanos, frac, true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// atoi is the value of a short run of ASCII digits (checked by the caller).
func atoi(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}
