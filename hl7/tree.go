package hl7

import (
	"io"
	"strconv"
	"unicode/utf8"
)

// WriteTree writes the message as a tree for people (`ferry inspect`): a line per segment, then
// one line per valued leaf, indented, with the path that reads it and its decoded value:
//
//	PID
//	  PID-1  1
//	  PID-3[1].1  12345
//	  PID-3[1].4.1  HOSP
//	  PID-5[1].1  DOE
//	  PID-5[1].2  JOHN
//	  PID-8  M
//
// A field without delimiters is one line (PID-8); otherwise each non-empty repetition, component
// and subcomponent gets its own line, as deep as it is divided. Empty values are left out. Every
// path printed reads back, with Get, the value printed; control characters in values are shown
// escaped (\n, \r, \t, \xHH), as are bytes that are not UTF-8.
func (m *Message) WriteTree(w io.Writer) error {
	b := make([]byte, 0, 2*len(m.text)+64)
	occ := make(map[uint32]int, 16)
	d := &m.delims
	for si := range m.segs {
		g := &m.segs[si]
		occ[g.key]++
		p := Path{Segment: m.text[g.start : g.start+3], SegmentIndex: occ[g.key]}
		b = append(b, p.String()...)
		b = append(b, '\n')
		for f, n := 1, g.numFields(); f <= n; f++ {
			e := m.field(g, f)
			if e.raw == "" {
				continue
			}
			p.Field, p.Repetition, p.Component, p.Subcomponent = f, 0, 0, 0
			if e.literal || !hasAny(e.raw, d.Repetition, d.Component, d.Subcomponent) {
				b = treeLine(b, p, e.value())
				continue
			}
			e.children(d.Repetition, func(r int, re element) bool {
				if re.raw == "" {
					return true
				}
				p.Repetition, p.Component, p.Subcomponent = r, 0, 0
				if !hasAny(re.raw, 0, d.Component, d.Subcomponent) {
					b = treeLine(b, p, re.value())
					return true
				}
				re.children(d.Component, func(c int, ce element) bool {
					if ce.raw == "" {
						return true
					}
					p.Component, p.Subcomponent = c, 0
					if !hasAny(ce.raw, 0, 0, d.Subcomponent) {
						b = treeLine(b, p, ce.value())
						return true
					}
					ce.children(d.Subcomponent, func(s int, se element) bool {
						if se.raw != "" {
							p.Subcomponent = s
							b = treeLine(b, p, se.value())
						}
						return true
					})
					return true
				})
				return true
			})
		}
	}
	_, err := w.Write(b)
	return err
}

// treeLine appends "  <path>  <value>\n". A repetition is written even when it is the first
// ([1]), so that the lines of one field line up: PID-5[1].1, PID-5[1].2.
func treeLine(b []byte, p Path, v string) []byte {
	b = append(b, "  "...)
	b = append(b, p.Segment...)
	if p.SegmentIndex > 1 {
		b = append(b, '[')
		b = strconv.AppendInt(b, int64(p.SegmentIndex), 10)
		b = append(b, ']')
	}
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(p.Field), 10)
	if p.Repetition > 0 {
		b = append(b, '[')
		b = strconv.AppendInt(b, int64(p.Repetition), 10)
		b = append(b, ']')
	}
	if p.Component > 0 {
		b = append(b, '.')
		b = strconv.AppendInt(b, int64(p.Component), 10)
		if p.Subcomponent > 0 {
			b = append(b, '.')
			b = strconv.AppendInt(b, int64(p.Subcomponent), 10)
		}
	}
	b = append(b, "  "...)
	b = appendDisplay(b, v)
	return append(b, '\n')
}

// hasAny reports whether s contains any of the non-zero bytes x, y, z.
func hasAny(s string, x, y, z byte) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != 0 && (c == x || c == y || c == z) {
			return true
		}
	}
	return false
}

const (
	hexDigits = "0123456789ABCDEF"
	lowerHex  = "0123456789abcdef"
)

