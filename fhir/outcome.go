package fhir

import (
	"bytes"
	"encoding/json"
	"strings"
)

// IssueSeverity is OperationOutcome.issue.severity (value set issue-severity, required).
type IssueSeverity string

const (
	SeverityFatal       IssueSeverity = "fatal"
	SeverityError       IssueSeverity = "error"
	SeverityWarning     IssueSeverity = "warning"
	SeverityInformation IssueSeverity = "information"
)

// IssueType is OperationOutcome.issue.code (value set issue-type, required). Only the codes
// Ferry uses are named here.
type IssueType string

const (
	IssueInvalid       IssueType = "invalid"       // content invalid against the specification
	IssueStructure     IssueType = "structure"     // a structural issue: not JSON, unknown element, empty array
	IssueRequired      IssueType = "required"      // a required element is missing
	IssueValue         IssueType = "value"         // an element's value is invalid
	IssueInvariant     IssueType = "invariant"     // a content invariant (org-1, bdl-2, …) is violated
	IssueLogin         IssueType = "login"         // the client needs to authenticate
	IssueForbidden     IssueType = "forbidden"     // authenticated, but not allowed
	IssueNotFound      IssueType = "not-found"     // the resource or type does not exist
	IssueNotSupported  IssueType = "not-supported" // the interaction, parameter or format is not supported
	IssueProcessing    IssueType = "processing"    // processing failed
	IssueException     IssueType = "exception"     // an unexpected internal error
	IssueInformational IssueType = "informational" // no problem: a message for the client
	IssueBusinessRule  IssueType = "business-rule" // a rule of the process: a final report cannot go back to preliminary
	IssueConflict      IssueType = "conflict"      // an edit conflict (another change came first)
	IssueMultipleMatch IssueType = "multiple-matches"
)

// OperationOutcome is the FHIR R4 OperationOutcome Ferry answers with when something went wrong
// (and to report validation problems).
type OperationOutcome struct {
	ResourceType string         `json:"resourceType"` // always "OperationOutcome"
	Issue        []OutcomeIssue `json:"issue"`
}

// OutcomeIssue is one OperationOutcome.issue.
type OutcomeIssue struct {
	Severity IssueSeverity `json:"severity"`
	Code     IssueType     `json:"code"`
	// Diagnostics is the human-readable text; it may quote the request, so it is not logged.
	Diagnostics string `json:"diagnostics,omitempty"`
	// Expression is the FHIRPath of the element or parameter concerned.
	Expression []string `json:"expression,omitempty"`
}

// NewOperationOutcome builds an OperationOutcome with one issue. Empty diagnostics is omitted;
// expression lists where the problem is ("Patient.birthDate", or a search parameter's name).
func NewOperationOutcome(severity IssueSeverity, code IssueType, diagnostics string, expression ...string) *OperationOutcome {
	return &OperationOutcome{
		ResourceType: "OperationOutcome",
		Issue:        []OutcomeIssue{newIssue(severity, code, diagnostics, expression)},
	}
}

// newIssue builds an issue whose strings are valid FHIR strings whatever the request held:
// diagnostics and expressions often quote it.
func newIssue(severity IssueSeverity, code IssueType, diagnostics string, expression []string) OutcomeIssue {
	is := OutcomeIssue{Severity: severity, Code: code, Diagnostics: fhirString(diagnostics)}
	for _, e := range expression {
		// FHIR JSON has no empty strings: an empty expression (a nameless parameter) is dropped.
		if e = fhirString(e); e != "" {
			is.Expression = append(is.Expression, e)
		}
	}
	return is
}

// maxOutcomeText bounds a diagnostics or expression string quoting the request.
const maxOutcomeText = 1024

// fhirString makes s a valid FHIR string: valid UTF-8, without the control characters FHIR
// forbids (all below U+0020 but tab, CR and LF), shortened to maxOutcomeText bytes; leading and
// trailing white space is trimmed.
func fhirString(s string) string {
	if len(s) > maxOutcomeText {
		s = s[:maxOutcomeText] + "…"
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' {
			return '\uFFFD'
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

// MarshalJSON writes the outcome with resourceType set, whatever the caller left in it.
func (o *OperationOutcome) MarshalJSON() ([]byte, error) {
	type plain OperationOutcome
	p := plain(*o)
	p.ResourceType = "OperationOutcome"
	return Marshal(p)
}

// marshalJSON is json.Marshal without HTML escaping: resources embedded as json.RawMessage keep
// their "<", ">" and "&" (a narrative's XHTML) as stored.
func Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
