package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRepetitionFloodKeepsServing reproduces issue 17's quadratic-work attack end to end, on
// both stores: two senders, each on its own connection, send an order whose PID-3 has 40,000
// and 200,000 repetitions (they used to take 19 s and over 2 minutes, and delayed everyone's
// ACKs), while a normal sender on a third connection sends orders. Every normal order is
// answered AA; both floods are answered AR with ERR 207 at PID-3 and kept as rejected; and the
// server still drains and exits 0 on SIGTERM (startFerry's cleanup checks that). The timeouts
// only guard against hanging; nothing passes or fails on the clock.
func TestRepetitionFloodKeepsServing(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: -short")
	}
	forEachStore(t, func(t *testing.T, db, dir string) {
		p := startFerry(t, db, dir, serveOptions{})
		run := "R" + randomHex(3)
		type result struct {
			id  string
			ack *ackInfo
			err error
		}
		results := make(chan result, 2)
		for i, n := range []int{40_000, 200_000} {
			id := fmt.Sprintf("%s-flood-%d", run, i)
			data := repetitionFlood(id, n)
			peer := dialMLLP(t, p.MLLPAddr)
			go func() {
				ack, err := peer.roundTrip(data, 2*time.Minute)
				results <- result{id, ack, err}
			}()
		}
		normal := dialMLLP(t, p.MLLPAddr)
		for i := range 20 {
			id := fmt.Sprintf("%s-normal-%d", run, i)
			ack, err := normal.roundTrip(ormMessage("WELL", id), time.Minute)
			if err != nil || ack.Code != "AA" || ack.MSA2 != id {
				t.Fatalf("normal order %d while the floods are handled: %v %v, want AA", i, ack, err)
			}
		}
		for range 2 {
			r := <-results
			if r.err != nil {
				t.Fatalf("%s: %v", r.id, r.err)
			}
			if r.ack.Code != "AR" || r.ack.MSA2 != r.id || !r.ack.hasERRCode("207") || !strings.Contains(r.ack.ERR, "|PID^1^3|") {
				t.Errorf("%s: %v, want AR with ERR 207 at PID^1^3", r.id, r.ack)
			}
			stored := p.byControlID(t, r.id)
			if len(stored) != 1 || stored[0].Status != "rejected" || !strings.Contains(stored[0].Error, "PID-3") {
				t.Errorf("%s stored as %+v, want once, rejected, its error naming PID-3", r.id, stored)
			}
		}
	})
}

// repetitionFlood is an order whose PID-3 has n repetitions, none of them the patient's: the
// attack of issue 17 item 5.
func repetitionFlood(id string, n int) []byte {
	var b strings.Builder
	b.WriteString(`MSH|^~\&|E2E|FLOOD|FERRY|FERRY|20261127083000||ORM^O01|` + id + `|P|2.5.1` + "\rPID|1||")
	for i := range n {
		if i > 0 {
			b.WriteByte('~')
		}
		b.WriteString(strconv.Itoa(100000 + i))
		b.WriteString("^^^OTHER^MR")
	}
	b.WriteString("||NOBODY^NOT||19010101|U\rORC|NW|PO" + id + "|||SC\rOBR|1|PO" + id + "||71046^XR CHEST 2V^CPT\r")
	return []byte(b.String())
}
