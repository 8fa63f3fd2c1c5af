package engine

import (
	"context"
	"slices"

	"github.com/ferryhealth/ferry/fhir"
)

// PatientAccess is one reason a person may see a patient (issue 12, "a physician sees only their
// own patients"): an order of the patient, from a sending facility, named a doctor by this
// identifier — as requester or ordering (ORC-12, OBR-16), attending (PV1-7) or referring (PV1-8)
// doctor. engine/access reads them to decide what a physician or a radiologist limited to
// facilities may reach. System is the identifier's system, or its assigning authority when it
// has none; Value "" records only the facility (an order naming no doctor).
type PatientAccess struct {
	PatientID string
	Facility  string // the order's sending facility (MSH-4)
	System    string
	Value     string
}

// PatientAccessWriter keeps the rows in the transaction of the change that grants them.
type PatientAccessWriter interface {
	// AddPatientAccess records rows; a row already recorded is not an error.
	AddPatientAccess(ctx context.Context, rows []PatientAccess) error
	// SharePatientAccess gives each of the two patients every row of the other (a merge: what
	// reached either record reaches both).
	SharePatientAccess(ctx context.Context, a, b string) error
}

// accessRows are the rows an order of patientID from facility grants: one per identifier of
// the doctors it names, or one for the facility alone when it names none with an identifier.
func accessRows(patientID, facility string, doctors []map[string]any) []PatientAccess {
	var rows []PatientAccess
	for _, d := range doctors {
		for _, id := range fhir.IdentifiersOf(d["identifier"]) {
			if id.Value == "" {
				continue
			}
			system := id.System
			if system == "" {
				system = id.Assigner
			}
			row := PatientAccess{PatientID: patientID, Facility: facility, System: StorableText(system), Value: StorableText(id.Value)}
			if !slices.Contains(rows, row) {
				rows = append(rows, row)
			}
		}
	}
	if len(rows) == 0 {
		rows = append(rows, PatientAccess{PatientID: patientID, Facility: facility})
	}
	return rows
}
