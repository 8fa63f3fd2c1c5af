package hl7

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrCannotSet is wrapped by the errors Set returns for a value or path it cannot write.
var ErrCannotSet = errors.New("cannot set")

// NewMessage returns a message holding only "MSH" and the delimiters d (MSH-1, MSH-2), to be filled
// with Set. A zero d means DefaultDelimiters. Its character set is UTF-8 until MSH-18 is set.
func NewMessage(d Delimiters) (*Message, error) {
	if d == (Delimiters{}) {
		d = DefaultDelimiters
	}
	enc := d.encodingChars()
	if _, pe := parseDelimiters("MSH" + string(d.Field) + enc); pe != nil || len(enc) == 0 {
		return nil, fmt.Errorf("creating message: delimiters %q: %w", d.String(), ErrCannotSet)
	}
	return Parse([]byte("MSH" + string(d.Field) + enc + "\r"))
}

// Set writes value at path (see ParsePath), escaping it (see Escape): the value is text,
// never structure — "DOE^JOHN" set at PID-5 is one component holding a caret. Set grows the
// message as needed: missing segments are appended at the end of the message, missing fields,
// repetitions, components and subcomponents are added with empty ones before them.
//
// Like GetPath, a path without a repetition means the first one, and a path without a component
// replaces the whole repetition. MSH-1 and MSH-2 cannot be set (the delimiters are fixed for the
// life of a Message). Setting MSH-18 to a known character set makes Bytes write in it.
func (m *Message) Set(path, value string) error {
	p, err := ParsePath(path)
	if err != nil {
		return err
	}
	return m.SetPath(p, value)
}

// SetPath is Set with a parsed path.
func (m *Message) SetPath(p Path, value string) error {
	if p.Field < 1 {
		return fmt.Errorf("setting %s: path names no field: %w", p, ErrCannotSet)
	}
	if !validSegmentID(p.Segment) {
		return fmt.Errorf("setting %s: invalid segment ID: %w", p, ErrCannotSet)
	}
	key := segKey(p.Segment)
	if key == keyMSH || key == keyFHS || key == keyBHS {
		if p.Field <= 2 {
			return fmt.Errorf("setting %s: the delimiters cannot be changed: %w", p, ErrCannotSet)
		}
		if key == keyMSH && max(p.SegmentIndex, 1) > 1 || key != keyMSH {
			return fmt.Errorf("setting %s: a message has one MSH and no batch headers: %w", p, ErrCannotSet)
		}
	}
	if key == keyBTS || key == keyFTS {
		return fmt.Errorf("setting %s: a message has no batch trailers: %w", p, ErrCannotSet)
	}
	if !m.cs.canEncode(value) {
		return fmt.Errorf("setting %s: value has characters that %s cannot represent: %w", p, m.cs.name, ErrCannotSet)
	}
	sp := m.delims.specials()
	raw, ok := m.delims.appendEscaped(make([]byte, 0, len(value)+8), value, &sp)
	if !ok {
		return fmt.Errorf("setting %s: value holds delimiters or line breaks but MSH-2 declares no escape character: %w", p, ErrCannotSet)
	}
	if err := m.setRaw(p, raw); err != nil {
		return fmt.Errorf("setting %s: %w", p, err)
	}
	if key == keyMSH && p.Field == 18 && max(p.Repetition, 1) == 1 && p.Component <= 1 && p.Subcomponent <= 1 {
		if cs := lookupCharset(value); cs != nil {
			m.cs = cs
		}
	}
	return nil
}

// AppendSegment appends an empty segment with this ID at the end of the message and returns its
// occurrence number, for paths like OBX[n]-5.
func (m *Message) AppendSegment(id string) (int, error) {
	if !validSegmentID(id) {
		return 0, fmt.Errorf("appending segment %q: want three capital letters or digits: %w", id, ErrCannotSet)
	}
	switch segKey(id) {
	case keyMSH, keyFHS, keyBHS, keyBTS, keyFTS:
		return 0, fmt.Errorf("appending segment %s: a message has one MSH and no batch segments: %w", id, ErrCannotSet)
	}
	if err := m.reindex(m.appendSegments(nil, id, 1)); err != nil {
		return 0, err
	}
	return m.count(segKey(id)), nil
}

// appendSegments returns the message text in canonical form with n empty segments id added.
func (m *Message) appendSegments(dst []byte, id string, n int) string {
	dst = m.appendCanonical(dst)
	for range n {
		dst = append(dst, id...)
		dst = append(dst, '\r')
	}
	return string(dst)
}

// appendCanonical appends the text's segments, each terminated by CR.
func (m *Message) appendCanonical(dst []byte) []byte {
	if m.canonical {
		return append(dst, m.text...)
	}
	for _, g := range m.segs {
		dst = append(dst, m.text[g.start:g.end]...)
		dst = append(dst, '\r')
	}
	return dst
}

// reindex replaces the text after a change; the raw bytes received no longer describe it.
func (m *Message) reindex(text string) error {
	m.raw = nil
	if err := m.index(text); err != nil {
		return fmt.Errorf("re-indexing changed message: %w", err)
	}
	return nil
}

