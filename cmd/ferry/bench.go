package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ferryhealth/ferry/hl7"
)

// bench runs a benchmark: "parse" parses every message of the files and reads every field,
// repeatedly, and prints messages and megabytes per second.
func bench(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "parse" {
		return groupUsage(args, "usage: ferry bench parse [--repeat N] FILE…", stdout, stderr)
	}
	fs := newFlagSet("bench parse", stderr)
	repeat := fs.Int("repeat", 0, "passes over the files (default: as many as fit in --duration)")
	duration := fs.Duration("duration", 3*time.Second, "how long to run when --repeat is not given")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: ferry bench parse [--repeat N] FILE…")
		return exitCode(2)
	}
	// Same input as the @medplum/hl7 anchor (../shared/peers/parse-bench.mjs): one message per
	// file, segment ends normalised, only messages that parse.
	var msgs [][]byte
	var size int64
	skipped := 0
	for _, f := range fs.Args() {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		data = hl7.NormalizeSegmentEnds(data)
		if _, err := hl7.Parse(data); err != nil {
			skipped++
			continue
		}
		msgs = append(msgs, data)
		size += int64(len(data))
	}
	if len(msgs) == 0 {
		return fmt.Errorf("no file parsed (%d skipped)", skipped)
	}
	var p hl7.Parser
	sink := 0
	pass := func() error {
		for _, data := range msgs {
			m, err := p.Parse(data)
			if err != nil {
				return err
			}
			sink += hl7.ReadEveryField(m)
		}
		return nil
	}
	// One warm-up pass, then measure.
	if err := pass(); err != nil {
		return err
	}
	start := time.Now()
	passes := 0
	for (*repeat > 0 && passes < *repeat) || (*repeat == 0 && time.Since(start) < *duration) {
		if err := pass(); err != nil {
			return err
		}
		passes++
	}
	secs := time.Since(start).Seconds()
	n := float64(len(msgs) * passes)
	fmt.Fprintf(stdout, "ferry parse: %.0f msg/s %.1f MB/s (%d msgs x %d, %d skipped, sink %d)\n",
		n/secs, float64(size)*float64(passes)/secs/1e6, len(msgs), passes, skipped, sink)
	return nil
}
