// Package engine is Ferry's domain: channels and the inbound flow (parse → check → commit → ACK),
// group commit, and — as they land — the order lifecycle, study linking, report lifecycle and the
// outbox. It depends on small interfaces (MessageStore here; Sender later), never on a concrete
// adapter: adapters/postgres and adapters/sqlite implement the store, adapters/mllp feeds Receive.
//
// FHIR resources are read through fhir's typed views (fhir.PatientOf, fhir.ServiceRequestOf,
// fhir.DiagnosticReportOf, fhir.ImagingStudyOf), never by walking map[string]any; a resource's
// content tree is what is stored, so what no view names is kept as it came. A mapping's output is
// decoded once, where it enters (decodeOutput).
package engine
