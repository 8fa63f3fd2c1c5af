package hl7

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/traditionalchinese"
)

// charsetKind is how a message's bytes are turned into the UTF-8 text the Message holds, and back.
type charsetKind uint8

const (
	// kindUTF8: the bytes are kept as they are (UTF-8, or ASCII, which is a subset).
	kindUTF8 charsetKind = iota
	// kindLatin1: ISO-8859-1, one byte per code point U+0000–U+00FF.
	kindLatin1
	// kindLatin9: ISO-8859-15, Latin-1 with eight code points replaced (€, Š, š, Ž, ž, Œ, œ, Ÿ).
	kindLatin9
	// kindOther: any other character set of HL7 table 0211, through golang.org/x/text.
	kindOther
)

// charset is the character set a Message's text was decoded from and is encoded to by Bytes.
type charset struct {
	kind charsetKind
	name string            // the name Ferry reports, e.g. "UTF-8", "ISO-8859-1"
	enc  encoding.Encoding // for kindOther
	// multiByte sets can use ASCII byte values (delimiters among them) inside characters, so a
	// message in one must be decoded before it is split.
	multiByte bool
}

var (
	csUTF8   = &charset{kind: kindUTF8, name: "UTF-8"}
	csLatin1 = &charset{kind: kindLatin1, name: "ISO-8859-1"}
	csLatin9 = &charset{kind: kindLatin9, name: "ISO-8859-15"}
)

// table0211 maps the MSH-18 values of HL7 table 0211 (v2.5.1 §2.15.9.18) that Ferry can decode,
// plus the IANA spellings real senders use instead, to a charset. Keys are upper case.
var table0211 = map[string]*charset{
	"ASCII":         csUTF8, // ASCII is a subset of UTF-8; non-ASCII bytes follow the MSH-18-empty rule
	"UNICODE":       csUTF8, // an ER7 message that parsed byte-wise cannot be UCS-2; senders mean UTF-8
	"UNICODE UTF-8": csUTF8,
	"UTF-8":         csUTF8,
	"UTF8":          csUTF8,
	"8859/1":        csLatin1,
	"ISO-8859-1":    csLatin1,
	"ISO8859-1":     csLatin1,
	"LATIN1":        csLatin1,
	"8859/15":       csLatin9,
	"ISO-8859-15":   csLatin9,
	"8859/2":        {kind: kindOther, name: "ISO-8859-2", enc: charmap.ISO8859_2},
	"8859/3":        {kind: kindOther, name: "ISO-8859-3", enc: charmap.ISO8859_3},
	"8859/4":        {kind: kindOther, name: "ISO-8859-4", enc: charmap.ISO8859_4},
	"8859/5":        {kind: kindOther, name: "ISO-8859-5", enc: charmap.ISO8859_5},
	"8859/6":        {kind: kindOther, name: "ISO-8859-6", enc: charmap.ISO8859_6},
	"8859/7":        {kind: kindOther, name: "ISO-8859-7", enc: charmap.ISO8859_7},
	"8859/8":        {kind: kindOther, name: "ISO-8859-8", enc: charmap.ISO8859_8},
	"8859/9":        {kind: kindOther, name: "ISO-8859-9", enc: charmap.ISO8859_9},
	"ISO IR87":      {kind: kindOther, name: "ISO-2022-JP", enc: japanese.ISO2022JP, multiByte: true},
	"GB 18030-2000": {kind: kindOther, name: "GB18030", enc: simplifiedchinese.GB18030, multiByte: true},
	"KS X 1001":     {kind: kindOther, name: "EUC-KR", enc: korean.EUCKR, multiByte: true},
	"BIG-5":         {kind: kindOther, name: "Big5", enc: traditionalchinese.Big5, multiByte: true},
}

// lookupCharset returns the charset named by an MSH-18 value, or nil when the value is empty or
// not one Ferry decodes (then the MSH-18-empty rule applies).
func lookupCharset[T string | []byte](msh18 T) *charset {
	if cs, ok := table0211[string(msh18)]; ok {
		return cs
	}
	v := strings.ToUpper(strings.TrimSpace(string(msh18)))
	if v == "" {
		return nil
	}
	return table0211[v]
}

// settleCharset decides how to read a message, given the character set its MSH-18 declares
// (nil when MSH-18 is empty or unknown), whether its content has bytes ≥ 0x80, and its bytes:
//   - MSH-18 empty, ASCII or unknown: UTF-8 when the bytes are valid UTF-8, otherwise ISO-8859-1
//     (the usual encoding of 8-bit feeds that do not say; every byte string is valid Latin-1, so
//     nothing is lost and Bytes writes the same bytes back).
//   - UTF-8 ("UNICODE UTF-8", "UNICODE"): the bytes as they are, even where they are not valid
//     UTF-8, so that Bytes reproduces them.
//   - an ISO-8859 set: decoded from it, except when the bytes hold non-ASCII and are valid UTF-8:
//     then the sender mislabelled UTF-8 text (genuine 8859 text is virtually never valid UTF-8,
//     because its bytes 0x80–0x9F are unused control codes), and the message is read and written
//     as UTF-8 — again exactly the bytes received.
//   - a multi-byte set: decoded from it.
func settleCharset(declared *charset, msh18 string, nonASCII bool, text string) *charset {
	switch {
	case declared == csUTF8 && !strings.EqualFold(strings.TrimSpace(msh18), "ASCII"):
		return csUTF8
	case !nonASCII: // nothing to decode; Bytes still writes what Set adds in the declared set
		if declared == nil {
			return csUTF8
		}
		return declared
	case declared != nil && declared.multiByte:
		return declared
	case utf8.ValidString(text):
		return csUTF8 // empty, ASCII or unknown label; or an ISO-8859 label on UTF-8 bytes
	case declared == nil || declared == csUTF8:
		return csLatin1
	}
	return declared
}

