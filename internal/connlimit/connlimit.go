// Package connlimit caps the connections a listener hands out: in all, and per source IP
// address, so that one peer cannot take every connection a server will serve (DESIGN.md rule 7).
// The HTTP listener uses it; the MLLP listener applies the same limits itself, since it also
// keeps TLS handshakes out of its slots.
package connlimit

import (
	"net"
	"sync"
)

// Listener wraps a net.Listener: Accept returns only connections within the limits; one over a
// limit is closed at once and reported to Refused. A connection's place is given back when it is
// closed. Safe for concurrent use.
type Listener struct {
	net.Listener
	// Max caps the connections open at once; 0: no cap.
	Max int
	// MaxPerAddress caps the connections open at once from one source IP address; 0: no cap.
	MaxPerAddress int
	// Refused, if set, is called with the peer's address and the limit reached ("max" or
	// "per_address") for each connection closed at once. It must not block.
	Refused func(remote net.Addr, limit string)

	mu     sync.Mutex
	open   int
	byAddr map[string]int
}

// Accept waits for the next connection within the limits.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := peerIP(c.RemoteAddr())
		if limit := l.take(ip); limit != "" {
			c.Close()
			if l.Refused != nil {
				l.Refused(c.RemoteAddr(), limit)
			}
			continue
		}
		return &conn{Conn: c, l: l, ip: ip}, nil
	}
}

// Open returns the number of connections open.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// take counts a connection from ip, or returns the limit that refuses it.
func (l *Listener) take(ip string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Max > 0 && l.open >= l.Max {
		return "max"
	}
	if l.MaxPerAddress > 0 && l.byAddr[ip] >= l.MaxPerAddress {
		return "per_address"
	}
	if l.byAddr == nil {
		l.byAddr = make(map[string]int)
	}
	l.open++
	l.byAddr[ip]++
	return ""
}

func (l *Listener) give(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byAddr[ip] <= 1 {
		delete(l.byAddr, ip)
	} else {
		l.byAddr[ip]--
	}
}

type conn struct {
	net.Conn
	l    *Listener
	ip   string
	once sync.Once
}

// Close closes the connection and gives its place back (once).
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.give(c.ip) })
	return err
}

func peerIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
