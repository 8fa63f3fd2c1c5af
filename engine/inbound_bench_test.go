package engine

import (
	"context"
	"testing"
)

type nopCommitter struct{}

func (nopCommitter) Commit(context.Context, *InboundMessage) error { return nil }

// BenchmarkInboundReceive is the engine's share of the inbound hot path: parse, check MSH,
// build the ACK and the record (the store's share is BenchmarkCommitInbound in each adapter).
func BenchmarkInboundReceive(b *testing.B) {
	msg := seg(mshORM23, pid, `PV1|1|O|RAD^^^STMARYS`, `ORC|NW|PO123^EHR|||||^^^20261127090000^^R`,
		`OBR|1|PO123^EHR||71046^XR CHEST 2 VIEWS^CPT|||20261127083000||||||||^^^^^^|1234^SMITH^JOHN^^^DR|||ACC123`)
	in := NewInbound("bench", nopCommitter{}, nil, nil)
	ctx := context.Background()
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		in.Receive(ctx, Received{Data: msg})
	}
}
