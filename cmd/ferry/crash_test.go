package main

import (
	"bytes"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCrashLosesNothingAcknowledged kills ferry serve with SIGKILL three times in a row (issue
// 18: kill -9 ×3 per store), each time while eight connections send as fast as ACKs come back and
// each time restarting it on the same store, then checks DESIGN.md rule 1 over all three rounds:
// every message that was answered AA is stored exactly once, accepted; none is processed twice;
// and a resent one is recognised as a duplicate and answered with the original's ACK, byte for
// byte.
func TestCrashLosesNothingAcknowledged(t *testing.T) {
	const (
		kills          = 3
		crashAfterACKs = 200 // per round, ~25 per connection: each kill lands mid-stream
		conns          = 8
		facility       = "CRASH"
	)
	if testing.Short() {
		t.Skip("slow: -short")
	}
	t.Parallel()
	forEachStore(t, func(t *testing.T, db, dir string) {
		run := "K" + randomHex(3)
		var (
			mu      sync.Mutex
			acked   = map[string][]byte{} // control ID → the ACK received
			unacked []string              // sent (or being sent) when the server died
		)
		for round := range kills {
			// Each round starts on what the previous kill left: recovery runs first, then
			// the senders.
			p := startFerry(t, db, dir, serveOptions{})
			var wg sync.WaitGroup
			// busy closes once this round's senders have had crashAfterACKs messages answered
			// AA: the kill then comes with every connection in full flow, however fast the
			// machine.
			busy := make(chan struct{})
			roundACKs := 0
			for c := range conns {
				peer := dialMLLP(t, p.MLLPAddr)
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := 0; ; n++ {
						id := fmt.Sprintf("%s-%d-%d-%d", run, round, c, n)
						ack, err := peer.roundTrip(ormMessage(facility, id), 15*time.Second)
						mu.Lock()
						switch {
						case err != nil: // the server is gone
							unacked = append(unacked, id)
						case ack.Code == "AA" && ack.MSA2 == id:
							acked[id] = ack.Raw
							if roundACKs++; roundACKs == crashAfterACKs {
								close(busy)
							}
						default:
							t.Errorf("%s: %v, want AA", id, ack)
							err = fmt.Errorf("unexpected ACK")
						}
						mu.Unlock()
						if err != nil {
							return
						}
					}
				}()
			}
			select {
			case <-busy:
			case <-time.After(hangGuard): // only guards against hanging
				t.Fatalf("round %d: fewer than %d messages answered AA after %v", round+1, crashAfterACKs, hangGuard)
			}
			p.Kill()
			wg.Wait()
			t.Logf("kill %d of %d: %d messages AA'd and %d sent but not ACKed so far", round+1, kills, len(acked), len(unacked))
		}

		p2 := startFerry(t, db, dir, serveOptions{})
		stored := map[string][]apiMessage{}
		for _, m := range p2.messages(t, url.Values{"sending_facility": {facility}}) {
			stored[m.ControlID] = append(stored[m.ControlID], m)
		}
		var bad []string
		for id := range acked {
			if got := stored[id]; len(got) != 1 || got[0].Status != "accepted" {
				bad = append(bad, fmt.Sprintf("%s: stored %d times %v", id, len(got), statuses(got)))
			}
		}
		sort.Strings(bad)
		if len(bad) > 0 {
			t.Errorf("%d of %d AA'd messages not stored exactly once as accepted (rule 1), e.g.:\n%s",
				len(bad), len(acked), strings.Join(bad[:min(len(bad), 20)], "\n"))
		}
		inFlightStored := 0
		for _, id := range unacked {
			switch got := stored[id]; {
			case len(got) == 1 && got[0].Status == "accepted":
				inFlightStored++
			case len(got) != 0:
				t.Errorf("un-ACKed %s stored as %v, want at most once, accepted", id, statuses(got))
			}
		}
		t.Logf("of the %d un-ACKed messages, %d were committed before the crash", len(unacked), inFlightStored)
		sent := map[string]bool{}
		for _, id := range unacked {
			sent[id] = true
		}
		for id := range stored {
			if acked[id] == nil && !sent[id] {
				t.Errorf("stored control ID %s was never sent", id)
			}
		}

		// Processed once: each of a sample of AA'd orders — the first of every connection's
		// stream in every round, and the last ones before each kill — placed exactly one
		// ServiceRequest (its placer number is unique to the message).
		sample := map[string]bool{}
		for id := range acked {
			if strings.HasSuffix(id, "-0") {
				sample[id] = true
			}
		}
		byRound := map[string]string{} // run-round-conn → the highest AA'd message number seen
		for id := range acked {
			i := strings.LastIndex(id, "-")
			if prev, ok := byRound[id[:i]]; !ok || len(id) > len(prev) || (len(id) == len(prev) && id > prev) {
				byRound[id[:i]] = id
			}
		}
		for _, id := range byRound {
			sample[id] = true
		}
		for id := range sample {
			waitFor(t, "the order of "+id+" to be placed", func() bool {
				return len(p2.fhirSearch(t, "ServiceRequest", url.Values{"identifier": {"PO" + id}})) >= 1
			})
			if srs := p2.fhirSearch(t, "ServiceRequest", url.Values{"identifier": {"PO" + id}}); len(srs) != 1 {
				t.Errorf("order %s placed %d times, want once", id, len(srs))
			}
		}

		// Resend a few AA'd messages: answered AA with the original's ACK, stored as duplicates.
		ids := make([]string, 0, len(acked))
		for id := range acked {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		peer := dialMLLP(t, p2.MLLPAddr)
		for _, id := range ids[:min(5, len(ids))] {
			ack, err := peer.roundTrip(ormMessage(facility, id), 5*time.Second)
			if err != nil {
				t.Fatalf("resending %s: %v", id, err)
			}
			if ack.Code != "AA" || ack.MSA2 != id {
				t.Errorf("resent %s: %v, want AA", id, ack)
			}
			if !bytes.Equal(ack.Raw, acked[id]) {
				t.Errorf("resent %s answered\n%q\nwant the original's ACK\n%q", id, ack.Raw, acked[id])
			}
			got := p2.byControlID(t, id)
			var accepted, duplicate []apiMessage
			for _, m := range got {
				switch m.Status {
				case "accepted":
					accepted = append(accepted, m)
				case "duplicate":
					duplicate = append(duplicate, m)
				}
			}
			if len(got) != 2 || len(accepted) != 1 || len(duplicate) != 1 || duplicate[0].DuplicateOf != accepted[0].ID {
				t.Errorf("after resending %s: stored %v, want one accepted and one duplicate of it", id, statuses(got))
			}
		}
	})
}

// statuses summarises stored messages for a failure message.
func statuses(ms []apiMessage) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		s := fmt.Sprintf("#%d %s %s", m.ID, m.Status, m.ACKCode)
		if m.DuplicateOf != 0 {
			s += fmt.Sprintf(" duplicate_of=%d", m.DuplicateOf)
		}
		out = append(out, s)
	}
	return out
}
