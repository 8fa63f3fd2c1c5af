package hl7

import (
	"fmt"
	"iter"
	"slices"
	"strings"

	"github.com/ferryhealth/ferry/internal/workcount"
)

// Delimiters returns the message's delimiters (MSH-1 and MSH-2).
func (m *Message) Delimiters() Delimiters { return m.delims }

// Encoding names the character set the message was read from and Bytes writes: "UTF-8",
// "ISO-8859-1", "ISO-8859-15", or another IANA name. It follows MSH-18, except as the package documentation
// explains (MSH-18 empty or unknown; ISO-8859 labels on UTF-8 bytes).
func (m *Message) Encoding() string { return m.cs.name }

// NumSegments returns the number of segments.
func (m *Message) NumSegments() int { return len(m.segs) }

// Segments returns the message's segments in order. The Segment values stay valid until the
// message is changed (Set, AppendSegment). Walk fields with Segment.Field and the Repetitions,
// Components and Subcomponents iterators, which visit every piece in one pass.
func (m *Message) Segments() []Segment {
	out := make([]Segment, len(m.segs))
	for i := range out {
		out[i] = Segment{m: m, i: i}
	}
	return out
}

// Segment is one segment of a Message.
type Segment struct {
	m *Message
	i int
}

func (s Segment) seg() *segment { return &s.m.segs[s.i] }

// Name returns the segment ID, e.g. "PID".
func (s Segment) Name() string { g := s.seg(); return s.m.text[g.start : g.start+3] }

// Index returns the segment's position in the message, 0 for MSH.
func (s Segment) Index() int { return s.i }

// Sequence returns the segment's occurrence among segments of the same ID: 1 for the first OBX,
// 2 for the second — the n of the path OBX[n].
func (s Segment) Sequence() int {
	key := s.seg().key
	if len(s.m.segs) > segmentScanMax {
		occ := s.m.lazyIndex().occurrences(s.m, key)
		n, _ := slices.BinarySearch(occ, int32(s.i))
		return n + 1
	}
	n := 0
	for i := 0; i <= s.i; i++ {
		if s.m.segs[i].key == key {
			n++
		}
	}
	workcount.Add(s.i + 1)
	return n
}

// Raw returns the segment as written (escape sequences kept), without its terminator.
func (s Segment) Raw() string { g := s.seg(); return s.m.text[g.start:g.end] }

// NumFields returns the number of fields the segment has, trailing empty ones included. For MSH
// it counts MSH-1, the field separator.
func (s Segment) NumFields() int { return s.seg().numFields() }

func (g *segment) numFields() int {
	if g.header {
		return int(g.nsep) + 1
	}
	return int(g.nsep)
}

// Field returns field n (1-based). A field beyond the segment's last is empty.
func (s Segment) Field(n int) Field {
	return Field{s.m.field(s.seg(), n)}
}

// field returns field n of segment g.
func (m *Message) field(g *segment, n int) element {
	if n < 1 {
		return element{}
	}
	k := n - 1
	if g.header {
		if n == 1 {
			return element{m: m, raw: m.text[g.start+3 : g.start+4], literal: true}
		}
		k = n - 2
	}
	if k >= int(g.nsep) {
		return element{} // absent: no repetitions at all
	}
	a := m.seps[g.first+int32(k)] + 1
	b := g.end
	if k+1 < int(g.nsep) {
		b = m.seps[g.first+int32(k)+1]
	}
	return element{m: m, raw: m.text[a:b], literal: g.header && n == 2, esc: g.esc}
}

// element is a field, repetition, component or subcomponent: its raw text and how to decode it.
type element struct {
	m       *Message
	raw     string
	literal bool // MSH-1 or MSH-2: never split nor decoded
	esc     bool // the segment has escape characters, so raw may
	// element keeps to four fields: the compiler keeps a struct of at most four fields in
	// registers, and one more field made every read twice as slow. raw is always a substring
	// of m.text, so where it starts is known without a field (see pieceKey).
}

