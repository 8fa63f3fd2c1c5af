// Package workcount counts the work done by loops over outside input (bytes scanned, segments
// visited), so that tests can prove that reading a message takes time linear in its size by
// counting steps instead of reading a clock. Counting is off unless a test turns it on with
// Measure; off, Add costs one atomic load.
package workcount

import (
	"sync"
	"sync/atomic"
)

var (
	counter atomic.Pointer[atomic.Int64]
	measure sync.Mutex // one Measure at a time: they share the counter
)

// Add counts n units of work (bytes examined, entries visited) when a Measure is running.
func Add(n int) {
	if c := counter.Load(); c != nil {
		c.Add(int64(n))
	}
}

// Measure runs f with counting on and returns the work counted meanwhile. Work done by other
// goroutines during f is counted too, so tests that measure must not run in parallel with tests
// that do counted work (leave out t.Parallel).
func Measure(f func()) int64 {
	measure.Lock()
	defer measure.Unlock()
	var c atomic.Int64
	counter.Store(&c)
	defer counter.Store(nil)
	f()
	return c.Load()
}
