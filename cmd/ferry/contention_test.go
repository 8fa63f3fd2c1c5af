package main

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// contentionORM is a new order for patient mrn naming ordering physician doctor (ORC-12).
func contentionORM(ctrl, mrn, doctor string) string {
	return strings.Join([]string{
		"MSH|^~\\&|RIS|STMARYS|FERRY|FERRY|20261127083000-0500||ORM^O01|" + ctrl + "|P|2.3.1",
		"PID|1||" + mrn + "^^^STMARYS^MR||DOE^JANE||19800102|F",
		"ORC|NW|PL" + ctrl + "^RIS|||SC||^^^202611270930^^R||20261127082500|||" + doctor + "^SMITH" + doctor + "^ROBERT",
		"OBR|1|PL" + ctrl + "^RIS||71260^EXAM^C4||||||||||||||ACC" + ctrl + "|||||CT",
	}, "\r") + "\r"
}

// contentionA08 updates patient mrn's name: each update is a new version of the Patient and
// rewrites the worklist items of its active orders.
func contentionA08(ctrl, mrn string) string {
	return strings.Join([]string{
		"MSH|^~\\&|ADT|STMARYS|FERRY|FERRY|20261127090000||ADT^A08^ADT_A01|" + ctrl + "|P|2.5.1",
		"EVN|A08|20261127090000",
		"PID|1||" + mrn + "^^^STMARYS^MR||DOE" + ctrl + "^JANE||19800102|F",
		"PV1|1|O",
	}, "\r") + "\r"
}

// TestSharedRecordsUnderContention is issue 18 items 1 and 2: many connections at once, with
// orders naming ordering physicians not yet known and patient updates over a few shared
// patients. Every message is answered AA — a conflict between two of Ferry's own transactions
// is Ferry's to resolve, never the sender's — and stored once; each physician and patient
// exists once.
func TestSharedRecordsUnderContention(t *testing.T) {
	t.Parallel()
	const (
		senders   = 12
		perSender = 12
		patients  = 4
		doctors   = 5
	)
	forEachStore(t, func(t *testing.T, db, dir string) {
		mllpSend := requirePeer(t, "mllp_send", "python3-hl7")
		p := startFerry(t, db, dir, serveOptions{})
		tmp := t.TempDir()
		var wg sync.WaitGroup
		errs := make([]error, senders)
		acks := make([][]*ackInfo, senders)
		for s := range senders {
			var msgs []string
			for i := range perSender {
				ctrl := fmt.Sprintf("C%dN%d", s, i)
				mrn := fmt.Sprintf("SHARED%d", (s+i)%patients)
				if i%3 == 2 {
					msgs = append(msgs, contentionA08(ctrl, mrn))
				} else {
					msgs = append(msgs, contentionORM(ctrl, mrn, fmt.Sprintf("D%d", (s*perSender+i)%doctors)))
				}
			}
			wg.Go(func() { acks[s], errs[s] = mllpSendACKs(mllpSend, tmp, p.MLLPAddr, msgs) })
		}
		wg.Wait()
		for s := range senders {
			if errs[s] != nil {
				t.Fatalf("sender %d: %v", s, errs[s])
			}
			for i, a := range acks[s] {
				if a.Code != "AA" {
					t.Errorf("sender %d message %d: %s, want AA", s, i, a)
				}
			}
		}
		if t.Failed() {
			return
		}
		for s := range senders {
			for i := range perSender {
				ctrl := fmt.Sprintf("C%dN%d", s, i)
				if ms := p.byControlID(t, ctrl); len(ms) != 1 || ms[0].Status != "accepted" {
					t.Errorf("message %s in the log: %+v, want stored once, accepted", ctrl, ms)
				}
			}
		}
		for d := range doctors {
			name := fmt.Sprintf("SMITHD%d", d)
			if got := p.fhirSearch(t, "Practitioner", url.Values{"name": {name}}); len(got) != 1 {
				t.Errorf("Practitioner?name=%s: %d, want 1", name, len(got))
			}
		}
		for i := range patients {
			mrn := fmt.Sprintf("SHARED%d", i)
			if got := p.fhirSearch(t, "Patient", url.Values{"identifier": {ordersMRN + "|" + mrn}}); len(got) != 1 {
				t.Errorf("Patient?identifier=%s: %d, want 1", mrn, len(got))
			}
		}
	})
}
