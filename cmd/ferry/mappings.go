package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ferryhealth/ferry/mappings"
)

// mappingsCmd is `ferry mappings test|lint [--config FILE] [DIR]`: the analyst's checks of a
// mapping change before it is deployed. DIR is a site mappings directory (default: the config's
// mappings.dir, else the shipped mappings alone); facility overrides come from the config.
func mappingsCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "test" && args[0] != "lint") {
		return groupUsage(args, "usage: ferry mappings test|lint [--config FILE] [--json] [DIR]", stdout, stderr)
	}
	sub := args[0]
	fl := newFlagSet("mappings "+sub, stderr)
	configPath := fl.String("config", "", "configuration file (for mappings.dir and the facilities' overrides)")
	asJSON := fl.Bool("json", false, "print the results as JSON")
	if err := parseFlags(fl, args[1:]); err != nil {
		return err
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	if fl.NArg() > 1 {
		fmt.Fprintln(stderr, "ferry mappings: at most one directory")
		return exitCode(2)
	}
	if fl.NArg() == 1 {
		cfg.Mappings.Dir = fl.Arg(0)
	}
	// What serve would refuse, lint refuses: a directory that is not there is a typo, not an
	// empty site.
	if errs := cfg.validateMappings(); len(errs) > 0 {
		return fmt.Errorf("invalid config:\n%w", errors.Join(errs...))
	}
	src := cfg.mappingsConfig().Source()
	set, err := mappings.Load(src)
	if err != nil {
		var probs mappings.Problems
		if !errors.As(err, &probs) {
			return err
		}
		if *asJSON {
			_ = json.NewEncoder(stdout).Encode(map[string]any{"problems": probs})
		} else {
			for _, p := range probs {
				fmt.Fprintln(stdout, p.String())
			}
			fmt.Fprintf(stdout, "%d problem(s)\n", len(probs))
		}
		return exitCode(1)
	}
	if sub == "lint" {
		checked := lintEntries(set)
		if *asJSON {
			return json.NewEncoder(stdout).Encode(map[string]any{"problems": []any{}, "mappings": versions(set), "checked": checked})
		}
		for _, e := range checked {
			fmt.Fprintf(stdout, "ok  %-8s  %-40s  %s\n", e.Direction, e.File, e.Version)
		}
		return nil
	}
	// Tests run against the set they were written for: the base layers' tests against the
	// site's mappings. (A facility's tests, in its own directory, run against its overrides: the
	// set picks the facility by each inbound test message's MSH-4, and outbound tests render
	// with the facility of the directory they are in.)
	files, err := src.Tests()
	if err != nil {
		var probs mappings.Problems
		if errors.As(err, &probs) {
			for _, p := range probs {
				fmt.Fprintln(stdout, p.String())
			}
			return exitCode(1)
		}
		return err
	}
	results := set.Run(files)
	failed := 0
	for _, r := range results {
		if !r.Passed {
			failed++
		}
	}
	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(map[string]any{"results": results, "failed": failed}); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			status := "PASS"
			if !r.Passed {
				status = "FAIL"
			}
			fmt.Fprintf(stdout, "%s  %s: %s\n", status, r.File, r.Name)
			for _, d := range r.Details {
				fmt.Fprintln(stdout, "      "+strings.ReplaceAll(d, "\n", "\n      "))
			}
		}
		fmt.Fprintf(stdout, "%d passed, %d failed\n", len(results)-failed, failed)
	}
	if failed > 0 {
		return exitCode(1)
	}
	return nil
}

func versions(s *mappings.Set) []string { return s.Versions() }

// lintEntry is one mapping lint found sound: which way it maps, the file it was loaded from and
// the version messages will record.
type lintEntry struct {
	Direction string `json:"direction"` // inbound (HL7 → FHIR and worklist) or outbound (report → ORU)
	File      string `json:"file"`
	Version   string `json:"version"`
}

func lintEntries(s *mappings.Set) []lintEntry {
	var out []lintEntry
	for _, m := range s.Mappings() {
		out = append(out, lintEntry{Direction: "inbound", File: m.File, Version: m.Version})
	}
	for _, o := range s.Outbounds() {
		out = append(out, lintEntry{Direction: "outbound", File: o.File, Version: o.Version()})
	}
	return out
}
