package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/hl7"
)

// memCommitter stands in for the store at the unit boundary: it records commits and finds
// duplicates by MSH-3/MSH-4/MSH-10 like the real stores (whose contract suite is engine/storetest).
type memCommitter struct {
	mu       sync.Mutex
	msgs     []*InboundMessage
	accepted map[[3]string]*InboundMessage
	fail     error
}

func (c *memCommitter) Commit(_ context.Context, m *InboundMessage) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return c.fail
	}
	if c.accepted == nil {
		c.accepted = map[[3]string]*InboundMessage{}
	}
	m.ID = int64(len(c.msgs) + 1)
	key := [3]string{m.SendingApplication, m.SendingFacility, m.ControlID}
	if m.Status == StatusAccepted && m.DuplicateKey() {
		if orig, ok := c.accepted[key]; ok {
			m.Status, m.DuplicateOf, m.ACK, m.ACKCode = StatusDuplicate, orig.ID, orig.ACK, orig.ACKCode
		} else {
			c.accepted[key] = m
		}
	}
	c.msgs = append(c.msgs, m)
	return nil
}

func seg(s ...string) []byte { return []byte(strings.Join(s, "\r") + "\r") }

const (
	mshORM23  = `MSH|^~\&|RIS|STMARYS|FERRY|FERRY|20261127083000||ORM^O01|MSG0001|P|2.3`
	mshOMI251 = `MSH|^~\&|EHR|STMARYS|FERRY|FERRY|20261127083000||OMI^O23^OMI_O23|MSG0002|P|2.5.1|||AL|NE`
	pid       = `PID|1||12345^^^STMARYS^MR||DOE^JANE||19800101|F`
)

func TestInboundReceive(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		in         Received
		wantCode   string // MSA-1
		wantMSA2   string
		wantStatus Status
		wantERR    string // substring of the ERR segment, "" for none
	}{
		{"original mode accepted", Received{Data: seg(mshORM23, pid)}, "AA", "MSG0001", StatusAccepted, ""},
		{"enhanced mode accepted", Received{Data: seg(mshOMI251, pid)}, "CA", "MSG0002", StatusAccepted, ""},
		{"empty frame", Received{Data: []byte{}}, "AR", "", StatusRejected, "100"},
		{"no MSH", Received{Data: seg(pid)}, "AR", "", StatusRejected, "100"},
		{"missing control ID", Received{Data: seg(`MSH|^~\&|RIS|STMARYS|FERRY|FERRY|20261127||ORM^O01||P|2.3`, pid)}, "AR", "", StatusRejected, "101"},
		{"missing version", Received{Data: seg(`MSH|^~\&|RIS|STMARYS|FERRY|FERRY|20261127||ORM^O01|M9|P`, pid)}, "AR", "M9", StatusRejected, "101"},
		{"missing trigger", Received{Data: seg(`MSH|^~\&|RIS|STMARYS|FERRY|FERRY|20261127||ORM|M10|P|2.3`, pid)}, "AR", "M10", StatusRejected, "101"},
		{"unsupported type", Received{Data: seg(`MSH|^~\&|RIS|STMARYS|FERRY|FERRY|20261127||VXU^V04|M11|P|2.5.1`, pid)}, "AR", "M11", StatusRejected, "200"},
		{"unsupported version", Received{Data: seg(`MSH|^~\&|RIS|STMARYS|FERRY|FERRY|20261127||ORM^O01|M12|P|9.9`, pid)}, "AR", "M12", StatusRejected, "203"},
		{"bad segment after MSH", Received{Data: seg(mshORM23, "P!D|1")}, "AE", "MSG0001", StatusRejected, "100"},
		{"too large", Received{Data: seg(mshORM23, pid), TooLarge: true, Size: 20 << 20}, "AR", "MSG0001", StatusRejected, "207"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &memCommitter{}
			in := NewInbound("test", c, nil, nil)
			ack := in.Receive(context.Background(), tc.in)
			m, err := hl7.Parse(ack)
			if err != nil {
				t.Fatalf("ACK does not parse: %v\n%q", err, ack)
			}
			if got := m.Value("MSA-1"); got != tc.wantCode {
				t.Errorf("MSA-1 = %q, want %q\n%q", got, tc.wantCode, ack)
			}
			if got := m.Value("MSA-2"); got != tc.wantMSA2 {
				t.Errorf("MSA-2 = %q, want %q", got, tc.wantMSA2)
			}
			hasERR := strings.Contains(string(ack), "\rERR|")
			if tc.wantERR == "" && hasERR {
				t.Errorf("unexpected ERR segment: %q", ack)
			}
			if tc.wantERR != "" && (!hasERR || !strings.Contains(string(ack), tc.wantERR)) {
				t.Errorf("want ERR with %q, got %q", tc.wantERR, ack)
			}
			if len(c.msgs) != 1 {
				t.Fatalf("stored %d messages, want 1 (every message is kept, rejected or not)", len(c.msgs))
			}
			rec := c.msgs[0]
			if rec.Status != tc.wantStatus {
				t.Errorf("status = %q, want %q", rec.Status, tc.wantStatus)
			}
			if string(rec.ACK) != string(ack) {
				t.Errorf("stored ACK differs from the ACK sent")
			}
			if rec.ACKCode != tc.wantCode {
				t.Errorf("stored ACK code = %q, want %q", rec.ACKCode, tc.wantCode)
			}
			if string(rec.Raw) != string(tc.in.Data) {
				t.Errorf("raw bytes not kept exactly")
			}
		})
	}
}

