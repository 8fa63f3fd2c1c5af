package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/ferryhealth/ferry/adapters/mllp"
	"github.com/ferryhealth/ferry/hl7"
	"github.com/ferryhealth/ferry/internal/tlsconfig"
)

// send sends HL7 files over MLLP, one message at a time, waiting for each ACK (matched by MSA-2),
// and prints each ACK code. A file may hold several messages or a FHS/BHS batch. Exit status 1
// if any message is not answered AA or CA.
func send(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("send", stderr)
	to := fs.String("to", "", "MLLP peer HOST:PORT (required)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for each ACK")
	caFile := fs.String("tls-ca", "", "use TLS, trusting this CA file (PEM)")
	certFile := fs.String("tls-cert", "", "client certificate for mutual TLS (PEM)")
	keyFile := fs.String("tls-key", "", "client key for mutual TLS (PEM)")
	noProgress := fs.Bool("no-progress", false, "do not show a progress bar")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *to == "" || fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: ferry send --to HOST:PORT FILE…")
		return exitCode(2)
	}
	type item struct {
		file string
		msg  []byte
	}
	var items []item
	for _, f := range fs.Args() {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		msgs, err := hl7.SplitBatch(data)
		if err != nil {
			return fmt.Errorf("reading %s: %w", f, err)
		}
		for _, m := range msgs {
			items = append(items, item{file: f, msg: hl7.NormalizeSegmentEnds(m)})
		}
	}
	sender := &mllp.Sender{Addr: *to, Timeout: *timeout}
	if *caFile != "" || *certFile != "" {
		tc, err := tlsconfig.Client(*caFile, *certFile, *keyFile, "")
		if err != nil {
			return err
		}
		sender.TLSConfig = tc
	}
	defer sender.Close()

	var bar *progressbar.ProgressBar
	if len(items) > 1 && !*noProgress {
		bar = progressbar.NewOptions(len(items), progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription("sending"), progressbar.OptionShowCount(),
			progressbar.OptionClearOnFinish())
	}
	failed := 0
	for _, it := range items {
		h, _ := hl7.ReadHeader(it.msg)
		code, detail := "-", ""
		ack, err := sender.Send(ctx, it.msg)
		// A NAK comes back as the ACK and a *mllp.NAKError: print its code and ERR text.
		var nak *mllp.NAKError
		if err != nil && !errors.As(err, &nak) {
			detail = err.Error()
		} else if m, perr := hl7.Parse(ack); perr != nil {
			detail = "unreadable ACK: " + perr.Error()
		} else {
			code = m.Value("MSA-1")
			detail = m.Value("MSA-3")
			if e := m.Value("ERR-8"); e != "" {
				detail = e
			}
		}
		if code != "AA" && code != "CA" {
			failed++
		}
		if bar != nil {
			bar.Clear()
		}
		line := fmt.Sprintf("%s\t%s\t%s", it.file, h.ControlID, code)
		if detail != "" && code != "AA" && code != "CA" {
			line += "\t" + detail
		}
		fmt.Fprintln(stdout, line)
		if bar != nil {
			_ = bar.Add(1)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if bar != nil {
		_ = bar.Finish()
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "%d of %d messages not accepted\n", failed, len(items))
		return exitCode(1)
	}
	return nil
}