func (e element) value() string {
	if !e.esc || e.literal {
		return e.raw
	}
	return e.m.delims.unescape(e.raw, e.m.cs)
}

// count returns how many pieces raw splits into at sep (1 for an empty string, as HL7 counts).
func (e element) count(sep byte) int {
	if e.m == nil {
		return 0
	}
	if e.literal || sep == 0 {
		return 1
	}
	if len(e.raw) >= pieceIndexMinLen {
		return int(e.m.lazyIndex().pieces(e, sep).count)
	}
	workcount.Add(len(e.raw))
	return strings.Count(e.raw, string(sep)) + 1
}

// child returns the n-th piece of e split at sep.
func (e element) child(sep byte, n int) element {
	if e.m == nil {
		return e
	}
	if e.literal {
		if n == 1 {
			return e
		}
		return element{m: e.m}
	}
	if n > pieceScanMax && len(e.raw) >= pieceIndexMinLen && sep != 0 {
		// The n-th piece of a long element is found from the nearest indexed piece, so that
		// reading every piece in turn (each: PID-3, PID-3[n].1) is linear, not quadratic.
		return e.m.lazyIndex().pieces(e, sep).child(e, sep, n)
	}
	a, b, _ := piece(e.raw, sep, n)
	return element{m: e.m, raw: e.raw[a:b], esc: e.esc}
}

// children calls yield with each piece of e split at sep, numbered from 1, in one pass (calling
// child for each n would be quadratic in the number of pieces). It stops when yield returns false.
func (e element) children(sep byte, yield func(int, element) bool) {
	if e.m == nil {
		return
	}
	if e.literal || sep == 0 {
		yield(1, e)
		return
	}
	rest := e.raw
	for n := 1; ; n++ {
		i := strings.IndexByte(rest, sep)
		if i < 0 {
			workcount.Add(len(rest))
			yield(n, element{m: e.m, raw: rest, esc: e.esc})
			return
		}
		workcount.Add(i + 1)
		if !yield(n, element{m: e.m, raw: rest[:i], esc: e.esc}) {
			return
		}
		rest = rest[i+1:]
	}
}

// piece returns where the n-th (1-based) piece of s split at sep is, s[a:b], and whether it
// exists (a and b are 0 when it does not). With sep 0 (a delimiter the message does not declare)
// s is one piece. It scans s from the start: for the n-th piece of a long element, child uses
// the piece index.
func piece(s string, sep byte, n int) (a, b int, ok bool) {
	if n < 1 {
		return 0, 0, false
	}
	if sep == 0 {
		if n == 1 {
			return 0, len(s), true
		}
		return 0, 0, false
	}
	for ; n > 1; n-- {
		i := strings.IndexByte(s[a:], sep)
		if i < 0 {
			workcount.Add(len(s) - a)
			return 0, 0, false
		}
		a += i + 1
	}
	b = len(s)
	if i := strings.IndexByte(s[a:], sep); i >= 0 {
		b = a + i
	}
	workcount.Add(b)
	return a, b, true
}

// Field is one field of a segment, with all its repetitions.
type Field struct{ e element }

// Raw returns the field as written, escape sequences and delimiters included.
func (f Field) Raw() string { return f.e.raw }

// Value returns the field's text with escape sequences decoded (delimiters between repetitions
// and components stay as they are).
func (f Field) Value() string { return f.e.value() }

// NumRepetitions returns the number of repetitions (1 for an empty field that exists, 0 for a
// field beyond the end of the segment).
func (f Field) NumRepetitions() int { return f.e.count(f.e.repSep()) }

// Repetition returns repetition r (1-based).
func (f Field) Repetition(r int) Repetition { return Repetition{f.e.child(f.e.repSep(), r)} }

