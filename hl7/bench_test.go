package hl7

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// benchCorpus returns the corpus messages that parse, normalised like the @medplum/hl7 anchor's
// input (../shared/peers/parse-bench.mjs), and their total size.
func benchCorpus(b *testing.B) ([][]byte, int64) {
	b.Helper()
	files, err := filepath.Glob(filepath.Join(corpusDir, "*", "*.hl7"))
	if err != nil || len(files) == 0 {
		b.Skip("shared corpus not present: " + corpusDir)
	}
	var msgs [][]byte
	var size int64
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		data = NormalizeSegmentEnds(data)
		if _, err := Parse(data); err != nil {
			continue
		}
		msgs = append(msgs, data)
		size += int64(len(data))
	}
	return msgs, size
}

func BenchmarkParse(b *testing.B) {
	msgs, size := benchCorpus(b)
	b.SetBytes(size)
	b.ReportAllocs()
	var p Parser
	for b.Loop() {
		for _, data := range msgs {
			if _, err := p.Parse(data); err != nil {
				b.Fatal(err)
			}
		}
	}
	reportMsgs(b, len(msgs))
}

func BenchmarkParseReadEveryField(b *testing.B) {
	msgs, size := benchCorpus(b)
	b.SetBytes(size)
	b.ReportAllocs()
	var p Parser
	sink := 0
	for b.Loop() {
		for _, data := range msgs {
			m, err := p.Parse(data)
			if err != nil {
				b.Fatal(err)
			}
			sink += ReadEveryField(m)
		}
	}
	reportMsgs(b, len(msgs))
	_ = sink
}

func reportMsgs(b *testing.B, perOp int) {
	b.ReportMetric(float64(b.N*perOp)/b.Elapsed().Seconds(), "msgs/s")
	_ = time.Second
}
