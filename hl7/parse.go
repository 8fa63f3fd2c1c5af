package hl7

import (
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"unsafe"
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
	sp     specials   // characters to escape on Set
	// canonical reports that text is exactly what Bytes returns before re-encoding: segments
	// separated and terminated by a single CR, no BOM, no blank lines.
	canonical bool
	// buf is the Parser's reused copy of the text (text then aliases it).
	buf []byte
	// raw holds the normalised bytes as received when the character set is one whose decoding
	// may not be reversible byte for byte (kindOther); Bytes returns it until the first Set.
	raw []byte
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

// Error returns e.g. "hl7: MSH-2: MSH-2 encoding characters missing" or, when the segment ID is
// unreadable, "hl7: segment 4: invalid segment ID".
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

// Detail returns the error as an ERR segment's content (HL7 v2.5.1 §2.9.2, ERR-2 and ERR-3).
func (e *ParseError) Detail() ErrorDetail {
	text := e.Reason
	if e.Segment == "" && e.Position > 0 {
		text = "segment " + strconv.Itoa(e.Position) + ": " + text
	}
	return ErrorDetail{Segment: e.Segment, Sequence: e.Sequence, Field: e.Field, Code: e.Code,
		Severity: "E", Text: text}
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
//   - The text is decoded from the character set in MSH-18 (see chooseCharset's rules: MSH-18
//     empty, "ASCII" or unknown means UTF-8 when the bytes are valid UTF-8, else ISO-8859-1).
//
// The error is a *ParseError.
func Parse(data []byte) (*Message, error) {
	m := new(Message)
	if err := m.parse(data, false); err != nil {
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
	segs, seps, buf := p.m.segs[:0], p.m.seps[:0], p.m.buf
	p.m = Message{segs: segs, seps: seps, buf: buf}
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
	m.sp = d.specials()
	m.cs = chooseCharset(body, rawHeaderField(first, d.Field, 18, d.Repetition))
	var text string
	switch {
	case m.cs.kind == kindUTF8 || isASCII(body):
		if reuse {
			m.buf = append(m.buf[:0], data...)
			text = unsafeString(m.buf)
		} else {
			text = string(data)
		}
	default:
		if m.cs.kind == kindOther {
			// x/text decoders need not be reversible byte for byte: keep the bytes received.
			m.raw = slices.Clone(NormalizeSegmentEnds(body))
		}
		if reuse {
			m.buf = m.cs.decode(m.buf[:0], body)
			text = unsafeString(m.buf)
		} else {
			text = string(m.cs.decode(make([]byte, 0, len(body)+len(body)/4), body))
		}
	}
	return m.index(text)
}

// unsafeString returns b as a string without copying; b must not change while the string is used.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

func isASCII(b []byte) bool {
	ascii, _ := classify(b)
	return ascii
}

// firstLine returns the first line of b that is not blank (empty, or only spaces and tabs).
func firstLine(b []byte) []byte {
	for len(b) > 0 {
		end := len(b)
		for i, c := range b {
			if c == '\r' || c == '\n' {
				end = i
				break
			}
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
	for i := from; i < len(b); i++ {
		if b[i] == c {
			return i
		}
	}
	return -1
}

// index builds the segment and field-separator index of text (a single pass over the bytes: line
// ends are found with strings.IndexByte, field separators eight bytes at a time).
func (m *Message) index(text string) error {
	m.text = text
	m.segs = m.segs[:0]
	m.seps = m.seps[:0]
	if cap(m.seps) == 0 {
		m.seps = make([]int32, 0, len(text)/6+8)
	}
	if cap(m.segs) == 0 {
		m.segs = make([]segment, 0, len(text)/64+4)
	}
	fs, esc := m.delims.Field, m.delims.Escape
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
		first := int32(len(m.seps))
		m.seps = appendSeps(m.seps, text, ls+3, le, fs)
		// MSH-2 holds the escape character itself; only the fields after it count.
		escFrom := ls
		if header {
			escFrom = le
			if len(m.seps)-int(first) >= 2 {
				escFrom = int(m.seps[first+1])
			}
		}
		hasEsc := esc != 0 && strings.IndexByte(text[escFrom:le], esc) >= 0
		m.segs = append(m.segs, segment{start: int32(ls), end: int32(le), first: first,
			nsep: int32(len(m.seps)) - first, key: key, esc: hasEsc, header: header})
	}
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

// count returns how many segments with this key precede the current end of the index.
func (m *Message) count(key uint32) int {
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

// appendSeps appends the offsets of every fs in text[from:to] to seps, testing eight bytes at a
// time (a SWAR zero-byte test that is exact: no carry crosses bytes).
func appendSeps(seps []int32, text string, from, to int, fs byte) []int32 {
	pat := uint64(fs) * lsb
	i := from
	for ; i+8 <= to; i += 8 {
		x := load64(text, i) ^ pat
		t := ^(((x & low) + low) | x | low) // 0x80 in each byte of x that is zero
		for t != 0 {
			seps = append(seps, int32(i+trailingZeroBytes(t)))
			t &= t - 1
		}
	}
	for ; i < to; i++ {
		if text[i] == fs {
			seps = append(seps, int32(i))
		}
	}
	return seps
}

func load64(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

func trailingZeroBytes(t uint64) int { return bits.TrailingZeros64(t) >> 3 }
