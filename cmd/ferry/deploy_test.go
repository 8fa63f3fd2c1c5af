package main

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/critical"
	"github.com/ferryhealth/ferry/engine/turnaround"
)

// describedNames records the names of the metrics registered with it.
type describedNames map[string]bool

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (d describedNames) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		if m := fqName.FindStringSubmatch(desc.String()); m != nil {
			d[m[1]] = true
		}
	}
	return nil
}
func (d describedNames) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = d.Register(c)
	}
}
func (d describedNames) Unregister(prometheus.Collector) bool { return false }

// TestDeployMonitoring: the shipped Prometheus rules and Grafana dashboard (deploy/) name only
// metrics Ferry exports — a renamed metric would silence an alert without a word. (CI also runs
// promtool check rules and promtool test rules on them: make lint.)
func TestDeployMonitoring(t *testing.T) {
	t.Parallel()
	exported := describedNames{}
	engine.NewMetrics(exported)
	turnaround.NewMetrics(exported)
	exported.MustRegister(engine.NewErrorQueueCollector(nil, nil))
	exported.MustRegister(critical.NewCollector(nil, 0, nil), critical.NewSentCounter())

	dashboard, err := os.ReadFile("../../deploy/grafana/ferry.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(dashboard, &d); err != nil {
		t.Fatalf("deploy/grafana/ferry.json: %v", err)
	}
	var exprs []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	rules, err := os.ReadFile("../../deploy/prometheus/ferry-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	exprs = append(exprs, string(rules))
	names := regexp.MustCompile(`\bferry_[a-z_]+`)
	seen := 0
	for _, e := range exprs {
		for _, n := range names.FindAllString(e, -1) {
			base := n
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(n, suffix); ok && exported[b] {
					base = b
				}
			}
			if n == "ferry_rules" { // the file's own name in its comments
				continue
			}
			if !exported[base] {
				t.Errorf("deploy/ names metric %s, which Ferry does not export", n)
			}
			seen++
		}
	}
	if seen < 10 {
		t.Errorf("found only %d metric names in deploy/: the test no longer reads them", seen)
	}
}
