package fhir

import (
	"encoding/json"
	"slices"
)

// Views: the FHIR R4 fields Ferry's engine reads, typed. A view is decoded from a resource's
// content as a JSON tree — the map[string]any, []any, string, float64 and bool that
// encoding/json produces, which is also what a mapping outputs — and only reads it: the tree
// stays the resource's storage form, so elements a view does not name (extensions, elements
// another system added) survive a read-modify-write unchanged. A field absent or of the wrong
// JSON type reads as its zero value, as FHIR's "absent" does; resources Ferry stores have
// passed validation, so a wrong type only comes from a mapping under test.

// Coding is a code from a code system.
type Coding struct {
	System, Code, Display string
}

// CodeableConcept is a concept as codings and text.
type CodeableConcept struct {
	Coding []Coding
	Text   string
	obj    map[string]any
}

// Tree is the concept as it was read, whole (extensions too): to copy it into another
// resource. nil when it was absent.
func (c CodeableConcept) Tree() map[string]any { return c.obj }

// FirstCode is the first coding's non-empty code: for an Identifier.type, its v2-0203 type
// ("MR", "PLAC", "FILL", "ACSN"); "" when none has one.
func (c CodeableConcept) FirstCode() string {
	for _, cd := range c.Coding {
		if cd.Code != "" {
			return cd.Code
		}
	}
	return ""
}

// HasCode reports whether a coding has code (any system).
func (c CodeableConcept) HasCode(code string) bool {
	for _, cd := range c.Coding {
		if cd.Code == code {
			return true
		}
	}
	return false
}

// Label is what a person reads for the concept: its text, else the first coding's display
// that is present, else "".
func (c CodeableConcept) Label() string {
	if c.Text != "" {
		return c.Text
	}
	for _, cd := range c.Coding {
		if cd.Display != "" {
			return cd.Display
		}
	}
	return ""
}

// Identifier is a business identifier. Assigner is kept by its display only: HL7 v2's
// assigning authority, as the mappings write it.
type Identifier struct {
	Use      string
	Type     CodeableConcept
	System   string
	Value    string
	Assigner string // assigner.display
}

// TypeCode is the identifier's v2-0203 type code ("MR", "PLAC", "FILL", "ACSN"…), "" if none.
func (id Identifier) TypeCode() string { return id.Type.FirstCode() }

// Reference is a reference to another resource: literal, logical (Identifier) or both.
type Reference struct {
	Reference  string
	Display    string
	Identifier *Identifier // nil when the reference has none
	obj        map[string]any
}

// Tree is the reference as it was read, whole: to copy it into another resource. nil when it
// was absent.
func (r Reference) Tree() map[string]any { return r.obj }

// TypeID splits a literal reference into type and id (ReferenceTypeID).
func (r Reference) TypeID() (typ, id string) { return ReferenceTypeID(r.Reference) }

// HumanName is a person's name.
type HumanName struct {
	Use, Text, Family     string
	Given, Prefix, Suffix []string
}

// Extension is an extension with the value types Ferry reads.
type Extension struct {
	URL          string
	ValueString  string
	ValueBoolean bool
}

// Attachment is content in a format: a report's presentedForm. Its setters change the content
// it was read from.
type Attachment struct {
	ContentType string
	Data        string // base64
	obj         map[string]any
}

// ReplaceData sets the attachment's data, and drops its hash and size, which described the data
// it replaces (Attachment.hash is the SHA-1 of the data).
func (a *Attachment) ReplaceData(base64Data string) {
	if a.obj == nil {
		return
	}
	a.Data, a.obj["data"] = base64Data, base64Data
	delete(a.obj, "hash")
	delete(a.obj, "size")
}

// DropData removes the attachment's data.
func (a *Attachment) DropData() {
	a.Data = ""
	delete(a.obj, "data")
}

// Patient is the view of a Patient: identity and merge links.
type Patient struct {
	Identifier []Identifier
	Name       []HumanName
	Gender     string
	BirthDate  string
	Active     *bool // nil when absent
	Link       []PatientLink
}

// PatientLink is Patient.link: another patient record of the same person.
type PatientLink struct {
	Other Reference
	Type  string // replaced-by, replaces, refer, seealso
}

// ServiceRequest is the view of an imaging order.
type ServiceRequest struct {
	Status, Priority               string
	Identifier                     []Identifier
	Subject, Encounter, Requester  Reference
	Code                           CodeableConcept
	ReasonCode, OrderDetail        []CodeableConcept
	Extension                      []Extension
	OccurrenceDateTime, AuthoredOn string
}

// DiagnosticReport is the view of a report.
type DiagnosticReport struct {
	Status             string
	Identifier         []Identifier
	BasedOn            []Reference
	Subject, Encounter Reference
	ImagingStudy       []Reference
	ResultsInterpreter []Reference
	Category           []CodeableConcept
	Code               CodeableConcept
	Extension          []Extension
	PresentedForm      []Attachment
	Conclusion         string
	// Contained are the contained resources, each its content tree (with resourceType and id).
	Contained []map[string]any
}

