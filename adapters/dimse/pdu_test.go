package dimse

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/ferryhealth/ferry/dicom"
)

// samplePDUs are one PDU of each type, with every item and sub-item this package knows.
func samplePDUs() map[string]PDU {
	return map[string]PDU{
		"A-ASSOCIATE-RQ": &AssociateRQ{
			ProtocolVersion: 1, CalledAETitle: "FERRY", CallingAETitle: "MODALITY_01",
			ApplicationContext: ApplicationContextName,
			PresentationContexts: []PresentationContextRQ{
				{ID: 1, AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{dicom.ImplicitVRLittleEndian}},
				{ID: 3, AbstractSyntax: modalityWorklistFind, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian, dicom.ImplicitVRLittleEndian}},
			},
			UserInfo: UserInfo{
				MaxPDULength: 16384, ImplementationClassUID: "1.2.276.0.7230010.3.0.3.6.7",
				ImplementationVersionName: "OFFIS_DCMTK_367",
				AsyncOps:                  &AsyncOpsWindow{Invoked: 2, Performed: 3},
				RoleSelections:            []RoleSelection{{SOPClassUID: ctImageStorage, SCU: true, SCP: false}},
				Other:                     []RawItem{{Type: 0x58, Data: []byte{1, 0, 0, 4, 'u', 's', 'e', 'r', 0, 0}}},
			},
		},
		"A-ASSOCIATE-AC": &AssociateAC{
			ProtocolVersion: 1, CalledAETitle: "FERRY", CallingAETitle: "MODALITY_01",
			ApplicationContext: ApplicationContextName,
			PresentationContexts: []PresentationContextAC{
				{ID: 1, Result: PresentationAccepted, TransferSyntax: dicom.ImplicitVRLittleEndian},
				{ID: 3, Result: PresentationAbstractSyntaxUnsupported, TransferSyntax: dicom.ExplicitVRLittleEndian},
			},
			UserInfo: UserInfo{MaxPDULength: DefaultMaxPDULength, ImplementationClassUID: dicom.ImplementationClassUID,
				ImplementationVersionName: dicom.ImplementationVersionName},
		},
		"A-ASSOCIATE-RJ": &AssociateRJ{Result: RejectPermanent, Source: SourceServiceUser, Reason: ReasonCalledAETitleNotRecognized},
		"P-DATA-TF": &PDataTF{Items: []PDV{
			{ContextID: 1, Command: true, Last: true, Data: []byte{1, 2, 3, 4}},
			{ContextID: 1, Command: false, Last: false, Data: []byte{}},
			{ContextID: 255, Command: false, Last: true, Data: []byte{9}},
		}},
		"A-RELEASE-RQ": &ReleaseRQ{},
		"A-RELEASE-RP": &ReleaseRP{},
		"A-ABORT":      &Abort{Source: AbortServiceProvider, Reason: AbortReasonUnexpectedPDU},
	}
}

func TestPDURoundTrip(t *testing.T) {
	t.Parallel()
	for name, p := range samplePDUs() {
		t.Run(name, func(t *testing.T) {
			b, err := EncodePDU(p)
			if err != nil {
				t.Fatal(err)
			}
			if p.PDUType().String() != name {
				t.Errorf("PDUType().String() = %q", p.PDUType())
			}
			got, err := ReadPDU(bytes.NewReader(b), 1<<20)
			if err != nil {
				t.Fatalf("ReadPDU: %v", err)
			}
			if !reflect.DeepEqual(got, p) {
				t.Errorf("round trip:\n got %#v\nwant %#v", got, p)
			}
		})
	}
}

// TestPDUWireFormat checks encodings byte for byte against PS3.8's layouts.
func TestPDUWireFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		pdu  PDU
		hex  string
	}{
		// type, reserved, length 4, reserved, result 1, source 1, reason 7 (PS3.8 9.3.4)
		{"A-ASSOCIATE-RJ called AE title", &AssociateRJ{RejectPermanent, SourceServiceUser, ReasonCalledAETitleNotRecognized}, "030000000004" + "00010107"},
		{"A-RELEASE-RQ", &ReleaseRQ{}, "050000000004" + "00000000"},
		{"A-RELEASE-RP", &ReleaseRP{}, "060000000004" + "00000000"},
		{"A-ABORT", &Abort{AbortServiceProvider, AbortReasonInvalidPDUParamValue}, "070000000004" + "00000206"},
		// PDV: item length 5, context 1, control 03 (command, last), 3 bytes
		{"P-DATA-TF", &PDataTF{Items: []PDV{{ContextID: 1, Command: true, Last: true, Data: []byte{0xAA, 0xBB, 0xCC}}}}, "040000000009" + "00000005" + "0103" + "aabbcc"},
	}
	for _, tc := range tests {
		b, err := EncodePDU(tc.pdu)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(b); got != tc.hex {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.hex)
		}
	}

	rq := samplePDUs()["A-ASSOCIATE-RQ"].(*AssociateRQ)
	b, err := EncodePDU(rq)
	if err != nil {
		t.Fatal(err)
	}
	// Fixed fields (PS3.8 table 9-11): version at 6, called AE at 10, calling AE at 26, both
	// space-padded to 16; 32 reserved bytes; the application context item at 74.
	if got := string(b[10:42]); got != "FERRY           MODALITY_01     " {
		t.Errorf("AE title fields %q", got)
	}
	if b[6] != 0 || b[7] != 1 {
		t.Errorf("protocol version bytes % x", b[6:8])
	}
	if want := "\x10\x00\x00\x15" + ApplicationContextName; string(b[74:74+4+21]) != want {
		t.Errorf("application context item % x", b[74:74+25])
	}
	if int(b[2])<<24|int(b[3])<<16|int(b[4])<<8|int(b[5]) != len(b)-6 {
		t.Errorf("PDU length field does not match")
	}
}

