package fhir

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// IndexEntry is one search parameter value of a stored resource version: what a FHIR search
// compares against. The store keeps a version's entries beside it and replaces them with each
// new version; it never interprets them beyond equality, prefix and ordering of Value.
//
//   - token parameters (identifier, status, gender): System is the code system or identifier
//     system ("" when it has none), Value the code or identifier value, compared exactly;
//   - reference parameters (patient, subject, requester): Value is "Type/id";
//   - string parameters (name, family, given): Value is NormalizeString of the text, matched by
//     prefix as FHIR string search does (case and accent insensitive, starts-with);
//   - date parameters (birthdate, authored, occurrence, _lastUpdated): Value is the ISO 8601
//     text in UTC with as much precision as the resource holds ("1980-01-02",
//     "2026-11-27T07:50:33.123Z"), so lexical order is time order.
type IndexEntry struct {
	Param  string
	System string
	Value  string
}

// Index computes the search parameter values of one resource version (see SearchParams): the
// type's own parameters for the types Ferry searches, and _id and _lastUpdated for every type.
// resourceJSON is the whole resource; it is decoded into small structs holding only what is
// indexed. A date that is not a FHIR date, dateTime or instant is an error (the resource should
// have been validated first).
func Index(resourceType string, resourceJSON []byte) ([]IndexEntry, error) {
	x := indexer{entries: make([]IndexEntry, 0, 16)}
	var err error
	switch resourceType {
	case "Patient":
		err = x.patient(resourceJSON)
	case "ServiceRequest":
		err = x.serviceRequest(resourceJSON)
	case "Practitioner":
		err = x.practitioner(resourceJSON)
	case "Encounter":
		err = x.encounter(resourceJSON)
	case "Organization":
		err = x.organization(resourceJSON)
	case "DiagnosticReport":
		err = x.diagnosticReport(resourceJSON)
	case "ImagingStudy":
		err = x.imagingStudy(resourceJSON)
	case "Endpoint":
		err = x.endpoint(resourceJSON)
	default:
		var r resourceBase
		if err = json.Unmarshal(resourceJSON, &r); err == nil {
			x.base(&r)
		}
	}
	if err == nil {
		err = x.err
	}
	if err != nil {
		return nil, fmt.Errorf("indexing %s: %w", resourceType, err)
	}
	return x.entries, nil
}

