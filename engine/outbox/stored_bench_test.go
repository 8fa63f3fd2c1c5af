package outbox

import (
	"context"
	"testing"
)

// BenchmarkStoredCall is what the deadline on each store call costs the deliverer: a call made
// directly against the same call through stored (a goroutine, a channel and a timer). A delivery
// makes two or three store calls (claim, outcome, its share of a due look); each is a database
// round trip of tens of microseconds at best, so the overhead, in ns, is to be read against that.
func BenchmarkStoredCall(b *testing.B) {
	call := func(context.Context) (bool, error) { return true, nil }
	ctx := context.Background()
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			if _, err := call(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	dl := &Deliverer{}
	b.Run("deadline", func(b *testing.B) {
		for b.Loop() {
			if _, err := stored(ctx, dl, "claiming", call); err != nil {
				b.Fatal(err)
			}
		}
	})
}
