package fhir

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	"github.com/google/fhir/go/jsonformat/errorreporter"
)

// Validator checks FHIR R4 JSON resources (see the package comment for what is checked). Build
// one with NewValidator and share it: it is safe for concurrent use.
type Validator struct {
	um *jsonformat.Unmarshaller
}

// NewValidator builds a Validator. Building loads google/fhir's R4 descriptors, so do it once.
func NewValidator() (*Validator, error) {
	um, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		return nil, fmt.Errorf("building the FHIR R4 unmarshaller: %w", err)
	}
	// Bound the recursion on hostile input; real resources nest a few dozen levels at most.
	um.MaxNestingDepth = maxJSONDepth
	return &Validator{um: um}, nil
}

// Issue is one problem found in a resource.
type Issue struct {
	// Expression locates the problem, FHIRPath-like with indexes: "Patient.name[0].family";
	// "" when the input as a whole is at fault (not JSON at all).
	Expression string
	// Code is the OperationOutcome issue type: structure, required, value, invariant or invalid.
	Code IssueType
	// Message says what is wrong. It never quotes the resource, so it is safe to log.
	Message string
	// Detail, when set, adds text that may quote the resource (a field name, a value, bytes
	// around a JSON syntax error) and so may hold patient data: give it to whoever sent the
	// resource, never log it.
	Detail string
}

// ValidationError is returned by Validate when a resource is invalid; it holds every problem
// found. Its Error text is safe to log; the Detail of its issues is not.
type ValidationError struct {
	Issues []Issue
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("invalid FHIR resource: ")
	for i, is := range e.Issues {
		if i > 0 {
			b.WriteString("; ")
		}
		if i == 5 {
			fmt.Fprintf(&b, "and %d more", len(e.Issues)-i)
			break
		}
		if is.Expression != "" {
			b.WriteString(is.Expression)
			b.WriteString(": ")
		}
		b.WriteString(is.Message)
	}
	return b.String()
}

// OperationOutcome is e as an OperationOutcome, one error issue per problem, Detail included in
// diagnostics (it goes back to the sender).
func (e *ValidationError) OperationOutcome() *OperationOutcome {
	oo := &OperationOutcome{ResourceType: "OperationOutcome"}
	for _, is := range e.Issues {
		diag := is.Message
		if is.Detail != "" {
			diag += ": " + is.Detail
		}
		oo.Issue = append(oo.Issue, newIssue(SeverityError, is.Code, diag, []string{is.Expression}))
	}
	return oo
}

// Validate checks one FHIR R4 resource given as JSON. It returns nil when the resource is valid,
// a *ValidationError listing every problem when it is not, and no other error.
func (v *Validator) Validate(resource []byte) error {
	rep := &issueReporter{}
	if _, err := v.um.UnmarshalWithErrorReporter(resource, rep); err != nil {
		rep.issues = append(rep.issues, googleIssues(err)...)
	}
	// Ferry's own checks skip input that is not a JSON object: google/fhir has said so already.
	issues, resourceType := checkJSON(resource)
	rep.issues = append(rep.issues, issues...)
	rep.issues = append(rep.issues, checkInvariants(resourceType, resource)...)
	if len(rep.issues) > 0 {
		return &ValidationError{Issues: rep.issues}
	}
	return nil
}

// issueReporter collects what google/fhir's validation pass (required fields, primitive
// formats, reference types) reports, so that every problem is returned, not only the first.
type issueReporter struct {
	issues []Issue
}

var _ errorreporter.ErrorReporter = (*issueReporter)(nil)

func (r *issueReporter) ReportValidationError(path string, err error) error {
	for _, is := range googleIssues(err) {
		if is.Expression == "" {
			is.Expression = path
		}
		r.issues = append(r.issues, is)
	}
	return nil
}

// ReportValidationWarning drops warnings: google/fhir's R4 validation reports none today, and a
// warning must not fail a resource.
func (r *issueReporter) ReportValidationWarning(string, error) error { return nil }

