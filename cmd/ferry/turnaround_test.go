package main

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/engine/turnaround"
)

// TestTurnaroundConfig: the turnaround SLAs are the defaults with what the file sets over them,
// field by field (0s: no limit); an unknown priority, a negative time or a preliminary due after
// the final are refused, each naming its priority.
func TestTurnaroundConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, yaml string
		want       turnaround.SLAs
		wantErr    string
	}{
		{name: "Defaults", yaml: "log_level: info\n", want: turnaround.DefaultSLAs()},
		{name: "Overrides", yaml: "turnaround:\n  stat: {preliminary: 20m}\n  routine: {preliminary: 12h, final: 0s}\n",
			want: turnaround.SLAs{
				"stat":    {Preliminary: 20 * time.Minute, Final: 4 * time.Hour},
				"asap":    {Preliminary: time.Hour, Final: 8 * time.Hour},
				"urgent":  {Preliminary: 2 * time.Hour, Final: 12 * time.Hour},
				"routine": {Preliminary: 12 * time.Hour},
			}},
		{name: "UnknownPriority", yaml: "turnaround:\n  emergency: {preliminary: 10m}\n", wantErr: "turnaround.emergency: not an order priority"},
		{name: "Negative", yaml: "turnaround:\n  asap: {final: -1h}\n", wantErr: "turnaround.asap: preliminary and final must not be negative"},
		{name: "PreliminaryAfterFinal", yaml: "turnaround:\n  urgent: {preliminary: 13h}\n", wantErr: "turnaround.urgent: the preliminary (13h0m0s) cannot be due after the final (12h0m0s)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := loadTestConfig(t, tc.yaml)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Validate: %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.turnaroundSLAs(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("turnaroundSLAs = %v, want %v", got, tc.want)
			}
		})
	}
}
