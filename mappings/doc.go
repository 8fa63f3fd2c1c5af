// Package mappings is Ferry's mapping engine: YAML files an interface analyst reads, edits and
// tests without recompiling, that turn an HL7 v2 message into the FHIR resources and worklist
// entries Ferry keeps. A Set is loaded from a directory (and the shipped defaults), validated as
// a whole — every problem reported with its file, line and path — and then applied to parsed
// messages, concurrently and without allocation-heavy reflection on the hot path.
//
// A mapping is a template shaped like its output. Inside it
//
//   - a string starting with "=" is an expression (github.com/expr-lang/expr) in which HL7 field
//     paths (docs/hl7-paths.md) stand for their decoded values: `= PID-5.1 + ", " + PID-5.2`;
//   - the functions of the v2-to-FHIR IG's datatype maps turn composite fields into FHIR
//     datatypes (`identifiers("PID-3")`, `name("PID-5")`, `codeable("OBR-4", "procedures")`,
//     `datetime(OBR-7)` …) and `lookup` reads the analyst's code tables;
//   - `each:` repeats a part per segment or field repetition, `group:` ties segments to the
//     repeated one (ORC with its OBR), `if:` keeps a part only when a condition holds, and
//     `require:` names fields that must not be empty;
//   - empty values are dropped, as FHIR forbids empty strings, objects and arrays.
//
// An outbound mapping (outbound/NAME.yaml, see Outbound) goes the other way: a template shaped
// like an HL7 v2 message — segments, each a map of field numbers to values — whose expressions
// read FHIR resources (report, patient, order …) and whose functions write FHIR datatypes as
// HL7 ones (cx, xpn, xcn, cwe, ts …). Render escapes every value and checks the message by
// parsing it back. The shipped oru_r01 returns the radiologist's report as ORU^R01.
//
// docs/mappings.md is the analyst's guide.
package mappings
