package main

import (
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ferryhealth/ferry/adapters/dicomweb"
	"github.com/ferryhealth/ferry/adapters/mllp"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/internal/connlimit"
)

// applyLimits sets the MLLP listener's and the inbound flow's limits against exhaustion
// (issue 17, docs/mllp.md).
func (c MLLPConfig) applyLimits(srv *mllp.Server, in *engine.Inbound) {
	srv.MaxConnsPerAddress = c.MaxConnectionsPerAddress
	srv.FirstFrameTimeout = c.FirstFrameTimeout
	srv.HandshakeTimeout = c.HandshakeTimeout
	in.Rejected = &engine.RejectedBudget{PerHour: c.MaxRejectedBytesPerHour}
	in.Processing = &engine.ProcessingBudget{Bytes: c.MaxProcessingBytes}
}

// server returns the HTTP server for handler with the configured timeouts (docs/operations.md).
// ReadTimeout and WriteTimeout suit the FHIR, admin and web routes, whose requests and answers
// are small; DICOMweb routes get DICOMwebTimeout for both instead, set per request, as a STOW-RS
// upload or a WADO-RS download of a large study may take many minutes on a hospital link — a
// server-wide value that generous would let slow clients hold every other route's connections.
func (c HTTPConfig) server(handler http.Handler) *http.Server {
	return &http.Server{
		Handler:           c.dicomwebDeadlines(handler),
		ReadTimeout:       c.ReadTimeout,
		WriteTimeout:      c.WriteTimeout,
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		IdleTimeout:       c.IdleTimeout,
		MaxHeaderBytes:    c.MaxHeaderBytes,
	}
}

// dicomwebDeadlines extends the read and write deadlines of DICOMweb requests to
// DICOMwebTimeout from the request's start.
func (c HTTPConfig) dicomwebDeadlines(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == dicomweb.BasePath || strings.HasPrefix(r.URL.Path, dicomweb.BasePath+"/") {
			rc := http.NewResponseController(w)
			deadline := time.Now().Add(c.DICOMwebTimeout)
			_ = rc.SetReadDeadline(deadline)
			_ = rc.SetWriteDeadline(deadline)
		}
		next.ServeHTTP(w, r)
	})
}

// limitListener caps the HTTP listener's connections in all and per source address; a
// connection over a cap is closed at once and logged.
func (c HTTPConfig) limitListener(ln net.Listener, logger *slog.Logger) net.Listener {
	return &connlimit.Listener{Listener: ln, Max: c.MaxConnections, MaxPerAddress: max(c.MaxConnectionsPerAddress, 0),
		Refused: func(remote net.Addr, limit string) {
			logger.Warn("HTTP connection refused: connection limit reached", "remote", remote.String(), "limit", limit)
		}}
}