func TestReadPDUErrors(t *testing.T) {
	t.Parallel()
	valid := mustEncodePDU(t, samplePDUs()["A-ASSOCIATE-RQ"])
	rqWith := func(items ...[]byte) []byte { // an A-ASSOCIATE-RQ with these variable items
		body := append([]byte{0, 1, 0, 0}, []byte("FERRY           CALLING         ")...)
		body = append(body, make([]byte, 32)...)
		for _, it := range items {
			body = append(body, it...)
		}
		return append([]byte{1, 0, 0, 0, byte(len(body) >> 8), byte(len(body))}, body...)
	}
	item := func(typ byte, data ...byte) []byte {
		return append([]byte{typ, 0, byte(len(data) >> 8), byte(len(data))}, data...)
	}
	appCtx := item(0x10, []byte(ApplicationContextName)...)
	pc := func(sub ...[]byte) []byte {
		data := []byte{1, 0, 0, 0}
		for _, s := range sub {
			data = append(data, s...)
		}
		return item(0x20, data...)
	}
	abstract := item(0x30, []byte(VerificationSOPClass)...)
	ts := item(0x40, []byte(dicom.ImplicitVRLittleEndian)...)

	tests := []struct {
		name     string
		in       []byte
		max      uint32
		wantErr  error            // errors.Is
		reason   AbortReason      // for a *PDUError
		tooLarge bool             // a *PDUTooLargeError
		check    func(PDU) string // for inputs that must be accepted
	}{
		{name: "empty input", in: nil, wantErr: io.EOF},
		{name: "truncated header", in: []byte{1, 0, 0}, wantErr: io.ErrUnexpectedEOF},
		{name: "truncated body", in: valid[:len(valid)-3], wantErr: io.ErrUnexpectedEOF},
		{name: "unknown PDU type", in: []byte{0x08, 0, 0, 0, 0, 0}, reason: AbortReasonUnrecognizedPDU},
		{name: "PDU type 0", in: []byte{0x00, 0, 0, 0, 0, 0}, reason: AbortReasonUnrecognizedPDU},
		{name: "P-DATA-TF over the limit", in: []byte{4, 0, 0, 0, 0x10, 0x01}, max: 4096, tooLarge: true},
		{name: "A-ASSOCIATE-RQ over 1 MiB", in: []byte{1, 0, 0, 0x10, 0, 0x01}, tooLarge: true},
		{name: "length 4 GiB", in: []byte{4, 0, 0xFF, 0xFF, 0xFF, 0xFF}, tooLarge: true},
		{name: "A-ASSOCIATE-RQ shorter than its fixed fields", in: []byte{1, 0, 0, 0, 0, 2, 0, 1}, reason: AbortReasonInvalidPDUParamValue},
		{name: "no application context", in: rqWith(pc(abstract, ts)), reason: AbortReasonInvalidPDUParamValue},
		{name: "no presentation context", in: rqWith(appCtx), reason: AbortReasonInvalidPDUParamValue},
		{name: "two application contexts", in: rqWith(appCtx, appCtx, pc(abstract, ts)), reason: AbortReasonUnexpectedPDUParam},
		{name: "context without abstract syntax", in: rqWith(appCtx, pc(ts)), reason: AbortReasonInvalidPDUParamValue},
		{name: "context without transfer syntax", in: rqWith(appCtx, pc(abstract)), reason: AbortReasonInvalidPDUParamValue},
		{name: "context with two abstract syntaxes", in: rqWith(appCtx, pc(abstract, abstract, ts)), reason: AbortReasonUnexpectedPDUParam},
		{name: "unknown sub-item in a context", in: rqWith(appCtx, pc(abstract, ts, item(0x41))), reason: AbortReasonUnrecognizedPDUParam},
		{name: "AC context item in an RQ", in: rqWith(appCtx, item(0x21, 1, 0, 0, 0)), reason: AbortReasonUnexpectedPDUParam},
		{name: "item length past the PDU", in: rqWith(appCtx, pc(abstract, ts), []byte{0x50, 0, 0, 9, 0x51}), reason: AbortReasonInvalidPDUParamValue},
		{name: "maximum length sub-item of 2 bytes", in: rqWith(appCtx, pc(abstract, ts), item(0x50, item(0x51, 0, 1)...)), reason: AbortReasonInvalidPDUParamValue},
		{name: "role selection with a short UID length", in: rqWith(appCtx, pc(abstract, ts), item(0x50, item(0x54, 0, 9, '1', 1, 0)...)), reason: AbortReasonInvalidPDUParamValue},
		{name: "unknown item type is ignored", in: rqWith(appCtx, item(0x77, 1, 2), pc(abstract, ts)), check: func(p PDU) string {
			if rq := p.(*AssociateRQ); rq.CallingAETitle != "CALLING" || len(rq.PresentationContexts) != 1 || rq.UserInfo.MaxPDULength != 0 {
				return "unexpected decoding"
			}
			return ""
		}},
		{name: "UIDs padded with NUL", in: rqWith(item(0x10, append([]byte(ApplicationContextName), 0)...), pc(item(0x30, append([]byte(VerificationSOPClass), 0)...), ts)), check: func(p PDU) string {
			rq := p.(*AssociateRQ)
			if rq.ApplicationContext != ApplicationContextName || rq.PresentationContexts[0].AbstractSyntax != VerificationSOPClass {
				return "padding kept"
			}
			return ""
		}},
		{name: "P-DATA-TF without PDV", in: []byte{4, 0, 0, 0, 0, 0}, reason: AbortReasonInvalidPDUParamValue},
		{name: "PDV item length 1", in: []byte{4, 0, 0, 0, 0, 6, 0, 0, 0, 1, 1, 3}, reason: AbortReasonInvalidPDUParamValue},
		{name: "PDV item header cut", in: []byte{4, 0, 0, 0, 0, 4, 0, 0, 0, 2}, reason: AbortReasonInvalidPDUParamValue},
		{name: "reserved bits in the control header", in: []byte{4, 0, 0, 0, 0, 6, 0, 0, 0, 2, 1, 0x07}, reason: AbortReasonInvalidPDUParamValue},
		{name: "A-ABORT shorter than 4 bytes", in: []byte{7, 0, 0, 0, 0, 2, 0, 0}, reason: AbortReasonInvalidPDUParamValue},
		{name: "A-RELEASE-RQ shorter than 4 bytes", in: []byte{5, 0, 0, 0, 0, 0}, reason: AbortReasonInvalidPDUParamValue},
		{name: "A-ASSOCIATE-RJ shorter than 4 bytes", in: []byte{3, 0, 0, 0, 0, 1, 0}, reason: AbortReasonInvalidPDUParamValue},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			max := tc.max
			if max == 0 {
				max = 1 << 20
			}
			p, err := ReadPDU(bytes.NewReader(tc.in), max)
			var pduErr *PDUError
			var tooLarge *PDUTooLargeError
			switch {
			case tc.check != nil:
				if err != nil {
					t.Fatalf("error %v, want the PDU accepted", err)
				}
				if msg := tc.check(p); msg != "" {
					t.Errorf("%s: %#v", msg, p)
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("error %v, want %v", err, tc.wantErr)
				}
			case tc.tooLarge:
				if !errors.As(err, &tooLarge) {
					t.Errorf("error %v, want *PDUTooLargeError", err)
				}
			default:
				if !errors.As(err, &pduErr) {
					t.Fatalf("error %v (PDU %#v), want *PDUError", err, p)
				}
				if pduErr.Reason != tc.reason {
					t.Errorf("reason %s, want %s (%v)", pduErr.Reason, tc.reason, err)
				}
			}
		})
	}
}

