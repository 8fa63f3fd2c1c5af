package postgres

import (
	"context"
	"net"
	"time"
)

// Client-side TCP settings of every connection to PostgreSQL (issue 18): a server that is cut
// off (a partition, a dead host) breaks the connection in seconds instead of after TCP's own
// ~15 minutes, so the calls waiting on it return and the pool opens a new one. Keepalives find
// a connection whose answers stopped coming; the user timeout, one whose requests are not
// acknowledged. A server that is only slow or frozen still acknowledges at the TCP level: the
// callers' contexts bound those waits (the group commit's timeout, /readyz).
const (
	keepAliveIdle     = 5 * time.Second
	keepAliveInterval = 2 * time.Second
	keepAliveCount    = 3
	tcpUserTimeout    = 10 * time.Second
	dialTimeout       = 5 * time.Second
)

// dialer opens lib/pq's connections with the settings above.
type dialer struct{ d net.Dialer }

func newDialer() dialer {
	return dialer{d: net.Dialer{
		Timeout: dialTimeout,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: keepAliveIdle,
			Interval: keepAliveInterval, Count: keepAliveCount},
		Control: setUserTimeout,
	}}
}

func (d dialer) Dial(network, address string) (net.Conn, error) {
	return d.d.Dial(network, address)
}

func (d dialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	dd := d.d
	dd.Timeout = timeout
	return dd.Dial(network, address)
}

func (d dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return d.d.DialContext(ctx, network, address)
}
