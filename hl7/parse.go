package hl7

import (
	"bytes"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/ferryhealth/ferry/internal/workcount"
)

// Message is one parsed HL7 v2 message. It holds the message text once, decoded to UTF-8, with
// the offsets of its segments and field separators; repetitions, components and subcomponents are
// found on demand. Values are returned as substrings of that text whenever they contain no escape
// sequence, so reading does not allocate.
//
// A Message is safe for concurrent reads; Set and AppendSegment must not run concurrently with
// anything else on the same Message.
type Message struct {
	text   string     // the message text (UTF-8), possibly with its original line ends and blank lines
	segs   []segment  // segments in order
	seps   []int32    // offsets of field separators; segment s owns seps[s.first : s.first+s.nsep]
	delims Delimiters // from MSH-1 and MSH-2
	cs     *charset   // how the text was decoded and how Bytes encodes it
	// nonASCII reports that some segment holds a byte ≥ 0x80 (set by index).
	nonASCII bool
	// canonical reports that text is exactly what Bytes returns before re-encoding: segments
	// separated and terminated by a single CR, no BOM, no blank lines.
	canonical bool
	// buf is the Parser's reused copy of the text (text then aliases it); dec is its spare
	// buffer, swapped in to decode while the first still holds the raw bytes.
	buf, dec []byte
	// raw holds the normalised bytes as received when the character set is one whose decoding
	// may not be reversible byte for byte (kindOther); Bytes returns it until the first Set.
	raw []byte
	// lazy indexes what is read by number when it is long: segment occurrences, the pieces of
	// long fields. Built on first need, dropped when the text changes.
	lazy atomic.Pointer[lazyIndex]
}

// segment is the index entry of one segment.
type segment struct {
	start, end  int32  // text[start:end] is the segment, without its terminator
	first, nsep int32  // its field separators in Message.seps
	key         uint32 // the three bytes of the segment ID, for fast comparison
	esc         bool   // the segment contains the escape character
	header      bool   // MSH, FHS or BHS: field 1 is the separator itself and field 2 the encoding characters
}

func segKey(name string) uint32 { return uint32(name[0]) | uint32(name[1])<<8 | uint32(name[2])<<16 }

var (
	keyMSH = segKey("MSH")
	keyFHS = segKey("FHS")
	keyBHS = segKey("BHS")
	keyBTS = segKey("BTS")
	keyFTS = segKey("FTS")
)

// ParseError reports why a message could not be parsed, and where. Error never includes message
// content, so it is safe to log (Ferry's rule: no PHI in logs).
type ParseError struct {
	Segment  string // segment ID, e.g. "MSH"; empty when the segment ID itself is not valid
	Sequence int    // occurrence of Segment in the message, 1 for the first; 0 when Segment is empty
	Field    int    // field position (MSH-1 is the field separator); 0 when the fault is the whole segment
	Position int    // 1-based position of the segment in the message, blank lines not counted
	Code     ErrorCode
	Reason   string // what is wrong, written by this package: never message content
}

// Error returns e.g. "hl7: MSH-2: encoding characters missing" or, when the segment ID is not
// readable, "hl7: segment 4: invalid segment ID: …".
func (e *ParseError) Error() string {
	return "hl7: " + e.location() + ": " + e.Reason
}

func (e *ParseError) location() string {
	if e.Segment == "" {
		if e.Position > 0 {
			return "segment " + strconv.Itoa(e.Position)
		}
		return "message"
	}
	return Path{Segment: e.Segment, SegmentIndex: e.Sequence, Field: e.Field}.String()
}

// Detail returns the error as an ERR segment's content (HL7 v2.5.1 §2.9.2, ERR-2 and ERR-3), its
// Text saying where and what, e.g. "MSH-2: encoding characters missing".
func (e *ParseError) Detail() ErrorDetail {
	return ErrorDetail{Segment: e.Segment, Sequence: e.Sequence, Field: e.Field, Code: e.Code,
		Severity: "E", Text: e.location() + ": " + e.Reason}
}

