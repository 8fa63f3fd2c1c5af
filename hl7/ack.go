package hl7

import (
	"strconv"
	"time"
)

// ErrorCode is an HL7 message error condition code (table 0357), carried in ERR-3 (v2.5+) or
// ERR-1.4 (v2.1–v2.4).
type ErrorCode int

// Table 0357 codes (HL7 v2.5.1 §2.15.5; 104 from v2.7).
const (
	CodeAccepted                 ErrorCode = 0
	CodeSegmentSequence          ErrorCode = 100
	CodeRequiredFieldMissing     ErrorCode = 101
	CodeDataType                 ErrorCode = 102
	CodeTableValueNotFound       ErrorCode = 103
	CodeValueTooLong             ErrorCode = 104
	CodeUnsupportedMessageType   ErrorCode = 200
	CodeUnsupportedEventCode     ErrorCode = 201
	CodeUnsupportedProcessingID  ErrorCode = 202
	CodeUnsupportedVersionID     ErrorCode = 203
	CodeUnknownKeyIdentifier     ErrorCode = 204
	CodeDuplicateKey             ErrorCode = 205
	CodeApplicationRecordLocked  ErrorCode = 206
	CodeApplicationInternalError ErrorCode = 207
)

// Text returns the code's display text in table 0357, or "" for a code not in it.
func (c ErrorCode) Text() string {
	switch c {
	case CodeAccepted:
		return "Message accepted"
	case CodeSegmentSequence:
		return "Segment sequence error"
	case CodeRequiredFieldMissing:
		return "Required field missing"
	case CodeDataType:
		return "Data type error"
	case CodeTableValueNotFound:
		return "Table value not found"
	case CodeValueTooLong:
		return "Value too long"
	case CodeUnsupportedMessageType:
		return "Unsupported message type"
	case CodeUnsupportedEventCode:
		return "Unsupported event code"
	case CodeUnsupportedProcessingID:
		return "Unsupported processing id"
	case CodeUnsupportedVersionID:
		return "Unsupported version id"
	case CodeUnknownKeyIdentifier:
		return "Unknown key identifier"
	case CodeDuplicateKey:
		return "Duplicate key identifier"
	case CodeApplicationRecordLocked:
		return "Application record locked"
	case CodeApplicationInternalError:
		return "Application internal error"
	}
	return ""
}

// ErrorDetail is one ERR segment: where the error is and what it is. Text must be safe to log:
// it describes the problem without quoting message content.
type ErrorDetail struct {
	Segment  string // segment ID, e.g. "PID"; "" when the error has no location
	Sequence int    // occurrence of the segment, 1 for the first (0 means 1 when Segment is set)
	Field    int    // field position, 0 for none
	// Repetition, Component and Subcomponent narrow the location (ERR-2, v2.5+); 0 for none.
	Repetition, Component, Subcomponent int
	Code                                ErrorCode
	Severity                            string // "E" error (the default), "W" warning, "I" information (table 0516)
	Text                                string // diagnostic and user message (ERR-7, ERR-8)
}

// Outcome is what a receiver decided about a message.
type Outcome int

const (
	Accept Outcome = iota // processed (AA) or committed (CA)
	Error                 // an error in content or processing; resending may help (AE, CE)
	Reject                // not acceptable at all: header, type, version (AR, CR)
)

// AckCode returns MSA-1 for the outcome in the header's acknowledgment mode: AA, AE, AR in the
// original mode; CA, CE, CR in the enhanced mode (HL7 v2.5.1 §2.9.2, §2.9.3, table 0008).
func AckCode(h Header, o Outcome) string {
	codes := [...]string{"AA", "AE", "AR"}
	if h.Enhanced() {
		codes = [...]string{"CA", "CE", "CR"}
	}
	if o < Accept || o > Reject {
		o = Error
	}
	return codes[o]
}

