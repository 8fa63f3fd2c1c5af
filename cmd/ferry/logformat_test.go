package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// --log-format json (log_format: json) writes one JSON object per line, for a log shipper; text
// stays the default (issue 14, "Observability beyond the console").
func TestLogFormat(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	newLogger(&buf, "info", "json").Info("ferry serving", "mllp", ":2575")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("json log line %q: %v", buf.String(), err)
	}
	if line["msg"] != "ferry serving" || line["mllp"] != ":2575" || line["level"] != "INFO" {
		t.Errorf("json log line %v: want msg, level and attributes as keys", line)
	}
	buf.Reset()
	newLogger(&buf, "info", "").Info("ferry serving", "mllp", ":2575")
	if !strings.Contains(buf.String(), `msg="ferry serving" mllp=:2575`) {
		t.Errorf("default format %q, want key=value text", buf.String())
	}
	cfg := &Config{LogFormat: "xml"}
	cfg.setDefaults()
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), `log_format: "xml" is not text or json`) {
		t.Errorf("log_format xml: got %v", err)
	}
}