// Parse parses one ER7-encoded HL7 v2 message (HL7 v2.5.1 §2.6–2.7).
//
//   - Segments end with CR (the standard, §2.5.1), LF or CRLF, mixed freely; blank lines and
//     lines of only spaces and tabs are not segments. A leading UTF-8 byte-order mark is dropped.
//   - The delimiters come from MSH-1 and MSH-2: any printable, non-alphanumeric ASCII characters,
//     distinct, with 1 to 5 encoding characters (the fifth is the v2.7 truncation character).
//   - Every segment ID is three capital letters or digits starting with a letter, followed by the
//     field separator or the end of the segment. A message has one MSH, first; batch segments
//     (FHS, BHS, BTS, FTS) belong around messages, so split a batch with SplitBatch first.
//   - Trailing empty fields and separators are kept as sent, so Bytes reproduces them.
//   - The text is decoded from the character set in MSH-18 (see Character sets in the package
//     documentation: MSH-18 empty, "ASCII" or unknown means UTF-8 when the bytes are valid UTF-8,
//     ISO-8859-1 otherwise).
//
// The error is a *ParseError.
func Parse(data []byte) (*Message, error) {
	m := new(Message)
	if err := m.parse(data, false); err != nil {
		return nil, err
	}
	return m, nil
}

// ParseShared is Parse for a caller that owns data and keeps it unchanged: the Message reads its
// text from data instead of a copy (a message whose character set must be decoded is still
// decoded into memory of its own). data must not change while the Message, or any string read
// from it, is in use. The inbound flow parses each received message this way, as it keeps the
// bytes as received anyway: a large message then costs its size once, not twice (DESIGN.md rule
// 7).
func ParseShared(data []byte) (*Message, error) {
	// parse in reuse mode copies data into m.buf: with m.buf being data itself, that copy moves
	// nothing and allocates nothing, and the text aliases data.
	m := &Message{buf: data[:0:len(data)]}
	if err := m.parse(data, true); err != nil {
		return nil, err
	}
	return m, nil
}

// Parser parses messages reusing its memory between calls, for loops that parse many messages
// and are done with each before the next (benchmarks, bulk validation). The zero value is ready;
// a Parser must not be used by two goroutines at once.
type Parser struct {
	m Message
}

// Parse is like the package's Parse, but without allocating: the Message it returns belongs to p
// and is valid only until the next call to p.Parse — and so are the strings read from it, which
// share p's buffer. Copy (strings.Clone) any value to be kept longer.
func (p *Parser) Parse(data []byte) (*Message, error) {
	p.m = Message{segs: p.m.segs[:0], seps: p.m.seps[:0], buf: p.m.buf, dec: p.m.dec}
	if err := p.m.parse(data, true); err != nil {
		return nil, err
	}
	return &p.m, nil
}

const bom = "\xEF\xBB\xBF"

// parse fills m from data.
func (m *Message) parse(data []byte, reuse bool) error {
	if len(data) > math.MaxInt32-16 {
		return &ParseError{Code: CodeApplicationInternalError, Reason: "message larger than 2 GiB"}
	}
	body := data
	if len(body) >= 3 && string(body[:3]) == bom {
		body = body[3:]
	}
	// The first segment must be MSH; blank lines before it are tolerated like blank lines anywhere.
	first := firstLine(body)
	if len(first) < 3 || string(first[:3]) != "MSH" {
		pe := &ParseError{Segment: "MSH", Sequence: 1, Position: 1, Code: CodeSegmentSequence,
			Reason: "message does not start with an MSH segment"}
		if len(first) >= 3 && (string(first[:3]) == "FHS" || string(first[:3]) == "BHS") {
			pe.Reason = "message starts with a batch header (" + string(first[:3]) + "); split the batch into messages first"
		}
		return pe
	}
	d, pe := parseDelimiters(first)
	if pe != nil {
		return pe
	}
	m.delims = d
	// Index the bytes as they are: delimiters are ASCII, so this is right for ASCII, UTF-8 and
	// the single-byte sets alike; decode afterwards only when non-ASCII bytes need it.
	var text string
	if reuse {
		m.buf = append(m.buf[:0], data...)
		text = unsafeString(m.buf)
	} else {
		text = string(data)
	}
	ierr := m.index(text)
	var msh18 string
	if ierr == nil {
		msh18 = m.field(&m.segs[0], 18).child(d.Repetition, 1).raw
	} else {
		msh18 = string(rawHeaderField(first, d.Field, 18, d.Repetition))
	}
	declared := lookupCharset(msh18)
	if declared != nil && declared.multiByte {
		// Multi-byte sets can hide delimiter bytes inside characters: decode, then index. Their
		// decoders need not be reversible byte for byte, so keep the bytes received too.
		if ascii, _ := classify(body); !ascii {
			m.cs = declared
			m.raw = slices.Clone(NormalizeSegmentEnds(body))
			if reuse {
				m.buf, m.dec = m.dec, m.buf
			}
			return m.index(m.decoded(body, reuse))
		}
	}
	if ierr != nil {
		return ierr
	}
	m.cs = settleCharset(declared, msh18, m.nonASCII, text)
	if m.cs.kind == kindUTF8 || !m.nonASCII {
		return nil
	}
	if m.cs.kind == kindOther {
		// x/text's single-byte tables map undefined bytes to U+FFFD: keep the bytes received.
		m.raw = slices.Clone(NormalizeSegmentEnds(body))
	}
	if reuse {
		m.buf, m.dec = m.dec, m.buf // text aliases buf: decode into the other buffer
	}
	return m.index(m.decoded(body, reuse))
}

