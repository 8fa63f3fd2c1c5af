package dimse

import (
	"encoding/hex"
	"errors"
	"reflect"
	"testing"

	"github.com/ferryhealth/ferry/dicom"
)

// TestCommandWireFormat checks a C-ECHO-RQ byte for byte (PS3.7 9.3.5.1, E.1): implicit VR
// little endian, ascending tags, the group length counting the bytes after it, the UID padded
// with NUL to an even length.
func TestCommandWireFormat(t *testing.T) {
	t.Parallel()
	b, err := (&Command{Field: CEchoRQ, MessageID: 0x1234, AffectedSOPClassUID: VerificationSOPClass}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := "" +
		"00000000" + "04000000" + "38000000" + // (0000,0000) UL 4: 56
		"00000200" + "12000000" + hex.EncodeToString([]byte("1.2.840.10008.1.1\x00")) + // (0000,0002) UI
		"00000001" + "02000000" + "3000" + // (0000,0100) US C-ECHO-RQ
		"00001001" + "02000000" + "3412" + // (0000,0110) US message ID
		"00000008" + "02000000" + "0101" // (0000,0800) US no data set
	if got := hex.EncodeToString(b); got != want {
		t.Errorf("C-ECHO-RQ\n got %s\nwant %s", got, want)
	}
}

func TestCommandRoundTrip(t *testing.T) {
	t.Parallel()
	tests := map[string]*Command{
		"C-ECHO-RSP": {Field: CEchoRSP, MessageIDBeingRespondedTo: 7, AffectedSOPClassUID: VerificationSOPClass, Status: dicom.StatusSuccess},
		"C-FIND-RQ":  {Field: CFindRQ, MessageID: 9, AffectedSOPClassUID: modalityWorklistFind, Priority: PriorityHigh, HasDataSet: true},
		"C-FIND-RSP pending": {Field: CFindRSP, MessageIDBeingRespondedTo: 9, AffectedSOPClassUID: modalityWorklistFind,
			Status: dicom.StatusPending, HasDataSet: true},
		"C-FIND-RSP failure": {Field: CFindRSP, MessageIDBeingRespondedTo: 9, Status: dicom.StatusCannotUnderstand, ErrorComment: "bad key",
			Other: []*dicom.Element{{Tag: dicom.TagOffendingElement, VR: dicom.VRAT, Value: []byte{0x10, 0x00, 0x10, 0x00}}}},
		"C-CANCEL-RQ": {Field: CCancelRQ, MessageIDBeingRespondedTo: 9},
		"C-STORE-RQ": {Field: CStoreRQ, MessageID: 65535, AffectedSOPClassUID: ctImageStorage, AffectedSOPInstanceUID: "1.2.3.4.5",
			HasDataSet: true, MoveOriginatorAETitle: "MOVER", MoveOriginatorMessageID: 3},
	}
	for name, c := range tests {
		t.Run(name, func(t *testing.T) {
			b, err := c.Encode()
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeCommand(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, c)
			}
		})
	}
}

func TestDecodeCommandErrors(t *testing.T) {
	t.Parallel()
	encode := func(els ...*dicom.Element) []byte {
		b, err := dicom.EncodeDataSet(&dicom.DataSet{Elements: els}, dicom.ImplicitVRLittleEndian)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	field := func(f CommandField) *dicom.Element { return dicom.NewUint16(dicom.TagCommandField, uint16(f)) }
	noData := dicom.NewUint16(dicom.TagCommandDataSetType, dataSetAbsent)
	tests := []struct {
		name string
		in   []byte
		tag  dicom.Tag
	}{
		{"no command field", encode(dicom.NewUint16(dicom.TagMessageID, 1), noData), dicom.TagCommandField},
		{"request without message ID", encode(field(CEchoRQ), noData), dicom.TagMessageID},
		{"response without status", encode(field(CEchoRSP), dicom.NewUint16(dicom.TagMessageIDBeingRespondedTo, 1), noData), dicom.TagStatus},
		{"response without message ID responded to", encode(field(CEchoRSP), noData, dicom.NewUint16(dicom.TagStatus, 0)), dicom.TagMessageIDBeingRespondedTo},
		{"cancel without message ID responded to", encode(field(CCancelRQ), noData), dicom.TagMessageIDBeingRespondedTo},
		{"no data set type", encode(field(CEchoRQ), dicom.NewUint16(dicom.TagMessageID, 1)), dicom.TagCommandDataSetType},
		{"US of 4 bytes", encode(&dicom.Element{Tag: dicom.TagCommandField, Value: []byte{0x30, 0, 0, 0}}), dicom.TagCommandField},
		{"element outside group 0000", encode(field(CEchoRQ), dicom.NewUint16(dicom.TagMessageID, 1), noData, dicom.NewString(dicom.TagPatientID, dicom.VRLO, "X")), dicom.TagPatientID},
		{"not a data set", []byte{0, 0, 0, 1, 0xFF, 0xFF, 0, 0}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeCommand(tc.in)
			var ce *CommandError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v, want *CommandError", err)
			}
			if ce.Tag != tc.tag {
				t.Errorf("error names %s, want %s (%v)", ce.Tag, tc.tag, err)
			}
		})
	}
}

func TestStatusClass(t *testing.T) {
	t.Parallel()
	for st, want := range map[dicom.Status]string{
		dicom.StatusSuccess: "success", dicom.StatusPending: "pending", dicom.StatusPendingWarning: "pending", dicom.StatusCancel: "cancel",
		dicom.StatusCoercionOfDataElements: "warning", dicom.StatusElementsDiscarded: "warning", 0x0001: "warning",
		dicom.StatusOutOfResources: "failure", dicom.StatusCannotUnderstand: "failure", dicom.StatusProcessingFailure: "failure", 0xC123: "failure",
	} {
		if got := st.Class(); got != want {
			t.Errorf("%04X: %s, want %s", uint16(st), got, want)
		}
	}
	if CFindRQ.Response() != CFindRSP || !CStoreRSP.IsResponse() || CCancelRQ.IsResponse() {
		t.Error("command field bits")
	}
	if CommandField(0x1234).String() != "command 0x1234" || CEchoRQ.String() != "C-ECHO-RQ" {
		t.Error("command names")
	}
}
