package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/ferryhealth/ferry/hl7"
)

// inspect prints each message of each file parsed: a tree of segments, fields, repetitions and
// components with their paths, or JSON with --json. Exit status 1 if any message does not parse.
func inspect(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("inspect", stderr)
	asJSON := fs.Bool("json", false, "print JSON instead of a tree")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: ferry inspect [--json] FILE…")
		return exitCode(2)
	}
	type jsonMessage struct {
		File    string          `json:"file"`
		Index   int             `json:"index"`
		Message json.RawMessage `json:"message,omitempty"`
		Error   string          `json:"error,omitempty"`
	}
	var out []jsonMessage
	bad := 0
	for _, f := range fs.Args() {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		msgs, err := hl7.SplitBatch(data)
		if err != nil {
			// Not a message at all: say so for this file and carry on with the others.
			bad++
			fmt.Fprintf(stderr, "ferry inspect: %s: %v\n", f, err)
			if *asJSON {
				out = append(out, jsonMessage{File: f, Index: 0, Error: err.Error()})
			}
			continue
		}
		for i, raw := range msgs {
			m, err := hl7.Parse(raw)
			if err != nil {
				bad++
			}
			if *asJSON {
				jm := jsonMessage{File: f, Index: i + 1}
				if err != nil {
					jm.Error = err.Error()
				} else if jm.Message, err = m.MarshalJSON(); err != nil {
					return err
				}
				out = append(out, jm)
				continue
			}
			fmt.Fprintf(stdout, "# %s [%d]\n", f, i+1)
			if err != nil {
				fmt.Fprintf(stdout, "error: %v\n\n", err)
				continue
			}
			if err := m.WriteTree(stdout); err != nil {
				return err
			}
			fmt.Fprintln(stdout)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	}
	if bad > 0 {
		return exitCode(1)
	}
	return nil
}
