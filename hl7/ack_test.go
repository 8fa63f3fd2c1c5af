package hl7

import (
	"strings"
	"testing"
	"time"
)

func TestBuildACK(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 27, 8, 30, 5, 0, time.UTC)
	const (
		in23          = `MSH|^~\&|RIS|STMARYS|FERRY|FERRY|20261127083000||ORM^O01|MSG0001|P|2.3`
		in23Enhanced  = `MSH|^~\&|RIS|STMARYS|FERRY|FERRY|20261127083000||ORM^O01|MSG0001|P|2.3|||AL|NE`
		in251         = `MSH|^~\&|EHR|STMARYS|FERRY|FERRY|20261127083000||OMI^O23^OMI_O23|MSG0002|T|2.5.1`
		in251Enhanced = `MSH|^~\&|EHR|STMARYS|FERRY|FERRY|20261127083000||OMI^O23^OMI_O23|MSG0002|P|2.5.1|||AL|NE`
	)
	pid3 := ErrorDetail{Segment: "PID", Sequence: 1, Field: 3, Code: CodeRequiredFieldMissing, Text: "PID-3 patient identifier list is required"}
	store := ErrorDetail{Code: CodeApplicationInternalError, Text: "message could not be stored; please resend"}
	cases := []struct {
		name string
		in   string
		opt  ACKOptions
		want string
	}{
		{
			name: "v2.3 original accept",
			in:   in23,
			opt:  ACKOptions{Outcome: Accept, ControlID: "ACK1", Time: at},
			want: `MSH|^~\&|FERRY|FERRY|RIS|STMARYS|20261127083005+0000||ACK^O01|ACK1|P|2.3` + "\r" +
				"MSA|AA|MSG0001\r",
		},
		{
			name: "v2.3 original error",
			in:   in23,
			opt:  ACKOptions{Outcome: Error, ControlID: "ACK2", Time: at, Errors: []ErrorDetail{pid3}},
			want: `MSH|^~\&|FERRY|FERRY|RIS|STMARYS|20261127083005+0000||ACK^O01|ACK2|P|2.3` + "\r" +
				"MSA|AE|MSG0001|PID-3 patient identifier list is required\r" +
				"ERR|PID^1^3^101&Required field missing&HL70357\r",
		},
		{
			name: "v2.3 enhanced commit accept",
			in:   in23Enhanced,
			opt:  ACKOptions{Outcome: Accept, ControlID: "ACK3", Time: at, SendingApplication: "FERRY1", SendingFacility: "TELERAD"},
			want: `MSH|^~\&|FERRY1|TELERAD|RIS|STMARYS|20261127083005+0000||ACK^O01|ACK3|P|2.3` + "\r" +
				"MSA|CA|MSG0001\r",
		},
		{
			name: "v2.3 enhanced commit reject",
			in:   in23Enhanced,
			opt:  ACKOptions{Outcome: Reject, ControlID: "ACK4", Time: at, Text: "rejected", Errors: []ErrorDetail{{Segment: "MSH", Field: 9, Code: CodeUnsupportedMessageType}}},
			want: `MSH|^~\&|FERRY|FERRY|RIS|STMARYS|20261127083005+0000||ACK^O01|ACK4|P|2.3` + "\r" +
				"MSA|CR|MSG0001|rejected\r" +
				"ERR|MSH^1^9^200&Unsupported message type&HL70357\r",
		},
		{
			name: "v2.5.1 original accept",
			in:   in251,
			opt:  ACKOptions{Outcome: Accept, ControlID: "ACK5", Time: at},
			want: `MSH|^~\&|FERRY|FERRY|EHR|STMARYS|20261127083005+0000||ACK^O23^ACK|ACK5|T|2.5.1` + "\r" +
				"MSA|AA|MSG0002\r",
		},
		{
			name: "v2.5.1 original reject with two errors",
			in:   in251,
			opt:  ACKOptions{Outcome: Reject, ControlID: "ACK6", Time: at, Errors: []ErrorDetail{pid3, {Segment: "OBR", Sequence: 2, Field: 4, Repetition: 1, Component: 2, Code: CodeTableValueNotFound, Severity: "W", Text: "unknown procedure code"}}},
			want: `MSH|^~\&|FERRY|FERRY|EHR|STMARYS|20261127083005+0000||ACK^O23^ACK|ACK6|T|2.5.1` + "\r" +
				"MSA|AR|MSG0002\r" +
				"ERR||PID^1^3|101^Required field missing^HL70357|E|||PID-3 patient identifier list is required|PID-3 patient identifier list is required\r" +
				"ERR||OBR^2^4^1^2|103^Table value not found^HL70357|W|||unknown procedure code|unknown procedure code\r",
		},
		{
			name: "v2.5.1 enhanced commit accept",
			in:   in251Enhanced,
			opt:  ACKOptions{Outcome: Accept, ControlID: "ACK7", Time: at},
			want: `MSH|^~\&|FERRY|FERRY|EHR|STMARYS|20261127083005+0000||ACK^O23^ACK|ACK7|P|2.5.1` + "\r" +
				"MSA|CA|MSG0002\r",
		},
		{
			name: "v2.5.1 enhanced commit error without location",
			in:   in251Enhanced,
			opt:  ACKOptions{Outcome: Error, ControlID: "ACK8", Time: at, Errors: []ErrorDetail{store}},
			want: `MSH|^~\&|FERRY|FERRY|EHR|STMARYS|20261127083005+0000||ACK^O23^ACK|ACK8|P|2.5.1` + "\r" +
				"MSA|CE|MSG0002\r" +
				"ERR|||207^Application internal error^HL70357|E|||message could not be stored; please resend|message could not be stored; please resend\r",
		},
		{
			name: "text with delimiters is escaped",
			in:   in251,
			opt:  ACKOptions{Outcome: Error, ControlID: "ACK9", Time: at, Errors: []ErrorDetail{{Segment: "PID", Field: 5, Code: CodeDataType, Text: "want family^given"}}},
			want: `MSH|^~\&|FERRY|FERRY|EHR|STMARYS|20261127083005+0000||ACK^O23^ACK|ACK9|T|2.5.1` + "\r" +
				"MSA|AE|MSG0002\r" +
				`ERR||PID^1^5|102^Data type error^HL70357|E|||want family\S\given|want family\S\given` + "\r",
		},
		{
			name: "v2.1 has no trigger in MSH-9",
			in:   `MSH|^~\&|LAB|H|FERRY|FERRY|19990101||ORU|C21|P|2.1`,
			opt:  ACKOptions{Outcome: Accept, ControlID: "A21", Time: at},
			want: `MSH|^~\&|FERRY|FERRY|LAB|H|20261127083005+0000||ACK|A21|P|2.1` + "\r" + "MSA|AA|C21\r",
		},
		{
			name: "v2.3.1 adds the message structure",
			in:   `MSH|^~\&|LAB|H|FERRY|FERRY|19990101||ORU^R01|C231|P|2.3.1`,
			opt:  ACKOptions{Outcome: Accept, ControlID: "A231", Time: at},
			want: `MSH|^~\&|FERRY|FERRY|LAB|H|20261127083005+0000||ACK^R01^ACK|A231|P|2.3.1` + "\r" + "MSA|AA|C231\r",
		},
		{
			name: "custom delimiters, truncation character and charset are kept",
			in:   `MSH#$*@!%#LAB#H#FERRY#FERRY#2024##ORU$R01#C27#P#2.7######UNICODE UTF-8`,
			opt:  ACKOptions{Outcome: Error, ControlID: "A27", Time: at, Errors: []ErrorDetail{{Segment: "OBX", Field: 5, Code: CodeValueTooLong, Text: "too long: 100% over"}}},
			want: `MSH#$*@!%#FERRY#FERRY#LAB#H#20261127083005+0000##ACK$R01$ACK#A27#P#2.7######UNICODE UTF-8` + "\r" +
				"MSA#AE#C27\r" +
				`ERR##OBX$1$5#104$Value too long$HL70357#E###too long: 100@P@ over#too long: 100@P@ over` + "\r",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := mustParse(t, []byte(tc.in+"\r")).Header()
			got := string(BuildACK(h, tc.opt))
			if got != tc.want {
				t.Errorf("BuildACK:\n got %q\nwant %q", got, tc.want)
			}
			m := mustParse(t, []byte(got))
			if m.Value("MSA-2") != h.ControlID || m.Value("MSA-1") != AckCode(h, tc.opt.Outcome) {
				t.Errorf("ACK reads back MSA-1 %q MSA-2 %q", m.Value("MSA-1"), m.Value("MSA-2"))
			}
		})
	}
}

