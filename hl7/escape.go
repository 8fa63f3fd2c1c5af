package hl7

import (
	"strings"
)

// Delimiters are a message's delimiter characters, read from MSH-1 (the field separator) and MSH-2
// (the encoding characters, in the order component, repetition, escape, subcomponent and — from
// v2.7 — truncation; HL7 v2.5.1 §2.5.4). An encoding character the message does not declare is 0.
type Delimiters struct {
	Field, Component, Repetition, Escape, Subcomponent, Truncation byte
}

// DefaultDelimiters are the delimiters HL7 recommends: |^~\&.
var DefaultDelimiters = Delimiters{Field: '|', Component: '^', Repetition: '~', Escape: '\\', Subcomponent: '&'}

// String returns MSH-1 followed by MSH-2, e.g. `|^~\&`.
func (d Delimiters) String() string {
	b := make([]byte, 0, 6)
	for _, c := range [...]byte{d.Field, d.Component, d.Repetition, d.Escape, d.Subcomponent, d.Truncation} {
		if c == 0 {
			break
		}
		b = append(b, c)
	}
	return string(b)
}

// encodingChars returns MSH-2 as written: the declared encoding characters, in order.
func (d Delimiters) encodingChars() string {
	s := d.String()
	if s == "" {
		return ""
	}
	return s[1:]
}

// validDelimiter reports whether c may serve as a delimiter: printable ASCII that is neither a
// letter, a digit nor a space. The standard only requires the characters to be distinct; Ferry
// also refuses the ones that would make ordinary data ambiguous, which is how garbage reveals itself.
func validDelimiter(c byte) bool {
	return c > ' ' && c < 0x7F && !(c >= '0' && c <= '9') && !(c >= 'A' && c <= 'Z') && !(c >= 'a' && c <= 'z')
}

// parseDelimiters reads MSH-1 and MSH-2 from the start of an MSH segment line. A nil error means
// every declared delimiter is valid and distinct.
func parseDelimiters[T string | []byte](line T) (Delimiters, *ParseError) {
	var d Delimiters
	fail := func(field int, code ErrorCode, reason string) (Delimiters, *ParseError) {
		return d, &ParseError{Segment: "MSH", Sequence: 1, Field: field, Position: 1, Code: code, Reason: reason}
	}
	if len(line) < 4 {
		return fail(1, CodeRequiredFieldMissing, "field separator missing")
	}
	d.Field = line[3]
	if !validDelimiter(d.Field) {
		return fail(1, CodeDataType, "field separator is not a printable, non-alphanumeric ASCII character")
	}
	enc := line[4:]
	for i := 0; i < len(enc); i++ {
		if enc[i] == d.Field {
			enc = enc[:i]
			break
		}
	}
	if len(enc) == 0 {
		return fail(2, CodeRequiredFieldMissing, "encoding characters missing")
	}
	if len(enc) > 5 {
		return fail(2, CodeDataType, "more than 5 encoding characters")
	}
	slots := [...]*byte{&d.Component, &d.Repetition, &d.Escape, &d.Subcomponent, &d.Truncation}
	for i := 0; i < len(enc); i++ {
		c := enc[i]
		if !validDelimiter(c) {
			return fail(2, CodeDataType, "encoding character is not a printable, non-alphanumeric ASCII character")
		}
		for j := 0; j < i; j++ {
			if enc[j] == c {
				return fail(2, CodeDataType, "encoding characters are not distinct from each other and from the field separator")
			}
		}
		*slots[i] = c
	}
	return d, nil
}

// specials is a byte set of the characters that must be escaped in a value.
type specials [256]bool

func (d *Delimiters) specials() specials {
	var s specials
	for _, c := range [...]byte{d.Field, d.Component, d.Repetition, d.Escape, d.Subcomponent, d.Truncation} {
		if c != 0 {
			s[c] = true
		}
	}
	s['\r'], s['\n'] = true, true
	return s
}

// Escape returns s with the delimiter characters replaced by escape sequences (v2.5.1 §2.7.1:
// \F\ \S\ \T\ \R\ \E\, and \P\ for the v2.7 truncation character) and line breaks (LF or CRLF)
// replaced by \.br\ (\X0A\ if '.' is a delimiter); a lone CR becomes \X0D\. When d has no escape character, characters that
// would need one are replaced by a space, since nothing else keeps the structure intact.
func Escape(d Delimiters, s string) string {
	sp := d.specials()
	if !needsEscape(s, &sp) {
		return s
	}
	out, _ := d.appendEscaped(make([]byte, 0, len(s)+16), s, &sp)
	return string(out)
}

func needsEscape(s string, sp *specials) bool {
	for i := 0; i < len(s); i++ {
		if sp[s[i]] {
			return true
		}
	}
	return false
}

// appendEscaped appends s escaped to dst. ok is false when s needed an escape character that d
// lacks (those characters became spaces).
func (d *Delimiters) appendEscaped(dst []byte, s string, sp *specials) (out []byte, ok bool) {
	i := 0
	for i < len(s) && !sp[s[i]] {
		i++
	}
	ok = true
	dst = append(dst, s[:i]...)
	e := d.Escape
	for ; i < len(s); i++ {
		c := s[i]
		if !sp[c] {
			dst = append(dst, c)
			continue
		}
		if e == 0 {
			ok = false
			dst = append(dst, ' ')
			if c == '\r' && i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
			continue
		}
		var seq string
		switch c {
		case d.Field:
			seq = "F"
		case d.Component:
			seq = "S"
		case d.Subcomponent:
			seq = "T"
		case d.Repetition:
			seq = "R"
		case d.Escape:
			seq = "E"
		case d.Truncation:
			seq = "P"
		case '\n':
			seq = d.lineBreak()
		case '\r':
			if i+1 < len(s) && s[i+1] == '\n' {
				i++
				seq = d.lineBreak()
			} else {
				seq = "X0D"
			}
		}
		dst = append(dst, e)
		dst = append(dst, seq...)
		dst = append(dst, e)
	}
	return dst, ok
}

