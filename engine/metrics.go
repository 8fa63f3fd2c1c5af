package engine

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the engine's Prometheus series. Labels never carry message content, and every label
// value comes from a fixed set: message types Ferry does not know are counted as "other"
// (typeLabel) so bad input cannot explode the series count.
type Metrics struct {
	Messages       *prometheus.CounterVec // channel, type, ack_code
	Duplicates     *prometheus.CounterVec // channel
	Rejects        *prometheus.CounterVec // channel, reason
	CommitSeconds  prometheus.Histogram
	CommitBatch    prometheus.Histogram
	CommitFailures prometheus.Counter
	OpenConns      *prometheus.GaugeVec   // channel
	ConnsRefused   *prometheus.CounterVec // channel
	DiscardedBytes *prometheus.CounterVec // channel
	FrameErrors    *prometheus.CounterVec // channel, kind
}

// NewMetrics creates the series and registers them with reg (nil: not registered, as in tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_inbound_messages_total",
			Help: "Inbound HL7 messages answered, by channel, message type (MSH-9.1^MSH-9.2) and ACK code.",
		}, []string{"channel", "type", "ack_code"}),
		Duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_inbound_duplicates_total",
			Help: "Inbound messages recognised as duplicates (same MSH-3, MSH-4, MSH-10 as an accepted one).",
		}, []string{"channel"}),
		Rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_inbound_rejects_total",
			Help: "Inbound messages rejected, by reason (parse, header, too_large, limits, empty, …).",
		}, []string{"channel", "reason"}),
		CommitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ferry_store_commit_seconds",
			Help:    "Duration of one inbound store transaction (a group commit).",
			Buckets: []float64{.0002, .0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		CommitBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ferry_store_commit_batch_messages",
			Help:    "Messages per inbound store transaction.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
		}),
		CommitFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_store_commit_failures_total",
			Help: "Inbound store transactions that failed (their messages were answered AE, ERR 207).",
		}),
		OpenConns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_mllp_open_connections",
			Help: "Open MLLP connections.",
		}, []string{"channel"}),
		ConnsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_mllp_connections_refused_total",
			Help: "MLLP connections closed at once because the connection limit was reached.",
		}, []string{"channel"}),
		DiscardedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_mllp_discarded_bytes_total",
			Help: "Bytes received outside MLLP frames (before a start block) and dropped.",
		}, []string{"channel"}),
		FrameErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_mllp_frame_errors_total",
			Help: "MLLP framing problems by kind: too_large (answered, connection kept); truncated, timeout, read, tls_handshake, write, handler_panic (connection closed).",
		}, []string{"channel", "kind"}),
	}
	if reg != nil {
		reg.MustRegister(m.Messages, m.Duplicates, m.Rejects, m.CommitSeconds, m.CommitBatch,
			m.CommitFailures, m.OpenConns, m.ConnsRefused, m.DiscardedBytes, m.FrameErrors)
	}
	return m
}

// ObserveCommit records one group commit; it fits GroupCommitOptions.Observe.
func (m *Metrics) ObserveCommit(batch int, d time.Duration, err error) {
	m.CommitSeconds.Observe(d.Seconds())
	m.CommitBatch.Observe(float64(batch))
	if err != nil {
		m.CommitFailures.Inc()
	}
}

// typeLabel turns MSH-9 into a label value from a fixed set, so that no sender can grow the
// series count (issue 17 item 9): a message code and trigger event Ferry knows ("ORM^O01",
// "ADT^A08"), "ACK" (its trigger echoes the acknowledged message's, so it is dropped), a known
// code with another trigger as "ADT^other", anything else as "other", and no code as "none".
// The set is labelTriggers; at most a few hundred values per channel and ACK code.
func typeLabel(code, trigger string) string {
	if code == "" {
		return "none"
	}
	known, ok := labelTriggers[code]
	switch {
	case !ok:
		return "other"
	case code == "ACK" || trigger == "":
		return code
	case known(trigger):
		return code + "^" + trigger
	}
	return code + "^other"
}

// labelTriggers are the message codes (HL7 table 0076) an imaging interface engine sees, each
// with the trigger events (table 0003) counted under their own label.
var labelTriggers = map[string]func(trigger string) bool{
	"ACK": func(string) bool { return false },
	"ADT": triggerRange('A', 1, 62), // A01 admit … A62 cancel merge
	"ORM": triggerRange('O', 1, 1),
	"ORR": triggerRange('O', 2, 2),
	"OMI": triggerRange('O', 23, 23),
	"ORI": triggerRange('O', 24, 24),
	"OMG": triggerRange('O', 19, 19),
	"ORG": triggerRange('O', 20, 20),
	"ORU": triggerRange('R', 1, 1),
	"MDM": triggerRange('T', 1, 11),
	"SIU": triggerRange('S', 12, 26),
}

// triggerRange accepts the trigger events letter+two digits from lo to hi ("A01".."A62").
func triggerRange(letter byte, lo, hi int) func(string) bool {
	return func(t string) bool {
		if len(t) != 3 || t[0] != letter || t[1] < '0' || t[1] > '9' || t[2] < '0' || t[2] > '9' {
			return false
		}
		n := int(t[1]-'0')*10 + int(t[2]-'0')
		return n >= lo && n <= hi
	}
}