// decoded returns body decoded from m.cs to UTF-8, in m.buf when reuse is set.
func (m *Message) decoded(body []byte, reuse bool) string {
	if reuse {
		m.buf = m.cs.decode(m.buf[:0], body)
		return unsafeString(m.buf)
	}
	return string(m.cs.decode(make([]byte, 0, len(body)+len(body)/4), body))
}

// unsafeString returns b as a string without copying; b must not change while the string is used.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// firstLine returns the first line of b that is not blank (empty, or only spaces and tabs).
func firstLine(b []byte) []byte {
	for len(b) > 0 {
		end := bytes.IndexByte(b, '\r')
		if end < 0 {
			end = len(b)
		}
		if lf := bytes.IndexByte(b[:end], '\n'); lf >= 0 {
			end = lf
		}
		if !isBlankLine(b[:end]) {
			return b[:end]
		}
		if end == len(b) {
			break
		}
		b = b[end+1:]
	}
	return nil
}

// rawHeaderField returns field n of an MSH line, raw, first repetition only; empty when absent.
// It is used before the message is decoded (MSH-18 says how to decode it).
func rawHeaderField(line []byte, fs byte, n int, rep byte) []byte {
	pos := 3 // the separator before MSH-2
	for f := 2; f < n; f++ {
		i := indexByteFrom(line, pos+1, fs)
		if i < 0 {
			return nil
		}
		pos = i
	}
	v := line[pos+1:]
	if i := indexByteFrom(v, 0, fs); i >= 0 {
		v = v[:i]
	}
	if rep != 0 {
		if i := indexByteFrom(v, 0, rep); i >= 0 {
			v = v[:i]
		}
	}
	return v
}

func indexByteFrom(b []byte, from int, c byte) int {
	if from > len(b) {
		return -1
	}
	if i := bytes.IndexByte(b[from:], c); i >= 0 {
		return from + i
	}
	return -1
}