// lineBreak returns the escape sequence for a line break: \.br\ (§2.7.6), or \X0A\ when '.' is
// one of the delimiters and would break \.br\ apart.
func (d *Delimiters) lineBreak() string {
	for _, c := range [...]byte{d.Field, d.Component, d.Repetition, d.Escape, d.Subcomponent, d.Truncation} {
		if c == '.' {
			return "X0A"
		}
	}
	return ".br"
}

// Unescape returns s with escape sequences decoded (v2.5.1 §2.7): the delimiter sequences
// \F\ \S\ \T\ \R\ \E\ \P\; \Xhh…\ as bytes, read as UTF-8 when they form valid UTF-8 and as
// ISO-8859-1 otherwise (Message values use the message's own character set instead); the
// formatting commands \.br\ and \.ce\ as "\n", \.sp n\ as n line breaks, \.sk n\ as n spaces;
// \H\, \N\, \.in\, \.ti\, \.fi\, \.nf\ and the character-set switches \Cxxyy\ and \Mxxyyzz\ are
// dropped. Anything else — \Z…\ local escapes, unknown or unterminated sequences — is kept as written.
func Unescape(d Delimiters, s string) string {
	return d.unescape(s, csUTF8)
}

func (d *Delimiters) unescape(s string, cs *charset) string {
	e := d.Escape
	if e == 0 {
		return s
	}
	i := strings.IndexByte(s, e)
	if i < 0 {
		return s
	}
	// The buffer is never touched again, so the string can share it.
	return unsafeString(d.appendUnescaped(make([]byte, 0, len(s)), s, i, cs))
}

// appendUnescaped appends s decoded to dst; i is the index of the first escape character in s.
func (d *Delimiters) appendUnescaped(dst []byte, s string, i int, cs *charset) []byte {
	e := d.Escape
	for {
		dst = append(dst, s[:i]...)
		s = s[i:] // s[0] == e
		j := strings.IndexByte(s[1:], e)
		if j < 0 { // unterminated: keep as written
			return append(dst, s...)
		}
		seq := s[1 : 1+j]
		dst = d.appendSequence(dst, seq, s[:j+2], cs)
		s = s[j+2:]
		if i = strings.IndexByte(s, e); i < 0 {
			return append(dst, s...)
		}
	}
}

// appendSequence appends the meaning of one escape sequence (seq, without its escape characters;
// whole is the sequence as written) to dst.
func (d *Delimiters) appendSequence(dst []byte, seq, whole string, cs *charset) []byte {
	if len(seq) == 1 {
		var c byte
		switch seq[0] {
		case 'F':
			c = d.Field
		case 'S':
			c = d.Component
		case 'T':
			c = d.Subcomponent
		case 'R':
			c = d.Repetition
		case 'E':
			c = d.Escape
		case 'P':
			c = d.Truncation
		case 'H', 'N': // start and end of highlighting: no plain-text meaning
			return dst
		}
		if c != 0 {
			return append(dst, c)
		}
		return append(dst, whole...)
	}
	if len(seq) == 0 {
		return append(dst, whole...)
	}
	switch seq[0] {
	case 'X':
		if raw, ok := hexBytes(seq[1:]); ok {
			return cs.decodeHex(dst, raw)
		}
	case 'C', 'M':
		// ISO 2022 character-set switches (§2.7.2): the text around them is already decoded.
		if (seq[0] == 'C' && len(seq) == 5 || seq[0] == 'M' && len(seq) == 7) && isHex(seq[1:]) {
			return dst
		}
	case '.':
		if out, ok := appendFormatting(dst, seq[1:]); ok {
			return out
		}
	}
	return append(dst, whole...)
}

// appendFormatting appends the plain-text meaning of a formatted-text command (v2.5.1 §2.7.6).
func appendFormatting(dst []byte, cmd string) ([]byte, bool) {
	if len(cmd) < 2 {
		return dst, false
	}
	name, arg := cmd[:2], strings.TrimSpace(cmd[2:])
	switch name {
	case "br", "ce":
		if arg != "" {
			return dst, false
		}
		return append(dst, '\n'), true
	case "fi", "nf":
		return dst, arg == ""
	case "in", "ti":
		if len(arg) > 0 && (arg[0] == '+' || arg[0] == '-') {
			arg = arg[1:]
		}
		_, ok := smallCount(arg)
		return dst, ok
	case "sp", "sk":
		n := 1
		if arg != "" {
			var ok bool
			if n, ok = smallCount(arg); !ok {
				return dst, false
			}
		}
		c := byte('\n')
		if name == "sk" {
			c = ' '
		}
		for range n {
			dst = append(dst, c)
		}
		return dst, true
	}
	return dst, false
}

// smallCount parses a formatting command's count, capped at 100 so that a hostile \.sp 999999999\
// cannot inflate a value.
func smallCount(s string) (int, bool) {
	if s == "" || len(s) > 6 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return min(n, 100), true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if unhex(s[i]) < 0 {
			return false
		}
	}
	return true
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}

// hexBytes decodes an even, non-zero number of hex digits.
func hexBytes(s string) ([]byte, bool) {
	if len(s) == 0 || len(s)%2 != 0 || !isHex(s) {
		return nil, false
	}
	b := make([]byte, len(s)/2)
	for i := range b {
		b[i] = byte(unhex(s[2*i])<<4 | unhex(s[2*i+1]))
	}
	return b, true
}