func TestBuildACKUnusableHeader(t *testing.T) {
	t.Parallel()
	// No MSH at all: an ACK must still be built, in the v2.5 form with default delimiters.
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("", -5*3600))
	got := string(BuildACK(Header{}, ACKOptions{Outcome: Reject, ControlID: "X", Time: at,
		Errors: []ErrorDetail{{Segment: "MSH", Sequence: 1, Code: CodeSegmentSequence, Text: "empty message: no MSH segment"}}}))
	want := `MSH|^~\&|FERRY|FERRY|||20260102030405-0500||ACK^^ACK|X|P|2.5.1` + "\r" +
		"MSA|AR\r" +
		"ERR||MSH^1|100^Segment sequence error^HL70357|E|||empty message: no MSH segment|empty message: no MSH segment\r"
	if got != want {
		t.Errorf("BuildACK:\n got %q\nwant %q", got, want)
	}
	if _, err := Parse([]byte(got)); err != nil {
		t.Errorf("ACK does not parse: %v", err)
	}
	// Inbound delimiters that could not be used (repeated) fall back to the defaults.
	bad := Header{Delimiters: Delimiters{Field: '|', Component: '|'}, ControlID: "C", Version: "2.4"}
	if got := string(BuildACK(bad, ACKOptions{ControlID: "Y", Time: at})); !strings.HasPrefix(got, `MSH|^~\&|`) {
		t.Errorf("BuildACK with unusable delimiters: %q", got)
	}
}

