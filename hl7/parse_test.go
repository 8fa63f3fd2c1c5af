package hl7

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/ferryhealth/ferry/internal/workcount"
)

// msg joins segments with CR and terminates the last one, as HL7 v2.5.1 §2.5.1 frames them.
func msg(segs ...string) []byte { return []byte(strings.Join(segs, "\r") + "\r") }

func mustParse(t *testing.T, data []byte) *Message {
	t.Helper()
	m, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse: %v\n%q", err, data)
	}
	return m
}

// checkValues asserts Get for each path → want pair.
func checkValues(t *testing.T, m *Message, want map[string]string) {
	t.Helper()
	for path, w := range want {
		got, err := m.Get(path)
		if err != nil {
			t.Errorf("Get(%s): %v", path, err)
		} else if got != w {
			t.Errorf("Get(%s) = %q, want %q", path, got, w)
		}
	}
}

func TestParseValues(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		in     []byte
		delims Delimiters
		want   map[string]string
	}{
		{
			name:   "standard delimiters",
			in:     msg(`MSH|^~\&|RIS|STMARYS|FERRY|FERRY|20261127083000||ORM^O01^ORM_O01|MSG1|P|2.3`, `PID|1||123^^^HOSP&1.2.3&ISO^MR~456^^^OTHER||DOE^JOHN^Q||19700101|M`, `OBX|1|TX|||first`, `OBX|2|TX|||second`),
			delims: DefaultDelimiters,
			want: map[string]string{
				"MSH-1": "|", "MSH-2": `^~\&`, "MSH-3": "RIS", "MSH-9": "ORM^O01^ORM_O01", "MSH-9.1": "ORM", "MSH-9.2": "O01", "MSH-10": "MSG1", "MSH-12": "2.3",
				"PID-1": "1", "PID-3": "123^^^HOSP&1.2.3&ISO^MR", "PID-3[1].1": "123", "PID-3.4": "HOSP&1.2.3&ISO", "PID-3.4.2": "1.2.3", "PID-3[2].4": "OTHER",
				"PID-3[3]": "", "PID-5.2": "JOHN", "PID-5.9": "", "PID-8": "M", "PID-99": "",
				"OBX-5": "first", "OBX[1]-5": "first", "OBX[2]-5": "second", "OBX[3]-5": "", "ZZZ-1": "",
				"MSH-2.1": `^~\&`, "MSH-2.2": "", "MSH-1[2]": "",
			},
		},
		{
			name:   "custom delimiters MSH#$*@!",
			in:     msg(`MSH#$*@!#SENDER#FAC#RECV#RFAC#20240115##ADT$A01#CTRL1#P#2.5`, `PID#1##123$$$HOSP!1.2!ISO*456##DOE$JOHN@S@X#a|b^c~d&e\f`),
			delims: Delimiters{Field: '#', Component: '$', Repetition: '*', Escape: '@', Subcomponent: '!'},
			want: map[string]string{
				"MSH-1": "#", "MSH-2": "$*@!", "MSH-3": "SENDER", "MSH-9": "ADT$A01", "MSH-9.2": "A01", "MSH-10": "CTRL1",
				"PID-3.4.2": "1.2", "PID-3[2]": "456", "PID-3[2].1": "456", "PID-5.1": "DOE", "PID-5.2": "JOHN$X",
				"PID-6": `a|b^c~d&e\f`, // the standard delimiters are ordinary text here
			},
		},
		{
			name:   "five encoding characters (v2.7 truncation)",
			in:     msg(`MSH|^~\&#|A|B|C|D|20240101||ADT^A01|X1|P|2.7`, `PID|1||ID#||LONGNAM#^FIRST`),
			delims: Delimiters{Field: '|', Component: '^', Repetition: '~', Escape: '\\', Subcomponent: '&', Truncation: '#'},
			want:   map[string]string{"MSH-2": `^~\&#`, "MSH-3": "A", "MSH-12": "2.7", "PID-3": "ID#", "PID-5.1": "LONGNAM#", "PID-5.2": "FIRST"},
		},
		{
			name:   "three encoding characters, no subcomponents",
			in:     msg(`MSH|^~\|A|B|C|D|20240101||ADT^A01|X2|P|2.2`, `PID|1||A&B^C`),
			delims: Delimiters{Field: '|', Component: '^', Repetition: '~', Escape: '\\'},
			want:   map[string]string{"MSH-2": `^~\`, "PID-3.1": "A&B", "PID-3.1.1": "A&B", "PID-3.1.2": ""},
		},
		{
			name:   "one encoding character",
			in:     msg(`MSH|^|A|B|C|D|20240101||ADT^A01|X3|P|2.1`, `PID|1||A~B\F\`),
			delims: Delimiters{Field: '|', Component: '^'},
			want:   map[string]string{"MSH-2": "^", "MSH-9.1": "ADT", "PID-3": `A~B\F\`, "PID-3[2]": ""},
		},
		{
			name:   "trailing separators kept",
			in:     msg(`MSH|^~\&|A|B|C|D|20240101||ADT^A01|X4|P|2.5|||||||`, `PID|1||X^^^~||||`),
			delims: DefaultDelimiters,
			want:   map[string]string{"PID-3": "X^^^", "PID-3.4": "", "PID-3[2]": "", "PID-7": "", "MSH-19": ""},
		},
		{
			name:   "segment without fields",
			in:     msg(`MSH|^~\&|A|B|C|D|20240101||ADT^A01|X5|P|2.5`, `ZZZ`, `PV1|1|O`),
			delims: DefaultDelimiters,
			want:   map[string]string{"ZZZ-1": "", "PV1-2": "O"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := mustParse(t, tc.in)
			if m.Delimiters() != tc.delims {
				t.Errorf("delimiters = %+v, want %+v", m.Delimiters(), tc.delims)
			}
			checkValues(t, m, tc.want)
			if got := m.Bytes(); !bytes.Equal(got, tc.in) {
				t.Errorf("Bytes:\n got %q\nwant %q", got, tc.in)
			}
		})
	}
}

func TestParseFraming(t *testing.T) {
	t.Parallel()
	want := msg(`MSH|^~\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5`, `PID|1||123`, `PV1|1|O`)
	cases := []struct {
		name string
		in   string
	}{
		{"CR", "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5\rPID|1||123\rPV1|1|O\r"},
		{"no final terminator", "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5\rPID|1||123\rPV1|1|O"},
		{"LF", "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5\nPID|1||123\nPV1|1|O\n"},
		{"CRLF", "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5\r\nPID|1||123\r\nPV1|1|O\r\n"},
		{"mixed line ends", "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5\r\nPID|1||123\nPV1|1|O\r"},
		{"BOM", "\xEF\xBB\xBFMSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5\rPID|1||123\rPV1|1|O\r"},
		{"blank lines and trailing CRs", "\r\nMSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5\r\r\nPID|1||123\n \t\nPV1|1|O\r\r\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := mustParse(t, []byte(tc.in))
			if m.NumSegments() != 3 {
				t.Errorf("%d segments, want 3", m.NumSegments())
			}
			if got := m.Bytes(); !bytes.Equal(got, want) {
				t.Errorf("Bytes:\n got %q\nwant %q", got, want)
			}
			if got := NormalizeSegmentEnds([]byte(tc.in)); !bytes.Equal(got, want) {
				t.Errorf("NormalizeSegmentEnds:\n got %q\nwant %q", got, want)
			}
			checkValues(t, m, map[string]string{"PID-3": "123", "PV1-2": "O", "MSH-12": "2.5"})
		})
	}
}

func TestUnescape(t *testing.T) {
	t.Parallel()
	trunc := DefaultDelimiters
	trunc.Truncation = '#'
	cases := []struct {
		name string
		d    Delimiters
		in   string
		want string
	}{
		{"plain", DefaultDelimiters, "DOE", "DOE"},
		{"delimiters", DefaultDelimiters, `a\F\b\S\c\T\d\R\e\E\f`, `a|b^c&d~e\f`},
		{"line break", DefaultDelimiters, `line 1\.br\line 2`, "line 1\nline 2"},
		{"highlight dropped", DefaultDelimiters, `\H\bold\N\ text`, "bold text"},
		{"formatting", DefaultDelimiters, `a\.sp 2\b\.sk3\c\.in+4\d\.fi\e\.ce\f`, "a\n\nb   cde\nf"},
		{"hex ASCII", DefaultDelimiters, `\X41\\X4243\`, "ABC"},
		{"hex UTF-8", DefaultDelimiters, `caf\XC3A9\`, "café"},
		{"hex not UTF-8 reads as Latin-1", DefaultDelimiters, `caf\XE9\`, "café"},
		{"hex CR LF", DefaultDelimiters, `a\X0D0A\b`, "a\r\nb"},
		{"bad hex kept", DefaultDelimiters, `\X4\ \XZZ\`, `\X4\ \XZZ\`},
		{"local escape kept", DefaultDelimiters, `\Zmine\`, `\Zmine\`},
		{"unknown kept", DefaultDelimiters, `\Q\ \.zz\`, `\Q\ \.zz\`},
		{"charset switch dropped", DefaultDelimiters, `a\C2842\b\M242842\c`, "abc"},
		{"unterminated kept", DefaultDelimiters, `a\F`, `a\F`},
		{"empty sequence kept", DefaultDelimiters, `a\\b`, `a\\b`},
		{"truncation declared", trunc, `x\P\y`, "x#y"},
		{"truncation not declared", DefaultDelimiters, `x\P\y`, `x\P\y`},
		{"custom escape", Delimiters{Field: '#', Component: '$', Repetition: '*', Escape: '@', Subcomponent: '!'}, `@F@@S@@E@\F\`, `#$@\F\`},
		{"no escape character", Delimiters{Field: '|', Component: '^'}, `\F\`, `\F\`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Unescape(tc.d, tc.in); got != tc.want {
				t.Errorf("Unescape(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestEscape(t *testing.T) {
	t.Parallel()
	trunc := DefaultDelimiters
	trunc.Truncation = '#'
	cases := []struct {
		name string
		d    Delimiters
		in   string
		want string
	}{
		{"plain", DefaultDelimiters, "DOE", "DOE"},
		{"delimiters", DefaultDelimiters, `a|b^c&d~e\f`, `a\F\b\S\c\T\d\R\e\E\f`},
		{"line breaks", DefaultDelimiters, "1\n2\r\n3\r4", `1\.br\2\.br\3\X0D\4`},
		{"truncation", trunc, "x#y", `x\P\y`},
		{"hash without truncation", DefaultDelimiters, "x#y", "x#y"},
		{"custom", Delimiters{Field: '#', Component: '$', Repetition: '*', Escape: '@', Subcomponent: '!'}, "#$*@!|^", `@F@@S@@R@@E@@T@|^`},
		{"no escape character", Delimiters{Field: '|', Component: '^'}, "a|b^c", "a b c"},
		{"non-ASCII untouched", DefaultDelimiters, "Müller–Łódź", "Müller–Łódź"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := Escape(tc.d, tc.in)
			if got != tc.want {
				t.Errorf("Escape(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if tc.d.Escape != 0 {
				back := Unescape(tc.d, got)
				if want := strings.ReplaceAll(tc.in, "\r\n", "\n"); back != want {
					t.Errorf("Unescape(Escape(%q)) = %q, want %q", tc.in, back, want)
				}
			}
		})
	}
}

func TestCharsets(t *testing.T) {
	t.Parallel()
	header := func(charset string) string {
		return `MSH|^~\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5||||||` + charset
	}
	cases := []struct {
		name     string
		in       []byte
		encoding string
		want     map[string]string
	}{
		{"UTF-8 declared", msg(header("UNICODE UTF-8"), "PID|1||1||Müller^Zoë|\\XC3A9\\"), "UTF-8",
			map[string]string{"PID-5.1": "Müller", "PID-5.2": "Zoë", "PID-6": "é"}},
		{"UNICODE means UTF-8", msg(header("UNICODE"), "PID|1||1||Łódź"), "UTF-8", map[string]string{"PID-5": "Łódź"}},
		{"Latin-1 declared", msg(header("8859/1"), "PID|1||1||M\xFCller^Zo\xEB|\\XE9\\"), "ISO-8859-1",
			map[string]string{"PID-5.1": "Müller", "PID-5.2": "Zoë", "PID-6": "é", "MSH-18": "8859/1"}},
		{"Latin-9 declared", msg(header("8859/15"), "PID|1||1||\xA4 \xBD\xE9"), "ISO-8859-15", map[string]string{"PID-5": "€ œé"}},
		{"Latin-2 declared", msg(header("8859/2"), "PID|1||1||\xA3\xF3d\xBC"), "ISO-8859-2", map[string]string{"PID-5": "Łódź"}},
		{"empty charset, UTF-8 bytes", msg(header(""), "PID|1||1||Müller"), "UTF-8", map[string]string{"PID-5": "Müller"}},
		{"empty charset, Latin-1 bytes", msg(header(""), "PID|1||1||M\xFCller|\\XE9\\"), "ISO-8859-1",
			map[string]string{"PID-5": "Müller", "PID-6": "é"}},
		{"ASCII declared, Latin-1 bytes", msg(header("ASCII"), "PID|1||1||M\xFCller"), "ISO-8859-1", map[string]string{"PID-5": "Müller"}},
		{"unknown charset, UTF-8 bytes", msg(header("x~y"), "PID|1||1||Müller"), "UTF-8", map[string]string{"PID-5": "Müller", "MSH-18": "x"}},
		{"8859/1 label on UTF-8 bytes", msg(header("8859/1"), "PID|1||1||Müller – Zoë"), "UTF-8", map[string]string{"PID-5": "Müller – Zoë"}},
		{"UTF-8 declared, invalid bytes kept", msg(header("UNICODE UTF-8"), "PID|1||1||M\xFCller"), "UTF-8", map[string]string{"PID-5": "M\xFCller"}},
		{"GB 18030", msg(header("GB 18030-2000"), "PID|1||1||\xD5\xC5\xC8\xFD"), "GB18030", map[string]string{"PID-5": "张三"}},
		{"Big5 with a delimiter byte inside a character", msg(header("BIG-5"), "PID|1||1||\xA5\x7C^X^\xA5\x5C"), "Big5", map[string]string{"PID-5.1": "四", "PID-5.2": "X", "PID-5.3": "功"}},
		{"8859/2 label on UTF-8 bytes", msg(header("8859/2"), "PID|1||1||Łódź"), "UTF-8", map[string]string{"PID-5": "Łódź"}},
		{"8859/3 with an undefined byte", msg(header("8859/3"), "PID|1||1||\xA5x"), "ISO-8859-3", map[string]string{"PID-5": "\uFFFDx"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := mustParse(t, tc.in)
			if m.Encoding() != tc.encoding {
				t.Errorf("Encoding = %s, want %s", m.Encoding(), tc.encoding)
			}
			checkValues(t, m, tc.want)
			if got := m.Bytes(); !bytes.Equal(got, tc.in) {
				t.Errorf("Bytes is not the input:\n got %q\nwant %q", got, tc.in)
			}
		})
	}
}

func TestSetCharset(t *testing.T) {
	t.Parallel()
	// An ASCII message labelled GB 18030 gets a Chinese name written in GB 18030.
	gb := mustParse(t, msg(`MSH|^~\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5||||||GB 18030-2000`, "PID|1||1"))
	if err := gb.Set("PID-5", "张三"); err != nil {
		t.Fatal(err)
	}
	if want := msg(`MSH|^~\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5||||||GB 18030-2000`, "PID|1||1||\xD5\xC5\xC8\xFD"); !bytes.Equal(gb.Bytes(), want) {
		t.Errorf("GB 18030 Bytes = %q, want %q", gb.Bytes(), want)
	}

	m := mustParse(t, msg(`MSH|^~\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5||||||8859/1`, "PID|1||1||M\xFCller"))
	if err := m.Set("PID-5.2", "Zoë"); err != nil {
		t.Fatal(err)
	}
	if want := msg(`MSH|^~\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5||||||8859/1`, "PID|1||1||M\xFCller^Zo\xEB"); !bytes.Equal(m.Bytes(), want) {
		t.Errorf("Bytes = %q, want %q", m.Bytes(), want)
	}
	if err := m.Set("PID-5.3", "€"); !errors.Is(err, ErrCannotSet) {
		t.Errorf("setting € in a Latin-1 message: err = %v, want ErrCannotSet", err)
	}
	// Switching MSH-18 switches the encoding Bytes writes.
	if err := m.Set("MSH-18", "UNICODE UTF-8"); err != nil {
		t.Fatal(err)
	}
	if want := msg(`MSH|^~\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5||||||UNICODE UTF-8`, "PID|1||1||Müller^Zoë"); !bytes.Equal(m.Bytes(), want) {
		t.Errorf("Bytes = %q, want %q", m.Bytes(), want)
	}
}

func TestSet(t *testing.T) {
	t.Parallel()
	const mshLine = `MSH|^~\&|A|B|C|D|20240101||ORU^R01|X1|P|2.5`
	cases := []struct {
		name  string
		start []byte
		path  string
		value string
		want  []byte
	}{
		{"replace field", msg(mshLine, "PID|1||123"), "PID-3", "456", msg(mshLine, "PID|1||456")},
		{"grow fields", msg(mshLine, "PID|1"), "PID-5", "DOE", msg(mshLine, "PID|1||||DOE")},
		{"grow repetition and components", msg(mshLine, "PID|1||123"), "PID-3[2].4.1", "HOSP", msg(mshLine, "PID|1||123~^^^HOSP")},
		{"grow field, repetition, component, subcomponent", msg(mshLine, "PID|1"), "PID-3[2].4.2", "1.2.3", msg(mshLine, "PID|1||~^^^&1.2.3")},
		{"replace component keeps the others", msg(mshLine, "PID|1||||DOE^JOHN^Q"), "PID-5.2", "JANE", msg(mshLine, "PID|1||||DOE^JANE^Q")},
		{"replace repetition keeps the others", msg(mshLine, "PID|1||A^1~B^2~C^3"), "PID-3[2]", "X", msg(mshLine, "PID|1||A^1~X~C^3")},
		{"no repetition means the first", msg(mshLine, "PID|1||A^1~B^2"), "PID-3", "X", msg(mshLine, "PID|1||X~B^2")},
		{"value is escaped", msg(mshLine, "OBX|1|TX"), "OBX-5", "a|b^c\nd", msg(mshLine, `OBX|1|TX|||a\F\b\S\c\.br\d`)},
		{"append missing segment", msg(mshLine, "PID|1"), "OBX-5", "x", msg(mshLine, "PID|1", "OBX|||||x")},
		{"append missing occurrences", msg(mshLine, "OBX|1"), "OBX[3]-1", "3", msg(mshLine, "OBX|1", "OBX", "OBX|3")},
		{"set in MSH", msg(mshLine), "MSH-10", "X2", msg(`MSH|^~\&|A|B|C|D|20240101||ORU^R01|X2|P|2.5`)},
		{"grow MSH", msg(mshLine), "MSH-15", "AL", msg(mshLine + "|||AL")},
		{"set an empty component", msg(mshLine, "PID|1||A^B^C"), "PID-3.2", "", msg(mshLine, "PID|1||A^^C")},
		{"message with LF ends", []byte(mshLine + "\nPID|1\n"), "PID-2", "x", msg(mshLine, "PID|1|x")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := mustParse(t, tc.start)
			if err := m.Set(tc.path, tc.value); err != nil {
				t.Fatalf("Set(%s): %v", tc.path, err)
			}
			if got := m.Bytes(); !bytes.Equal(got, tc.want) {
				t.Errorf("Bytes:\n got %q\nwant %q", got, tc.want)
			}
			if got := m.Value(tc.path); got != strings.ReplaceAll(tc.value, "\r\n", "\n") {
				t.Errorf("Get(%s) after Set = %q, want %q", tc.path, got, tc.value)
			}
			if _, err := Parse(m.Bytes()); err != nil {
				t.Errorf("Bytes after Set does not parse: %v", err)
			}
		})
	}
}

func TestSetErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		in    []byte
		path  string
		value string
	}{
		{"bad path", msg(`MSH|^~\&|A`), "PID.5", "x"},
		{"segment only", msg(`MSH|^~\&|A`), "PID", "x"},
		{"MSH-1", msg(`MSH|^~\&|A`), "MSH-1", "#"},
		{"MSH-2", msg(`MSH|^~\&|A`), "MSH-2", "^~\\"},
		{"second MSH", msg(`MSH|^~\&|A`), "MSH[2]-3", "x"},
		{"batch segment", msg(`MSH|^~\&|A`), "BHS-3", "x"},
		{"no escape character for a delimiter", msg(`MSH|^~|A`), "MSH-3", "a|b"},
		{"no repetition separator", msg(`MSH|^|A`), "MSH-3[2]", "x"},
		{"no repetition separator in a missing segment", msg(`MSH|^|A`), "ZZZ-3[2]", "x"},
		{"no subcomponent separator", msg(`MSH|^~\|A`), "PID-3.1.2", "x"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := mustParse(t, tc.in)
			before := m.Bytes()
			if err := m.Set(tc.path, tc.value); err == nil {
				t.Errorf("Set(%s) succeeded, want an error", tc.path)
			}
			if !bytes.Equal(m.Bytes(), before) {
				t.Errorf("failed Set changed the message: %q", m.Bytes())
			}
		})
	}
}

func TestNewMessageAndAppendSegment(t *testing.T) {
	t.Parallel()
	m, err := NewMessage(Delimiters{})
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][2]string{{"MSH-3", "FERRY"}, {"MSH-9.1", "ORU"}, {"MSH-9.2", "R01"}, {"MSH-10", "C1"}, {"MSH-12", "2.5.1"}, {"PID-3.1", "123"}} {
		if err := m.Set(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 2; i++ {
		n, err := m.AppendSegment("OBX")
		if err != nil || n != i {
			t.Fatalf("AppendSegment = %d, %v; want %d", n, err, i)
		}
	}
	if err := m.Set("OBX[2]-5", "second"); err != nil {
		t.Fatal(err)
	}
	want := msg(`MSH|^~\&|FERRY||||||ORU^R01|C1||2.5.1`, "PID|||123", "OBX", "OBX|||||second")
	if got := m.Bytes(); !bytes.Equal(got, want) {
		t.Errorf("Bytes:\n got %q\nwant %q", got, want)
	}
	if _, err := m.AppendSegment("MSH"); err == nil {
		t.Error("AppendSegment(MSH) succeeded")
	}
	if _, err := NewMessage(Delimiters{Field: '|', Component: '|'}); err == nil {
		t.Error("NewMessage with repeated delimiters succeeded")
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		in       string
		want     ParseError // Reason not compared
		errorStr string
	}{
		{"empty", "", ParseError{Segment: "MSH", Sequence: 1, Position: 1, Code: CodeSegmentSequence}, "hl7: MSH: message does not start with an MSH segment"},
		{"only blank lines", "\r\n \r\n", ParseError{Segment: "MSH", Sequence: 1, Position: 1, Code: CodeSegmentSequence}, ""},
		{"no MSH", "PID|1||SECRET", ParseError{Segment: "MSH", Sequence: 1, Position: 1, Code: CodeSegmentSequence}, ""},
		{"batch header", "FHS|^~\\&\rMSH|^~\\&|A\r", ParseError{Segment: "MSH", Sequence: 1, Position: 1, Code: CodeSegmentSequence}, ""},
		{"MSH alone", "MSH", ParseError{Segment: "MSH", Sequence: 1, Field: 1, Position: 1, Code: CodeRequiredFieldMissing}, "hl7: MSH-1: field separator missing"},
		{"no encoding characters", "MSH||A|B", ParseError{Segment: "MSH", Sequence: 1, Field: 2, Position: 1, Code: CodeRequiredFieldMissing}, "hl7: MSH-2: encoding characters missing"},
		{"alphanumeric field separator", "MSHX^~\\&XA", ParseError{Segment: "MSH", Sequence: 1, Field: 1, Position: 1, Code: CodeDataType}, ""},
		{"repeated encoding character", "MSH|^~\\\\&|A", ParseError{Segment: "MSH", Sequence: 1, Field: 2, Position: 1, Code: CodeDataType}, ""},
		{"six encoding characters", "MSH|^~\\&#!|A", ParseError{Segment: "MSH", Sequence: 1, Field: 2, Position: 1, Code: CodeDataType}, ""},
		{"digit encoding character", "MSH|0000|A", ParseError{Segment: "MSH", Sequence: 1, Field: 2, Position: 1, Code: CodeDataType}, ""},
		{"bad segment ID", "MSH|^~\\&|A\rPID|1\rDOE^JOHN|SECRET\r", ParseError{Position: 3, Code: CodeSegmentSequence}, "hl7: segment 3: invalid segment ID: want three capital letters or digits, then the field separator"},
		{"long segment ID", "MSH|^~\\&|A\rPIDX|1\r", ParseError{Position: 2, Code: CodeSegmentSequence}, ""},
		{"lower-case segment ID", "MSH|^~\\&|A\rpid|1\r", ParseError{Position: 2, Code: CodeSegmentSequence}, ""},
		{"wrapped line", "MSH|^~\\&|A\rOBX|1|TX|||first line\nsecond line\r", ParseError{Position: 3, Code: CodeSegmentSequence}, ""},
		{"second MSH", "MSH|^~\\&|A\rPID|1\rMSH|^~\\&|B\r", ParseError{Segment: "MSH", Sequence: 2, Position: 3, Code: CodeSegmentSequence}, ""},
		{"batch trailer", "MSH|^~\\&|A\rPID|1\rBTS|1\r", ParseError{Segment: "BTS", Sequence: 1, Position: 3, Code: CodeSegmentSequence}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tc.in))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *ParseError", err)
			}
			got := *pe
			got.Reason = ""
			if got != tc.want {
				t.Errorf("ParseError = %+v, want %+v", got, tc.want)
			}
			if tc.errorStr != "" && pe.Error() != tc.errorStr {
				t.Errorf("Error() = %q, want %q", pe.Error(), tc.errorStr)
			}
			if strings.Contains(pe.Error(), "SECRET") || strings.Contains(pe.Error(), "DOE") {
				t.Errorf("Error() leaks message content: %q", pe.Error())
			}
			d := pe.Detail()
			if d.Segment != pe.Segment || d.Sequence != pe.Sequence || d.Field != pe.Field || d.Code != pe.Code || d.Severity != "E" || d.Text == "" {
				t.Errorf("Detail() = %+v does not match %+v", d, pe)
			}
		})
	}
}

func TestPaths(t *testing.T) {
	t.Parallel()
	good := map[string]Path{
		"PID":          {Segment: "PID"},
		"OBX[2]":       {Segment: "OBX", SegmentIndex: 2},
		"PID-3":        {Segment: "PID", Field: 3},
		"PID-3[2].1":   {Segment: "PID", Field: 3, Repetition: 2, Component: 1},
		"OBR-4.2":      {Segment: "OBR", Field: 4, Component: 2},
		"MSH-9.1":      {Segment: "MSH", Field: 9, Component: 1},
		"PID-3[2].4.1": {Segment: "PID", Field: 3, Repetition: 2, Component: 4, Subcomponent: 1},
		"OBX[3]-5":     {Segment: "OBX", SegmentIndex: 3, Field: 5},
		"ZP1-12":       {Segment: "ZP1", Field: 12},
	}
	for s, want := range good {
		got, err := ParsePath(s)
		if err != nil || got != want {
			t.Errorf("ParsePath(%q) = %+v, %v; want %+v", s, got, err, want)
		}
		if got.String() != s {
			t.Errorf("Path.String() = %q, want %q", got.String(), s)
		}
	}
	for _, s := range []string{"", "PI", "pid-3", "PID-", "PID-0", "PID-3[]", "PID-3[0]", "PID-3.", "PID-3.1.", "PID-3.1.1.1", "PID.3", "PID-3x", "OBX[2", "PID-99999999", "1ID-3", "PID-3[1]2"} {
		if p, err := ParsePath(s); err == nil {
			t.Errorf("ParsePath(%q) = %+v, want an error", s, p)
		} else if !errors.Is(err, ErrBadPath) {
			t.Errorf("ParsePath(%q) error %v does not wrap ErrBadPath", s, err)
		}
	}
	m := mustParse(t, msg(`MSH|^~\&|A`, "PID|1"))
	if _, err := m.Get("PID"); !errors.Is(err, ErrBadPath) {
		t.Errorf("Get(PID) err = %v, want ErrBadPath", err)
	}
	if _, err := m.Get("PID-x"); err == nil {
		t.Error("Get(PID-x) succeeded")
	}
	if v := m.Value("PID-x"); v != "" {
		t.Errorf("Value(bad path) = %q", v)
	}
}

func TestCountAndSegments(t *testing.T) {
	t.Parallel()
	m := mustParse(t, msg(`MSH|^~\&|A|B|C|D|20240101||ORU^R01|X1|P|2.5`, `PID|1||A~B~C||DOE^JOHN\S\X&Y`, `OBX|1`, `OBX|2`, `NTE|1`, `OBX|3`))
	for path, want := range map[string]int{"OBX": 3, "PID": 1, "ZZZ": 0, "PID-3": 3, "PID-5": 1, "PID-4": 0, "PID-30": 0, "OBX[2]-1": 1, "OBX[2]": 0, "PID-3.1": 0} {
		if got := m.Count(path); got != want {
			t.Errorf("Count(%s) = %d, want %d", path, got, want)
		}
	}
	segs := m.Segments()
	var names []string
	for _, s := range segs {
		names = append(names, s.Name())
	}
	if got := strings.Join(names, " "); got != "MSH PID OBX OBX NTE OBX" {
		t.Errorf("segments %s", got)
	}
	if segs[5].Sequence() != 3 || segs[4].Sequence() != 1 || segs[2].Index() != 2 {
		t.Errorf("Sequence/Index wrong")
	}
	msh := segs[0]
	if msh.NumFields() != 12 || msh.Field(1).Raw() != "|" || msh.Field(2).Value() != `^~\&` || msh.Field(9).Repetition(1).Component(2).Value() != "R01" {
		t.Errorf("MSH fields: %d %q %q", msh.NumFields(), msh.Field(1).Raw(), msh.Field(2).Value())
	}
	pid := segs[1]
	f5 := pid.Field(5)
	if f5.NumRepetitions() != 1 || f5.Repetition(1).NumComponents() != 2 {
		t.Errorf("PID-5 shape: %d reps, %d components", f5.NumRepetitions(), f5.Repetition(1).NumComponents())
	}
	c2 := f5.Repetition(1).Component(2)
	if c2.Raw() != `JOHN\S\X&Y` || c2.Value() != "JOHN^X&Y" || c2.NumSubcomponents() != 2 || c2.Subcomponent(1).Value() != "JOHN^X" || c2.Subcomponent(2).Raw() != "Y" {
		t.Errorf("PID-5.2: raw %q value %q subs %d", c2.Raw(), c2.Value(), c2.NumSubcomponents())
	}
	if pid.Field(3).NumRepetitions() != 3 || pid.Field(3).Repetition(3).Value() != "C" || pid.Field(3).Value() != "A~B~C" {
		t.Errorf("PID-3 repetitions")
	}
	if pid.Field(40).NumRepetitions() != 0 || pid.Field(40).Value() != "" || pid.Field(0).Raw() != "" {
		t.Errorf("absent field not empty")
	}
	if pid.Raw() != `PID|1||A~B~C||DOE^JOHN\S\X&Y` {
		t.Errorf("PID raw %q", pid.Raw())
	}
	if got := ReadEveryField(m); got <= 0 {
		t.Errorf("ReadEveryField = %d", got)
	}
}

func TestHeader(t *testing.T) {
	t.Parallel()
	m := mustParse(t, msg(`MSH|^~\&|EHR^1.2.3^ISO|STMARYS^2.3^ISO|FERRY|FERRY|20261127083000||OMI^O23^OMI_O23|MSG\T\2|P^T|2.5.1^USA|||AL|NE||UNICODE UTF-8~8859/1`))
	want := Header{
		Delimiters: DefaultDelimiters, SendingApplication: "EHR", SendingFacility: "STMARYS", ReceivingApplication: "FERRY", ReceivingFacility: "FERRY",
		MessageType: "OMI^O23^OMI_O23", MessageCode: "OMI", TriggerEvent: "O23", MessageStructure: "OMI_O23", ControlID: "MSG&2",
		ProcessingID: "P", Version: "2.5.1", AcceptAckType: "AL", ApplicationAckType: "NE", Charset: "UNICODE UTF-8",
	}
	if got := m.Header(); got != want {
		t.Errorf("Header:\n got %+v\nwant %+v", got, want)
	}
	if !want.Enhanced() || (Header{}).Enhanced() {
		t.Error("Enhanced wrong")
	}
	custom := mustParse(t, msg(`MSH#$*@!#A#B#C#D#2024##ORM$O01#1#P#2.3`)).Header()
	if custom.MessageType != "ORM^O01" || custom.TriggerEvent != "O01" {
		t.Errorf("custom delimiters: MessageType %q", custom.MessageType)
	}
}

func TestReadHeader(t *testing.T) {
	t.Parallel()
	full := `MSH|^~\&|RIS|STMARYS|FERRY|FERRY|20261127083000||ORM^O01|MSG0001|P|2.3`
	cases := []struct {
		name    string
		in      string
		control string
		msgType string
		err     error
	}{
		{"whole message", full + "\rPID|1\r", "MSG0001", "ORM^O01", nil},
		{"truncated after MSH-10", full[:len(full)-6], "MSG0001", "ORM^O01", nil},
		{"truncated inside MSH-9", full[:55], "", "ORM^O0", nil},
		{"bad segment later", full + "\rGARBAGE\r", "MSG0001", "ORM^O01", nil},
		{"batch around it", "FHS|^~\\&\rBHS|^~\\&\r" + full + "\rBTS|1\rFTS|1\r", "MSG0001", "ORM^O01", nil},
		{"MLLP byte and BOM", "\xEF\xBB\xBF\x0b" + full, "MSG0001", "ORM^O01", nil},
		{"garbage before MSH on its line", "[SOM]" + full, "MSG0001", "ORM^O01", nil},
		{"repeated encoding character", `MSH|^~\\&|RIS|STMARYS|FERRY|FERRY|20261127083000||ORM^O01|MSG0001|P|2.3`, "MSG0001", "ORM^O01", nil},
		{"no MSH", "PID|1||123\r", "", "", ErrNoHeader},
		{"empty", "", "", "", ErrNoHeader},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, err := ReadHeader([]byte(tc.in))
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if h.ControlID != tc.control || h.MessageType != tc.msgType {
				t.Errorf("ControlID %q MessageType %q, want %q %q", h.ControlID, h.MessageType, tc.control, tc.msgType)
			}
			if tc.err == nil && (h.SendingApplication != "RIS" || h.Delimiters.Field != '|') {
				t.Errorf("header %+v", h)
			}
		})
	}
	if _, err := ReadHeader([]byte("MSH")); err == nil {
		t.Error("ReadHeader(MSH) without separator: want an error")
	}
}

func TestSplitBatch(t *testing.T) {
	t.Parallel()
	m1 := "MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rPID|1"
	m2 := "MSH|^~\\&|A|B|C|D|2024||ADT^A01|2|P|2.5\rPID|2"
	cases := []struct {
		name string
		in   string
		want []string
	}{
		{"single message", m1 + "\r", []string{m1 + "\r"}},
		{"full batch", "FHS|^~\\&|A\rBHS|^~\\&|A\r" + m1 + "\r" + m2 + "\rBTS|2\rFTS|1\r", []string{m1 + "\r", m2 + "\r"}},
		{"batch with LF", strings.ReplaceAll("BHS|^~\\&|A\r"+m1+"\r"+m2+"\rBTS|2\r", "\r", "\n"), []string{strings.ReplaceAll(m1, "\r", "\n") + "\n", strings.ReplaceAll(m2, "\r", "\n") + "\n"}},
		{"messages back to back", m1 + "\r" + m2, []string{m1 + "\r", m2}},
		{"MLLP framing", "\x0b" + m1 + "\r\x1c\r\x0b" + m2 + "\r\x1c\r", []string{m1 + "\r", m2 + "\r"}},
		{"blank lines between", m1 + "\r\n\r\n" + m2 + "\r\n", []string{m1 + "\r\n", m2 + "\r\n"}},
		{"BOM", "\xEF\xBB\xBF" + m1, []string{m1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := SplitBatch([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d messages, want %d: %q", len(got), len(tc.want), got)
			}
			for i := range got {
				if string(got[i]) != tc.want[i] {
					t.Errorf("message %d = %q, want %q", i+1, got[i], tc.want[i])
				}
				if _, err := Parse(got[i]); err != nil {
					t.Errorf("message %d does not parse: %v", i+1, err)
				}
			}
		})
	}
	for name, in := range map[string]string{
		"empty":           "",
		"empty batch":     "FHS|^~\\&\rBHS|^~\\&\rBTS|0\rFTS|1\r",
		"junk before MSH": "# comment\r" + m1,
		"junk after BTS":  "BHS|^~\\&\r" + m1 + "\rBTS|1\rjunk\r",
	} {
		if msgs, err := SplitBatch([]byte(in)); err == nil {
			t.Errorf("%s: SplitBatch = %q, want an error", name, msgs)
		}
	}
}

func TestParserReuse(t *testing.T) {
	t.Parallel()
	var p Parser
	a := msg(`MSH|^~\&|A|B|C|D|2024||ADT^A01|1|P|2.5`, "PID|1||111")
	b := msg(`MSH|^~\&|A|B|C|D|2024||ADT^A01|2|P|2.5||||||8859/1`, "PID|1||\xE9\xE9")
	for range 3 {
		m, err := p.Parse(a)
		if err != nil || m.Value("PID-3") != "111" || !bytes.Equal(m.Bytes(), a) {
			t.Fatalf("first message: %v", err)
		}
		m, err = p.Parse(b)
		if err != nil || m.Value("PID-3") != "éé" || !bytes.Equal(m.Bytes(), b) {
			t.Fatalf("second message: %v %q", err, m.Value("PID-3"))
		}
		if _, err := p.Parse([]byte("garbage")); err == nil {
			t.Fatal("garbage parsed")
		}
	}
}

func TestGetDoesNotAllocate(t *testing.T) {
	m := mustParse(t, msg(`MSH|^~\&|A|B|C|D|2024||ADT^A01|1|P|2.5`, `PID|1||123^^^HOSP~456||DOE^JOHN`, `OBX|1|TX|||a\.br\b`))
	p := MustParsePath("PID-5.2")
	if n := testing.AllocsPerRun(100, func() { _ = m.GetPath(p) }); n != 0 {
		t.Errorf("GetPath allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = m.Get("PID-3[2].1") }); n != 0 {
		t.Errorf("Get allocates %v times", n)
	}
	var ps Parser
	data := msg(`MSH|^~\&|A|B|C|D|2024||ADT^A01|1|P|2.5`, `PID|1||123^^^HOSP~456||DOE^JOHN`)
	_, _ = ps.Parse(data)
	if n := testing.AllocsPerRun(100, func() { m, _ := ps.Parse(data); _ = ReadEveryField(m) }); n != 0 {
		t.Errorf("Parser.Parse + ReadEveryField allocates %v times", n)
	}
}

func TestWriteTree(t *testing.T) {
	t.Parallel()
	m := mustParse(t, msg(`MSH|^~\&|A||||2024||ADT^A01|1|P|2.5`, `PID|1||123^^^H&1.2&ISO~456||DOE^JOHN||||||a\.br\b	c`, `OBX|1`, `OBX|2|||||~x`))
	var b bytes.Buffer
	if err := m.WriteTree(&b); err != nil {
		t.Fatal(err)
	}
	want := `MSH
  MSH-1  |
  MSH-2  ^~\&
  MSH-3  A
  MSH-7  2024
  MSH-9[1].1  ADT
  MSH-9[1].2  A01
  MSH-10  1
  MSH-11  P
  MSH-12  2.5
PID
  PID-1  1
  PID-3[1].1  123
  PID-3[1].4.1  H
  PID-3[1].4.2  1.2
  PID-3[1].4.3  ISO
  PID-3[2]  456
  PID-5[1].1  DOE
  PID-5[1].2  JOHN
  PID-11  a\nb\tc
OBX
  OBX-1  1
OBX[2]
  OBX[2]-1  2
  OBX[2]-6[2]  x
`
	if b.String() != want {
		t.Errorf("WriteTree:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestMarshalJSON(t *testing.T) {
	t.Parallel()
	m := mustParse(t, msg(`MSH|^~\&|A||||2024||ADT^A01|1|P|2.5||||||8859/1`, "PID|1||123^^^H&1.2&ISO~456||M\xDCLLER^J\\S\\R|<b>", `ZZZ`))
	got, err := m.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"encoding":"ISO-8859-1","delimiters":"|^~\\&","header":{"sendingApplication":"A","sendingFacility":"","receivingApplication":"","receivingFacility":"","messageType":"ADT^A01","messageCode":"ADT","triggerEvent":"A01","messageStructure":"","controlID":"1","processingID":"P","version":"2.5","acceptAckType":"","applicationAckType":"","charset":"8859/1"},` +
		`"segments":[{"name":"MSH","fields":["|","^~\\&","A","","","","2024","",[["ADT","A01"]],"1","P","2.5","","","","","","8859/1"]},` +
		`{"name":"PID","fields":["1","",[["123","","",["H","1.2","ISO"]],["456"]],"",[["MÜLLER","J^R"]],"<b>"]},` +
		`{"name":"ZZZ","fields":[]}]}`
	if string(got) != want {
		t.Errorf("MarshalJSON:\n got %s\nwant %s", got, want)
	}
	var v any
	if err := json.Unmarshal(got, &v); err != nil {
		t.Errorf("invalid JSON: %v", err)
	}
}

// TestHugeFieldsStayLinear guards against quadratic walks: a field of a million components, or
// repetitions, must be read, printed and serialized with work proportional to its size — counted
// (internal/workcount), not timed. Not parallel: the count would include other tests' work.
func TestHugeFieldsStayLinear(t *testing.T) {
	const n = 1 << 20
	big := msg(`MSH|^~\&|A|B|C|D|2024||ADT^A01`+strings.Repeat("^x", n)+`|1|P|2.5`,
		"PID|1||"+strings.Repeat("1^2&3~", n)+"|"+strings.Repeat(`\F\`, n))
	m := mustParse(t, big)
	work := workcount.Measure(func() {
		h := m.Header()
		if h.ControlID != "1" || len(h.MessageType) != len("ADT^A01")+2*n {
			t.Errorf("header: control ID %q, message type of %d bytes", h.ControlID, len(h.MessageType))
		}
		if err := m.WriteTree(io.Discard); err != nil {
			t.Fatal(err)
		}
		if _, err := m.MarshalJSON(); err != nil {
			t.Fatal(err)
		}
		reps := 0
		for range m.Segments()[1].Field(3).Repetitions() {
			reps++
		}
		if reps != n+1 || m.Count("PID-3") != n+1 {
			t.Errorf("%d repetitions, want %d", reps, n+1)
		}
		if got := len(m.Value("PID-4")); got != n {
			t.Errorf("PID-4 decodes to %d bytes, want %d", got, n)
		}
		if v := m.Value("PID-3[1000000].2.2"); v != "3" {
			t.Errorf("PID-3[1000000].2.2 = %q", v)
		}
		_ = ReadEveryField(m)
	})
	if work > 20*int64(len(big)) {
		t.Errorf("%d steps for %d bytes: something is quadratic", work, len(big))
	}
}

func TestIterators(t *testing.T) {
	t.Parallel()
	m := mustParse(t, msg(`MSH|^~\&|A`, `PID|1||a1&a2^b~~c`))
	var got []string
	for r, rep := range m.Segments()[1].Field(3).Repetitions() {
		for c, comp := range rep.Components() {
			for s, sub := range comp.Subcomponents() {
				got = append(got, Path{Segment: "PID", Field: 3, Repetition: r, Component: c, Subcomponent: s}.String()+"="+sub.Value())
			}
		}
	}
	want := "PID-3.1.1=a1 PID-3.1.2=a2 PID-3.2.1=b PID-3[2].1.1= PID-3[3].1.1=c"
	if strings.Join(got, " ") != want {
		t.Errorf("got  %s\nwant %s", strings.Join(got, " "), want)
	}
	for range m.Segments()[1].Field(9).Repetitions() {
		t.Error("absent field has repetitions")
	}
	for i := range m.Segments()[0].Field(2).Repetitions() {
		if i != 1 {
			t.Error("MSH-2 splits")
		}
	}
}

// TestDocExamples checks the examples of docs/hl7-paths.md.
func TestDocExamples(t *testing.T) {
	t.Parallel()
	m := mustParse(t, msg(
		`MSH|^~\&|RIS|STMARYS|FERRY|FERRY|20261127083000||ORM^O01^ORM_O01|MSG0001|P|2.3`,
		`PID|1||12345^^^STMARYS&1.2.3&ISO^MR~987^^^STATE||DOE^JANE^Q||19800101|F`,
		`ORC|NW|ORD1`,
		`OBR|1|ORD1||71020^CHEST 2 VIEWS^C4`,
		`OBX|1|TX|||Lungs are clear.`,
		`OBX|2|TX|||No acute disease\.br\seen.`,
	))
	checkValues(t, m, map[string]string{
		"MSH-1": "|", "MSH-2": `^~\&`, "MSH-9": "ORM^O01^ORM_O01", "MSH-9.1": "ORM", "MSH-9.2": "O01", "MSH-10": "MSG0001",
		"PID-3": "12345^^^STMARYS&1.2.3&ISO^MR", "PID-3[2]": "987^^^STATE", "PID-3[2].1": "987", "PID-3.4": "STMARYS&1.2.3&ISO",
		"PID-3[1].4.1": "STMARYS", "PID-3.4.2": "1.2.3", "PID-5.2": "JANE", "OBR-4.2": "CHEST 2 VIEWS", "OBX-5": "Lungs are clear.",
		"OBX[2]-5": "No acute disease\nseen.", "OBX[3]-5": "", "PID-3[2].4.1": "STATE",
	})
	if m.Count("PID-3") != 2 || m.Count("OBX") != 2 {
		t.Errorf("Count: PID-3 %d, OBX %d", m.Count("PID-3"), m.Count("OBX"))
	}
	var tree bytes.Buffer
	_ = m.WriteTree(&tree)
	for _, line := range []string{"PID\n  PID-1  1\n  PID-3[1].1  12345\n  PID-3[1].4.1  STMARYS\n", "  PID-3[2].4  STATE\n", "OBX[2]\n  OBX[2]-1  2\n  OBX[2]-2  TX\n  OBX[2]-5  No acute disease\\nseen.\n"} {
		if !strings.Contains(tree.String(), line) {
			t.Errorf("tree lacks %q:\n%s", line, tree.String())
		}
	}
	js, _ := m.MarshalJSON()
	for _, part := range []string{`{"name":"PID","fields":["1","",[["12345","","",["STMARYS","1.2.3","ISO"],"MR"],["987","","","STATE"]],"",[["DOE","JANE","Q"]],"","19800101","F"]}`,
		`{"name":"MSH","fields":["|","^~\\&","RIS","STMARYS","FERRY","FERRY","20261127083000","",[["ORM","O01","ORM_O01"]],"MSG0001","P","2.3"]}`} {
		if !strings.Contains(string(js), part) {
			t.Errorf("JSON lacks %s:\n%s", part, js)
		}
	}
}

// ParseShared reads the same message as Parse without copying the bytes it is given: parsing a
// large message allocates its index, not its text (the inbound flow keeps the bytes anyway).
func TestParseShared(t *testing.T) {
	obx := "OBX|1|ED|PDF^Report||^AP^PDF^Base64^" + strings.Repeat("JVBERi0xLjQK", 40000) + "\r"
	cases := map[string]string{
		"ascii":      "MSH|^~\\&|RIS|STMARYS|FERRY|TELE|20240101||ORU^R01|C1|P|2.5.1\rPID|1||123^^^H||DOE^JANE\r" + obx,
		"latin1":     "MSH|^~\\&|RIS|STMARYS|FERRY|TELE|20240101||ADT^A08|C2|P|2.5|||||||8859/1\rPID|1||123^^^H||M\xdcLLER^J\r",
		"line feeds": "MSH|^~\\&|RIS|STMARYS|FERRY|TELE|20240101||ADT^A08|C3|P|2.5\nPID|1||123\n\n",
		"broken":     "PID|1||123\r",
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			data := []byte(in)
			want, wantErr := Parse([]byte(in))
			got, err := ParseShared(data)
			if (err == nil) != (wantErr == nil) {
				t.Fatalf("ParseShared error %v, Parse error %v", err, wantErr)
			}
			if err != nil {
				return
			}
			gotName, _ := got.Get("PID-3")
			wantName, _ := want.Get("PID-3")
			if !bytes.Equal(got.Bytes(), want.Bytes()) || gotName != wantName || gotName == "" {
				t.Errorf("ParseShared read the message differently from Parse")
			}
			if string(data) != in {
				t.Errorf("ParseShared changed the bytes it was given")
			}
		})
	}
	data := []byte(cases["ascii"])
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := ParseShared(data); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(len(data))/4 {
		t.Errorf("ParseShared of a %d-byte message allocated %d bytes: it copied the text", len(data), alloc)
	}
}