// TestAETitleBytes: AE titles are padded to 16 bytes, not 16 characters, whatever bytes a peer
// put in them (found by FuzzReadPDU: a title with a 2-byte UTF-8 character shifted every item).
func TestAETitleBytes(t *testing.T) {
	t.Parallel()
	rq := verificationRQ()
	rq.CalledAETitle, rq.CallingAETitle = "STATIONм", "\xff\xfeAB"
	b := mustEncodePDU(t, rq)
	got, err := ReadPDU(bytes.NewReader(b), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rq) {
		t.Errorf("round trip:\n got %#v\nwant %#v", got, rq)
	}
}

func TestEncodePDUErrors(t *testing.T) {
	t.Parallel()
	tests := map[string]PDU{
		"AE title over 16 characters": &AssociateRQ{CalledAETitle: strings.Repeat("A", 17), ApplicationContext: ApplicationContextName},
		"UID over 65535 bytes":        &AssociateRQ{ApplicationContext: strings.Repeat("1", 70000)},
		"P-DATA-TF without PDV":       &PDataTF{},
	}
	for name, p := range tests {
		if _, err := EncodePDU(p); err == nil {
			t.Errorf("%s: encoded without error", name)
		}
	}
}

func TestAssociateRJDescription(t *testing.T) {
	t.Parallel()
	rj := AssociateRJ{RejectPermanent, SourceServiceUser, ReasonCalledAETitleNotRecognized}
	if got := rj.Description(); got != "rejected-permanent, source 1, called-AE-title-not-recognized" {
		t.Errorf("Description() = %q", got)
	}
}
