package engine

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/ferryhealth/ferry/fhir"
	"github.com/ferryhealth/ferry/hl7"
)

// A report names its patient twice: through its order (the patient Ferry files it under) and,
// usually, in itself — an ORU's PID, a DiagnosticReport's subject. When the two disagree the
// report may be another patient's, sent against the wrong accession: it is refused and shown to
// an analyst, never filed or delivered (DESIGN.md rule 6; issue "Trust at every door", item 1).
// "Disagree" is what the linker calls a contradiction for a study: an identifier of the same
// issuer with another value, or a name, birth date or sex that contradicts (typos, initials and
// transposed digits do not).

// reportPatient is the patient a report names.
type reportPatient struct {
	// ID is the Ferry Patient a FHIR report's subject refers to ("" when it gives none).
	ID string
	// Person holds what else it says, as a FHIR Patient's fields: identifier, name, birthDate,
	// gender (an ORU's PID as the ORU mapping's report_patient maps it; a FHIR subject's
	// identifier, or a contained Patient). nil when it says nothing else.
	Person *fhir.Patient
	// contained: Person is a Patient contained in the report (the subject's "#id").
	contained bool
	// v2 reports the patient came from an ORU's PID (the error names PID fields), else from a
	// FHIR DiagnosticReport.subject.
	v2 bool
}

// subjectPatient is the patient a DiagnosticReport's subject names: a Patient reference (Ferry's
// id), a contained Patient ("#id"), or a logical reference by identifier. nil when it names none.
func subjectPatient(in fhir.DiagnosticReport) *reportPatient {
	subject := in.Subject
	rp := &reportPatient{}
	if ref := subject.Reference; ref != "" {
		if id, ok := strings.CutPrefix(ref, "#"); ok {
			for _, c := range in.Contained {
				if fhir.ResourceType(c) == "Patient" && fhir.LogicalID(c) == id {
					p := fhir.PatientOf(c)
					rp.Person, rp.contained = &p, true
				}
			}
		} else if typ, id := subject.TypeID(); typ == "Patient" {
			rp.ID = id
		}
	}
	if subject.Identifier != nil {
		if rp.Person == nil {
			rp.Person = &fhir.Patient{}
		}
		rp.Person.Identifier = append(slices.Clip(rp.Person.Identifier), *subject.Identifier)
	}
	if rp.ID == "" && rp.Person == nil {
		return nil
	}
	return rp
}

// checkReportPatient refuses a report whose named patient contradicts patient, the order's
// (the survivor, when merged). A patient merged into it counts as it: its identifiers are the
// survivor's too.
func checkReportPatient(ctx context.Context, rd ResourceReader, claimed *reportPatient, patient *Resource) error {
	if claimed == nil {
		return nil
	}
	refuse := func(expr string, seg string, field int, msg string) error {
		e := reportErr(422, fhir.IssueBusinessRule, msg, expr)
		e.PatientMismatch = true
		if claimed.v2 {
			e.V2 = hl7.ErrorDetail{Segment: seg, Sequence: 1, Field: field, Code: hl7.CodeUnknownKeyIdentifier, Severity: "E", Text: msg}
		}
		return e
	}
	if claimed.ID != "" && claimed.ID != patient.ID {
		other, err := rd.Resource(ctx, "Patient", claimed.ID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if other != nil {
			if other, err = survivor(ctx, rd, other); err != nil {
				return err
			}
		}
		if other == nil || other.ID != patient.ID {
			return refuse("DiagnosticReport.subject", "PID", 3, "the report's subject is not the patient of the order it is based on")
		}
	}
	if claimed.Person == nil {
		return nil
	}
	pc, err := contentOf(patient.JSON)
	if err != nil {
		return err
	}
	pv := fhir.PatientOf(pc)
	known, err := identifiersOfPerson(ctx, rd, patient.ID, pv)
	if err != nil {
		return err
	}
	for _, id := range claimed.Person.Identifier {
		if identifierContradicts(id, known) {
			expr := "DiagnosticReport.subject.identifier"
			if claimed.contained {
				expr = "DiagnosticReport.contained.identifier"
			}
			return refuse(expr, "PID", 3, "the report's patient identifier is another patient's than the order's (same issuer, another value)")
		}
	}
	c := comparePerson(DefaultMatchWeights, personOf(*claimed.Person), pv)
	if !c.Contradicts {
		return nil
	}
	// The first field that contradicts names the error.
	for _, f := range []struct {
		evidence string
		field    int
		expr     string
		what     string
	}{
		{"birth_date", 7, "birthDate", "birth date"},
		{"sex", 8, "gender", "sex"},
		{"family", 5, "name", "name"},
		{"given", 5, "name", "name"},
	} {
		if strings.Contains(c.Evidence[f.evidence], outcomeDisagree) {
			expr := "DiagnosticReport.contained." + f.expr
			return refuse(expr, "PID", f.field, "the report's patient "+f.what+" contradicts the order's patient")
		}
	}
	return refuse("DiagnosticReport.subject", "PID", 3, "the report's patient contradicts the order's patient")
}

// personOf is a FHIR Patient's name, birth date and sex in the forms comparePerson takes.
func personOf(p fhir.Patient) claimedPerson {
	birth := p.BirthDate
	sex := ""
	switch p.Gender {
	case "male":
		sex = "M"
	case "female":
		sex = "F"
	}
	return claimedPerson{Name: fhirName(p), BirthDate: strings.ReplaceAll(birth, "-", ""), Sex: sex}
}

// identifierContradicts reports whether id is of an issuer the patient has identifiers of, with
// a value none of them has — another patient's number in the same register. The issuer is the
// system, or without one the assigning authority's namespace; values compare as the linker's
// loosest normalisation does (case, separators, leading zeros). An identifier of an issuer the
// patient has none of says nothing either way.
func identifierContradicts(id fhir.Identifier, known []fhir.Identifier) bool {
	value := id.Value
	issuer := identifierIssuer(id)
	if value == "" || issuer == "" {
		return false
	}
	same := false
	for _, k := range known {
		if identifierIssuer(k) != issuer {
			continue
		}
		same = true
		if normalizedIdentifier(k.Value) == normalizedIdentifier(value) {
			return false
		}
	}
	return same
}

// identifierIssuer is who issued an identifier: its system, else its assigner's name.
func identifierIssuer(id fhir.Identifier) string {
	if id.System != "" {
		return id.System
	}
	if ns := id.Assigner; ns != "" {
		return "assigner:" + strings.ToUpper(ns)
	}
	return ""
}
