package engine

import (
	"fmt"
	"sync"
	"time"
)

// DefaultRejectedBytesPerHour is RejectedBudget's default: the bytes of rejected messages one
// node keeps in an hour.
const DefaultRejectedBytesPerHour = 64 << 20

// RejectedBudget caps the bytes of rejected messages (AR: unparsable, a bad header, an
// unsupported type, an oversized frame's head) that a node stores per clock hour. Within it a
// rejected message is stored as received, for the analyst; beyond it the message is still
// stored, answered, logged and counted, but without its bytes, and its Error says so. Issue 17:
// 70 junk frames grew the embedded database by 1 GB. The budget is kept in memory per node: N
// nodes keep at most N times it (a shared count would cost a store round trip per rejection,
// which is what an attacker sends most of). Safe for concurrent use.
type RejectedBudget struct {
	// PerHour is the bytes kept per clock hour; 0 means DefaultRejectedBytesPerHour, negative
	// no cap.
	PerHour int64

	mu     sync.Mutex
	window time.Time // start of the current hour
	used   int64
}

// take reports whether n more bytes received at may be kept, and counts them if so.
func (b *RejectedBudget) take(n int64, at time.Time) bool {
	limit := b.PerHour
	if limit == 0 {
		limit = DefaultRejectedBytesPerHour
	}
	if limit < 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if hour := at.Truncate(time.Hour); !hour.Equal(b.window) {
		b.window, b.used = hour, 0
	}
	if b.used+n > limit {
		return false
	}
	b.used += n
	return true
}

// keepRejected applies the budget to a rejected message about to be stored: beyond it, the raw
// bytes are dropped and the Error says how many were not kept. It reports whether they were kept.
func (b *RejectedBudget) keepRejected(rec *InboundMessage) bool {
	if b == nil || rec.Status != StatusRejected || len(rec.Raw) == 0 {
		return true
	}
	if b.take(int64(len(rec.Raw)), rec.ReceivedAt) {
		return true
	}
	rec.Error = fmt.Sprintf("%s (its %d bytes were not kept: the hourly budget for rejected messages is spent)", rec.Error, len(rec.Raw))
	rec.Raw = []byte{}
	return false
}