func TestInboundDuplicateAnsweredLikeOriginal(t *testing.T) {
	t.Parallel()
	c := &memCommitter{}
	in := NewInbound("test", c, nil, nil)
	first := in.Receive(context.Background(), Received{Data: seg(mshORM23, pid)})
	second := in.Receive(context.Background(), Received{Data: seg(mshORM23, pid)})
	if string(first) != string(second) {
		t.Errorf("duplicate answered differently:\n%q\n%q", first, second)
	}
	if c.msgs[1].Status != StatusDuplicate || c.msgs[1].DuplicateOf != c.msgs[0].ID {
		t.Errorf("second message: status %q duplicate_of %d", c.msgs[1].Status, c.msgs[1].DuplicateOf)
	}
}

func TestInboundStoreFailureAnswersAE207(t *testing.T) {
	t.Parallel()
	c := &memCommitter{fail: errors.New("disk full")}
	in := NewInbound("test", c, nil, nil)
	for _, tc := range []struct{ msh, code string }{{mshORM23, "AE"}, {mshOMI251, "CE"}} {
		ack := in.Receive(context.Background(), Received{Data: seg(tc.msh, pid)})
		m, err := hl7.Parse(ack)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Value("MSA-1"); got != tc.code {
			t.Errorf("MSA-1 = %q, want %q", got, tc.code)
		}
		if !strings.Contains(string(ack), "207") {
			t.Errorf("want ERR 207, got %q", ack)
		}
	}
}

func TestInboundACKControlIDsUnique(t *testing.T) {
	t.Parallel()
	in := NewInbound("test", &memCommitter{}, nil, nil)
	seen := map[string]bool{}
	for i := range 100 {
		msh := strings.Replace(mshORM23, "MSG0001", fmt.Sprintf("U%d", i), 1)
		m, err := hl7.Parse(in.Receive(context.Background(), Received{Data: seg(msh, pid), ReceivedAt: time.Now()}))
		if err != nil {
			t.Fatal(err)
		}
		id := m.Value("MSH-10")
		if id == "" || seen[id] {
			t.Fatalf("ACK MSH-10 %q empty or repeated", id)
		}
		seen[id] = true
	}
}
