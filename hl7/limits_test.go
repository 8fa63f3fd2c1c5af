package hl7

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/ferryhealth/ferry/internal/workcount"
)

// repeated returns a PID with n PID-3 repetitions and a message around it, plus extra segments.
func repeatedPID3(n int, extra ...string) []byte {
	reps := strings.Repeat("99999^^^OTHER^MR~", n)
	segs := append([]string{
		`MSH|^~\&|RIS|STMARYS|FERRY|FERRY|20261127083000||ORM^O01^ORM_O01|MSG0001|P|2.3|||AL|NE`,
		"PID|1||" + reps[:len(reps)-1] + "||NOBODY^NOT||19010101|U",
	}, extra...)
	return msg(segs...)
}

func obxs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "OBX|" + strconv.Itoa(i+1) + "|TX|REPORT||line " + strconv.Itoa(i+1) + "||||||F"
	}
	return out
}

func TestCheckLimits(t *testing.T) {
	defaults := Limits{MaxSegments: 10_000, MaxRepetitions: 1_000}
	for _, tc := range []struct {
		name   string
		data   []byte
		limits Limits
		want   *ParseError // nil: within the limits
	}{
		{"PID-3 of 40,000 repetitions (issue 17)", repeatedPID3(40_000), defaults,
			&ParseError{Segment: "PID", Sequence: 1, Field: 3, Position: 2, Code: CodeApplicationInternalError}},
		{"PID-3 of 200,000 repetitions (issue 17)", repeatedPID3(200_000), defaults,
			&ParseError{Segment: "PID", Sequence: 1, Field: 3, Position: 2, Code: CodeApplicationInternalError}},
		{"PID-3 at the limit", repeatedPID3(1_000), defaults, nil},
		{"PID-3 one beyond the limit", repeatedPID3(1_001), defaults,
			&ParseError{Segment: "PID", Sequence: 1, Field: 3, Position: 2, Code: CodeApplicationInternalError}},
		{"the second OBX beyond", repeatedPID3(1, "OBX|1|TX|||a", "OBX|2|TX|||a~b~c"), Limits{MaxRepetitions: 2},
			&ParseError{Segment: "OBX", Sequence: 2, Field: 5, Position: 4, Code: CodeApplicationInternalError}},
		{"10,000 segments", repeatedPID3(1, obxs(9_998)...), defaults, nil},
		{"10,001 segments", repeatedPID3(1, obxs(9_999)...), defaults,
			&ParseError{Segment: "OBX", Sequence: 9_999, Position: 10_001, Code: CodeApplicationInternalError}},
		{"MSH-2 holds the separator, not a repetition", repeatedPID3(1), Limits{MaxRepetitions: 1}, nil},
		{"no limits", repeatedPID3(40_000, obxs(20_000)...), Limits{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mustParse(t, tc.data)
			err := m.CheckLimits(tc.limits)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("CheckLimits = %v, want nil", err)
				}
				return
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("CheckLimits = %v, want a *ParseError", err)
			}
			got := *pe
			got.Reason = ""
			if got != *tc.want {
				t.Fatalf("CheckLimits = %+v, want %+v", got, *tc.want)
			}
			d := pe.Detail()
			if d.Segment != tc.want.Segment || d.Field != tc.want.Field || d.Code != CodeApplicationInternalError ||
				!strings.HasPrefix(d.Text, Path{Segment: tc.want.Segment, SegmentIndex: tc.want.Sequence, Field: tc.want.Field}.String()+": ") {
				t.Fatalf("Detail = %+v: want the segment and field named, code 207", d)
			}
			if strings.Contains(pe.Error(), "NOBODY") || strings.Contains(pe.Error(), "99999") {
				t.Fatalf("error text %q holds message content", pe.Error())
			}
		})
	}
}