// appendDisplay appends v with control characters and invalid UTF-8 escaped, so that one value
// stays on one line.
func appendDisplay(b []byte, v string) []byte {
	for i := 0; i < len(v); {
		c := v[i]
		if c >= 0x20 && c < 0x7F {
			b = append(b, c)
			i++
			continue
		}
		switch c {
		case '\n':
			b = append(b, `\n`...)
			i++
			continue
		case '\r':
			b = append(b, `\r`...)
			i++
			continue
		case '\t':
			b = append(b, `\t`...)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xF])
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(v[i:])
		if r == utf8.RuneError && n == 1 || r >= 0x80 && r < 0xA0 {
			for _, x := range []byte(v[i : i+n]) {
				b = append(b, '\\', 'x', hexDigits[x>>4], hexDigits[x&0xF])
			}
		} else {
			b = append(b, v[i:i+n]...)
		}
		i += n
	}
	return b
}

// MarshalJSON returns the message as a JSON tree for the analyst (`ferry inspect --json`, the
// HTTP API), documented in docs/hl7-paths.md:
//
//	{"encoding": "UTF-8", "delimiters": "|^~\\&",
//	 "header": {"sendingApplication": "…", …, "charset": ""},
//	 "segments": [{"name": "PID", "fields": ["1", "", [["12345", "", "", ["HOSP", "1.2.3", "ISO"]]], …]}]}
//
// fields[i] is field i+1 (for MSH, fields[0] is MSH-1, the separator). A field is a string when
// it has no delimiters; otherwise an array of repetitions, each an array of components, each a
// string or, when it has subcomponents, an array of strings. Values are decoded (escape sequences
// resolved); bytes that are not UTF-8 become U+FFFD.
func (m *Message) MarshalJSON() ([]byte, error) {
	d := &m.delims
	h := m.Header()
	b := make([]byte, 0, 2*len(m.text)+256)
	b = append(b, `{"encoding":`...)
	b = appendJSONString(b, m.cs.name)
	b = append(b, `,"delimiters":`...)
	b = appendJSONString(b, d.String())
	b = append(b, `,"header":{`...)
	for i, kv := range [...][2]string{
		{"sendingApplication", h.SendingApplication}, {"sendingFacility", h.SendingFacility},
		{"receivingApplication", h.ReceivingApplication}, {"receivingFacility", h.ReceivingFacility},
		{"messageType", h.MessageType}, {"messageCode", h.MessageCode}, {"triggerEvent", h.TriggerEvent},
		{"messageStructure", h.MessageStructure}, {"controlID", h.ControlID}, {"processingID", h.ProcessingID},
		{"version", h.Version}, {"acceptAckType", h.AcceptAckType}, {"applicationAckType", h.ApplicationAckType},
		{"charset", h.Charset},
	} {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, kv[0])
		b = append(b, ':')
		b = appendJSONString(b, kv[1])
	}
	b = append(b, `},"segments":[`...)
	for si := range m.segs {
		g := &m.segs[si]
		if si > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendJSONString(b, m.text[g.start:g.start+3])
		b = append(b, `,"fields":[`...)
		for f, n := 1, g.numFields(); f <= n; f++ {
			if f > 1 {
				b = append(b, ',')
			}
			e := m.field(g, f)
			if e.literal || !hasAny(e.raw, d.Repetition, d.Component, d.Subcomponent) {
				b = appendJSONString(b, e.value())
				continue
			}
			b = append(b, '[')
			e.children(d.Repetition, func(r int, re element) bool {
				if r > 1 {
					b = append(b, ',')
				}
				b = append(b, '[')
				re.children(d.Component, func(c int, ce element) bool {
					if c > 1 {
						b = append(b, ',')
					}
					if !hasAny(ce.raw, 0, 0, d.Subcomponent) {
						b = appendJSONString(b, ce.value())
						return true
					}
					b = append(b, '[')
					ce.children(d.Subcomponent, func(s int, se element) bool {
						if s > 1 {
							b = append(b, ',')
						}
						b = appendJSONString(b, se.value())
						return true
					})
					b = append(b, ']')
					return true
				})
				b = append(b, ']')
				return true
			})
			b = append(b, ']')
		}
		b = append(b, "]}"...)
	}
	b = append(b, "]}"...)
	return b, nil
}

// appendJSONString appends s as a JSON string, invalid UTF-8 replaced by U+FFFD as encoding/json
// does. HTML characters are left alone: encoding/json escapes them when it embeds the result.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, `\n`...)
			case c == '\r':
				b = append(b, `\r`...)
			case c == '\t':
				b = append(b, `\t`...)
			case c < 0x20:
				b = append(b, `\u00`...)
				b = append(b, lowerHex[c>>4], lowerHex[c&0xF])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, `\u202`...)
			b = append(b, hexDigits[r&0xF])
		default:
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}