// NormalizeString is the form string search parameters are indexed and queried in: lower case,
// accents and other combining marks removed (NFD, marks dropped), runs of white space collapsed
// to one space, trimmed. "  Müller-Lüdenscheidt\tJOSÉ " becomes "muller-ludenscheidt jose".
func NormalizeString(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if !ascii {
		s = norm.NFD.String(s)
	}
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			space = true
			continue
		case unicode.Is(unicode.Mn, r):
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// instantLayout is how every dateTime with a time is indexed: UTC, milliseconds, so that
// lexical order is time order.
const instantLayout = "2006-01-02T15:04:05.000Z"

// FormatInstant formats t as Ferry indexes and reports instants: UTC, millisecond precision
// ("2026-11-27T07:50:33.123Z").
func FormatInstant(t time.Time) string {
	return t.UTC().Format(instantLayout)
}

// NormalizeDate turns a FHIR date, dateTime or instant into its indexed form: a date of year,
// month or day precision stays as it is ("1980", "1980-01", "1980-01-02"); one with a time is
// converted to UTC with millisecond precision ("2026-11-27T08:50:33+01:00" becomes
// "2026-11-27T07:50:33.000Z").
func NormalizeDate(s string) (string, error) {
	if !strings.Contains(s, "T") {
		layout := ""
		switch len(s) {
		case 4:
			layout = "2006"
		case 7:
			layout = "2006-01"
		case 10:
			layout = "2006-01-02"
		}
		if layout == "" {
			return "", fmt.Errorf("date %q: want YYYY, YYYY-MM or YYYY-MM-DD", s)
		}
		if _, err := time.Parse(layout, s); err != nil {
			return "", fmt.Errorf("date %q: want YYYY, YYYY-MM or YYYY-MM-DD", s)
		}
		return s, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return "", fmt.Errorf("dateTime %q: want YYYY-MM-DDThh:mm:ss[.fff]+zz:zz", s)
	}
	return FormatInstant(t), nil
}

// The structs below hold only what Index reads.

type resourceBase struct {
	ID   string `json:"id"`
	Meta struct {
		LastUpdated string `json:"lastUpdated"`
	} `json:"meta"`
}

type identifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

type humanName struct {
	Text   string   `json:"text"`
	Family string   `json:"family"`
	Given  []string `json:"given"`
	Prefix []string `json:"prefix"`
	Suffix []string `json:"suffix"`
}

type reference struct {
	Reference string `json:"reference"`
}

type coding struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

type codeableConcept struct {
	Coding []coding `json:"coding"`
}

type period struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// Code systems of the code-typed token parameters, so that "status=active" (any system) and
// "status=http://hl7.org/fhir/request-status|active" both match.
const (
	systemGender          = "http://hl7.org/fhir/administrative-gender"
	systemRequestStatus   = "http://hl7.org/fhir/request-status"
	systemRequestIntent   = "http://hl7.org/fhir/request-intent"
	systemRequestPriority = "http://hl7.org/fhir/request-priority"
	systemEncounterStatus = "http://hl7.org/fhir/encounter-status"
	systemImagingStatus   = "http://hl7.org/fhir/imagingstudy-status"
	systemEndpointStatus  = "http://hl7.org/fhir/endpoint-status"
	systemReportStatus    = "http://hl7.org/fhir/diagnostic-report-status"
)

type indexer struct {
	entries []IndexEntry
	err     error // the first bad date
}

// add appends an entry unless it is empty or already there ("name" often gets the same word
// from the text and from the family).
func (x *indexer) add(param, system, value string) {
	if value == "" {
		return
	}
	e := IndexEntry{Param: param, System: system, Value: value}
	for _, have := range x.entries {
		if have == e {
			return
		}
	}
	x.entries = append(x.entries, e)
}

func (x *indexer) base(r *resourceBase) {
	x.add("_id", "", r.ID)
	if r.Meta.LastUpdated != "" {
		t, err := time.Parse(time.RFC3339Nano, r.Meta.LastUpdated)
		if err != nil {
			x.fail(fmt.Errorf("meta.lastUpdated %q: want an instant", r.Meta.LastUpdated))
			return
		}
		x.add("_lastUpdated", "", FormatInstant(t))
	}
}

func (x *indexer) fail(err error) {
	if x.err == nil {
		x.err = err
	}
}

func (x *indexer) identifiers(ids []identifier) {
	for _, id := range ids {
		x.add("identifier", id.System, id.Value)
	}
}

func (x *indexer) str(param, s string) {
	x.add(param, "", NormalizeString(s))
}

// names indexes HumanNames: "name" gets every part and the text, "family" and "given" theirs.
func (x *indexer) names(names []humanName) {
	for _, n := range names {
		x.str("name", n.Text)
		x.str("name", n.Family)
		x.str("family", n.Family)
		for _, g := range n.Given {
			x.str("name", g)
			x.str("given", g)
		}
		for _, p := range n.Prefix {
			x.str("name", p)
		}
		for _, s := range n.Suffix {
			x.str("name", s)
		}
	}
}

func (x *indexer) date(param, s string) {
	if s == "" {
		return
	}
	v, err := NormalizeDate(s)
	if err != nil {
		x.fail(fmt.Errorf("%s: %w", param, err))
		return
	}
	x.add(param, "", v)
}

// ref indexes a reference as "Type/id" and returns the type; references that are not to a
// resource on a FHIR server (contained "#x", "urn:uuid:…", logical identifiers) are skipped.
func (x *indexer) ref(param string, r reference) string {
	typ, id := ReferenceTypeID(r.Reference)
	if typ == "" {
		return ""
	}
	x.add(param, "", typ+"/"+id)
	return typ
}

// ReferenceTypeID splits a literal reference ("Patient/123", "Patient/123/_history/2" or an
// absolute URL ending in either) into its type and id; both are "" when ref is not one.
func ReferenceTypeID(ref string) (typ, id string) {
	if ref == "" || strings.HasPrefix(ref, "#") || strings.HasPrefix(ref, "urn:") {
		return "", ""
	}
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	ref = strings.TrimRight(ref, "/")
	slash := strings.LastIndexByte(ref, '/')
	if slash <= 0 {
		return "", ""
	}
	id = ref[slash+1:]
	rest := ref[:slash]
	typ = rest[strings.LastIndexByte(rest, '/')+1:]
	if !isResourceTypeName(typ) || id == "" {
		return "", ""
	}
	return typ, id
}

// isResourceTypeName reports whether s looks like a resource type: an upper-case letter, then
// letters.
func isResourceTypeName(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

func (x *indexer) patient(data []byte) error {
	var r struct {
		resourceBase
		Identifier []identifier `json:"identifier"`
		Name       []humanName  `json:"name"`
		BirthDate  string       `json:"birthDate"`
		Gender     string       `json:"gender"`
		Active     *bool        `json:"active"`
		Link       []struct {
			Other reference `json:"other"`
		} `json:"link"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return err
	}
	x.base(&r.resourceBase)
	x.identifiers(r.Identifier)
	x.names(r.Name)
	x.date("birthdate", r.BirthDate)
	x.add("gender", systemGender, r.Gender)
	if r.Active != nil {
		x.add("active", "", strconv.FormatBool(*r.Active))
	}
	for _, l := range r.Link {
		x.ref("link", l.Other)
	}
	return nil
}

func (x *indexer) serviceRequest(data []byte) error {
	var r struct {
		resourceBase
		Identifier         []identifier    `json:"identifier"`
		Status             string          `json:"status"`
		Intent             string          `json:"intent"`
		Priority           string          `json:"priority"`
		Code               codeableConcept `json:"code"`
		Subject            reference       `json:"subject"`
		Encounter          reference       `json:"encounter"`
		Requester          reference       `json:"requester"`
		AuthoredOn         string          `json:"authoredOn"`
		OccurrenceDateTime string          `json:"occurrenceDateTime"`
		OccurrencePeriod   period          `json:"occurrencePeriod"`
		OccurrenceTiming   struct {
			Event []string `json:"event"`
		} `json:"occurrenceTiming"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return err
	}
	x.base(&r.resourceBase)
	x.identifiers(r.Identifier)
	x.add("status", systemRequestStatus, r.Status)
	x.add("intent", systemRequestIntent, r.Intent)
	x.add("priority", systemRequestPriority, r.Priority)
	for _, c := range r.Code.Coding {
		x.add("code", c.System, c.Code)
	}
	if x.ref("subject", r.Subject) == "Patient" {
		x.ref("patient", r.Subject)
	}
	x.ref("encounter", r.Encounter)
	x.ref("requester", r.Requester)
	x.date("authored", r.AuthoredOn)
	// occurrence[x]: a Period or Timing is indexed by its ends and events, so that ge/le find
	// requests whose occurrence overlaps the range asked for.
	x.date("occurrence", r.OccurrenceDateTime)
	x.date("occurrence", r.OccurrencePeriod.Start)
	x.date("occurrence", r.OccurrencePeriod.End)
	for _, e := range r.OccurrenceTiming.Event {
		x.date("occurrence", e)
	}
	return nil
}

func (x *indexer) practitioner(data []byte) error {
	var r struct {
		resourceBase
		Identifier []identifier `json:"identifier"`
		Name       []humanName  `json:"name"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return err
	}
	x.base(&r.resourceBase)
	x.identifiers(r.Identifier)
	x.names(r.Name)
	return nil
}

func (x *indexer) encounter(data []byte) error {
	var r struct {
		resourceBase
		Identifier []identifier `json:"identifier"`
		Status     string       `json:"status"`
		Class      coding       `json:"class"`
		Subject    reference    `json:"subject"`
		Period     period       `json:"period"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return err
	}
	x.base(&r.resourceBase)
	x.identifiers(r.Identifier)
	x.add("status", systemEncounterStatus, r.Status)
	x.add("class", r.Class.System, r.Class.Code)
	if x.ref("subject", r.Subject) == "Patient" {
		x.ref("patient", r.Subject)
	}
	// date is Encounter.period: both ends, as for ServiceRequest.occurrence.
	x.date("date", r.Period.Start)
	x.date("date", r.Period.End)
	return nil
}

func (x *indexer) organization(data []byte) error {
	var r struct {
		resourceBase
		Identifier []identifier `json:"identifier"`
		Name       string       `json:"name"`
		Alias      []string     `json:"alias"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return err
	}
	x.base(&r.resourceBase)
	x.identifiers(r.Identifier)
	x.str("name", r.Name)
	for _, a := range r.Alias {
		x.str("name", a)
	}
	return nil
}

func (x *indexer) diagnosticReport(data []byte) error {
	var r struct {
		resourceBase
		Identifier        []identifier      `json:"identifier"`
		Status            string            `json:"status"`
		Category          []codeableConcept `json:"category"`
		Code              codeableConcept   `json:"code"`
		Subject           reference         `json:"subject"`
		Encounter         reference         `json:"encounter"`
		BasedOn           []reference       `json:"basedOn"`
		EffectiveDateTime string            `json:"effectiveDateTime"`
		EffectivePeriod   period            `json:"effectivePeriod"`
		Issued            string            `json:"issued"`
		Performer         []reference       `json:"performer"`
		ResultsInterp     []reference       `json:"resultsInterpreter"`
		ImagingStudy      []reference       `json:"imagingStudy"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return err
	}
	x.base(&r.resourceBase)
	x.identifiers(r.Identifier)
	x.add("status", systemReportStatus, r.Status)
	for _, c := range r.Category {
		for _, cd := range c.Coding {
			x.add("category", cd.System, cd.Code)
		}
	}
	for _, c := range r.Code.Coding {
		x.add("code", c.System, c.Code)
	}
	if x.ref("subject", r.Subject) == "Patient" {
		x.ref("patient", r.Subject)
	}
	x.ref("encounter", r.Encounter)
	for _, b := range r.BasedOn {
		x.ref("based-on", b)
	}
	// date is DiagnosticReport.effective: both ends of a period.
	x.date("date", r.EffectiveDateTime)
	x.date("date", r.EffectivePeriod.Start)
	x.date("date", r.EffectivePeriod.End)
	x.date("issued", r.Issued)
	for _, p := range r.Performer {
		x.ref("performer", p)
	}
	for _, p := range r.ResultsInterp {
		x.ref("results-interpreter", p)
	}
	return nil
}

func (x *indexer) imagingStudy(data []byte) error {
	var r struct {
		resourceBase
		Identifier []identifier `json:"identifier"`
		Status     string       `json:"status"`
		Subject    reference    `json:"subject"`
		BasedOn    []reference  `json:"basedOn"`
		Started    string       `json:"started"`
		Referrer   reference    `json:"referrer"`
		Endpoint   []reference  `json:"endpoint"`
		Series     []struct {
			UID      string      `json:"uid"`
			Modality coding      `json:"modality"`
			Endpoint []reference `json:"endpoint"`
			Instance []struct {
				SOPClass coding `json:"sopClass"`
			} `json:"instance"`
		} `json:"series"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return err
	}
	x.base(&r.resourceBase)
	x.identifiers(r.Identifier)
	x.add("status", systemImagingStatus, r.Status)
	if x.ref("subject", r.Subject) == "Patient" {
		x.ref("patient", r.Subject)
	}
	for _, b := range r.BasedOn {
		x.ref("basedon", b)
	}
	x.date("started", r.Started)
	x.ref("referrer", r.Referrer)
	// endpoint is ImagingStudy.endpoint | ImagingStudy.series.endpoint; modality, series and
	// dicom-class look only into the series (R4 ImagingStudy-modality is series.modality).
	for _, e := range r.Endpoint {
		x.ref("endpoint", e)
	}
	for _, s := range r.Series {
		x.add("series", "", s.UID)
		x.add("modality", s.Modality.System, s.Modality.Code)
		for _, e := range s.Endpoint {
			x.ref("endpoint", e)
		}
		for _, in := range s.Instance {
			x.add("dicom-class", in.SOPClass.System, in.SOPClass.Code)
		}
	}
	return nil
}

func (x *indexer) endpoint(data []byte) error {
	var r struct {
		resourceBase
		Identifier           []identifier      `json:"identifier"`
		Status               string            `json:"status"`
		ConnectionType       coding            `json:"connectionType"`
		Name                 string            `json:"name"`
		PayloadType          []codeableConcept `json:"payloadType"`
		ManagingOrganization reference         `json:"managingOrganization"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return err
	}
	x.base(&r.resourceBase)
	x.identifiers(r.Identifier)
	x.add("status", systemEndpointStatus, r.Status)
	x.add("connection-type", r.ConnectionType.System, r.ConnectionType.Code)
	x.str("name", r.Name)
	for _, p := range r.PayloadType {
		for _, c := range p.Coding {
			x.add("payload-type", c.System, c.Code)
		}
	}
	x.ref("organization", r.ManagingOrganization)
	return nil
}
