package main

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestDeliveryRecoversWhenTheEHRReturns (issue 18, item 6) with the default delivery settings:
// 65 reports are issued while the EHR is down, Ferry is killed (-9) and started again while it
// is still down; once the EHR listens again (Debian's python3-hl7 MLLP server), the reports
// reach it without waiting out a backoff: Ferry probes the EHR every few seconds and drains
// its queue at full speed when it answers. The times are logged for docs/performance.md; the
// test asserts the outcome (every report, each once), not the clock.
func TestDeliveryRecoversWhenTheEHRReturns(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ehrAddr := downAddr(t)
	config := epicConfig(ehrAddr, "") // the default delivery settings
	db := freshPostgresSchema(t, dir)
	p := startFerry(t, db, dir, serveOptions{Config: config})
	const n = 65
	var orders []string
	for i := range n {
		orders = append(orders, ordersORM(fmt.Sprintf("RC%02d", i), "NW", fmt.Sprintf("PLRC%02d", i), "SC", fmt.Sprintf("ACCRC%02d", i),
			"71260", "CT", "20261127", fmt.Sprintf("0009%02d", i)))
	}
	p.orderAll(t, orders...)
	p.postReport(t, "final", "ACCRC00", "Final read.", 201)
	awaitOutput(t, p.stderr, p.exited, "the EHR found down", func(log string) bool {
		return strings.Contains(log, `msg="destination down; its deliveries wait until it answers a probe"`)
	})
	p.Kill()

	p = startFerry(t, db, dir, serveOptions{Config: config})
	for i := 1; i < n; i++ {
		p.postReport(t, "final", fmt.Sprintf("ACCRC%02d", i), "Final read.", 201)
	}
	awaitOutput(t, p.stderr, p.exited, "the EHR found down after the restart", func(log string) bool {
		return strings.Contains(log, `msg="destination down; its deliveries wait until it answers a probe"`)
	})

	_, port, _ := net.SplitHostPort(ehrAddr)
	ehr := &ehrReceiver{Addr: ehrAddr}
	back := time.Now()
	startEHROn(t, dir, ehr, port)
	var first time.Duration
	// Re-checked at each line Ferry logs ("report delivered" follows each ACK).
	awaitOutput(t, p.stderr, p.exited, "every report at the EHR", func(string) bool {
		got := len(ehr.messages(t))
		if got > 0 && first == 0 {
			first = time.Since(back)
		}
		return got >= n
	})
	all := time.Since(back)
	t.Logf("EHR back: first report after %v, all %d after %v (drain %v)", first.Round(time.Millisecond), n, all.Round(time.Millisecond), (all - first).Round(time.Millisecond))
	seen := map[string]int{}
	for _, m := range ehr.messages(t) {
		seen[m.Value("MSH-10")]++
	}
	if len(seen) != n {
		t.Errorf("the EHR got %d distinct reports, want %d", len(seen), n)
	}
}
