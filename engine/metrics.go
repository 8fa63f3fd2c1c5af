package engine

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the engine's Prometheus series. Labels never carry message content: message types
// that are not a plain code^trigger pair are counted as "other" so bad input cannot explode the
// series count.
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

// typeLabel turns MSH-9 into a bounded label value: "ORM^O01", "ACK", or "other".
func typeLabel(code, trigger string) string {
	if !isLabelWord(code) {
		if code == "" {
			return "none"
		}
		return "other"
	}
	if trigger == "" {
		return code
	}
	if !isLabelWord(trigger) {
		return code + "^other"
	}
	return code + "^" + trigger
}

func isLabelWord(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
