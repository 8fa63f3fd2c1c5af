package critical

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferryhealth/ferry/engine"
)

// DefaultAckWithin is how long a critical result may wait for its acknowledgement before the
// alert is raised, unless configured (reports.critical_ack_within).
const DefaultAckWithin = time.Hour

// Alert is what the webhook tells: ids and times only, no patient data beyond Ferry's ids.
type Alert struct {
	Event          string    `json:"event"` // "critical_result_unacknowledged"
	Report         string    `json:"report"`
	Version        int64     `json:"version"`
	ServiceRequest string    `json:"service_request"`
	Patient        string    `json:"patient"`
	ReportedAt     time.Time `json:"reported_at"`
	OverdueSeconds int64     `json:"overdue_seconds"`
	Attempt        int       `json:"attempt"`
	// URL is the report's page, when Ferry's public URL is configured.
	URL string `json:"url,omitempty"`
}

// Notifier delivers an alert (adapters/webhook). nil means it was accepted (a 2xx); an error
// is tried again later.
type Notifier interface {
	Notify(ctx context.Context, a *Alert) error
}

// AlertStore is what the Alerter reads and marks (adapters/sqlstore).
type AlertStore interface {
	// CriticalStats counts the unacknowledged critical results and those reported before
	// overdueBefore, and says when the oldest was reported.
	CriticalStats(ctx context.Context, overdueBefore time.Time) (engine.CriticalStats, error)
	// DueCriticalAlerts returns up to limit unacknowledged critical results reported before
	// before whose alert has not been answered and is not held off at now, oldest first.
	DueCriticalAlerts(ctx context.Context, before, now time.Time, limit int) ([]*engine.CriticalResult, error)
	// ClaimCriticalAlert holds a due alert for this caller until until (on any node); false
	// when it is not due any more or another caller holds it.
	ClaimCriticalAlert(ctx context.Context, reportID string, now, until time.Time) (bool, error)
	// FinishCriticalAlert records a claimed attempt: answered at notifiedAt (not zero), or to
	// be tried again from retryAt.
	FinishCriticalAlert(ctx context.Context, reportID string, notifiedAt, retryAt time.Time) error
}

// Alerter sends the webhook for each critical result left unacknowledged longer than Within,
// once per report (retried with backoff until the receiver answers 2xx). Every node may run
// one: a claim in the store keeps two from sending the same alert at once. The metrics are
// NewCollector's, read from the store at each scrape.
type Alerter struct {
	Store    AlertStore
	Notifier Notifier // nil: no webhook, the metrics alone alert
	Within   time.Duration
	// Every is how often Run looks for overdue results (default a minute, or Within/4 when
	// shorter).
	Every time.Duration
	// ReportURL, if set, returns the report page's address for the webhook.
	ReportURL func(reportID string) string
	// Sent counts the webhook's attempts by outcome ("sent", "failed"), when set.
	Sent   *prometheus.CounterVec
	Logger *slog.Logger
	Now    func() time.Time
}

// attemptLease holds an attempt off other nodes; an attempt takes at most the notifier's
// timeout, well under it.
const attemptLease = 2 * time.Minute

// maxAlertsPerPass bounds one pass; the rest wait for the next.
const maxAlertsPerPass = 100

func (a *Alerter) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *Alerter) within() time.Duration {
	if a.Within > 0 {
		return a.Within
	}
	return DefaultAckWithin
}

func (a *Alerter) logger() *slog.Logger {
	if a.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Logger
}