// setRaw writes raw (already escaped) at p, growing the message as needed. It checks everything
// that can fail before changing anything.
func (m *Message) setRaw(p Path, raw []byte) error {
	d := &m.delims
	for _, lv := range [...]struct {
		n    int
		sep  byte
		name string
	}{{p.Repetition, d.Repetition, "repetition"}, {p.Component, d.Component, "component"}, {p.Subcomponent, d.Subcomponent, "subcomponent"}} {
		if lv.n > 1 && lv.sep == 0 {
			return fmt.Errorf("MSH-2 declares no %s separator: %w", lv.name, ErrCannotSet)
		}
	}
	si := m.findSegment(p.Segment, p.SegmentIndex)
	if si < 0 {
		missing := max(p.SegmentIndex, 1) - m.count(segKey(p.Segment))
		if err := m.reindex(m.appendSegments(make([]byte, 0, len(m.text)+4*missing+len(raw)+16), p.Segment, missing)); err != nil {
			return err
		}
		if si = m.findSegment(p.Segment, p.SegmentIndex); si < 0 {
			return fmt.Errorf("appending segment %s: %w", p.Segment, ErrCannotSet)
		}
	}
	g := m.segs[si]
	// The field's range; for MSH, field n starts after separator n-2 (the one at index 3 is MSH-1).
	var a, b, pad int
	f := p.Field
	if nf := g.numFields(); f > nf {
		a, b, pad = int(g.end), int(g.end), f-nf
	} else {
		k := f - 1
		if g.header {
			k = f - 2
		}
		a = int(m.seps[g.first+int32(k)]) + 1
		b = int(g.end)
		if k+1 < int(g.nsep) {
			b = int(m.seps[g.first+int32(k)+1])
		}
	}
	prefix := make([]byte, 0, pad+8)
	for range pad {
		prefix = append(prefix, d.Field)
	}
	// Within the field: repetition, then component, then subcomponent.
	levels := [...]struct {
		sep byte
		n   int
	}{{d.Repetition, max(p.Repetition, 1)}, {d.Component, p.Component}, {d.Subcomponent, p.Subcomponent}}
	grown := pad > 0 // once something is added, everything below it is new and empty
	for _, lv := range levels {
		if lv.n == 0 {
			break
		}
		if grown {
			for range lv.n - 1 {
				prefix = append(prefix, lv.sep)
			}
			continue
		}
		na, nb, missing := locate(m.text, a, b, lv.sep, lv.n)
		a, b = na, nb
		if missing > 0 {
			for range missing {
				prefix = append(prefix, lv.sep)
			}
			grown = true
		}
	}
	var sb strings.Builder
	sb.Grow(len(m.text) + len(prefix) + len(raw) + 1)
	sb.WriteString(m.text[:a])
	sb.Write(prefix)
	sb.Write(raw)
	sb.WriteString(m.text[b:])
	return m.reindex(sb.String())
}

// locate finds the n-th piece, split at sep, of text[a:b]. When there are fewer pieces it returns
// the end of the last one (an empty range at b) and how many separators must be added.
func locate(text string, a, b int, sep byte, n int) (pa, pb, missing int) {
	if sep == 0 {
		return a, b, 0 // n == 1 here
	}
	for i := 1; i < n; i++ {
		j := strings.IndexByte(text[a:b], sep)
		if j < 0 {
			return b, b, n - i
		}
		a += j + 1
	}
	if j := strings.IndexByte(text[a:b], sep); j >= 0 {
		return a, a + j, 0
	}
	return a, b, 0
}

// Bytes serializes the message: its segments, each terminated by CR (HL7 v2.5.1 §2.5.1), in the
// character set it was read from (Encoding). Parts not changed by Set are written exactly as they
// were received — escape sequences, trailing separators and all.
func (m *Message) Bytes() []byte {
	if m.raw != nil {
		return slices.Clone(m.raw)
	}
	if m.cs.kind == kindUTF8 {
		if m.canonical {
			return []byte(m.text)
		}
		return m.appendCanonical(make([]byte, 0, len(m.text)+1))
	}
	out := make([]byte, 0, len(m.text)+1)
	for _, g := range m.segs {
		out = m.cs.encode(out, m.text[g.start:g.end])
		out = append(out, '\r')
	}
	return out
}

// String returns the message text as UTF-8 with segments terminated by CR, for display and tests.
func (m *Message) String() string {
	if m.canonical {
		return m.text
	}
	return string(m.appendCanonical(make([]byte, 0, len(m.text)+1)))
}

// NormalizeSegmentEnds returns data framed the way Bytes frames a message, without parsing it:
// a leading UTF-8 byte-order mark dropped, LF and CRLF turned into CR, blank lines (empty or only
// spaces and tabs) removed, and the last segment terminated by a single CR. It returns data itself
// when nothing changes. Use it before sending a file's message over MLLP, or to compare a message
// with Bytes.
func NormalizeSegmentEnds(data []byte) []byte {
	if isCanonicalFraming(data) {
		return data
	}
	if len(data) >= 3 && string(data[:3]) == bom {
		data = data[3:]
	}
	out := make([]byte, 0, len(data)+1)
	for len(data) > 0 {
		end := len(data)
		for i, c := range data {
			if c == '\r' || c == '\n' {
				end = i
				break
			}
		}
		if !isBlankLine(data[:end]) {
			out = append(out, data[:end]...)
			out = append(out, '\r')
		}
		if end == len(data) {
			break
		}
		data = data[end+1:]
	}
	return out
}

// isCanonicalFraming reports whether data already has NormalizeSegmentEnds' form.
func isCanonicalFraming(data []byte) bool {
	if len(data) == 0 || data[len(data)-1] != '\r' || (len(data) >= 3 && string(data[:3]) == bom) {
		return false
	}
	start := 0
	for i, c := range data {
		switch c {
		case '\n':
			return false
		case '\r':
			if isBlankLine(data[start:i]) {
				return false
			}
			start = i + 1
		}
	}
	return true
}
