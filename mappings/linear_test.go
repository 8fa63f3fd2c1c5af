package mappings

import (
	"strconv"
	"strings"
	"testing"

	"github.com/ferryhealth/ferry/hl7"
	"github.com/ferryhealth/ferry/internal/workcount"
)

// TestApplyIsLinear applies the shipped mappings to messages of growing shape — a PID-3 of n
// repetitions (issue 17: 40,000 took 19 s), an ORU of n OBX lines — and counts the work the
// message reads do (internal/workcount: bytes scanned, segments visited; no clock). Doubling n
// must at most double the work, with slack. Not parallel: the count would include other tests'.
func TestApplyIsLinear(t *testing.T) {
	s := shippedSet(t)
	const msh = `MSH|^~\&|RIS|STMARYS|FERRY|FERRY|20261127083000||`
	for _, tc := range []struct {
		name, typ string
		make      func(n int) string
	}{
		{"ORM^O01 with a PID-3 of n repetitions", "ORM^O01", func(n int) string {
			reps := strings.Repeat("99999^^^STMARYS^MR~", n)
			return msh + "ORM^O01^ORM_O01|MSG0001|P|2.3|||AL|NE\r" +
				"PID|1||" + reps[:len(reps)-1] + "||DOE^JANE||19800101|F\r" +
				"ORC|NW|ORD1234^RIS|||SC\r" +
				"OBR|1|ORD1234^RIS||71020^CHEST 2 VIEWS^C4|||20261127083000||||||||||||ACC5678|||||CR\r"
		}},
		{"ORU^R01 with n OBX lines", "ORU^R01", func(n int) string {
			var b strings.Builder
			b.WriteString(msh + "ORU^R01^ORU_R01|PS000101|P|2.5.1|||AL|NE\r" +
				"PID|1||000123^^^STMARYS^MR||DOE^JANE^Q||19800102|F\r" +
				"ORC|RE|PL1001^RIS|FL2001^PACS||CM\r" +
				"OBR|1|PL1001^RIS|FL2001^PACS|71260^CT CHEST W/O CONTRAST^C4|||20261127090533-0500|||||||||1234^SMITH^ROBERT||ACC3001||||20261127104210-0500||CT|F\r")
			for i := range n {
				b.WriteString("OBX|" + strconv.Itoa(i+1) + "|TX|18782-3^Radiology Study observation (narrative)^LN|1|FINDINGS: line " + strconv.Itoa(i) + "||||||F\r")
			}
			return b.String()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := s.For("", tc.typ)
			if m == nil {
				t.Fatalf("no shipped mapping for %s", tc.typ)
			}
			var prev int64
			for _, n := range []int{2_000, 4_000, 8_000} {
				data := tc.make(n)
				msg, err := hl7.Parse([]byte(data))
				if err != nil {
					t.Fatal(err)
				}
				var applyErr error
				work := workcount.Measure(func() { _, applyErr = m.Apply(msg) })
				if applyErr != nil {
					t.Fatalf("n=%d: Apply: %v", n, applyErr)
				}
				if work > 40*int64(len(data)) {
					t.Errorf("n=%d: %d steps for %d bytes: more than 40 per byte", n, work, len(data))
				}
				if prev > 0 && float64(work) > 2.2*float64(prev) {
					t.Errorf("n=%d: %d steps, %.1f× the %d at n/2: not linear", n, work, float64(work)/float64(prev), prev)
				}
				t.Logf("n=%d: %d bytes, %d steps", n, len(data), work)
				prev = work
			}
		})
	}
}
