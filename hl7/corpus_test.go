package hl7

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// corpusDir is the shared corpus of real HL7 v2 messages (../shared/corpus/hl7v2 from the
// repository), read by path and never copied into the repository.
const corpusDir = "../../shared/corpus/hl7v2"

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// corpusFiles returns every corpus message file, or skips the test when the corpus is absent.
func corpusFiles(tb testing.TB) []string {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(corpusDir, "*", "*.hl7"))
	if err != nil || len(files) == 0 {
		tb.Skip("shared corpus not present: " + corpusDir)
	}
	return files
}

// corpusName returns "<source>/<name>" for a corpus file, name without ".hl7".
func corpusName(file string) string {
	return filepath.Base(filepath.Dir(file)) + "/" + strings.TrimSuffix(filepath.Base(file), ".hl7")
}

// TestGolden parses every corpus file and compares its tree (WriteTree) or its parse error with
// testdata/golden/<source>/<name>.golden. Run with -update to rewrite the golden files.
func TestGolden(t *testing.T) {
	for _, file := range corpusFiles(t) {
		name := corpusName(file)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			checkGolden(t, file, name)
		})
	}
}

// TestGoldenFixtures is TestGolden on Ferry's own fixtures (testdata/messages, synthetic
// messages written for Ferry, no patient's data), so the codec's shapes — v2.3 and v2.5.1
// orders, escapes, other delimiters, LF segment ends, trailing delimiters, batches, Latin-1
// bytes, a message without MSH — are checked in a clone without ../shared too.
func TestGoldenFixtures(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("testdata", "messages", "*.hl7"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures in testdata/messages: %v", err)
	}
	for _, file := range files {
		name := "ferry/" + strings.TrimSuffix(filepath.Base(file), ".hl7")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			checkGolden(t, file, name)
		})
	}
}

// checkGolden parses file and compares its tree or parse error with testdata/golden/name.golden
// (rewritten with -update).
func checkGolden(t *testing.T, file, name string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if m, err := Parse(data); err != nil {
		got.WriteString("parse error: " + err.Error() + "\n")
	} else if err := m.WriteTree(&got); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "golden", filepath.FromSlash(name)+".golden")
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("reading golden file (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("tree differs from %s (run go test -update after checking):\n%s", golden, firstDiff(got.String(), string(want)))
	}
}

// firstDiff shows the first line where got and want differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "line " + itoa(i+1) + ":\n got: " + gl + "\nwant: " + wl
		}
	}
	return ""
}

func itoa(n int) string { return string(appendInt(nil, n)) }

func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

// TestCorpusRoundTrip checks that every corpus message that parses is written back byte for byte
// by Bytes (up to segment framing: NormalizeSegmentEnds), in its own character set, and that what
// Bytes writes parses to the same tree.
func TestCorpusRoundTrip(t *testing.T) {
	parsed := 0
	for _, file := range corpusFiles(t) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Parse(data)
		if err != nil {
			continue
		}
		parsed++
		out := m.Bytes()
		if want := NormalizeSegmentEnds(data); !bytes.Equal(out, want) {
			t.Errorf("%s: Bytes differs from the input:\n got %q\nwant %q", corpusName(file), out, want)
			continue
		}
		m2, err := Parse(out)
		if err != nil {
			t.Errorf("%s: Bytes does not parse again: %v", corpusName(file), err)
			continue
		}
		var t1, t2 bytes.Buffer
		_ = m.WriteTree(&t1)
		_ = m2.WriteTree(&t2)
		if t1.String() != t2.String() {
			t.Errorf("%s: tree changes after a round trip", corpusName(file))
		}
		if m.Encoding() != m2.Encoding() {
			t.Errorf("%s: encoding %s becomes %s after a round trip", corpusName(file), m.Encoding(), m2.Encoding())
		}
		// Every path WriteTree prints reads back the value it printed.
		for _, line := range strings.Split(t1.String(), "\n") {
			if !strings.HasPrefix(line, "  ") {
				continue
			}
			path, value, _ := strings.Cut(line[2:], "  ")
			got, err := m.Get(path)
			if err != nil {
				t.Errorf("%s: tree path %s: %v", corpusName(file), path, err)
				break
			}
			if string(appendDisplay(nil, got)) != value {
				t.Errorf("%s: Get(%s) = %q, tree shows %q", corpusName(file), path, got, value)
				break
			}
		}
	}
	t.Logf("%d corpus messages parsed and round-tripped", parsed)
}

// TestCorpusSplitBatch checks that every corpus file splits, and that every message of a batch
// or multi-message file parses or fails with a located error.
func TestCorpusSplitBatch(t *testing.T) {
	for _, file := range corpusFiles(t) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := SplitBatch(data)
		if err != nil {
			continue
		}
		for _, raw := range msgs {
			m, err := Parse(raw)
			if err != nil {
				continue
			}
			if !bytes.Equal(m.Bytes(), NormalizeSegmentEnds(raw)) {
				t.Errorf("%s: a message of the file does not round-trip", corpusName(file))
			}
		}
	}
}