// Run sends the due alerts every Every until ctx ends.
func (a *Alerter) Run(ctx context.Context) {
	if a.Notifier == nil {
		return
	}
	every := a.Every
	if every <= 0 {
		every = min(time.Minute, max(a.within()/4, time.Second))
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := a.Pass(ctx); err != nil && ctx.Err() == nil {
			a.logger().Warn("sending critical result alerts", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Pass sends the alerts due now and returns how many the receiver accepted.
func (a *Alerter) Pass(ctx context.Context) (int, error) {
	if a.Notifier == nil {
		return 0, nil
	}
	now := a.now().UTC()
	due, err := a.Store.DueCriticalAlerts(ctx, now.Add(-a.within()), now, maxAlertsPerPass)
	if err != nil {
		return 0, err
	}
	sent := 0
	for _, r := range due {
		ok, err := a.Store.ClaimCriticalAlert(ctx, r.ReportID, now, now.Add(attemptLease))
		if err != nil {
			return sent, err
		}
		if !ok {
			continue // another node has it, or it was acknowledged meanwhile
		}
		alert := &Alert{Event: "critical_result_unacknowledged", Report: "DiagnosticReport/" + r.ReportID, Version: r.Version,
			ServiceRequest: "ServiceRequest/" + r.OrderID, Patient: "Patient/" + r.PatientID, ReportedAt: r.ReportedAt,
			OverdueSeconds: int64(now.Sub(r.ReportedAt.Add(a.within())) / time.Second), Attempt: r.NotifyAttempts + 1}
		if a.ReportURL != nil {
			alert.URL = a.ReportURL(r.ReportID)
		}
		nerr := a.Notifier.Notify(ctx, alert)
		notified, retry := a.now().UTC(), time.Time{}
		if nerr != nil {
			notified, retry = time.Time{}, now.Add(backoff(alert.Attempt))
			a.logger().Warn("critical result alert not accepted; will retry", "report", r.ReportID, "attempt", alert.Attempt, "retry_at", retry, "err", nerr)
			a.count("failed")
		} else {
			a.logger().Info("critical result alert sent", "report", r.ReportID, "attempt", alert.Attempt)
			a.count("sent")
			sent++
		}
		if err := a.Store.FinishCriticalAlert(ctx, r.ReportID, notified, retry); err != nil {
			return sent, fmt.Errorf("recording the alert of DiagnosticReport/%s: %w", r.ReportID, err)
		}
	}
	return sent, nil
}

func (a *Alerter) count(outcome string) {
	if a.Sent != nil {
		a.Sent.WithLabelValues(outcome).Inc()
	}
}

// backoff is the wait before attempt n+1: 30 s doubling, at most 15 minutes.
func backoff(n int) time.Duration {
	d := 30 * time.Second
	for i := 1; i < n && d < 15*time.Minute; i++ {
		d *= 2
	}
	return min(d, 15*time.Minute)
}

// NewSentCounter returns ferry_critical_alerts_total, the webhook's attempts by outcome.
func NewSentCounter() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_critical_alerts_total",
		Help: "Webhook attempts for unacknowledged critical results, by outcome (sent, failed)."}, []string{"outcome"})
}

// StatsReader is what the metrics read: AlertStore.CriticalStats.
type StatsReader interface {
	CriticalStats(ctx context.Context, overdueBefore time.Time) (engine.CriticalStats, error)
}

// collector reads the unacknowledged critical results from the store at each scrape: they are
// the store's, shared by every node.
type collector struct {
	store                 StatsReader
	within                time.Duration
	logger                *slog.Logger
	now                   func() time.Time
	unacked, overdue, age *prometheus.Desc
	scrapeLimit           time.Duration
}

// NewCollector returns the collector of ferry_critical_unacknowledged,
// ferry_critical_unacknowledged_overdue (older than within) and
// ferry_critical_unacknowledged_oldest_age_seconds; the shipped alert rule fires on an overdue
// one (deploy/prometheus/ferry-rules.yml).
func NewCollector(store StatsReader, within time.Duration, logger *slog.Logger) prometheus.Collector {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if within <= 0 {
		within = DefaultAckWithin
	}
	return &collector{store: store, within: within, logger: logger, now: time.Now, scrapeLimit: 2 * time.Second,
		unacked: prometheus.NewDesc("ferry_critical_unacknowledged",
			"Critical results no physician has acknowledged yet.", nil, nil),
		overdue: prometheus.NewDesc("ferry_critical_unacknowledged_overdue",
			"Critical results unacknowledged for longer than reports.critical_ack_within.", nil, nil),
		age: prometheus.NewDesc("ferry_critical_unacknowledged_oldest_age_seconds",
			"How long the oldest unacknowledged critical result has waited (0 when none).", nil, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.unacked
	ch <- c.overdue
	ch <- c.age
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.scrapeLimit)
	defer cancel()
	now := c.now()
	st, err := c.store.CriticalStats(ctx, now.Add(-c.within))
	if err != nil {
		// No sample rather than a wrong one: the alert does not resolve falsely.
		c.logger.Warn("reading critical results for metrics", "err", err)
		return
	}
	age := 0.0
	if st.Unacknowledged > 0 && !st.Oldest.IsZero() {
		age = max(0, now.Sub(st.Oldest).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(c.unacked, prometheus.GaugeValue, float64(st.Unacknowledged))
	ch <- prometheus.MustNewConstMetric(c.overdue, prometheus.GaugeValue, float64(st.Overdue))
	ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, age)
}
