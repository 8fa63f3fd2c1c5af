package hl7

import (
	"bytes"
	"errors"
	"strings"
)

// Header is what a message's MSH segment says about it: enough to route it, deduplicate it and
// answer it (HL7 v2.5.1 §2.15.9). Values are decoded; each names its MSH field.
type Header struct {
	Delimiters Delimiters
	// First component (HD.1, namespace ID) of MSH-3, MSH-4, MSH-5 and MSH-6.
	SendingApplication, SendingFacility, ReceivingApplication, ReceivingFacility string
	// MessageType is MSH-9's components joined with "^" as sent, e.g. "ORM^O01" or
	// "ADT^A04^ADT_A01", whatever the message's component separator.
	MessageType string
	// MSH-9.1 message code, MSH-9.2 trigger event, MSH-9.3 message structure.
	MessageCode, TriggerEvent, MessageStructure string
	ControlID                                   string // MSH-10
	ProcessingID                                string // MSH-11.1
	Version                                     string // MSH-12.1
	AcceptAckType, ApplicationAckType           string // MSH-15, MSH-16
	Charset                                     string // MSH-18, first repetition
}

// Enhanced reports enhanced acknowledgment mode: MSH-15 or MSH-16 valued (HL7 v2.5.1 §2.9.3).
// Otherwise the original mode applies (§2.9.2).
func (h Header) Enhanced() bool { return h.AcceptAckType != "" || h.ApplicationAckType != "" }

// Header returns what the message's MSH segment says.
func (m *Message) Header() Header {
	if len(m.segs) == 0 {
		return Header{Delimiters: m.delims}
	}
	msh := &m.segs[0]
	d := &m.delims
	rep1 := func(f int) element { return m.field(msh, f).child(d.Repetition, 1) }
	comp1 := func(f int) string { return rep1(f).child(d.Component, 1).value() }
	h := Header{
		Delimiters:           m.delims,
		SendingApplication:   comp1(3),
		SendingFacility:      comp1(4),
		ReceivingApplication: comp1(5),
		ReceivingFacility:    comp1(6),
		ControlID:            rep1(10).value(),
		ProcessingID:         comp1(11),
		Version:              comp1(12),
		AcceptAckType:        rep1(15).value(),
		ApplicationAckType:   rep1(16).value(),
		Charset:              rep1(18).value(),
	}
	mt := rep1(9)
	h.MessageCode = mt.child(d.Component, 1).value()
	h.TriggerEvent = mt.child(d.Component, 2).value()
	h.MessageStructure = mt.child(d.Component, 3).value()
	switch {
	case d.Component == '^' && (!mt.esc || d.Escape == 0 || strings.IndexByte(mt.raw, d.Escape) < 0):
		h.MessageType = mt.raw
	case d.Component == 0:
		h.MessageType = mt.value()
	default:
		var b strings.Builder
		mt.children(d.Component, func(i int, c element) bool {
			if i > 1 {
				b.WriteByte('^')
			}
			b.WriteString(c.value())
			return true
		})
		h.MessageType = b.String()
	}
	return h
}

// ErrNoHeader is returned by ReadHeader when data holds no MSH segment.
var ErrNoHeader = errors.New("hl7: no MSH segment")

// ReadHeader reads the MSH segment of data best-effort, even where Parse fails — a truncated MSH,
// bad segments further on, garbage around it, a batch envelope — so that a negative ACK can still
// echo MSH-10. It reads the first line starting with MSH (after an optional byte-order mark and
// MLLP framing bytes), else the first "MSH" followed by a plausible field separator anywhere.
// Encoding characters that are invalid or repeated are ignored. It returns ErrNoHeader when there
// is no MSH, and an error when MSH-1 is unusable; the Header holds whatever could be read.
func ReadHeader(data []byte) (Header, error) {
	line := findHeaderLine(data)
	if line == nil {
		return Header{}, ErrNoHeader
	}
	if len(line) < 4 || !validDelimiter(line[3]) {
		return Header{}, &ParseError{Segment: "MSH", Sequence: 1, Field: 1, Position: 1,
			Code: CodeDataType, Reason: "field separator missing or invalid"}
	}
	d := Delimiters{Field: line[3]}
	enc := line[4:]
	if i := indexByteFrom(enc, 0, d.Field); i >= 0 {
		enc = enc[:i]
	}
	slots := [...]*byte{&d.Component, &d.Repetition, &d.Escape, &d.Subcomponent, &d.Truncation}
	used := []byte{d.Field}
	next := 0
	for _, c := range enc {
		if next == len(slots) {
			break
		}
		if validDelimiter(c) && indexByteFrom(used, 0, c) < 0 {
			*slots[next] = c
			used = append(used, c)
		}
		next++ // a bad character still takes its position: positions give the meaning
	}
	m := &Message{delims: d}
	text := string(line)
	msh18 := string(rawHeaderField(line, d.Field, 18, d.Repetition))
	ascii, _ := classify(line)
	m.cs = settleCharset(lookupCharset(msh18), msh18, !ascii, text)
	if m.cs.kind != kindUTF8 {
		text = string(m.cs.decode(nil, line))
	}
	if err := m.index(text); err != nil {
		return Header{Delimiters: d}, nil
	}
	return m.Header(), nil
}

// findHeaderLine returns the MSH line of data, or nil.
func findHeaderLine(data []byte) []byte {
	if len(data) >= 3 && string(data[:3]) == bom {
		data = data[3:]
	}
	rest := data
	for len(rest) > 0 {
		end := len(rest)
		for i, c := range rest {
			if c == '\r' || c == '\n' {
				end = i
				break
			}
		}
		line := rest[:end]
		for len(line) > 0 && (line[0] == 0x0B || line[0] == 0x1C || line[0] == ' ' || line[0] == '\t') {
			line = line[1:]
		}
		if len(line) >= 3 && string(line[:3]) == "MSH" {
			return line
		}
		if end == len(rest) {
			break
		}
		rest = rest[end+1:]
	}
	// "MSH" somewhere inside a line, as in "[SOM]MSH|^~\&|…" or after binary garbage.
	for off := 0; ; {
		i := bytes.Index(data[off:], []byte("MSH"))
		if i < 0 {
			return nil
		}
		i += off
		if i+3 < len(data) && validDelimiter(data[i+3]) {
			line := data[i:]
			for j, c := range line {
				if c == '\r' || c == '\n' {
					return line[:j]
				}
			}
			return line
		}
		off = i + 3
	}
}
