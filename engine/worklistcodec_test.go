package engine

import (
	"reflect"
	"testing"
)

func TestWorklistItemCodec(t *testing.T) {
	t.Parallel()
	a := WorklistItem{ServiceRequestID: "sr1", AccessionNumber: "ACC1", Modality: "CT",
		RequestedProcedureCode: Code{Value: "24627-2", Scheme: "LN", Meaning: "CT Chest"},
		PatientName:            "MÜLLER^JÖRG", PatientSex: "M", StartDate: "20261127"}
	b := WorklistItem{ServiceRequestID: "sr2"}
	var buf []byte
	var ends []int
	for _, it := range []*WorklistItem{&a, &b} {
		enc, err := it.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		buf = append(buf, enc...)
		ends = append(ends, len(buf))
	}
	got, err := DecodeWorklistItems(buf, ends)
	if err != nil || len(got) != 2 || !reflect.DeepEqual(*got[0], a) || !reflect.DeepEqual(*got[1], b) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	// An item written before later fields existed reads with them empty.
	enc, _ := a.MarshalBinary()
	short := enc[:1+1+len("sr1")]
	got, err = DecodeWorklistItems(short, []int{len(short)})
	if err != nil || got[0].ServiceRequestID != "sr1" || got[0].AccessionNumber != "" {
		t.Errorf("older item: %+v %v", got, err)
	}
	for _, bad := range [][]byte{{}, {2, 0}, {1, 5, 'a'}} {
		if _, err := DecodeWorklistItems(bad, []int{len(bad)}); err == nil {
			t.Errorf("%q decoded without an error", bad)
		}
	}
}
