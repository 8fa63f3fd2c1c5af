// Package engine is Ferry's domain: channels and the inbound flow (parse → check → commit → ACK),
// group commit, the order lifecycle, study linking and the report lifecycle. Parts of it live in
// packages of their own, which it imports and which do not import it: engine/outbox (the
// deliveries a report version's transaction writes, and the Deliverer that sends them),
// engine/turnaround (the clocks a change's transaction marks), engine/access, engine/audit. It
// depends on small interfaces (MessageStore, ResourceReader, LinkStore…), never on a concrete
// adapter: adapters/postgres and adapters/sqlite implement the store, adapters/mllp feeds Receive.
//
// FHIR resources are read through fhir's typed views (fhir.PatientOf, fhir.ServiceRequestOf,
// fhir.DiagnosticReportOf, fhir.ImagingStudyOf), never by walking map[string]any; a resource's
// content tree is what is stored, so what no view names is kept as it came. A mapping's output is
// decoded once, where it enters (decodeOutput).
package engine