// ImagingStudy is the view of a study.
type ImagingStudy struct {
	Identifier []Identifier
	Started    string
}

// PatientOf views a Patient's content.
func PatientOf(c map[string]any) Patient {
	p := Patient{Identifier: IdentifiersOf(c["identifier"]), Name: listOf(c["name"], humanNameOf),
		Gender: str(c, "gender"), BirthDate: str(c, "birthDate"), Link: listOf(c["link"], patientLinkOf)}
	if a, ok := c["active"].(bool); ok {
		p.Active = &a
	}
	return p
}

// ServiceRequestOf views a ServiceRequest's content.
func ServiceRequestOf(c map[string]any) ServiceRequest {
	return ServiceRequest{
		Status: str(c, "status"), Priority: str(c, "priority"),
		Identifier: IdentifiersOf(c["identifier"]),
		Subject:    ReferenceOf(c["subject"]), Encounter: ReferenceOf(c["encounter"]), Requester: ReferenceOf(c["requester"]),
		Code:       codeableConceptOf(c["code"]),
		ReasonCode: listOf(c["reasonCode"], codeableConceptOf), OrderDetail: listOf(c["orderDetail"], codeableConceptOf),
		Extension:          listOf(c["extension"], extensionOf),
		OccurrenceDateTime: str(c, "occurrenceDateTime"), AuthoredOn: str(c, "authoredOn"),
	}
}

// DiagnosticReportOf views a DiagnosticReport's content.
func DiagnosticReportOf(c map[string]any) DiagnosticReport {
	r := DiagnosticReport{
		Status: str(c, "status"), Identifier: IdentifiersOf(c["identifier"]),
		BasedOn: listOf(c["basedOn"], ReferenceOf), Subject: ReferenceOf(c["subject"]), Encounter: ReferenceOf(c["encounter"]),
		ImagingStudy: listOf(c["imagingStudy"], ReferenceOf), ResultsInterpreter: listOf(c["resultsInterpreter"], ReferenceOf),
		Category: listOf(c["category"], codeableConceptOf), Code: codeableConceptOf(c["code"]),
		Extension: listOf(c["extension"], extensionOf), Conclusion: str(c, "conclusion"),
	}
	r.PresentedForm = AttachmentsOf(c["presentedForm"])
	for _, x := range list(c, "contained") {
		if m := asObject(x); m != nil {
			r.Contained = append(r.Contained, m)
		}
	}
	return r
}

// AttachmentsOf views a list of Attachments (a report's presentedForm).
func AttachmentsOf(x any) []Attachment {
	return listOf(x, func(x any) Attachment {
		f := asObject(x)
		return Attachment{ContentType: str(f, "contentType"), Data: str(f, "data"), obj: f}
	})
}

// ImagingStudyOf views an ImagingStudy's content.
func ImagingStudyOf(c map[string]any) ImagingStudy {
	return ImagingStudy{Identifier: IdentifiersOf(c["identifier"]), Started: str(c, "started")}
}

// ResourceType is a content tree's resourceType ("" when it has none: stored content has it
// removed; contained resources keep it).
func ResourceType(c map[string]any) string { return str(c, "resourceType") }

// LogicalID is a content tree's id (a contained resource's local id).
func LogicalID(c map[string]any) string { return str(c, "id") }

// NarrativeDiv is the XHTML of a resource's narrative (text.div), ok false when it has none.
func NarrativeDiv(c map[string]any) (div string, ok bool) {
	div, ok = asObject(c["text"])["div"].(string)
	return div, ok
}

// SetNarrativeDiv replaces the XHTML of the narrative content c has (NarrativeDiv ok).
func SetNarrativeDiv(c map[string]any, div string) {
	if text := asObject(c["text"]); text != nil {
		text["div"] = div
	}
}

// IdentifiersOf views a list of Identifiers (a content's "identifier", MRG-1's prior ids).
func IdentifiersOf(x any) []Identifier { return listOf(x, IdentifierOf) }

// IdentifierOf views one Identifier.
func IdentifierOf(x any) Identifier {
	m := asObject(x)
	return Identifier{Use: str(m, "use"), Type: codeableConceptOf(m["type"]), System: str(m, "system"),
		Value: str(m, "value"), Assigner: str(asObject(m["assigner"]), "display")}
}

// ReferenceOf views one Reference.
func ReferenceOf(x any) Reference {
	m := asObject(x)
	r := Reference{Reference: str(m, "reference"), Display: str(m, "display"), obj: m}
	if id := asObject(m["identifier"]); id != nil {
		v := IdentifierOf(id)
		r.Identifier = &v
	}
	return r
}

