package engine

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// Issue 17: every rejected frame was stored whole (70 junk frames grew the embedded database by
// 1 GB). Within the hourly budget a rejected message is kept as received; beyond it, it is still
// stored, answered AR and counted, but without its bytes; the next hour has a new budget.
// Accepted messages never count against it.
func TestInboundRejectedBudget(t *testing.T) {
	t.Parallel()
	c := &memCommitter{}
	in := NewInbound("mllp", c, nil, nil)
	in.Rejected = &RejectedBudget{PerHour: 2500}
	junk := bytes.Repeat([]byte("junk"), 250) // 1,000 bytes, no MSH
	hour := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	send := func(data []byte, at time.Time) *InboundMessage {
		t.Helper()
		ack := in.Receive(context.Background(), Received{Data: data, Size: int64(len(data)), ReceivedAt: at})
		m := c.msgs[len(c.msgs)-1]
		if m.ACK == nil || !bytes.Equal(ack, m.ACK) {
			t.Fatalf("answer %q not the stored ACK", ack)
		}
		return m
	}
	good := seg(mshORM23, pid)
	for i := range 3 { // accepted messages do not spend the budget
		if m := send(good, hour.Add(time.Duration(i)*time.Second)); m.Status != StatusAccepted && m.Status != StatusDuplicate {
			t.Fatalf("a valid message was %s", m.Status)
		}
	}
	for i, wantKept := range []bool{true, true, false, false} {
		m := send(junk, hour.Add(time.Minute+time.Duration(i)*time.Second))
		if m.Status != StatusRejected || m.ACKCode != "AR" {
			t.Fatalf("junk %d: status %s, ACK %s; want rejected, AR", i, m.Status, m.ACKCode)
		}
		kept := bytes.Equal(m.Raw, junk)
		if kept != wantKept {
			t.Errorf("junk %d: raw kept %v, want %v (budget 2,500 bytes, 1,000 each)", i, kept, wantKept)
		}
		if !wantKept && (len(m.Raw) != 0 || m.Raw == nil || !strings.Contains(m.Error, "1000 bytes were not kept")) {
			t.Errorf("junk %d over the budget: raw %d bytes, error %q; want no bytes and the error saying so", i, len(m.Raw), m.Error)
		}
	}
	if m := send(junk, hour.Add(time.Hour)); !bytes.Equal(m.Raw, junk) {
		t.Errorf("the next hour's first rejected message was not kept")
	}
	// Negative: no cap.
	in.Rejected = &RejectedBudget{PerHour: -1}
	for range 5 {
		if m := send(junk, hour.Add(time.Hour)); !bytes.Equal(m.Raw, junk) {
			t.Fatalf("with no cap a rejected message was not kept")
		}
	}
}