func TestBuildACKLatin1(t *testing.T) {
	t.Parallel()
	h := mustParse(t, msg("MSH|^~\\&|K\xD6LN|H|FERRY|FERRY|2024||ADT^A01|C1|P|2.5||||||8859/1")).Header()
	if h.SendingApplication != "KÖLN" {
		t.Fatalf("SendingApplication = %q", h.SendingApplication)
	}
	got := BuildACK(h, ACKOptions{ControlID: "A", Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Text: "Größe"})
	want := "MSH|^~\\&|FERRY|FERRY|K\xD6LN|H|20260101000000+0000||ACK^A01^ACK|A|P|2.5||||||8859/1\rMSA|AA|C1|Gr\xF6\xDFe\r"
	if string(got) != want {
		t.Errorf("BuildACK:\n got %q\nwant %q", got, want)
	}
}

func TestAckCode(t *testing.T) {
	t.Parallel()
	orig, enh := Header{}, Header{AcceptAckType: "AL"}
	for _, tc := range []struct {
		h    Header
		o    Outcome
		want string
	}{{orig, Accept, "AA"}, {orig, Error, "AE"}, {orig, Reject, "AR"}, {enh, Accept, "CA"}, {enh, Error, "CE"}, {enh, Reject, "CR"}, {Header{ApplicationAckType: "NE"}, Accept, "CA"}} {
		if got := AckCode(tc.h, tc.o); got != tc.want {
			t.Errorf("AckCode(%+v, %d) = %s, want %s", tc.h, tc.o, got, tc.want)
		}
	}
	if CodeDuplicateKey.Text() != "Duplicate key identifier" || ErrorCode(999).Text() != "" || CodeAccepted.Text() != "Message accepted" {
		t.Error("ErrorCode.Text wrong")
	}
}
