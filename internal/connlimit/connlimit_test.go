package connlimit

import (
	"net"
	"sync/atomic"
	"testing"
	"time"
)

func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// One address cannot hold more than MaxPerAddress connections, all together no more than Max;
// a place is given back when its connection closes.
func TestListenerLimits(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var refused atomic.Int64
	refusals := make(chan struct{}, 100) // one per refusal, to wait on
	l := &Listener{Listener: inner, Max: 6, MaxPerAddress: 4, Refused: func(net.Addr, string) { refused.Add(1); refusals <- struct{}{} }}
	defer l.Close()
	accepted := make(chan net.Conn, 100)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	addr := inner.Addr().String()
	for range 10 {
		dialFrom(t, "127.0.0.1", addr) // 4 accepted, 6 refused
	}
	for range 3 {
		dialFrom(t, "127.0.0.2", addr) // 2 accepted (Max 6), 1 refused
	}
	var got []net.Conn
	for len(got) < 6 {
		got = append(got, <-accepted)
	}
	hang := time.After(time.Minute) // guards against a hang only
	for range 7 {
		select {
		case <-refusals:
		case <-hang:
			t.Fatalf("%d refusals after a minute, want 7", refused.Load())
		}
	}
	if refused.Load() != 7 || l.Open() != 6 {
		t.Fatalf("refused %d, open %d; want 7 refused and 6 open", refused.Load(), l.Open())
	}
	got[0].Close()
	got[0].Close() // a second Close gives back nothing more
	if l.Open() != 5 {
		t.Fatalf("open %d after one Close, want 5", l.Open())
	}
	dialFrom(t, "127.0.0.3", addr)
	if c := <-accepted; c == nil || l.Open() != 6 {
		t.Fatalf("a place given back was not usable again")
	}
}

// One address holds at most Max places, others are counted apart, a place given back is usable
// again, and Max 0 or negative counts without refusing.
func TestPerAddress(t *testing.T) {
	t.Parallel()
	from := func(ip string, port int) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: port} }
	p := &PerAddress{Max: 2}
	k1, ok1 := p.Take(from("10.0.0.1", 1000))
	k2, ok2 := p.Take(from("10.0.0.1", 1001)) // another port, the same address
	if !ok1 || !ok2 || k1 != k2 || k1 != "10.0.0.1" {
		t.Fatalf("first two from one address: %q %v, %q %v; want both taken under 10.0.0.1", k1, ok1, k2, ok2)
	}
	if k, ok := p.Take(from("10.0.0.1", 1002)); ok || k != "" {
		t.Fatalf("third from one address taken (key %q), want refused over Max 2", k)
	}
	if _, ok := p.Take(from("10.0.0.2", 1000)); !ok {
		t.Fatalf("another address refused while only the first is at Max")
	}
	p.Give(k1)
	if n := p.Open(k1); n != 1 {
		t.Fatalf("%d open from 10.0.0.1 after one Give, want 1", n)
	}
	if _, ok := p.Take(from("10.0.0.1", 1003)); !ok {
		t.Fatalf("a place given back was not usable again")
	}
	p.Give(k1)
	p.Give(k1)
	if n := p.Open(k1); n != 0 {
		t.Fatalf("%d open from 10.0.0.1 after every place was given back, want 0", n)
	}

	for _, limit := range []int{0, -1} {
		p := &PerAddress{Max: limit}
		for i := range 1000 {
			if _, ok := p.Take(from("10.0.0.1", i)); !ok {
				t.Fatalf("Max %d: connection %d refused, want no cap", limit, i)
			}
		}
	}
}

// The key is the IP address alone: the port does not count, an IPv4-mapped IPv6 address is its
// IPv4 address, and a peer without host:port is keyed by its whole address.
func TestPeerIP(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		addr net.Addr
		want string
	}{
		{"tcp v4", &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 4242}, "192.0.2.7"},
		{"tcp v4-mapped", &net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 1}, "192.0.2.7"},
		{"tcp v6", &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}, "2001:db8::/64"},
		{"host:port", &net.UnixAddr{Name: "[2001:db8::2]:104", Net: "unix"}, "2001:db8::/64"},
		{"no port", &net.UnixAddr{Name: "pipe", Net: "unix"}, "pipe"},
	} {
		if got := PeerIP(tc.addr); got != tc.want {
			t.Errorf("%s: PeerIP(%v) = %q, want %q", tc.name, tc.addr, got, tc.want)
		}
	}
}
