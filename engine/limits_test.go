package engine_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/hl7"
)

// TestInboundShapeLimits reproduces issue 17's quadratic-work attack: an order whose PID-3 has
// 40,000 or 200,000 repetitions is refused AR with an ERR naming PID-3 (code 207) before any
// mapping reads it, stored as rejected for the analyst, and nothing is filed; an order at the
// limits (1,000 repetitions, 10,000 segments) is processed as any other.
func TestInboundShapeLimits(t *testing.T) {
	h := newOrderHarness(t)
	h.in.Limits = hl7.Limits{MaxSegments: 10_000, MaxRepetitions: 1_000}
	const msh = `MSH|^~\&|RIS|STMARYS|FERRY|FERRY|20261127083000||ORM^O01|CTRL|P|2.5.1` // ERR-2, ERR-3 (v2.5+), original mode
	orc := "ORC|NW|ORD%d^RIS|||SC"
	obr := "OBR|1|ORD%d^RIS||71020^CHEST 2 VIEWS^C4|||20261127083000|||||||||1234^SMITH^JOHN^^^DR||ACC%d|||||CR"
	pid3 := func(n int, authority string) string {
		reps := make([]string, n)
		for i := range reps {
			reps[i] = strconv.Itoa(100000+i) + "^^^" + authority + "^MR"
		}
		return "PID|1||" + strings.Join(reps, "~") + "||NOBODY^NOT||19010101|U"
	}
	order := func(n int) []string {
		return []string{strings.ReplaceAll(orc, "%d", strconv.Itoa(n)), strings.ReplaceAll(obr, "%d", strconv.Itoa(n))}
	}

	for _, n := range []int{40_000, 200_000} {
		t.Run(strconv.Itoa(n)+" repetitions refused", func(t *testing.T) {
			code, ack := h.send(msh, append([]string{pid3(n, "OTHER")}, order(n)...)...)
			if code != "AR" {
				t.Fatalf("MSA-1 = %s, want AR", code)
			}
			if got := ack.Value("ERR-2"); got != "PID^1^3" {
				t.Errorf("ERR-2 = %q, want PID^1^3 (segment, sequence, field)", got)
			}
			if got := ack.Value("ERR-3.1"); got != "207" {
				t.Errorf("ERR-3 = %q, want 207", got)
			}
			msgs, err := h.st.Messages(context.Background(), engine.MessageFilter{ControlID: ack.Value("MSA-2")})
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != 1 || msgs[0].Status != engine.StatusRejected || !strings.Contains(msgs[0].Error, "PID-3") {
				t.Fatalf("stored: %+v, want one message, rejected, its error naming PID-3", msgs)
			}
			if got := h.search("ServiceRequest", eq("identifier", "ORD"+strconv.Itoa(n))); len(got) != 0 {
				t.Errorf("a refused order was filed: %d ServiceRequests", len(got))
			}
		})
	}
	t.Run("at the limits processed", func(t *testing.T) {
		segs := []string{pid3(1_000, "STMARYS")}
		segs = append(segs, order(7)...)
		for i := len(segs) + 2; i <= 10_000; i++ { // MSH and the segments so far: 10,000 in all
			segs = append(segs, "NTE|"+strconv.Itoa(i)+"||comment")
		}
		h.mustAccept(msh, segs...)
		if got := h.search("ServiceRequest", eq("identifier", "ORD7")); len(got) != 1 {
			t.Fatalf("%d ServiceRequests for ORD7, want 1", len(got))
		}
		code, ack := h.send(msh, append(segs, "NTE|10001||one too many")...)
		if code != "AR" || ack.Value("ERR-2") != "NTE^9997" {
			t.Fatalf("10,001 segments: MSA-1 %s, ERR-2 %q; want AR naming NTE[9997], the 10,001st segment", code, ack.Value("ERR-2"))
		}
	})
}
