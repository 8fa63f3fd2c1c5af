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
	l := &Listener{Listener: inner, Max: 6, MaxPerAddress: 4, Refused: func(net.Addr, string) { refused.Add(1) }}
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
	deadline := time.Now().Add(10 * time.Second)
	for refused.Load() < 7 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // waits on a condition; the deadline only guards against hanging
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
