package mappings

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ferryhealth/ferry/hl7"
)

// FuzzApply runs every shipped mapping over arbitrary messages: whatever a sender puts in the
// fields, a mapping returns output or an *Error, and never panics. Seeds: the corpus messages
// the shipped mappings handle and the shipped tests' messages.
func FuzzApply(f *testing.F) {
	s := shippedSet(f)
	if files, err := LoadTests(Shipped()); err == nil {
		for _, tf := range files {
			for _, tc := range tf.Tests {
				f.Add([]byte(tc.Message))
			}
		}
	}
	if paths, _ := filepath.Glob(filepath.Join(corpusDir, "*", "*O*.hl7")); len(paths) > 0 {
		for _, p := range paths {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	all := s.Mappings()
	f.Fuzz(func(t *testing.T, raw []byte) {
		msg, err := hl7.Parse(raw)
		if err != nil {
			return
		}
		for _, m := range all {
			out, err := m.Apply(msg)
			if err == nil && out == nil {
				t.Fatalf("%s: nil output without an error", m.Name)
			}
			if err != nil {
				if _, ok := err.(*Error); !ok {
					t.Fatalf("%s: error of type %T, want *Error: %v", m.Name, err, err)
				}
			}
		}
	})
}
