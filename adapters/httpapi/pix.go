package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/fhir"
)

// CrossReference is the patient identity cross-reference (IHE PIX; docs/dicom.md, "Identity
// cross-reference"): *engine.Linker implements it. The FHIR API calls it from the request's
// goroutine for `Patient?identifier=system|value` (a person is also found by identifiers
// learned from its linked studies) and for `Patient/$ihe-pix`. Errors fail the request and
// must not hold patient data.
type CrossReference interface {
	// PersonsKnownBy returns the persons (survivors of merges) known by system|value, each with
	// every identifier it is known by and its source; Learned when system|value is known for
	// the person only from a linked study. None is an empty result.
	PersonsKnownBy(ctx context.Context, system, value string) ([]engine.Person, error)
}

var _ CrossReference = (*engine.Linker)(nil)

// crossReference widens each Patient identifier filter (system|value) to the persons the
// cross-reference learned it for: the filter becomes one on _id naming the Patients the store
// matched by identifier and those persons.
func (a *fhirAPI) crossReference(ctx context.Context, typ string, s *searchRequest) error {
	if typ != "Patient" || a.xref == nil {
		return nil
	}
	for i := range s.filters {
		f := &s.filters[i]
		if f.Param != "identifier" {
			continue
		}
		var learned []engine.SearchValue
		for _, v := range f.Values {
			if v.System == "" || v.Value == "" {
				continue // a value in any system: the store's match alone
			}
			persons, err := a.xref.PersonsKnownBy(ctx, v.System, v.Value)
			if err != nil {
				return fmt.Errorf("searching the identity cross-reference: %w", err)
			}
			for _, p := range persons {
				if id := (engine.SearchValue{Value: p.PatientID}); p.Learned && !slices.Contains(learned, id) {
					learned = append(learned, id)
				}
			}
		}
		if len(learned) == 0 {
			continue
		}
		own, err := a.store.SearchResources(ctx, engine.ResourceQuery{Type: "Patient", Count: maxPageSize, Filters: []engine.SearchFilter{*f}})
		if err != nil {
			return fmt.Errorf("searching Patient by identifier: %w", err)
		}
		ids := learned
		for _, r := range own {
			if id := (engine.SearchValue{Value: r.ID}); !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
		*f = engine.SearchFilter{Param: "_id", Op: engine.SearchEq, Values: ids}
	}
	return nil
}

// pix serves GET /fhir/r4/Patient/$ihe-pix?sourceIdentifier=system|value[&targetSystem=…]: the
// PIXm query (IHE ITI-83) — every identifier the person known by sourceIdentifier is known by,
// and the Patient, as a Parameters resource (targetIdentifier, targetId). targetSystem (repeated
// or comma-separated) keeps the identifiers of those systems. An identifier nobody is known by
// is 404 (ITI-83 case 3); one known for two persons answers both.
func (a *fhirAPI) pix(c echo.Context) error {
	q := c.QueryParams()
	src := q["sourceIdentifier"]
	if len(src) != 1 {
		return fhirErr(http.StatusBadRequest, fhir.IssueRequired, "sourceIdentifier: exactly one system|value is required", "sourceIdentifier")
	}
	system, value, ok := strings.Cut(src[0], "|")
	if !ok || system == "" || value == "" {
		return fhirErr(http.StatusBadRequest, fhir.IssueInvalid, "sourceIdentifier: want system|value", "sourceIdentifier")
	}
	var targets []string
	for _, t := range q["targetSystem"] {
		for _, s := range strings.Split(t, ",") {
			if s = strings.TrimSpace(s); s != "" {
				targets = append(targets, s)
			}
		}
	}
	persons, err := a.xref.PersonsKnownBy(c.Request().Context(), system, value)
	if err != nil {
		return fmt.Errorf("querying the identity cross-reference: %w", err)
	}
	if len(persons) == 0 {
		a.audit(c, "operation $ihe-pix", "Patient", nil, "found", 0)
		return fhirErr(http.StatusNotFound, fhir.IssueNotFound, "sourceIdentifier: no patient is known by this identifier", "sourceIdentifier")
	}
	var params []map[string]any
	ids := make([]string, len(persons))
	for i, p := range persons {
		ids[i] = p.PatientID
		for _, k := range p.Identifiers {
			if (k.System == system && k.Value == value) || (len(targets) > 0 && !slices.Contains(targets, k.System)) {
				continue
			}
			params = append(params, map[string]any{"name": "targetIdentifier",
				"valueIdentifier": map[string]any{"system": k.System, "value": k.Value}})
		}
		params = append(params, map[string]any{"name": "targetId", "valueReference": map[string]any{"reference": "Patient/" + p.PatientID}})
	}
	if len(persons) == 1 {
		SetAuditPatient(c, "Patient/"+persons[0].PatientID)
	}
	a.audit(c, "operation $ihe-pix", "Patient", ids)
	return writeFHIR(c, http.StatusOK, map[string]any{"resourceType": "Parameters", "parameter": params})
}
