package hl7

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/internal/workcount"
)

// addSeeds adds every corpus file (when the shared corpus is present) and a few hand-written
// messages to the fuzz corpus. Findings are kept in testdata/fuzz/<FuzzName>/.
func addSeeds(f *testing.F) {
	f.Helper()
	files, _ := filepath.Glob(filepath.Join(corpusDir, "*", "*.hl7"))
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	for _, s := range []string{
		"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1||1^^^H&1.2&ISO~2||DOE^JOHN\\S\\X\rOBX|1|TX|||a\\.br\\b\\XC3A9\\\r",
		"MSH#$*@!#A#B#C#D#2024##ORM$O01#1#P#2.3\nPID#1##X$Y*Z\n",
		"\xEF\xBB\xBFMSH|^~\\&#|A|||||||||2.7||||||8859/1\r\nPID|1||\xE9\xFC\r\n",
		"FHS|^~\\&\rBHS|^~\\&\rMSH|^~\\&|A\rBTS|1\rFTS|1\r",
		"MSH|^|A\rZZZ\r",
		"MSH|^~\\&|A|||||||||||||||GB 18030-2000\rPID|||\xD5\xC5\r",
	} {
		f.Add([]byte(s))
	}
}

// FuzzParse checks that Parse never panics, that every accessor works on what it accepts, and
// that Bytes is a fixed point: what it writes parses again and is written identically.
func FuzzParse(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			if _, ok := err.(*ParseError); !ok {
				t.Fatalf("error is %T, want *ParseError", err)
			}
			return
		}
		out := m.Bytes()
		m2, err := Parse(out)
		if err != nil {
			t.Fatalf("Bytes does not parse again: %v\nin  %q\nout %q", err, data, out)
		}
		if out2 := m2.Bytes(); !bytes.Equal(out, out2) {
			t.Fatalf("Bytes is not stable:\nfirst  %q\nsecond %q", out, out2)
		}
		if m.NumSegments() != m2.NumSegments() {
			t.Fatalf("%d segments, then %d", m.NumSegments(), m2.NumSegments())
		}
		// Reading must not panic, and the JSON must be valid.
		_ = m.Header()
		_ = ReadEveryField(m)
		if err := m.WriteTree(io.Discard); err != nil {
			t.Fatal(err)
		}
		js, err := m.MarshalJSON()
		if err != nil || !json.Valid(js) {
			t.Fatalf("MarshalJSON: %v\n%s", err, js)
		}
		for _, p := range []string{"MSH-1", "MSH-2", "MSH-9.2", "PID-3[2].4.1", "OBX[2]-5", "ZZZ-1"} {
			_ = m.Value(p)
		}
		for _, s := range m.Segments() {
			for i := 1; i <= s.NumFields()+1; i++ {
				fl := s.Field(i)
				_ = fl.Repetition(2).Component(3).Subcomponent(2).Value()
				for _, rep := range fl.Repetitions() {
					for _, c := range rep.Components() {
						for _, sc := range c.Subcomponents() {
							_ = sc.Value()
						}
					}
				}
			}
		}
		// A message that parsed can be acknowledged, and the ACK parses.
		ack := BuildACK(m.Header(), ACKOptions{Outcome: Error, ControlID: "A", Time: time.Unix(0, 0),
			Errors: []ErrorDetail{{Segment: "PID", Field: 3, Code: CodeDataType, Text: "x"}}})
		if _, err := Parse(ack); err != nil {
			t.Fatalf("ACK does not parse: %v\n%q", err, ack)
		}
		// Set keeps the message parseable and reads back what it wrote.
		if err := m.Set("PID-3[2].4.2", "a|b^c\nd"); err == nil {
			if got := m.Value("PID-3[2].4.2"); got != "a|b^c\nd" {
				t.Fatalf("Set then Get = %q", got)
			}
			if _, err := Parse(m.Bytes()); err != nil {
				t.Fatalf("Bytes after Set does not parse: %v", err)
			}
		}
	})
}

// FuzzReadHeader checks that ReadHeader never panics and, for an ASCII message that Parse
// accepts, reads the same header.
func FuzzReadHeader(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ReadHeader(data)
		if err != nil {
			return
		}
		_ = BuildACK(h, ACKOptions{Outcome: Reject, ControlID: "A"})
		m, perr := Parse(data)
		if perr != nil {
			return
		}
		if ascii, _ := classify(data); ascii && m.Header() != h {
			t.Fatalf("ReadHeader differs from Parse:\n%+v\n%+v", h, m.Header())
		}
	})
}

// FuzzSplitBatch checks that SplitBatch never panics and returns pieces of its input.
func FuzzSplitBatch(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs, err := SplitBatch(data)
		if err != nil {
			return
		}
		for _, m := range msgs {
			if len(m) == 0 || !bytes.Contains(data, m) || !bytes.HasPrefix(m, []byte("MSH")) {
				t.Fatalf("piece %q is not an MSH-led part of the input", m)
			}
		}
	})
}