// classify reports whether data is all ASCII, and whether it is valid UTF-8.
func classify(data []byte) (ascii, valid bool) {
	i := 0
	for ; i+8 <= len(data); i += 8 {
		if load64b(data, i)&0x8080808080808080 != 0 {
			break
		}
	}
	for ; i < len(data); i++ {
		if data[i] >= utf8.RuneSelf {
			return false, utf8.Valid(data[i:])
		}
	}
	return true, true
}

func load64b(b []byte, i int) uint64 {
	b = b[i : i+8]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// latin9 lists the eight code points where ISO-8859-15 differs from ISO-8859-1, by byte.
var latin9 = [...]struct {
	b byte
	r rune
}{{0xA4, '€'}, {0xA6, 'Š'}, {0xA8, 'š'}, {0xB4, 'Ž'}, {0xB8, 'ž'}, {0xBC, 'Œ'}, {0xBD, 'œ'}, {0xBE, 'Ÿ'}}

func latin9Rune(b byte) rune {
	if b >= 0xA4 && b <= 0xBE {
		for _, x := range latin9 {
			if x.b == b {
				return x.r
			}
		}
	}
	return rune(b)
}

// latin9Byte returns the ISO-8859-15 byte for r, and false when r has none.
func latin9Byte(r rune) (byte, bool) {
	for _, x := range latin9 {
		if x.r == r {
			return x.b, true
		}
		if rune(x.b) == r {
			return 0, false // replaced in 8859-15
		}
	}
	if r < 0x100 {
		return byte(r), true
	}
	return 0, false
}

// decode appends the UTF-8 text of data, in charset cs, to dst.
func (cs *charset) decode(dst, data []byte) []byte {
	switch cs.kind {
	case kindLatin1, kindLatin9:
		for _, b := range data {
			switch {
			case b < utf8.RuneSelf:
				dst = append(dst, b)
			case cs.kind == kindLatin9:
				dst = utf8.AppendRune(dst, latin9Rune(b))
			default:
				dst = append(dst, 0xC0|b>>6, 0x80|b&0x3F)
			}
		}
		return dst
	case kindOther:
		out, err := cs.enc.NewDecoder().Bytes(data)
		if err != nil { // x/text decoders replace bad input rather than fail; be safe anyway
			return csLatin1.decode(dst, data)
		}
		return append(dst, out...)
	}
	return append(dst, data...)
}

// encode appends text, encoded in charset cs, to dst. Code points cs cannot represent become
// '?'; Set refuses such values, so only text that bypassed Set can hit this.
func (cs *charset) encode(dst []byte, text string) []byte {
	switch cs.kind {
	case kindLatin1, kindLatin9:
		for i := 0; i < len(text); {
			c := text[i]
			if c < utf8.RuneSelf {
				dst = append(dst, c)
				i++
				continue
			}
			r, n := utf8.DecodeRuneInString(text[i:])
			i += n
			if cs.kind == kindLatin9 {
				b, ok := latin9Byte(r)
				if !ok {
					b = '?'
				}
				dst = append(dst, b)
			} else if r < 0x100 && !(r == utf8.RuneError && n == 1) {
				dst = append(dst, byte(r))
			} else {
				dst = append(dst, '?')
			}
		}
		return dst
	case kindOther:
		out, err := encoding.ReplaceUnsupported(cs.enc.NewEncoder()).String(text)
		if err != nil {
			return append(dst, text...)
		}
		return append(dst, out...)
	}
	return append(dst, text...)
}

// canEncode reports whether every code point of s can be written in charset cs.
func (cs *charset) canEncode(s string) bool {
	switch cs.kind {
	case kindLatin1, kindLatin9:
		for _, r := range s {
			if r < utf8.RuneSelf {
				continue
			}
			if cs.kind == kindLatin9 {
				if _, ok := latin9Byte(r); !ok {
					return false
				}
			} else if r >= 0x100 {
				return false
			}
		}
		// U+FFFD from invalid UTF-8 in s has no byte either; the range loop yields it.
		return true
	case kindOther:
		_, err := cs.enc.NewEncoder().String(s)
		return err == nil
	}
	return true
}

// decodeHex turns the bytes of a \Xhh…\ escape (v2.5.1 §2.7.5), which are in the message's
// character set, into UTF-8 text.
func (cs *charset) decodeHex(dst, raw []byte) []byte {
	if cs.kind == kindUTF8 {
		if utf8.Valid(raw) {
			return append(dst, raw...)
		}
		return csLatin1.decode(dst, raw)
	}
	return cs.decode(dst, raw)
}
