// Package fhir is Ferry's FHIR R4 (4.0.1) layer: it validates resources, computes the search
// parameter values a store keeps beside each version, and builds what the FHIR REST API answers
// with (OperationOutcome, searchset and history Bundles, the CapabilityStatement). No I/O.
//
// # Validation
//
// Validator runs google/fhir's validating R4 unmarshaller (jsonformat, v0.7.4) and then a few
// checks of Ferry's own, and reports every problem it finds, each with its location, as a
// *ValidationError (never only the first).
//
// google/fhir checks, and reports all of:
//   - JSON syntax (fatal: nothing else is checked then) and the resourceType (known R4 types only);
//   - nesting deeper than 100 elements (Ferry sets the limit: hostile input must not recurse
//     without bound);
//   - unknown elements (FHIR JSON is closed), wrong JSON types (a string where an array belongs),
//     null values, choice elements given twice (valueString and valueCode);
//   - primitive formats: id, code, oid, uuid, date, dateTime, instant (which must carry a time
//     zone), time, decimal, integer ranges, base64Binary, uri (as net/url parses it, which is
//     lenient);
//   - codes bound to a required value set the protos model as enums (Patient.gender,
//     ServiceRequest.status/intent/priority, Encounter.status, Bundle.type, …);
//   - required cardinality (min 1): ServiceRequest.status, intent and subject; Encounter.status
//     and class; DiagnosticReport.status and code; ImagingStudy.status, subject, series.uid and
//     series.modality; Patient.link.other; Extension.url; Bundle.type; OperationOutcome.issue.code;
//   - reference targets: a Reference whose "Type/id" names a type the element does not allow.
//
// google/fhir does not check, and Ferry adds (cheaply, in one pass over the bytes and small
// decodes of the few types concerned):
//   - empty values, which FHIR JSON forbids and which mappings from HL7 v2 easily produce: empty
//     strings (""), empty arrays ([]) and empty objects ({}) (ele-1, and "arrays are never empty");
//   - duplicate property names in one object, which google/fhir silently resolves (the last wins)
//     while other readers may take the first;
//   - org-1: an Organization (the resource itself, not one contained) has a name or an identifier;
//   - the Bundle invariants bdl-1 (total only in a searchset or history), bdl-2
//     (entry.search only in a searchset), bdl-3 (entry.request exactly in batch, transaction and
//     history), bdl-4 (entry.response exactly in batch-response, transaction-response and
//     history).
//
// Neither checks the other FHIRPath invariants, value sets bound as extensible or preferred,
// code systems (a LOINC code is not looked up), the XHTML of a narrative, or profiles.
//
// # Search parameters
//
// Index computes a resource version's search parameter values (see IndexEntry) for the types in
// SearchTypes, with the parameters SearchParams lists; NormalizeString is the one normalisation
// of string parameters and ParseDateQuery turns a date search value into a comparison with the
// indexed dates, both used when querying.
//
// # Views
//
// PatientOf, ServiceRequestOf, DiagnosticReportOf and ImagingStudyOf read the fields Ferry's
// engine uses (identifiers with their v2-0203 type and assigner, names, references, codes,
// extensions, presentedForm…) into small typed views, from a resource's content as a JSON tree
// (DecodeContent; a mapping's output has the same form). The tree stays the resource's storage
// form: a view only reads it, and the few changes the engine makes go through functions here
// (AppendTo, WithoutIdentifiers, WithIdentifiersAppended, Attachment.ReplaceData,
// SetNarrativeDiv, LogicalReference) that change the element concerned and nothing else, so
// elements no view names — extensions, primitive extensions, elements Ferry has no use for —
// survive a read-modify-write unchanged. Where an element is copied whole into another resource
// (the order's code into ImagingStudy.procedureCode), the view hands out the element as read
// (CodeableConcept.Tree, Reference.Tree).
//
// # What Ferry answers with
//
// NewOperationOutcome, NewSearchset, NewHistory and NewCapabilityStatement build plain Go
// structs; Marshal writes them. Stored resources go into Bundles as json.RawMessage, never
// through typed models (samply's drop unknown elements and default a missing status).
package fhir
