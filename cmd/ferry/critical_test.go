package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigCriticalResults: reports.critical_ack_within and reports.critical_webhook are read,
// defaulted and validated with the key named.
func TestConfigCriticalResults(t *testing.T) {
	load := func(body string) (*Config, error) {
		t.Helper()
		path := filepath.Join(t.TempDir(), "ferry.yaml")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return loadConfig(path)
	}
	cfg, err := load("reports:\n  critical_ack_within: 30m\n  critical_webhook: https://pager.example/hooks/ferry\n")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Reports.ackWithin() != 30*time.Minute || cfg.Reports.CriticalWebhook != "https://pager.example/hooks/ferry" {
		t.Errorf("reports = %+v", cfg.Reports)
	}
	if cfg, err := load("log_level: info\n"); err != nil || cfg.Reports.ackWithin() != time.Hour {
		t.Errorf("default critical_ack_within: %v, %v; want 1h", cfg.Reports.ackWithin(), err)
	}
	_, err = load("reports:\n  critical_ack_within: 10s\n  critical_webhook: ftp://pager.example/x\n  critical_ack: 1h\n")
	for _, want := range []string{"reports.critical_ack_within: must be from 1m to 168h", "reports.critical_webhook: webhook URL",
		"reports.critical_ack: unknown key"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}