// FuzzEscape checks that Unescape inverts Escape for any value and valid delimiters.
func FuzzEscape(f *testing.F) {
	f.Add(`|^~\&#`, "a|b^c~d\\e&f#g\r\nh\ri\nj")
	f.Add(`#$*@!`, `@F@ plain`)
	f.Fuzz(func(t *testing.T, delims, value string) {
		d, pe := parseDelimiters("MSH" + delims)
		if pe != nil || d.Escape == 0 {
			return
		}
		want := string(bytes.ReplaceAll([]byte(value), []byte("\r\n"), []byte("\n")))
		if got := Unescape(d, Escape(d, value)); got != want {
			t.Fatalf("Unescape(Escape(%q)) = %q", value, got)
		}
	})
}

// FuzzReadByNumber builds messages of many repetitions, components and segments from the fuzz
// input — a repetition's text repeated reps times in PID-3 and in segs OBX segments — reads
// every segment, repetition, component and subcomponent by its number, as mappings do
// (OBX[n]-5, PID-3[n].1), and checks that the work counted stays linear in the message's size.
// Issue 17: a PID-3 of 40,000 repetitions took 19 s because each read scanned from the start.
func FuzzReadByNumber(f *testing.F) {
	f.Add([]byte("12345^^^HOSP&1.2.3&ISO^MR"), uint16(2000), uint16(50))
	f.Add([]byte("x"), uint16(60000), uint16(0))
	f.Add([]byte(strings.Repeat("a^", 300)), uint16(20), uint16(300))
	f.Add([]byte(strings.Repeat("&", 200)), uint16(3), uint16(3))
	// Corpus fields as repetitions: real shapes of CX, XPN, XAD.
	files, _ := filepath.Glob(filepath.Join(corpusDir, "*", "*.hl7"))
	for i, file := range files {
		if i%50 != 0 {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		if m, err := Parse(NormalizeSegmentEnds(data)); err == nil && m.Count("PID") > 0 {
			f.Add([]byte(m.GetRawPath(MustParsePath("PID-3"))), uint16(500), uint16(20))
		}
	}
	f.Fuzz(func(t *testing.T, unit []byte, reps, segs uint16) {
		// One repetition's text: no field separator or line end (those would make other
		// fields and segments, not more repetitions), at most 1 KiB.
		unit = bytes.Map(func(r rune) rune {
			if r == '|' || r == '\r' || r == '\n' || r == '~' {
				return -1
			}
			return r
		}, unit)
		if len(unit) > 1024 {
			unit = unit[:1024]
		}
		field := bytes.Repeat(append(unit, '~'), int(reps)+1)
		field = field[:len(field)-1]
		var b bytes.Buffer
		b.WriteString("MSH|^~\\&|A|B|C|D|20240101||ORM^O01|1|P|2.5\rPID|1||")
		b.Write(field)
		b.WriteString("\r")
		for i := range int(segs) {
			b.WriteString("OBX|" + strconv.Itoa(i+1) + "|TX|||")
			b.Write(unit)
			b.WriteString("\r")
		}
		data := b.Bytes()
		m, err := Parse(data)
		if err != nil {
			return // bytes that do not make a message (an invalid UTF-8 / charset mix): nothing to read
		}
		work := workcount.Measure(func() { readByNumber(m) })
		// Each element is read piece by piece: a short one (under pieceIndexMinLen) costs at most
		// its length per piece, a long one is indexed; three levels below the field.
		limit := int64(3*(pieceIndexMinLen+2))*int64(len(data)) + 1<<12
		if work > limit {
			t.Fatalf("%d steps for %d bytes (%d repetitions, %d segments): more than %d", work, len(data), reps, segs, limit)
		}
	})
}

// readByNumber reads every segment by its occurrence, and in it every repetition, component and
// subcomponent by its number, the way mapping code walks a message.
func readByNumber(m *Message) {
	p3 := MustParsePath("PID-3.1")
	for p3.Repetition = 1; p3.Repetition <= m.Count("PID-3"); p3.Repetition++ {
		_ = m.GetPath(p3)
	}
	for _, id := range []string{"MSH", "PID", "OBX"} {
		for n := 1; n <= m.Count(id); n++ {
			seg, ok := m.FindSegment(id, n)
			if !ok {
				panic("FindSegment misses " + id + "[" + strconv.Itoa(n) + "]")
			}
			for i := 1; i <= seg.NumFields(); i++ {
				f := seg.Field(i)
				for r := 1; r <= f.NumRepetitions(); r++ {
					rep := f.Repetition(r)
					for c := 1; c <= rep.NumComponents(); c++ {
						comp := rep.Component(c)
						for s := 1; s <= comp.NumSubcomponents(); s++ {
							_ = comp.Subcomponent(s).Raw()
						}
					}
				}
			}
		}
	}
}
