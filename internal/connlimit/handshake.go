package connlimit

import (
	"context"
	"crypto/tls"
	"net"
	"sync/atomic"
	"time"
)

// Handshakes runs the server side of TLS handshakes before a connection takes a slot of its
// listener: at most Max in progress at once, each within Timeout. Peers that connect and never
// finish a handshake then hold no slot, and a flood of them costs a bounded number of
// goroutines and buffers (issue 17). Safe for concurrent use. Set Max and Timeout before the
// first Begin; they must not change after that.
type Handshakes struct {
	// Max caps the handshakes in progress at once; 0 or negative: no cap.
	Max int
	// Timeout bounds one handshake; 0 or negative: only ctx bounds it.
	Timeout time.Duration

	n atomic.Int64 // handshakes begun and not ended
}

// Begin takes a place for one handshake, unless Max are in progress; it reports whether it took
// one. A place taken is given back by Handshake, or by End when the handshake never runs.
func (h *Handshakes) Begin() bool {
	if n := h.n.Add(1); h.Max > 0 && n > int64(h.Max) {
		h.n.Add(-1)
		return false
	}
	return true
}

// End gives back a place Begin took.
func (h *Handshakes) End() { h.n.Add(-1) }

// InProgress returns the number of places taken.
func (h *Handshakes) InProgress() int { return int(h.n.Load()) }

// Handshake runs the server side of a TLS handshake on c under cfg, within Timeout and while ctx
// lasts, then gives back the place Begin took, whatever the outcome. On success it clears c's
// deadline and returns the TLS connection; on failure it returns the handshake's error and
// leaves c open, for the caller to report and close.
func (h *Handshakes) Handshake(ctx context.Context, c net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	defer h.End()
	if h.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.Timeout)
		defer cancel()
		_ = c.SetDeadline(time.Now().Add(h.Timeout))
	}
	tc := tls.Server(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return tc, nil
}