// index builds the segment and field-separator index of text (a single pass over the bytes: line
// ends are found with strings.IndexByte, field separators eight bytes at a time).
func (m *Message) index(text string) error {
	m.text = text
	m.lazy.Store(nil) // what it indexed was the previous text
	m.segs = m.segs[:0]
	if cap(m.segs) == 0 {
		// A guess of one segment per 64 bytes, capped: a segment entry is 24 bytes, so for a
		// large message (a report with an embedded PDF: few, long segments) the guess alone would
		// cost over a third of its size. A message with more segments grows the slice.
		m.segs = make([]segment, 0, min(len(text)/64, 4096)+4)
	}
	fs, esc := m.delims.Field, m.delims.Escape
	// Every field separator gets an entry: count them (a vectorised count) so that the scan
	// below writes without growing the slice.
	seps := slices.Grow(m.seps[:0], strings.Count(text, string(rune(fs))))
	m.seps = seps[:0] // keep the capacity for a Parser even when this message fails
	seps = seps[:cap(seps)]
	nsep := 0
	var or uint64 // OR of every content byte: its high bit says whether the text is all ASCII
	n := len(text)
	i := 0
	canonical := true
	if strings.HasPrefix(text, bom) {
		i = 3
		canonical = false
	}
	nextCR, nextLF := -1, -1
	position := 0
	for i < n {
		if nextCR < i {
			if nextCR = strings.IndexByte(text[i:], '\r'); nextCR < 0 {
				nextCR = n
			} else {
				nextCR += i
			}
		}
		if nextLF < i {
			if nextLF = strings.IndexByte(text[i:], '\n'); nextLF < 0 {
				nextLF = n
			} else {
				nextLF += i
			}
		}
		le, next := nextCR, nextCR+1
		if nextLF < nextCR {
			le, next = nextLF, nextLF+1
			canonical = false
		} else if nextLF == nextCR+1 {
			next++
			canonical = false
		}
		ls := i
		i = next
		if le-ls < 3 || text[ls] < 'A' || text[ls] > 'Z' {
			if isBlankLine(text[ls:le]) {
				canonical = false
				continue
			}
			position++
			return &ParseError{Position: position, Code: CodeSegmentSequence,
				Reason: "invalid segment ID: want three capital letters or digits"}
		}
		position++
		if !segIDChar(text[ls+1]) || !segIDChar(text[ls+2]) || (le-ls > 3 && text[ls+3] != fs) {
			return &ParseError{Position: position, Code: CodeSegmentSequence,
				Reason: "invalid segment ID: want three capital letters or digits, then the field separator"}
		}
		key := segKey(text[ls : ls+3])
		header := key == keyMSH || key == keyFHS || key == keyBHS
		if position == 1 {
			if key != keyMSH {
				return &ParseError{Segment: "MSH", Sequence: 1, Position: 1, Code: CodeSegmentSequence,
					Reason: "message does not start with an MSH segment"}
			}
		} else if header || key == keyBTS || key == keyFTS {
			name := text[ls : ls+3]
			return &ParseError{Segment: name, Sequence: m.count(key) + 1, Position: position, Code: CodeSegmentSequence,
				Reason: name + " inside a message: a message has one MSH, first; split batches and files of several messages first"}
		}
		first := int32(nsep)
		var o uint64
		nsep, o = scanSeps(seps, nsep, text, ls+3, le, fs)
		or |= o
		// MSH-2 holds the escape character itself; only the fields after it count.
		escFrom := ls
		if header {
			escFrom = le
			if nsep-int(first) >= 2 {
				escFrom = int(seps[first+1])
			}
		}
		hasEsc := esc != 0 && strings.IndexByte(text[escFrom:le], esc) >= 0
		m.segs = append(m.segs, segment{start: int32(ls), end: int32(le), first: first,
			nsep: int32(nsep) - first, key: key, esc: hasEsc, header: header})
	}
	m.seps = seps[:nsep]
	m.nonASCII = or&0x8080808080808080 != 0
	if len(m.segs) == 0 {
		return &ParseError{Segment: "MSH", Sequence: 1, Position: 1, Code: CodeSegmentSequence,
			Reason: "message does not start with an MSH segment"}
	}
	last := m.segs[len(m.segs)-1]
	m.canonical = canonical && int(last.end)+1 == n && text[n-1] == '\r'
	return nil
}

func segIDChar(c byte) bool { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') }

func isBlankLine[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != ' ' && s[i] != '\t' {
			return false
		}
	}
	return true
}

// count returns how many segments with this key the message has.
func (m *Message) count(key uint32) int {
	if len(m.segs) > segmentScanMax {
		return len(m.lazyIndex().occurrences(m, key))
	}
	workcount.Add(len(m.segs))
	n := 0
	for i := range m.segs {
		if m.segs[i].key == key {
			n++
		}
	}
	return n
}

const (
	lsb = 0x0101010101010101
	low = 0x7F7F7F7F7F7F7F7F
)

// scanSeps writes the offset of every fs in text[from:to] to seps[n:], which has room for them
// all, testing eight bytes at a time (a SWAR zero-byte test that is exact: no carry crosses
// bytes). It returns the new n and the OR of the bytes scanned.
func scanSeps(seps []int32, n int, text string, from, to int, fs byte) (int, uint64) {
	pat := uint64(fs) * lsb
	var or uint64
	i := from
	for ; i+8 <= to; i += 8 {
		w := load64(text, i)
		or |= w
		x := w ^ pat
		t := ^(((x & low) + low) | x | low) // 0x80 in each byte of w that equals fs
		for t != 0 {
			seps[n] = int32(i + trailingZeroBytes(t))
			n++
			t &= t - 1
		}
	}
	for ; i < to; i++ {
		c := text[i]
		or |= uint64(c)
		if c == fs {
			seps[n] = int32(i)
			n++
		}
	}
	return n, or
}

func load64(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

func trailingZeroBytes(t uint64) int { return bits.TrailingZeros64(t) >> 3 }