// googleIssues turns an error of google/fhir's jsonformat into issues. Its UnmarshalError and
// UnmarshalErrorList live in an internal package, so their exported fields (Path, Details,
// Diagnostics: the last may quote the resource) are read by reflection; anything else becomes
// one issue whose Detail is the error text. TestValidateIssues pins this to jsonformat's shape.
func googleIssues(err error) []Issue {
	v := reflect.ValueOf(err)
	if v.Kind() == reflect.Slice {
		var out []Issue
		for i := range v.Len() {
			if e, ok := v.Index(i).Interface().(error); ok && e != nil {
				out = append(out, googleIssues(e)...)
			}
		}
		return out
	}
	if v.Kind() == reflect.Pointer && !v.IsNil() && v.Elem().Kind() == reflect.Struct {
		s := v.Elem()
		path, details, diag := s.FieldByName("Path"), s.FieldByName("Details"), s.FieldByName("Diagnostics")
		if path.Kind() == reflect.String && details.Kind() == reflect.String && diag.Kind() == reflect.String {
			return []Issue{googleIssue(path.String(), details.String(), diag.String())}
		}
	}
	return []Issue{{Code: IssueInvalid, Message: "invalid resource", Detail: err.Error()}}
}

// googleIssue maps one google/fhir error to an issue: the issue type follows from the kind of
// problem, and a missing field is located at the field itself ("ServiceRequest.intent").
func googleIssue(path, details, diag string) Issue {
	is := Issue{Expression: path, Code: IssueValue, Message: details, Detail: diag}
	switch {
	case strings.HasPrefix(details, "missing required field "):
		is.Code = IssueRequired
		is.Message = "missing required element"
		if f, err := strconv.Unquote(strings.TrimPrefix(details, "missing required field ")); err == nil {
			if path == "" {
				is.Expression = f
			} else {
				is.Expression = path + "." + f
			}
		}
	case details == "unknown field":
		is.Code = IssueStructure
		is.Message = "unknown element"
		if name, err := strconv.Unquote(diag); err == nil {
			is.Detail = name
		}
	case details == "invalid JSON", details == "expected array", details == "invalid field",
		details == "unknown resource type", details == "invalid resource type",
		strings.Contains(details, "resourceType"), strings.HasPrefix(details, "cannot accept multiple values"):
		is.Code = IssueStructure
	}
	return is
}

// checkInvariants checks the invariants google/fhir leaves out on the types where Ferry relies
// on them (see the package comment).
func checkInvariants(resourceType string, resource []byte) []Issue {
	switch resourceType {
	case "Organization":
		var org struct {
			Name       string            `json:"name"`
			Identifier []json.RawMessage `json:"identifier"`
		}
		if json.Unmarshal(resource, &org) == nil && org.Name == "" && len(org.Identifier) == 0 {
			return []Issue{{Expression: "Organization", Code: IssueInvariant,
				Message: "org-1: an Organization needs at least a name or an identifier"}}
		}
	case "Bundle":
		return checkBundle(resource)
	}
	return nil
}

// checkBundle checks bdl-1 to bdl-4 (R4 Bundle invariants on total and entry parts).
func checkBundle(resource []byte) []Issue {
	var b struct {
		Type  string          `json:"type"`
		Total json.RawMessage `json:"total"`
		Entry []struct {
			Search   json.RawMessage `json:"search"`
			Request  json.RawMessage `json:"request"`
			Response json.RawMessage `json:"response"`
		} `json:"entry"`
	}
	if json.Unmarshal(resource, &b) != nil {
		return nil
	}
	var out []Issue
	if b.Total != nil && b.Type != "searchset" && b.Type != "history" {
		out = append(out, Issue{Expression: "Bundle.total", Code: IssueInvariant,
			Message: "bdl-1: total only when the Bundle is a searchset or a history"})
	}
	wantRequest := b.Type == "batch" || b.Type == "transaction" || b.Type == "history"
	wantResponse := b.Type == "batch-response" || b.Type == "transaction-response" || b.Type == "history"
	for i, e := range b.Entry {
		at := "Bundle.entry[" + strconv.Itoa(i) + "]"
		if e.Search != nil && b.Type != "searchset" {
			out = append(out, Issue{Expression: at + ".search", Code: IssueInvariant,
				Message: "bdl-2: entry.search only when the Bundle is a searchset"})
		}
		if (e.Request != nil) != wantRequest {
			out = append(out, Issue{Expression: at + ".request", Code: IssueInvariant,
				Message: "bdl-3: entry.request mandatory for batch, transaction and history Bundles, otherwise prohibited"})
		}
		if (e.Response != nil) != wantResponse {
			out = append(out, Issue{Expression: at + ".response", Code: IssueInvariant,
				Message: "bdl-4: entry.response mandatory for batch-response, transaction-response and history Bundles, otherwise prohibited"})
		}
	}
	return out
}