// Repetitions iterates over the repetitions, numbered from 1.
func (f Field) Repetitions() iter.Seq2[int, Repetition] {
	return func(yield func(int, Repetition) bool) {
		f.e.children(f.e.repSep(), func(i int, e element) bool { return yield(i, Repetition{e}) })
	}
}

func (e element) repSep() byte {
	if e.m == nil {
		return 0
	}
	return e.m.delims.Repetition
}

func (e element) compSep() byte {
	if e.m == nil {
		return 0
	}
	return e.m.delims.Component
}

func (e element) subSep() byte {
	if e.m == nil {
		return 0
	}
	return e.m.delims.Subcomponent
}

// Repetition is one repetition of a field.
type Repetition struct{ e element }

// Raw returns the repetition as written.
func (r Repetition) Raw() string { return r.e.raw }

// Value returns the repetition's text with escape sequences decoded.
func (r Repetition) Value() string { return r.e.value() }

// NumComponents returns the number of components.
func (r Repetition) NumComponents() int { return r.e.count(r.e.compSep()) }

// Component returns component c (1-based).
func (r Repetition) Component(c int) Component { return Component{r.e.child(r.e.compSep(), c)} }

// Components iterates over the components, numbered from 1.
func (r Repetition) Components() iter.Seq2[int, Component] {
	return func(yield func(int, Component) bool) {
		r.e.children(r.e.compSep(), func(i int, e element) bool { return yield(i, Component{e}) })
	}
}

// Component is one component of a repetition.
type Component struct{ e element }

// Raw returns the component as written.
func (c Component) Raw() string { return c.e.raw }

// Value returns the component's text with escape sequences decoded.
func (c Component) Value() string { return c.e.value() }

// NumSubcomponents returns the number of subcomponents.
func (c Component) NumSubcomponents() int { return c.e.count(c.e.subSep()) }

// Subcomponent returns subcomponent s (1-based).
func (c Component) Subcomponent(s int) Subcomponent {
	return Subcomponent{c.e.child(c.e.subSep(), s)}
}

// Subcomponents iterates over the subcomponents, numbered from 1.
func (c Component) Subcomponents() iter.Seq2[int, Subcomponent] {
	return func(yield func(int, Subcomponent) bool) {
		c.e.children(c.e.subSep(), func(i int, e element) bool { return yield(i, Subcomponent{e}) })
	}
}

// Subcomponent is one subcomponent of a component.
type Subcomponent struct{ e element }

// Raw returns the subcomponent as written.
func (s Subcomponent) Raw() string { return s.e.raw }

// Value returns the subcomponent's text with escape sequences decoded.
func (s Subcomponent) Value() string { return s.e.value() }

// findSegment returns the index of occurrence n (1-based; 0 means 1) of the segment with this
// ID, or -1.
func (m *Message) findSegment(id string, n int) int {
	if len(id) != 3 {
		return -1
	}
	key := segKey(id)
	if n < 1 {
		n = 1
	}
	if n > 1 && len(m.segs) > segmentScanMax {
		// OBX[n] for every n in turn (each: OBX) is linear through the occurrence index.
		occ := m.lazyIndex().occurrences(m, key)
		if n > len(occ) {
			return -1
		}
		return int(occ[n-1])
	}
	for i := range m.segs {
		if m.segs[i].key == key {
			if n--; n == 0 {
				workcount.Add(i + 1)
				return i
			}
		}
	}
	workcount.Add(len(m.segs))
	return -1
}

// FindSegment returns occurrence n (1-based; 0 means 1) of the segment with this ID, and whether
// the message has it. Finding every occurrence in turn is linear in the number of segments.
func (m *Message) FindSegment(id string, n int) (Segment, bool) {
	si := m.findSegment(id, n)
	if si < 0 {
		return Segment{}, false
	}
	return Segment{m: m, i: si}, true
}

