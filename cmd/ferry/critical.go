package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferryhealth/ferry/adapters/webhook"
	"github.com/ferryhealth/ferry/engine/critical"
)

// ReportsConfig tunes critical results (docs/reports.md, "Critical results"; docs/operations.md).
type ReportsConfig struct {
	// CriticalAckWithin is how long a critical result may wait for its ordering physician's
	// acknowledgement before the alert is raised: ferry_critical_unacknowledged_overdue counts
	// it and the webhook is called (default 1h; from 1m to 7 days).
	CriticalAckWithin time.Duration `yaml:"critical_ack_within"`
	// CriticalWebhook, if set, is posted a JSON alert (ids and times, no patient data) once per
	// overdue critical result, retried until it answers 2xx, so that a person calls.
	CriticalWebhook string `yaml:"critical_webhook"`
}

func (r ReportsConfig) ackWithin() time.Duration {
	if r.CriticalAckWithin == 0 {
		return critical.DefaultAckWithin
	}
	return r.CriticalAckWithin
}

func (r ReportsConfig) validate() []error {
	var errs []error
	if w := r.CriticalAckWithin; w != 0 && (w < time.Minute || w > 7*24*time.Hour) {
		errs = append(errs, errors.New("reports.critical_ack_within: must be from 1m to 168h"))
	}
	if r.CriticalWebhook != "" {
		if err := webhook.Validate(r.CriticalWebhook); err != nil {
			errs = append(errs, fmt.Errorf("reports.critical_webhook: %w", err))
		}
	}
	return errs
}

// criticalAlerter returns the alert on unacknowledged critical results: its metrics registered
// on reg, and the webhook's sender, which every node runs (a claim in the store sends each
// alert once).
func (c *Config) criticalAlerter(st critical.AlertStore, reg prometheus.Registerer, logger *slog.Logger) (*critical.Alerter, error) {
	within := c.Reports.ackWithin()
	reg.MustRegister(critical.NewCollector(st, within, logger))
	a := &critical.Alerter{Store: st, Within: within, Logger: logger}
	if c.Reports.CriticalWebhook == "" {
		return a, nil
	}
	n, err := webhook.New(c.Reports.CriticalWebhook, 0)
	if err != nil {
		return nil, fmt.Errorf("reports.critical_webhook: %w", err)
	}
	a.Notifier, a.Sent = n, critical.NewSentCounter()
	reg.MustRegister(a.Sent)
	if base := strings.TrimRight(c.HTTP.PublicURL, "/"); base != "" {
		a.ReportURL = func(id string) string { return base + "/reports/" + url.PathEscape(id) }
	}
	return a, nil
}