// ACKOptions says what an ACK built by BuildACK answers.
type ACKOptions struct {
	Outcome Outcome
	// Text is MSA-3, the text message. For v2.1–v2.4, whose ERR segment has no text, an empty Text
	// is filled from the first error's Text so the sender still learns why.
	Text string
	// Errors become one ERR segment each, in the inbound version's form.
	Errors []ErrorDetail
	// ControlID is the ACK's own MSH-10; callers must make it unique.
	ControlID string
	// Time is MSH-7; the zero Time means now.
	Time time.Time
	// SendingApplication and SendingFacility are Ferry's identity, MSH-3 and MSH-4 of the ACK;
	// empty means "FERRY".
	SendingApplication, SendingFacility string
}

// BuildACK builds the acknowledgment of an inbound message from its header (HL7 v2.5.1 §2.9,
// message ACK, segments MSH MSA [ERR…]), terminated by CR:
//
//   - MSH: the inbound delimiters (defaults when they are unusable), Ferry as sender (MSH-3/4),
//     the inbound sender as receiver (MSH-5/6), MSH-7 from opt.Time, MSH-9 "ACK" (v2.1),
//     "ACK^<trigger>" (v2.2–v2.3) or "ACK^<trigger>^ACK" (v2.3.1 on, where MSH-9.3 exists),
//     MSH-10 opt.ControlID, MSH-11 echoed (default "P"), MSH-12 the inbound version (2.5.1 when
//     it is empty), MSH-18 the inbound charset, the ACK encoded in it.
//   - MSA: MSA-1 AckCode, MSA-2 the inbound MSH-10, MSA-3 opt.Text.
//   - ERR: for v2.1–v2.4, ERR-1 (ELD: segment^sequence^field^code&text&HL70357); for v2.5 and
//     later, or a version that cannot be read, ERR-2 (ERL location), ERR-3 (CWE code^text^HL70357),
//     ERR-4 severity, ERR-7 diagnostic and ERR-8 user message, both the error's Text.
func BuildACK(in Header, opt ACKOptions) []byte {
	d := in.Delimiters
	if _, pe := parseDelimiters("MSH" + d.String()); pe != nil {
		d = DefaultDelimiters
	}
	sp := d.specials()
	w := ackWriter{d: &d, sp: &sp, b: make([]byte, 0, 256)}

	version := in.Version
	if version == "" {
		version = "2.5.1"
	}
	major, minor, patch, known := parseVersion(version)
	// atLeast compares with v2.<mi>.<pa>; a version that is not 2.x counts as recent.
	atLeast := func(mi, pa int) bool {
		return !known || major != 2 || minor > mi || (minor == mi && patch >= pa)
	}
	app, fac := opt.SendingApplication, opt.SendingFacility
	if app == "" {
		app = "FERRY"
	}
	if fac == "" {
		fac = "FERRY"
	}
	t := opt.Time
	if t.IsZero() {
		t = time.Now()
	}
	proc := in.ProcessingID
	if proc == "" {
		proc = "P"
	}

	// MSH
	w.begin("MSH")
	w.sep()
	w.raw(d.encodingChars())
	w.field(app)
	w.field(fac)
	w.field(in.SendingApplication)
	w.field(in.SendingFacility)
	w.sep()
	w.raw(t.Format("20060102150405-0700"))
	w.sep() // MSH-8 security
	w.sep()
	w.raw("ACK")
	switch {
	case atLeast(3, 1):
		w.component(in.TriggerEvent)
		w.component("ACK")
	case atLeast(2, 0) && in.TriggerEvent != "":
		w.component(in.TriggerEvent)
	}
	w.field(opt.ControlID)
	w.field(proc)
	w.field(version)
	if in.Charset != "" {
		for range 5 { // MSH-13 … MSH-17
			w.sep()
		}
		w.field(in.Charset)
	}
	w.raw("\r")

	// MSA
	text := opt.Text
	old := !atLeast(5, 0)
	if text == "" && old && len(opt.Errors) > 0 {
		text = opt.Errors[0].Text
	}
	w.begin("MSA")
	w.field(AckCode(in, opt.Outcome))
	w.field(in.ControlID)
	if text != "" {
		w.field(text)
	}
	w.trimTrailing()
	w.raw("\r")

	// ERR
	for _, e := range opt.Errors {
		seq := e.Sequence
		if seq == 0 && e.Segment != "" {
			seq = 1
		}
		w.begin("ERR")
		w.sep()
		if old {
			// ERR-1 ELD (v2.1–v2.4): segment ID ^ sequence ^ field position ^ code (CE: code&text&system).
			w.text(e.Segment)
			w.component(number0(seq))
			w.component(number0(e.Field))
			if d.Component != 0 {
				w.b = append(w.b, d.Component)
				w.raw(strconv.Itoa(int(e.Code)))
				w.subcomponent(e.Code.Text())
				w.subcomponent("HL70357")
			}
			w.trimTrailing()
			w.raw("\r")
			continue
		}
		// ERR-1 is empty (deprecated in v2.5). ERR-2 ERL: segment ^ sequence ^ field ^ repetition ^
		// component ^ subcomponent, given only with a segment (ERL.1 and ERL.2 are required).
		w.sep()
		if e.Segment != "" {
			w.text(e.Segment)
			for _, n := range [...]int{seq, e.Field, e.Repetition, e.Component, e.Subcomponent} {
				w.component(number0(n))
			}
			w.trimTrailing()
		}
		// ERR-3 CWE: code ^ text ^ coding system.
		w.sep()
		w.raw(strconv.Itoa(int(e.Code)))
		w.component(e.Code.Text())
		w.component("HL70357")
		w.trimTrailing()
		sev := e.Severity
		if sev == "" {
			sev = "E"
		}
		w.field(sev)
		w.sep() // ERR-5 application error code
		w.sep() // ERR-6 application error parameter
		w.field(e.Text)
		w.field(e.Text)
		w.trimTrailing()
		w.raw("\r")
	}

	if cs := lookupCharset(in.Charset); cs != nil && cs.kind != kindUTF8 {
		return cs.encode(make([]byte, 0, len(w.b)), string(w.b))
	}
	return w.b
}