// lookup returns the element a path addresses; its m is nil when the path names nothing present.
func (m *Message) lookup(p Path) element {
	si := m.findSegment(p.Segment, p.SegmentIndex)
	if si < 0 || p.Field < 1 {
		return element{}
	}
	e := m.field(&m.segs[si], p.Field)
	if e.m == nil {
		return e
	}
	r := max(p.Repetition, 1)
	e = e.child(m.delims.Repetition, r)
	if p.Component > 0 {
		e = e.child(m.delims.Component, p.Component)
		if p.Subcomponent > 0 {
			e = e.child(m.delims.Subcomponent, p.Subcomponent)
		}
	}
	return e
}

// GetPath returns the decoded value at p, or "" when the message has nothing there. Without a
// component the whole repetition is returned (components joined by the component separator);
// without a repetition, the first. A value with no escape sequence is a substring of the
// message: GetPath does not allocate then.
func (m *Message) GetPath(p Path) string {
	return m.lookup(p).value()
}

// GetRawPath returns the value at p as written, escape sequences not decoded.
func (m *Message) GetRawPath(p Path) string { return m.lookup(p).raw }

// Get returns the decoded value at path (see ParsePath, GetPath): "" and a nil error when the
// message has nothing there; an error only when path is not a valid path to a field.
func (m *Message) Get(path string) (string, error) {
	p, err := ParsePath(path)
	if err != nil {
		return "", err
	}
	if p.Field == 0 {
		return "", fmt.Errorf("getting %s: path names no field: %w", path, ErrBadPath)
	}
	return m.GetPath(p), nil
}

// Value is Get without the error, for paths known to be valid; a bad path reads as "".
func (m *Message) Value(path string) string {
	v, _ := m.Get(path)
	return v
}

// GetRaw is Get returning the value as written, escape sequences not decoded.
func (m *Message) GetRaw(path string) (string, error) {
	p, err := ParsePath(path)
	if err != nil {
		return "", err
	}
	if p.Field == 0 {
		return "", fmt.Errorf("getting %s: path names no field: %w", path, ErrBadPath)
	}
	return m.GetRawPath(p), nil
}

// Count returns how many times a path occurs: for a segment path ("OBX") the number of those
// segments; for a field path ("PID-3", "OBX[2]-5") the number of repetitions of the field
// (0 when the field is absent). Components are not counted: a bad or deeper path counts 0.
func (m *Message) Count(path string) int {
	p, err := ParsePath(path)
	if err != nil || p.Component > 0 || p.Repetition > 0 {
		return 0
	}
	if p.Field == 0 {
		if p.SegmentIndex > 0 {
			return 0
		}
		return m.count(segKey(p.Segment))
	}
	si := m.findSegment(p.Segment, p.SegmentIndex)
	if si < 0 {
		return 0
	}
	f := m.field(&m.segs[si], p.Field)
	if f.m == nil || f.raw == "" {
		return 0
	}
	return f.count(m.delims.Repetition)
}

// ReadEveryField reads the decoded value of every field of every segment (all repetitions, escape
// sequences decoded) and returns their total length in bytes. It is the work `ferry bench parse`
// measures, matching what the @medplum/hl7 anchor does with toString on every field.
func ReadEveryField(m *Message) int {
	total := 0
	esc := m.delims.Escape
	for si := range m.segs {
		g := &m.segs[si]
		seps := m.seps[g.first : g.first+g.nsep]
		k := 0
		if g.header { // MSH-1 and MSH-2 are read as written
			total++ // MSH-1
			if len(seps) == 0 {
				continue
			}
			end := int(g.end)
			if len(seps) > 1 {
				end = int(seps[1])
			}
			total += len(m.text[seps[0]+1 : end])
			k = 1
		}
		for ; k < len(seps); k++ {
			end := g.end
			if k+1 < len(seps) {
				end = seps[k+1]
			}
			v := m.text[seps[k]+1 : end]
			if g.esc && strings.IndexByte(v, esc) >= 0 {
				v = m.delims.unescape(v, m.cs)
			}
			total += len(v)
		}
	}
	return total
}
