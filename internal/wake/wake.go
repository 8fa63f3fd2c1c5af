// Package wake lets goroutines tell a worker there is work without blocking: the pending
// worker's and the deliverer's nudges.
package wake

import "sync"

// Signal is a nudge a worker waits for: Nudge never blocks, and nudges while the worker is busy
// make one more pass (they are not counted). The zero value is ready, so senders may nudge
// before the worker runs.
type Signal struct {
	once sync.Once
	ch   chan struct{}
}

// Nudge tells the worker there is work. It never blocks.
func (s *Signal) Nudge() {
	select {
	case s.C() <- struct{}{}:
	default:
	}
}

// C is the channel the worker waits on.
func (s *Signal) C() chan struct{} {
	s.once.Do(func() { s.ch = make(chan struct{}, 1) })
	return s.ch
}
