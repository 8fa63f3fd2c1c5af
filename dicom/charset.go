package dicom

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
)

// CharacterSet is a Specific Character Set (0008,0005) this package decodes text from and encodes
// text to (PS3.3 C.12.1.1.2, PS3.5 6.1). Text inside the package is UTF-8.
type CharacterSet struct {
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
	// multiByte marks code extensions with a multi-byte set (decodeMultiByte); katakana, JIS
	// X 0201 in G1 with them.
	multiByte, katakana bool
	// unsupported names a term this package cannot decode: values holding only ASCII bytes are
	// still read (every DICOM character set has ASCII as G0), others are an error.
	unsupported string
}

// Converts reports whether text in this set must be converted to and from UTF-8 (and can be:
// a single-byte set, GB18030 or GBK; the sets with code extensions that hold multi-byte sets
// are read only).
func (cs *CharacterSet) Converts() bool { return cs.enc != nil && !cs.multiByte }

// Term returns the Defined Term of Specific Character Set that names this set in a response
// ("" for the default repertoire).
func (cs *CharacterSet) Term() string { return cs.term }

var (
	DefaultCharacterSet = &CharacterSet{}                               // ISO_IR 6, the default repertoire (ASCII)
	UTF8CharacterSet    = &CharacterSet{term: "ISO_IR 192", utf8: true} // Unicode in UTF-8
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

// ErrUnsupportedCharacterSet wraps the term of a Specific Character Set that cannot be decoded.
var ErrUnsupportedCharacterSet = errors.New("specific character set not supported")

// ParseCharacterSet reads the values of Specific Character Set. A term it cannot decode gives a
// CharacterSet that still reads ASCII-only values (see CharacterSet.unsupported).
func ParseCharacterSet(values []string) *CharacterSet {
	var terms []string
	for _, v := range values {
		if v = strings.TrimSpace(v); v != "" {
			terms = append(terms, v)
		}
	}
	if len(terms) == 0 {
		return DefaultCharacterSet
	}
	if len(terms) == 1 {
		switch t := terms[0]; {
		case t == "ISO_IR 6":
			return DefaultCharacterSet
		case t == "ISO_IR 192":
			return UTF8CharacterSet
		case t == "GB18030":
			return &CharacterSet{term: t, enc: simplifiedchinese.GB18030}
		case t == "GBK":
			return &CharacterSet{term: t, enc: simplifiedchinese.GBK}
		case t == "ISO_IR 13":
			// JIS X 0201: Romaji and half-width katakana, one byte each, as Shift JIS has them.
			return &CharacterSet{term: t, enc: japanese.ShiftJIS}
		case strings.HasPrefix(t, "ISO_IR "):
			if enc, ok := singleByteCharsets[strings.TrimPrefix(t, "ISO_IR ")]; ok {
				return &CharacterSet{term: t, enc: enc}
			}
		}
	}
	// Code extensions (PS3.5 6.1.2.5): "ISO 2022 IR 6" and at most one single-byte G1 set; or
	// the multi-byte sets, read only (a response is never encoded in them).
	var g1 string
	multiByte := false
	for _, t := range terms {
		n, ok := strings.CutPrefix(t, "ISO 2022 IR ")
		switch {
		case !ok:
			return &CharacterSet{unsupported: strings.Join(terms, `\`)}
		case n == "6":
		case multiByteCharsets[n] != nil || n == "13":
			multiByte = true
		case g1 == "" && singleByteCharsets[n] != nil:
			g1 = n
		default:
			return &CharacterSet{unsupported: strings.Join(terms, `\`)}
		}
	}
	if multiByte {
		return parseMultiByte(terms, g1)
	}
	if g1 == "" {
		return DefaultCharacterSet
	}
	// A response answers in the equivalent set without code extensions: same bytes, no escapes.
	return &CharacterSet{term: "ISO_IR " + g1, enc: singleByteCharsets[g1], iso2022: true}
}

// multiByteCharsets are the multi-byte sets of PS3.3 table C.12-4 with code extensions, by
// ISO-IR number: Japanese (JIS X 0208, JIS X 0212: golang.org/x/text's ISO-2022-JP decoder
// reads their escape sequences itself), Korean (KS X 1001 in G1: EUC-KR once the escapes are
// removed) and Chinese (GB 2312 in G1: EUC-CN, which GBK extends).
var multiByteCharsets = map[string]encoding.Encoding{
	"87":  japanese.ISO2022JP,
	"159": japanese.ISO2022JP,
	"149": korean.EUCKR,
	"58":  simplifiedchinese.GBK,
}

// parseMultiByte returns the set for code extensions naming a multi-byte set (g1: a
// single-byte G1 set also named, "" when none). Mixing Japanese with Korean or Chinese, or a
// multi-byte set with a single-byte G1 other than JIS X 0201, is not supported.
func parseMultiByte(terms []string, g1 string) *CharacterSet {
	cs := &CharacterSet{multiByte: true}
	for _, t := range terms {
		switch n := strings.TrimPrefix(t, "ISO 2022 IR "); n {
		case "6":
		case "13":
			cs.katakana = true // JIS X 0201: half-width katakana in G1, Romaji in G0
			cs.enc = japanese.ISO2022JP
		default:
			if enc := multiByteCharsets[n]; enc != nil {
				if cs.enc != nil && cs.enc != enc {
					return &CharacterSet{unsupported: strings.Join(terms, `\`)}
				}
				cs.enc = enc
			}
		}
	}
	if g1 != "" || cs.katakana && cs.enc != japanese.ISO2022JP {
		return &CharacterSet{unsupported: strings.Join(terms, `\`)}
	}
	return cs
}

// decodeMultiByte decodes a value in a multi-byte set with code extensions. ISO-2022-JP reads
// its own escape sequences; for Korean and Chinese they only designate the one set G1 holds
// and are removed. Half-width katakana (JIS X 0201 in G1, bytes A1–DF) are mapped to
// U+FF61–U+FF9F, which no ISO-2022-JP decoder reads.
func (cs *CharacterSet) decodeMultiByte(b []byte) (string, error) {
	if cs.enc != japanese.ISO2022JP {
		b = removeEscapeSequences(b)
	}
	var out strings.Builder
	dec := cs.enc.NewDecoder()
	for len(b) > 0 {
		i := len(b)
		if cs.katakana {
			if i = bytes.IndexFunc(b, func(r rune) bool { return r >= 0x80 }); i < 0 {
				i = len(b)
			}
		}
		if i > 0 {
			s, err := dec.Bytes(b[:i])
			if err != nil {
				return "", fmt.Errorf("value does not decode in %s: %w", cs.enc, err)
			}
			out.Write(s)
			b = b[i:]
			continue
		}
		if b[0] < 0xA1 || b[0] > 0xDF {
			return "", errors.New("value does not decode in JIS X 0201")
		}
		out.WriteRune(rune(0xFF61 + int(b[0]) - 0xA1))
		b = b[1:]
	}
	return strings.ToValidUTF8(out.String(), "\uFFFD"), nil
}

// removeEscapeSequences drops ISO 2022 escape sequences (ESC, intermediate bytes 20–2F, a
// final byte 30–7E; ISO/IEC 2022 13.2).
func removeEscapeSequences(b []byte) []byte {
	if bytes.IndexByte(b, 0x1B) < 0 {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != 0x1B {
			out = append(out, b[i])
			continue
		}
		j := i + 1
		for j < len(b) && b[j] >= 0x20 && b[j] <= 0x2F {
			j++
		}
		if j < len(b) && b[j] >= 0x30 && b[j] <= 0x7E {
			i = j
			continue
		}
		out = append(out, b[i]) // not an escape sequence: kept
	}
	return out
}

// IsASCII reports whether b holds only 7-bit bytes.
func IsASCII[T string | []byte](b T) bool {
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
func (cs *CharacterSet) Decode(b []byte) (string, error) {
	if IsASCII(b) && !((cs.iso2022 || cs.multiByte) && bytes.IndexByte(b, 0x1B) >= 0) {
		return string(b), nil
	}
	switch {
	case cs.unsupported != "":
		return "", fmt.Errorf("%w: %s", ErrUnsupportedCharacterSet, cs.unsupported)
	case cs.multiByte:
		return cs.decodeMultiByte(b)
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
		return "", fmt.Errorf("value does not decode in %s: %w", cs.Term(), err)
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
func (cs *CharacterSet) Encode(s string) (b []byte, ok bool) {
	if cs.enc == nil {
		return []byte(s), cs.utf8 || IsASCII(s)
	}
	out, err := cs.enc.NewEncoder().String(s)
	if err != nil {
		return nil, false
	}
	return []byte(out), true
}

// AffectedBySCS reports whether a VR's values are in the Specific Character Set; the others use
// the default repertoire only (PS3.5 6.1.2.3).
func (vr VR) AffectedBySCS() bool {
	switch vr {
	case VRSH, VRLO, VRST, VRLT, VRPN, VRUC, VRUT:
		return true
	}
	return false
}
