package httpapi

import (
	"net"
	"net/http"

	"github.com/labstack/echo/v4"
)

// clientIPExtractor decides the client address every audit line and log records (c.RealIP()).
// It is the TCP peer, unless the peer is one of trustedProxies: then the nearest address in
// X-Forwarded-For that is not a trusted proxy (or X-Real-IP when a proxy sends only that).
// Loopback, link-local and private ranges are not trusted by default (echo trusts them unless
// told otherwise): on a hospital network any host there could claim another's address.
func clientIPExtractor(trustedProxies []*net.IPNet) echo.IPExtractor {
	if len(trustedProxies) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, n := range trustedProxies {
		opts = append(opts, echo.TrustIPRange(n))
	}
	xff, realIP := echo.ExtractIPFromXFFHeader(opts...), echo.ExtractIPFromRealIPHeader(opts...)
	return func(r *http.Request) string {
		if len(r.Header.Values(echo.HeaderXForwardedFor)) > 0 {
			return xff(r)
		}
		return realIP(r)
	}
}