// listOf views each element of a JSON list with of; nil when x is no list or an empty one.
func listOf[T any](x any, of func(any) T) []T {
	l, _ := x.([]any)
	if len(l) == 0 {
		return nil
	}
	out := make([]T, len(l))
	for i, e := range l {
		out[i] = of(e)
	}
	return out
}

func codeableConceptOf(x any) CodeableConcept {
	m := asObject(x)
	return CodeableConcept{Text: str(m, "text"), obj: m, Coding: listOf(m["coding"], func(x any) Coding {
		cd := asObject(x)
		return Coding{System: str(cd, "system"), Code: str(cd, "code"), Display: str(cd, "display")}
	})}
}

func extensionOf(x any) Extension {
	m := asObject(x)
	b, _ := m["valueBoolean"].(bool)
	return Extension{URL: str(m, "url"), ValueString: str(m, "valueString"), ValueBoolean: b}
}

func patientLinkOf(x any) PatientLink {
	m := asObject(x)
	return PatientLink{Other: ReferenceOf(m["other"]), Type: str(m, "type")}
}

func humanNameOf(x any) HumanName {
	m := asObject(x)
	return HumanName{Use: str(m, "use"), Text: str(m, "text"), Family: str(m, "family"),
		Given: stringList(m, "given"), Prefix: stringList(m, "prefix"), Suffix: stringList(m, "suffix")}
}

// DecodeContent decodes a resource's JSON into its content tree, apart from resourceType, id
// and meta, which the store keeps beside it and writes anew with each version.
func DecodeContent(body []byte) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	delete(m, "resourceType")
	delete(m, "id")
	delete(m, "meta")
	return m, nil
}

func asObject(x any) map[string]any {
	m, _ := x.(map[string]any)
	return m
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func list(m map[string]any, k string) []any {
	l, _ := m[k].([]any)
	return l
}

// stringList reads a list of strings; a value of another type reads as "" in its place.
func stringList(m map[string]any, k string) []string {
	l := list(m, k)
	if len(l) == 0 {
		return nil
	}
	out := make([]string, 0, len(l))
	for _, e := range l {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}

// WithoutIdentifiers returns content c less the identifiers drop selects — c itself when it
// drops none, else a shallow copy with a new identifier list — with how many it kept and
// dropped.
func WithoutIdentifiers(c map[string]any, drop func(Identifier) bool) (out map[string]any, kept, dropped int) {
	ids := list(c, "identifier")
	var rest []any
	for _, x := range ids {
		if drop(IdentifierOf(x)) {
			dropped++
		} else {
			rest = append(rest, x)
		}
	}
	if dropped == 0 {
		return c, len(ids), 0
	}
	out = make(map[string]any, len(c))
	for k, v := range c {
		out[k] = v
	}
	if rest == nil {
		rest = []any{}
	}
	out["identifier"] = rest
	return out, len(rest), dropped
}

// WithIdentifiersAppended returns a shallow copy of next whose identifiers are next's followed
// by those of old that next lacks, an identifier being known by key ("" for one that is not
// kept). When old has no identifier list, next's is left as it is.
func WithIdentifiersAppended(next, old map[string]any, key func(Identifier) string) map[string]any {
	out := make(map[string]any, len(next)+2)
	for k, v := range next {
		out[k] = v
	}
	olds, ok := old["identifier"].([]any)
	if !ok {
		return out
	}
	merged := append([]any(nil), list(next, "identifier")...)
	have := map[string]bool{}
	for _, x := range merged {
		have[key(IdentifierOf(x))] = true
	}
	for _, x := range olds {
		if k := key(IdentifierOf(x)); k != "" && !have[k] {
			merged = append(merged, x)
			have[k] = true
		}
	}
	out["identifier"] = merged
	return out
}

// AppendTo appends v to content c's list k, which it creates when absent, in a new array: a
// shallow copy of c shares its lists with the original, which stays as it was.
func AppendTo(c map[string]any, k string, v any) {
	c[k] = append(slices.Clip(list(c, k)), v)
}

// LogicalReference keeps what of a Reference means something outside the server that holds its
// target — its type, identifier and display — and drops the literal reference; nil when it has
// neither identifier nor display.
func LogicalReference(ref any) map[string]any {
	m := asObject(ref)
	out := map[string]any{}
	for _, k := range []string{"type", "identifier", "display"} {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	if out["display"] == nil && out["identifier"] == nil {
		return nil
	}
	return out
}

// LogicalReferences is LogicalReference of each of content c's list of References k, leaving
// out those with nothing left; nil when none is left.
func LogicalReferences(c map[string]any, k string) []any {
	var out []any
	for _, x := range list(c, k) {
		if r := LogicalReference(x); r != nil {
			out = append(out, r)
		}
	}
	return out
}
