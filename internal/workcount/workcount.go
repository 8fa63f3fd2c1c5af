// Package workcount counts the work done by loops over outside input (bytes scanned, segments
// visited), so that tests can prove that reading a message takes time linear in its size by
// counting steps instead of reading a clock. Counting is off unless a test turns it on with
// Measure; off, Add costs one atomic load.
package workcount

import (
	"runtime"
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

// Allocated runs f and returns the bytes the process allocated meanwhile (runtime.MemStats
// TotalAlloc, which counts every allocation, even one freed at once), by any goroutine: how
// tests prove that input declaring gigabytes costs kilobytes. Tests that use it do not run in
// parallel, so what else runs is small beside what they measure.
func Allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
