// Package connlimit caps what a listener's peers may hold, so that one peer cannot take every
// connection a server will serve (DESIGN.md rule 7): connections per source IP address
// (PerAddress), TLS handshakes in progress and the time each may take (Handshakes), and, for a
// plain net.Listener, connections in all and per address (Listener). The HTTP listener uses
// Listener; the MLLP and DICOM listeners, which keep TLS handshakes out of their slots and
// answer a refusal in their own protocol, use PerAddress and Handshakes directly.
package connlimit

import (
	"net"
	"net/netip"
	"sync"
)

// PerAddress counts the connections open from each source IP address and refuses one over Max.
// Safe for concurrent use. Set Max before the first Take; it must not change after that.
type PerAddress struct {
	// Max caps the connections open at once from one IP address; 0 or negative: no cap (for
	// a listener behind a TCP load balancer that hides its peers' addresses).
	Max int

	mu   sync.Mutex
	open map[string]int // by PeerIP; an address with none open has no entry
}

// Take counts one more connection from remote's IP address, unless Max are open from it
// already. It returns the address's key, which the caller hands to Give when the connection
// ends, and whether the connection was counted; a refused connection was not counted (its key
// is "").
func (p *PerAddress) Take(remote net.Addr) (key string, ok bool) {
	key = PeerIP(remote)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Max > 0 && p.open[key] >= p.Max {
		return "", false
	}
	if p.open == nil {
		p.open = make(map[string]int)
	}
	p.open[key]++
	return key, true
}

// Give gives back one connection that Take counted under key.
func (p *PerAddress) Give(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open[key] <= 1 {
		delete(p.open, key)
		return
	}
	p.open[key]--
}

// Open returns the number of connections counted under key.
func (p *PerAddress) Open(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open[key]
}

// PeerIP is the IP address of a peer, the key of the per-address limit: one address whatever
// the port, an IPv4-mapped IPv6 address as its IPv4 form, an IPv6 address as its /64, and the
// whole address for a peer that has no host:port form (such as a net.Pipe in tests).
func PeerIP(a net.Addr) string {
	host := ""
	if ta, ok := a.(*net.TCPAddr); ok {
		host = ta.IP.String()
	} else if h, _, err := net.SplitHostPort(a.String()); err == nil {
		host = h
	} else {
		return a.String()
	}
	// An IPv6 host is given a /64 (RFC 4291 §2.5.4): one peer has all its addresses, so it
	// counts as one.
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() && !ip.Is4In6() {
		p, _ := ip.WithZone("").Prefix(64)
		return p.String()
	}
	return host
}

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

	once    sync.Once
	perAddr PerAddress
	mu      sync.Mutex
	open    int
}

// Accept waits for the next connection within the limits.
func (l *Listener) Accept() (net.Conn, error) {
	l.once.Do(func() { l.perAddr.Max = l.MaxPerAddress })
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, limit := l.take(c.RemoteAddr())
		if limit != "" {
			c.Close()
			if l.Refused != nil {
				l.Refused(c.RemoteAddr(), limit)
			}
			continue
		}
		return &conn{Conn: c, l: l, key: key}, nil
	}
}

// Open returns the number of connections open.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// take counts a connection from remote, or returns the limit that refuses it: Max first.
func (l *Listener) take(remote net.Addr) (key, limit string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Max > 0 && l.open >= l.Max {
		return "", "max"
	}
	key, ok := l.perAddr.Take(remote)
	if !ok {
		return "", "per_address"
	}
	l.open++
	return key, ""
}

func (l *Listener) give(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	l.perAddr.Give(key)
}

type conn struct {
	net.Conn
	l    *Listener
	key  string
	once sync.Once
}

// Close closes the connection and gives its place back (once).
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.give(c.key) })
	return err
}
