package dimse

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/simplifiedchinese"
)

// characterSet is a Specific Character Set (0008,0005) this package decodes text from and encodes
// text to (PS3.3 C.12.1.1.2, PS3.5 6.1). Text inside the package is UTF-8.
type characterSet struct {
	// term is the Defined Term a response names it by ("" for the default repertoire).
	term string
	// enc converts a single- or multi-byte set; nil for the default repertoire and ISO_IR 192,
	// whose bytes are already UTF-8.
	enc encoding.Encoding
	// utf8 marks ISO_IR 192: bytes that are not valid UTF-8 are an error.
	utf8 bool
	// iso2022 marks the code-extension form ("ISO 2022 IR 100"): escape sequences that designate
	// ASCII to G0 or this set to G1 are removed before decoding.
	iso2022 bool
	// unsupported names a term this package cannot decode: values holding only ASCII bytes are
	// still read (every DICOM character set has ASCII as G0), others are an error.
	unsupported string
}

var (
	charsetDefault = &characterSet{}                               // ISO_IR 6, the default repertoire (ASCII)
	charsetUTF8    = &characterSet{term: "ISO_IR 192", utf8: true} // Unicode in UTF-8
)

// singleByteCharsets are the single-byte extended character sets of PS3.3 table C.12-2 that
// golang.org/x/text implements exactly, by ISO-IR registration number.
var singleByteCharsets = map[string]encoding.Encoding{
	"100": charmap.ISO8859_1,  // Latin alphabet No. 1
	"101": charmap.ISO8859_2,  // Latin alphabet No. 2
	"109": charmap.ISO8859_3,  // Latin alphabet No. 3
	"110": charmap.ISO8859_4,  // Latin alphabet No. 4
	"144": charmap.ISO8859_5,  // Cyrillic
	"127": charmap.ISO8859_6,  // Arabic
	"126": charmap.ISO8859_7,  // Greek
	"138": charmap.ISO8859_8,  // Hebrew
	"148": charmap.ISO8859_9,  // Latin alphabet No. 5
	"203": charmap.ISO8859_15, // Latin alphabet No. 9
}

// errUnsupportedCharset wraps the term of a Specific Character Set that cannot be decoded.
var errUnsupportedCharset = errors.New("specific character set not supported")

// parseCharacterSet reads the values of Specific Character Set. A term it cannot decode gives a
// characterSet that still reads ASCII-only values (see characterSet.unsupported).
func parseCharacterSet(values []string) *characterSet {
	var terms []string
	for _, v := range values {
		if v = strings.TrimSpace(v); v != "" {
			terms = append(terms, v)
		}
	}
	if len(terms) == 0 {
		return charsetDefault
	}
	if len(terms) == 1 {
		switch t := terms[0]; {
		case t == "ISO_IR 6":
			return charsetDefault
		case t == "ISO_IR 192":
			return charsetUTF8
		case t == "GB18030":
			return &characterSet{term: t, enc: simplifiedchinese.GB18030}
		case t == "GBK":
			return &characterSet{term: t, enc: simplifiedchinese.GBK}
		case strings.HasPrefix(t, "ISO_IR "):
			if enc, ok := singleByteCharsets[strings.TrimPrefix(t, "ISO_IR ")]; ok {
				return &characterSet{term: t, enc: enc}
			}
		}
	}
	// Code extensions (PS3.5 6.1.2.5): "ISO 2022 IR 6" and at most one single-byte G1 set. The
	// multi-byte sets (IR 87, 149, 58, 159) are not supported.
	var g1 string
	for _, t := range terms {
		n, ok := strings.CutPrefix(t, "ISO 2022 IR ")
		switch {
		case !ok:
			return &characterSet{unsupported: strings.Join(terms, `\`)}
		case n == "6":
		case g1 == "" && singleByteCharsets[n] != nil:
			g1 = n
		default:
			return &characterSet{unsupported: strings.Join(terms, `\`)}
		}
	}
	if g1 == "" {
		return charsetDefault
	}
	// A response answers in the equivalent set without code extensions: same bytes, no escapes.
	return &characterSet{term: "ISO_IR " + g1, enc: singleByteCharsets[g1], iso2022: true}
}

// isASCII reports whether b holds only 7-bit bytes.
func isASCII[T string | []byte](b T) bool {
	for i := 0; i < len(b); i++ {
		if b[i] >= 0x80 {
			return false
		}
	}
	return true
}

// decode returns the text of a value as UTF-8. In the default repertoire, bytes outside ASCII
// are taken as UTF-8 when they are valid UTF-8 and as ISO 8859-1 otherwise: what senders that
// leave Specific Character Set out mean in practice.
func (cs *characterSet) decode(b []byte) (string, error) {
	if isASCII(b) && !(cs.iso2022 && bytes.IndexByte(b, 0x1B) >= 0) {
		return string(b), nil
	}
	switch {
	case cs.unsupported != "":
		return "", fmt.Errorf("%w: %s", errUnsupportedCharset, cs.unsupported)
	case cs.utf8:
		if !utf8.Valid(b) {
			return "", errors.New("value is not valid UTF-8 (ISO_IR 192)")
		}
		return string(b), nil
	case cs.enc == nil:
		if utf8.Valid(b) {
			return string(b), nil
		}
		out, _ := charmap.ISO8859_1.NewDecoder().Bytes(b) // every byte is a Latin-1 character
		return string(out), nil
	}
	if cs.iso2022 {
		var err error
		if b, err = stripEscapes(b); err != nil {
			return "", err
		}
	}
	out, err := cs.enc.NewDecoder().Bytes(b)
	if err != nil {
		return "", fmt.Errorf("value does not decode in %s: %w", cs.term, err)
	}
	return string(out), nil
}

// stripEscapes removes the ISO 2022 escape sequences that designate ASCII to G0 (ESC ( B) or a
// 96-character set to G1 (ESC - F): with one G1 set, both are no-ops (PS3.5 6.1.2.5.3).
func stripEscapes(b []byte) ([]byte, error) {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != 0x1B {
			out = append(out, b[i])
			continue
		}
		if i+2 >= len(b) || (b[i+1] != '(' && b[i+1] != '-') || (b[i+1] == '(' && b[i+2] != 'B') {
			return nil, errors.New("escape sequence of an unsupported character set")
		}
		i += 2
	}
	return out, nil
}

// encode converts UTF-8 text to this character set; ok is false when a character has no
// encoding in it.
func (cs *characterSet) encode(s string) (b []byte, ok bool) {
	if cs.enc == nil {
		return []byte(s), cs.utf8 || isASCII(s)
	}
	out, err := cs.enc.NewEncoder().String(s)
	if err != nil {
		return nil, false
	}
	return []byte(out), true
}

// affectedBySCS reports whether a VR's values are in the Specific Character Set; the others use
// the default repertoire only (PS3.5 6.1.2.3).
func (vr VR) affectedBySCS() bool {
	switch vr {
	case VRSH, VRLO, VRST, VRLT, VRPN, VRUC, VRUT:
		return true
	}
	return false
}