// ackWriter appends escaped fields to an ACK.
type ackWriter struct {
	d     *Delimiters
	sp    *specials
	b     []byte
	start int // where the current segment begins in b
}

func (w *ackWriter) raw(s string) { w.b = append(w.b, s...) }

// begin starts a segment.
func (w *ackWriter) begin(id string) { w.start = len(w.b); w.raw(id) }
func (w *ackWriter) sep()            { w.b = append(w.b, w.d.Field) }

// text appends s escaped.
func (w *ackWriter) text(s string) {
	w.b, _ = w.d.appendEscaped(w.b, s, w.sp)
}

func (w *ackWriter) field(s string) { w.sep(); w.text(s) }

// component appends a component separator and s; without a component separator, nothing.
func (w *ackWriter) component(s string) {
	if w.d.Component != 0 {
		w.b = append(w.b, w.d.Component)
		w.text(s)
	}
}

func (w *ackWriter) subcomponent(s string) {
	if w.d.Subcomponent != 0 {
		w.b = append(w.b, w.d.Subcomponent)
		w.text(s)
	}
}

// trimTrailing drops trailing field, component and subcomponent separators of the current
// segment, which carry nothing.
func (w *ackWriter) trimTrailing() {
	for len(w.b) > w.start+3 {
		c := w.b[len(w.b)-1]
		if c != w.d.Field && c != w.d.Component && c != w.d.Subcomponent {
			return
		}
		w.b = w.b[:len(w.b)-1]
	}
}

func number0(n int) string {
	if n <= 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// parseVersion reads an MSH-12 version ID like "2.3.1" or "2.5"; known is false when it is not
// of the form digits.digits[.digits].
func parseVersion(v string) (major, minor, patch int, known bool) {
	nums := [3]int{}
	part, digits := 0, 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= '0' && c <= '9':
			if digits++; digits > 4 {
				return 0, 0, 0, false
			}
			nums[part] = nums[part]*10 + int(c-'0')
		case c == '.' && digits > 0 && part < 2:
			part++
			digits = 0
		default:
			return 0, 0, 0, false
		}
	}
	if digits == 0 || part == 0 {
		return 0, 0, 0, false
	}
	return nums[0], nums[1], nums[2], true
}