// TestCheckLimitsIsLinear counts the work CheckLimits does on growing messages: doubling the
// message must at most double it (no clock: the steps are counted, see internal/workcount).
func TestCheckLimitsIsLinear(t *testing.T) {
	l := Limits{MaxSegments: 1 << 30, MaxRepetitions: 1 << 30}
	for _, shape := range []struct {
		name string
		make func(n int) []byte
	}{
		{"repetitions", func(n int) []byte { return repeatedPID3(n) }},
		{"repetitions beyond the limit", func(n int) []byte { return repeatedPID3(n) }},
		{"segments", func(n int) []byte { return repeatedPID3(1, obxs(n)...) }},
	} {
		t.Run(shape.name, func(t *testing.T) {
			lim := l
			if strings.Contains(shape.name, "beyond") {
				lim.MaxRepetitions = 10
			}
			assertLinear(t, shape.make, func(m *Message) { _ = m.CheckLimits(lim) })
		})
	}
}

// assertLinear measures read on messages of n = 5,000, 10,000 and 20,000 units: the work must
// at most double (with 10% slack) each time n doubles, and stay within 40 units per byte.
func assertLinear(t *testing.T, make func(n int) []byte, read func(*Message)) {
	t.Helper()
	var prev int64
	for _, n := range []int{5_000, 10_000, 20_000} {
		data := make(n)
		m := mustParse(t, data)
		work := workcount.Measure(func() { read(m) })
		if work > 40*int64(len(data)) {
			t.Errorf("n=%d: %d steps for %d bytes: more than 40 per byte", n, work, len(data))
		}
		if prev > 0 && float64(work) > 2.2*float64(prev) {
			t.Errorf("n=%d: %d steps, %.1f× the %d at n/2: not linear", n, work, float64(work)/float64(prev), prev)
		}
		prev = work
	}
}

// TestReadingByNumberIsLinear reads every repetition, component and segment by its number, as
// a mapping's each: does (PID-3[n].1, OBX[n]-5), and counts the work: issue 17's PID-3 of
// 40,000 repetitions took 19 s because each read scanned the field from its start.
func TestReadingByNumberIsLinear(t *testing.T) {
	pid3 := MustParsePath("PID-3.1")
	for _, tc := range []struct {
		name string
		make func(n int) []byte
		read func(*Message)
	}{
		{"GetPath PID-3[n].1", func(n int) []byte { return repeatedPID3(n) }, func(m *Message) {
			p := pid3
			for p.Repetition = 1; p.Repetition <= m.Count("PID-3"); p.Repetition++ {
				if m.GetPath(p) != "99999" {
					t.Fatalf("PID-3[%d].1 = %q", p.Repetition, m.GetPath(p))
				}
			}
		}},
		{"Field.Repetition(n).Component(4)", func(n int) []byte { return repeatedPID3(n) }, func(m *Message) {
			seg, _ := m.FindSegment("PID", 1)
			f := seg.Field(3)
			for r := 1; r <= f.NumRepetitions(); r++ {
				if v := f.Repetition(r).Component(4).Value(); v != "OTHER" {
					t.Fatalf("PID-3[%d].4 = %q", r, v)
				}
			}
		}},
		{"Component(n) of one long component list", func(n int) []byte {
			return msg(`MSH|^~\&|A|B|C|D|20240101||ADT^A01|1|P|2.5`, "PID|1||"+strings.Repeat("x&y^", n)+"z")
		}, func(m *Message) {
			seg, _ := m.FindSegment("PID", 1)
			rep := seg.Field(3).Repetition(1)
			for c := 1; c <= rep.NumComponents(); c++ {
				_ = rep.Component(c).Subcomponent(2).Value()
			}
		}},
		{"GetPath OBX[n]-5", func(n int) []byte { return repeatedPID3(1, obxs(n)...) }, func(m *Message) {
			p := MustParsePath("OBX-5")
			for p.SegmentIndex = 1; p.SegmentIndex <= m.Count("OBX"); p.SegmentIndex++ {
				if m.GetPath(p) == "" {
					t.Fatalf("OBX[%d]-5 is empty", p.SegmentIndex)
				}
			}
		}},
		{"Segment.Sequence", func(n int) []byte { return repeatedPID3(1, obxs(n)...) }, func(m *Message) {
			for i, s := range m.Segments() {
				if i >= 2 && s.Sequence() != i-1 {
					t.Fatalf("segment %d: Sequence %d", i, s.Sequence())
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { assertLinear(t, tc.make, tc.read) })
	}
}
