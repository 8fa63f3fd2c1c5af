package main

import (
	"fmt"
	"io"
	"os"

	"github.com/ferryhealth/ferry/engine/patientid"
)

// identifiersCmd is `ferry identifiers test FILE…`: each file of a hospital's identifier rules
// (linking.identifier_rules; docs/dicom.md, "Identifier rules per hospital") is loaded and
// checked, and the tests beside its rules are run. It prints one line per file ("ok", or each
// failure) and fails when any file does not load or any test fails.
func identifiersCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) < 2 || args[0] != "test" {
		fmt.Fprintln(stderr, "usage: ferry identifiers test FILE…")
		return exitCode(2)
	}
	failed := false
	for _, path := range args[1:] {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(stdout, "FAIL %s: %v\n", path, err)
			failed = true
			continue
		}
		r, err := patientid.Load(data)
		if err != nil {
			fmt.Fprintf(stdout, "FAIL %s: %v\n", path, err)
			failed = true
			continue
		}
		fails := r.Run()
		for _, f := range fails {
			fmt.Fprintf(stdout, "FAIL %s: %s\n", path, f)
		}
		if len(fails) > 0 {
			failed = true
			continue
		}
		fmt.Fprintf(stdout, "ok   %s (%d tests)\n", path, len(r.Tests))
	}
	if failed {
		return exitCode(1)
	}
	return nil
}
