package access

import (
	"sync"
	"time"
)

// Login throttling: after maxAccountFailures failed logins of one account, or
// maxAddressFailures from one address, within throttleWindow, further attempts of that account
// or address are refused (without checking the password) until the window has passed since the
// first of them. A success clears the account's count. The counts are each node's own: on N
// nodes an attacker gets at most N times as many guesses, still a handful per quarter hour.
const (
	maxAccountFailures = 5
	maxAddressFailures = 20
	throttleWindow     = 15 * time.Minute
	// maxThrottleKeys bounds the memory the counts take; beyond it, expired counts are dropped
	// first, then the oldest.
	maxThrottleKeys = 100_000
)

type throttle struct {
	mu     sync.Mutex
	counts map[string]*failureCount
}

type failureCount struct {
	since time.Time
	n     int
}

func (t *throttle) key(kind, v string) string { return kind + "\x00" + v }

// allowed reports whether a login of account from address may be tried at now.
func (t *throttle) allowed(account, address string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.under(t.key("a", account), maxAccountFailures, now) && t.under(t.key("ip", address), maxAddressFailures, now)
}

func (t *throttle) under(key string, limit int, now time.Time) bool {
	c := t.counts[key]
	if c == nil || now.Sub(c.since) >= throttleWindow {
		return true
	}
	return c.n < limit
}

// failed counts a failed login.
func (t *throttle) failed(account, address string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.counts == nil {
		t.counts = map[string]*failureCount{}
	}
	if len(t.counts) >= maxThrottleKeys {
		t.prune(now)
	}
	for _, key := range []string{t.key("a", account), t.key("ip", address)} {
		c := t.counts[key]
		if c == nil || now.Sub(c.since) >= throttleWindow {
			c = &failureCount{since: now}
			t.counts[key] = c
		}
		c.n++
	}
}

// succeeded clears the account's count (not the address's: one right password among many
// guesses does not excuse them).
func (t *throttle) succeeded(account string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.counts, t.key("a", account))
}

// prune drops expired counts, then, if still full, the oldest half.
func (t *throttle) prune(now time.Time) {
	var oldest time.Time
	for k, c := range t.counts {
		if now.Sub(c.since) >= throttleWindow {
			delete(t.counts, k)
		} else if oldest.IsZero() || c.since.Before(oldest) {
			oldest = c.since
		}
	}
	if len(t.counts) < maxThrottleKeys {
		return
	}
	cut := oldest.Add(now.Sub(oldest) / 2)
	for k, c := range t.counts {
		if !c.since.After(cut) {
			delete(t.counts, k)
		}
	}
}
