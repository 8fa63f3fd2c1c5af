// Package testwait lets tests wait on the events their test doubles report instead of on a
// clock: a double calls Notify whenever it records something (a connection counted, a log line
// written, an answer received), and a test waiting in For re-checks its condition at each.
package testwait

import (
	"sync"
	"testing"
	"time"
)

// hangGuard only stops a test that would otherwise hang; it is no pass/fail limit.
const hangGuard = time.Minute

// Changes wakes every waiter at each Notify. The zero value is ready. For must not run inside a
// testing/synctest bubble (the channel it waits on would belong to the bubble); Notify may be
// called from one.
type Changes struct {
	mu sync.Mutex
	ch chan struct{}
}

// Notify wakes the waiters.
func (c *Changes) Notify() {
	c.mu.Lock()
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
	c.mu.Unlock()
}

func (c *Changes) wait() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

// For waits until cond holds, re-checking it at each Notify; it fails the test if cond still
// does not hold after a minute with no change making it true.
func (c *Changes) For(t testing.TB, what string, cond func() bool) {
	t.Helper()
	hang := time.NewTimer(hangGuard)
	defer hang.Stop()
	for {
		woken := c.wait()
		if cond() {
			return
		}
		select {
		case <-woken:
		case <-hang.C:
			t.Fatalf("still waiting for %s after a minute", what)
		}
	}
}
