package engine_test

import (
	"context"
	"slices"
	"testing"

	"github.com/ferryhealth/ferry/engine/access"
)

// TestOrdersGrantTheirDoctorsThePatient: an order's ordering (ORC-12, OBR-16), attending
// (PV1-7) and referring (PV1-8) doctors each see its patient from the order's commit on, by
// their identifier with its assigning authority as system; a merge gives the surviving record
// what reached the merged one and the other way round; a physician named nowhere sees neither.
func TestOrdersGrantTheirDoctorsThePatient(t *testing.T) {
	t.Parallel()
	h := newOrderHarness(t)
	ctx := context.Background()
	orc12 := "ORC|NW|PL7^RIS|||SC||^^^20261127093000^^R||20261127082500|||ORD1^ORDER^OLIVER^^^DR^^^NPI"
	obr16 := "OBR|1|PL7^RIS||71260^CT CHEST W/O CONTRAST^C4||||||||||||OBR16^SECOND^SAM||ACC7||||||CT"
	pv1 := "PV1|1|O|||||ATT1^ATTEND^ALICE^^^DR|REF1^REFER^ROBERT^^^DR"
	h.mustAccept(mshORM, pidFor("000777", "DOE^JANE"), pv1, orc12, obr16)
	h.mustAccept(mshADT, pidFor("000778", "DOE^JANE^Q"), "PV1|1|O")
	h.mustAccept(mshORM, pidFor("000778", "DOE^JANE^Q"), orc("NW", "PL8", "SC"), obr("PL8", "ACC8"))

	const npi = "http://hl7.org/fhir/sid/us-npi"
	pat := func(id string) string {
		t.Helper()
		ps := h.search("Patient", eq("identifier", mrn+"|"+id))
		if len(ps) != 1 {
			t.Fatalf("patient %s: %d records", id, len(ps))
		}
		return ps[0]["id"].(string)
	}
	p777, p778 := pat("000777"), pat("000778")
	rows, err := h.st.PatientAccessOf(ctx, []string{p777})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		if r.PatientID != p777 || r.Facility != "STMARYS" {
			t.Errorf("row %+v: want patient %s, facility STMARYS", r, p777)
		}
		got = append(got, r.System+"|"+r.Value)
	}
	slices.Sort(got)
	if want := []string{npi + "|ORD1", "|ATT1", "|OBR16", "|REF1"}; !slices.Equal(got, want) {
		t.Errorf("who sees the patient: %v, want %v", got, want)
	}

	patients := &access.Patients{Store: h.st, Resources: h.st}
	reaches := func(who access.Practitioner, patientID string) bool {
		t.Helper()
		ok, _, err := patients.Reaches(ctx, &access.Identity{User: "u", Role: access.RolePhysician, Practitioners: []access.Practitioner{who}}, patientID)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for _, tc := range []struct {
		who     access.Practitioner
		patient string
		want    bool
	}{
		{access.Practitioner{Value: "REF1"}, p777, true},
		{access.Practitioner{Value: "ATT1"}, p777, true},
		{access.Practitioner{System: npi, Value: "ORD1"}, p777, true},          // the authority NPI read as its URI
		{access.Practitioner{System: "urn:other", Value: "ORD1"}, p777, false}, // another system's ORD1
		{access.Practitioner{Value: "REF1"}, p778, false},
	} {
		if got := reaches(tc.who, tc.patient); got != tc.want {
			t.Errorf("%s reaches %s: %v, want %v", tc.who, tc.patient, got, tc.want)
		}
	}

	// 000777 is merged into 000778: REF1 sees the survivor, and 000778's doctors the old record.
	h.mustAccept(mshA40, pidFor("000778", "DOE^JANE^Q"), "MRG|000777^^^STMARYS^MR")
	if !reaches(access.Practitioner{Value: "REF1"}, p778) {
		t.Error("after the merge, REF1 does not reach the surviving record")
	}
	if !reaches(access.Practitioner{Value: "REF1"}, p777) {
		t.Error("after the merge, REF1 does not reach the merged record")
	}
}
