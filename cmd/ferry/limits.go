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
		Handler:           c.dicomwebDeadlines(c.answerDeadlines(handler)),
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

// DefaultAnswerTimeout is http.answer_timeout's default: far longer than any read takes on a
// working database, short enough that a client (or a load balancer's check) is answered while it
// still waits.
const DefaultAnswerTimeout = 15 * time.Second

// answerDeadlines answers 503 to a GET or HEAD not answered within AnswerTimeout — the
// database frozen or cut off (issue 18) — and ends its context then, which stops the reads of a
// driver that heeds it. lib/pq does not return before a frozen server answers, so the handler
// may run on, its answer discarded (http.TimeoutHandler). DICOMweb (large answers, streamed,
// bounded by DICOMwebTimeout) and pprof (profiles that last as long as asked) are left out, as
// are the changes, which the group commit and the audit bound.
func (c HTTPConfig) answerDeadlines(next http.Handler) http.Handler {
	bounded := http.TimeoutHandler(next, c.AnswerTimeout, "the database did not answer in time\n")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if (r.Method != http.MethodGet && r.Method != http.MethodHead) || p == dicomweb.BasePath ||
			strings.HasPrefix(p, dicomweb.BasePath+"/") || strings.HasPrefix(p, "/debug/pprof") {
			next.ServeHTTP(w, r)
			return
		}
		bounded.ServeHTTP(w, r)
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
