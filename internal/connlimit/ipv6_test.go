package connlimit

import (
	"net"
	"testing"
)

// TestPeerIPCountsAnIPv6PeerOnce: every address of an IPv6 /64 is one peer for the per-address
// caps (the review's finding: a /64 gives an attacker 2^64 addresses); IPv4 and IPv4-mapped
// addresses stay one each.
func TestPeerIPCountsAnIPv6PeerOnce(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ a, b string }{
		{"[2001:db8:1:2::1]:5000", "[2001:db8:1:2:ffff::9]:6000"},
		{"192.0.2.1:5000", "192.0.2.1:6000"},
		{"[::ffff:192.0.2.1]:5000", "192.0.2.1:7000"},
	} {
		a, _ := net.ResolveTCPAddr("tcp", tt.a)
		b, _ := net.ResolveTCPAddr("tcp", tt.b)
		if PeerIP(a) != PeerIP(b) {
			t.Errorf("%s and %s: keys %q and %q, want one peer", tt.a, tt.b, PeerIP(a), PeerIP(b))
		}
	}
	x, _ := net.ResolveTCPAddr("tcp", "[2001:db8:1:3::1]:5000")
	y, _ := net.ResolveTCPAddr("tcp", "[2001:db8:1:2::1]:5000")
	if PeerIP(x) == PeerIP(y) {
		t.Errorf("two /64s share the key %q", PeerIP(x))
	}
}
