package engine

import (
	"context"
	"sync"

	"golang.org/x/sync/semaphore"
)

// DefaultProcessingBytes is mllp.max_processing_bytes' default: two messages of the largest
// size MLLP takes by default (16 MiB) processed at once.
const DefaultProcessingBytes = 32 << 20

// largeMessage is the size from which a message's processing draws on the ProcessingBudget:
// an order or an ADT is a few KiB, and takes no lock.
const largeMessage = 1 << 20

// ProcessingBudget bounds the bytes of large messages being mapped, validated and committed at
// once (issue "Trust at every door", item 6). Mapping a message and validating what it yields
// costs several times its size — a 15 MB ORU's text becomes the report's conclusion, its JSON,
// google/fhir's copy of it — so twenty such messages arriving at once would each hold that much
// together; within the budget, the others wait with only their frame read. Safe for concurrent
// use; the zero value and nil bound nothing.
type ProcessingBudget struct {
	// Bytes is the budget (config mllp.max_processing_bytes); a message larger than it takes it
	// whole. 0 or less: no bound.
	Bytes int64

	once sync.Once
	sem  *semaphore.Weighted
}

// acquire waits until a message of n bytes may be processed and returns the function that gives
// its share back, or ctx's error (the message is then not processed: the sender resends).
func (b *ProcessingBudget) acquire(ctx context.Context, n int) (release func(), err error) {
	if b == nil || b.Bytes <= 0 || n < largeMessage {
		return func() {}, nil
	}
	b.once.Do(func() { b.sem = semaphore.NewWeighted(b.Bytes) })
	w := min(int64(n), b.Bytes)
	if err := b.sem.Acquire(ctx, w); err != nil {
		return nil, err
	}
	return func() { b.sem.Release(w) }, nil
}
