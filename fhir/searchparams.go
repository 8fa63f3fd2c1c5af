package fhir

import "slices"

// ParamType is a search parameter's FHIR type, which says how its values are matched.
type ParamType string

const (
	ParamToken     ParamType = "token"     // System|Value, exact
	ParamString    ParamType = "string"    // NormalizeString, starts-with
	ParamDate      ParamType = "date"      // ISO 8601 text in UTC, ordered lexically
	ParamReference ParamType = "reference" // "Type/id"
)

// SearchParam is one search parameter Ferry indexes and answers.
type SearchParam struct {
	Name       string    // as FHIR R4 names it: "birthdate", "_lastUpdated"
	Type       ParamType //
	Definition string    // the canonical URL of the R4 SearchParameter
	// Targets are the resource types a reference parameter may point to, in the order a bare id
	// in a query ("subject=123") is tried against.
	Targets []string
}

const spBase = "http://hl7.org/fhir/SearchParameter/"

// commonParams are indexed for every type (even one Ferry has no table for).
var commonParams = []SearchParam{
	{Name: "_id", Type: ParamToken, Definition: spBase + "Resource-id"},
	{Name: "_lastUpdated", Type: ParamDate, Definition: spBase + "Resource-lastUpdated"},
}

var searchParams = map[string][]SearchParam{
	"Patient": {
		{Name: "identifier", Type: ParamToken, Definition: spBase + "Patient-identifier"},
		{Name: "name", Type: ParamString, Definition: spBase + "Patient-name"},
		{Name: "family", Type: ParamString, Definition: spBase + "individual-family"},
		{Name: "given", Type: ParamString, Definition: spBase + "individual-given"},
		{Name: "birthdate", Type: ParamDate, Definition: spBase + "individual-birthdate"},
		{Name: "gender", Type: ParamToken, Definition: spBase + "individual-gender"},
		{Name: "active", Type: ParamToken, Definition: spBase + "Patient-active"},
		{Name: "link", Type: ParamReference, Definition: spBase + "Patient-link", Targets: []string{"Patient", "RelatedPerson"}},
	},
	"ServiceRequest": {
		{Name: "identifier", Type: ParamToken, Definition: spBase + "clinical-identifier"},
		{Name: "patient", Type: ParamReference, Definition: spBase + "clinical-patient", Targets: []string{"Patient"}},
		{Name: "subject", Type: ParamReference, Definition: spBase + "ServiceRequest-subject", Targets: []string{"Patient", "Group", "Location", "Device"}},
		{Name: "status", Type: ParamToken, Definition: spBase + "ServiceRequest-status"},
		{Name: "intent", Type: ParamToken, Definition: spBase + "ServiceRequest-intent"},
		{Name: "code", Type: ParamToken, Definition: spBase + "clinical-code"},
		{Name: "authored", Type: ParamDate, Definition: spBase + "ServiceRequest-authored"},
		{Name: "occurrence", Type: ParamDate, Definition: spBase + "ServiceRequest-occurrence"},
		{Name: "requester", Type: ParamReference, Definition: spBase + "ServiceRequest-requester",
			Targets: []string{"Practitioner", "PractitionerRole", "Organization", "Patient", "RelatedPerson", "Device"}},
		{Name: "encounter", Type: ParamReference, Definition: spBase + "clinical-encounter", Targets: []string{"Encounter"}},
		{Name: "priority", Type: ParamToken, Definition: spBase + "ServiceRequest-priority"},
	},
	"Practitioner": {
		{Name: "identifier", Type: ParamToken, Definition: spBase + "Practitioner-identifier"},
		{Name: "name", Type: ParamString, Definition: spBase + "Practitioner-name"},
		{Name: "family", Type: ParamString, Definition: spBase + "individual-family"},
		{Name: "given", Type: ParamString, Definition: spBase + "individual-given"},
	},
	"Encounter": {
		{Name: "identifier", Type: ParamToken, Definition: spBase + "clinical-identifier"},
		{Name: "patient", Type: ParamReference, Definition: spBase + "clinical-patient", Targets: []string{"Patient"}},
		{Name: "subject", Type: ParamReference, Definition: spBase + "Encounter-subject", Targets: []string{"Patient", "Group"}},
		{Name: "status", Type: ParamToken, Definition: spBase + "Encounter-status"},
		{Name: "class", Type: ParamToken, Definition: spBase + "Encounter-class"},
		{Name: "date", Type: ParamDate, Definition: spBase + "clinical-date"},
	},
	"Organization": {
		{Name: "identifier", Type: ParamToken, Definition: spBase + "Organization-identifier"},
		{Name: "name", Type: ParamString, Definition: spBase + "Organization-name"},
	},
	// ImagingStudy: the R4 parameters of what Ferry derives from a received DICOM study
	// (https://hl7.org/fhir/R4/imagingstudy.html#search). instance, interpreter, performer,
	// encounter, reason and bodysite are not indexed: Ferry's ImagingStudy does not fill them,
	// and one entry per SOP instance would bloat the index of a 2000-image CT.
	"DiagnosticReport": {
		{Name: "identifier", Type: ParamToken, Definition: spBase + "clinical-identifier"},
		{Name: "status", Type: ParamToken, Definition: spBase + "DiagnosticReport-status"},
		{Name: "category", Type: ParamToken, Definition: spBase + "DiagnosticReport-category"},
		{Name: "code", Type: ParamToken, Definition: spBase + "clinical-code"},
		{Name: "patient", Type: ParamReference, Definition: spBase + "clinical-patient", Targets: []string{"Patient"}},
		{Name: "subject", Type: ParamReference, Definition: spBase + "DiagnosticReport-subject", Targets: []string{"Patient", "Group", "Device", "Location"}},
		{Name: "encounter", Type: ParamReference, Definition: spBase + "clinical-encounter", Targets: []string{"Encounter"}},
		{Name: "based-on", Type: ParamReference, Definition: spBase + "DiagnosticReport-based-on",
			Targets: []string{"ServiceRequest", "CarePlan", "ImmunizationRecommendation", "MedicationRequest", "NutritionOrder"}},
		{Name: "date", Type: ParamDate, Definition: spBase + "clinical-date"},
		{Name: "issued", Type: ParamDate, Definition: spBase + "DiagnosticReport-issued"},
		{Name: "performer", Type: ParamReference, Definition: spBase + "DiagnosticReport-performer",
			Targets: []string{"Practitioner", "PractitionerRole", "Organization", "CareTeam"}},
		{Name: "results-interpreter", Type: ParamReference, Definition: spBase + "DiagnosticReport-results-interpreter",
			Targets: []string{"Practitioner", "PractitionerRole", "Organization", "CareTeam"}},
	},
	"ImagingStudy": {
		{Name: "identifier", Type: ParamToken, Definition: spBase + "clinical-identifier"},
		{Name: "patient", Type: ParamReference, Definition: spBase + "clinical-patient", Targets: []string{"Patient"}},
		{Name: "subject", Type: ParamReference, Definition: spBase + "ImagingStudy-subject", Targets: []string{"Patient", "Device", "Group"}},
		{Name: "basedon", Type: ParamReference, Definition: spBase + "ImagingStudy-basedon",
			Targets: []string{"ServiceRequest", "Appointment", "AppointmentResponse", "CarePlan", "Task"}},
		{Name: "started", Type: ParamDate, Definition: spBase + "ImagingStudy-started"},
		{Name: "modality", Type: ParamToken, Definition: spBase + "ImagingStudy-modality"},
		{Name: "status", Type: ParamToken, Definition: spBase + "ImagingStudy-status"},
		{Name: "referrer", Type: ParamReference, Definition: spBase + "ImagingStudy-referrer", Targets: []string{"Practitioner", "PractitionerRole"}},
		{Name: "series", Type: ParamToken, Definition: spBase + "ImagingStudy-series"},
		{Name: "dicom-class", Type: ParamToken, Definition: spBase + "ImagingStudy-dicom-class"},
		{Name: "endpoint", Type: ParamReference, Definition: spBase + "ImagingStudy-endpoint", Targets: []string{"Endpoint"}},
	},
	// Endpoint: every R4 parameter (https://hl7.org/fhir/R4/endpoint.html#search); Ferry
	// publishes its DICOMweb service as one, which ImagingStudy.endpoint points to.
	"Endpoint": {
		{Name: "identifier", Type: ParamToken, Definition: spBase + "Endpoint-identifier"},
		{Name: "status", Type: ParamToken, Definition: spBase + "Endpoint-status"},
		{Name: "connection-type", Type: ParamToken, Definition: spBase + "Endpoint-connection-type"},
		{Name: "name", Type: ParamString, Definition: spBase + "Endpoint-name"},
		{Name: "payload-type", Type: ParamToken, Definition: spBase + "Endpoint-payload-type"},
		{Name: "organization", Type: ParamReference, Definition: spBase + "Endpoint-organization", Targets: []string{"Organization"}},
	},
}

// SearchTypes lists the resource types Ferry indexes beyond _id and _lastUpdated, sorted.
func SearchTypes() []string {
	types := make([]string, 0, len(searchParams))
	for t := range searchParams {
		types = append(types, t)
	}
	slices.Sort(types)
	return types
}

// SearchParams returns the search parameters of resourceType: its own, then _id and
// _lastUpdated. A type Ferry has no table for gets only _id and _lastUpdated.
func SearchParams(resourceType string) []SearchParam {
	own := searchParams[resourceType]
	out := make([]SearchParam, 0, len(own)+len(commonParams))
	out = append(out, own...)
	return append(out, commonParams...)
}

// LookupSearchParam returns the search parameter name of resourceType.
func LookupSearchParam(resourceType, name string) (SearchParam, bool) {
	for _, p := range searchParams[resourceType] {
		if p.Name == name {
			return p, true
		}
	}
	for _, p := range commonParams {
		if p.Name == name {
			return p, true
		}
	}
	return SearchParam{}, false
}
