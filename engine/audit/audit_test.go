package audit

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// trail is a Reader over events in memory, for Verify's own tests (the stores run theirs in
// engine/storetest).
type trail []*Event

func (tr trail) AuditEvents(_ context.Context, f Filter) ([]*Event, error) {
	var out []*Event
	for _, e := range tr {
		if e.Seq > f.AfterSeq && len(out) < max(f.Limit, 1) {
			out = append(out, e)
		}
	}
	return out, nil
}

// chain returns n events chained as a store appends them, and the head's hash.
func chain(n int) (trail, []byte) {
	var (
		tr   trail
		prev = []byte{}
	)
	for i := range n {
		e := &Event{Seq: int64(i + 1), RecordedAt: time.Date(2026, 3, 1, 10, i, 0, 0, time.UTC), Action: ActionRead,
			Outcome: OutcomeSuccess, Agent: "dr.lee", Patient: fmt.Sprintf("Patient/%d", i), PrevHash: prev}
		e.Hash = e.ChainHash(prev)
		prev = e.Hash
		tr = append(tr, e)
	}
	return tr, prev
}

// headed is a trail whose head is fixed, as the store's audit_chain row keeps it.
type headed struct {
	trail
	seq  int64
	hash []byte
}

func (h headed) AuditHead(context.Context) (int64, []byte, error) { return h.seq, h.hash, nil }

func TestVerify(t *testing.T) {
	tests := []struct {
		name       string
		tamper     func(tr trail) trail
		wantBroken int64
	}{
		{"whole", func(tr trail) trail { return tr }, 0},
		{"changed content", func(tr trail) trail { tr[2].Agent = "someone else"; return tr }, 3},
		{"removed in the middle", func(tr trail) trail { return slices.Delete(tr, 1, 2) }, 3},
		{"removed at the end", func(tr trail) trail { return tr[:4] }, 5},
		{"rehashed after a change", func(tr trail) trail {
			tr[1].Patient = "Patient/other"
			tr[1].Hash = tr[1].ChainHash(tr[1].PrevHash) // the next event's link no longer holds
			return tr
		}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, head := chain(5)
			res, err := Verify(context.Background(), headed{tt.tamper(tr), 5, head})
			if err != nil {
				t.Fatal(err)
			}
			if res.Broken != tt.wantBroken {
				t.Errorf("Broken = %d (%s), want %d", res.Broken, res.Reason, tt.wantBroken)
			}
		})
	}
}
