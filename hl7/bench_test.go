package hl7

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The benchmarks run over every corpus message that parses (BenchmarkParse*, BenchmarkSerialize)
// or over one typical radiology order (BenchmarkGet, BenchmarkBuildACK). `ferry bench parse`
// runs the same loop as BenchmarkParseReadEveryField, for comparison with @medplum/hl7.

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
}

func BenchmarkParseAllocating(b *testing.B) {
	msgs, size := benchCorpus(b)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		for _, data := range msgs {
			if _, err := Parse(data); err != nil {
				b.Fatal(err)
			}
		}
	}
	reportMsgs(b, len(msgs))
}

func BenchmarkSerialize(b *testing.B) {
	msgs, size := benchCorpus(b)
	parsed := make([]*Message, len(msgs))
	for i, data := range msgs {
		parsed[i], _ = Parse(data)
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		for _, m := range parsed {
			_ = m.Bytes()
		}
	}
	reportMsgs(b, len(msgs))
}

// benchOrder is a typical ORM^O01 imaging order.
var benchOrder = msg(
	`MSH|^~\&|RIS|STMARYS|FERRY|FERRY|20261127083000||ORM^O01^ORM_O01|MSG0001|P|2.3|||AL|NE`,
	`PID|1||12345^^^STMARYS^MR~987654^^^SSA^SS||DOE^JANE^Q^^MRS||19800101|F|||1 MAIN ST^^SPRINGFIELD^IL^62701||(555)555-1234`,
	`PV1|1|O|RAD^^^STMARYS||||1234^SMITH^JOHN^^^DR|||||||||||V123`,
	`ORC|NW|ORD1234^RIS|||SC||^^^20261127090000^^R||20261127083000|||1234^SMITH^JOHN^^^DR`,
	`OBR|1|ORD1234^RIS||71020^CHEST 2 VIEWS^C4|||20261127083000|||||||||1234^SMITH^JOHN^^^DR||ACC5678|||||CR|||^^^20261127090000^^R`,
	`OBX|1|TX|REASON^Reason for exam||Cough \T\ fever for 3 days\.br\rule out pneumonia||||||F`,
)

func BenchmarkGet(b *testing.B) {
	m, err := Parse(benchOrder)
	if err != nil {
		b.Fatal(err)
	}
	paths := []string{"MSH-10", "PID-3[1].1", "PID-5.2", "OBR-4.2", "OBR-18", "OBX-5"}
	b.Run("string", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, p := range paths {
				_, _ = m.Get(p)
			}
		}
		b.ReportMetric(float64(b.N*len(paths))/b.Elapsed().Seconds(), "gets/s")
	})
	b.Run("parsed", func(b *testing.B) {
		parsed := make([]Path, len(paths))
		for i, p := range paths {
			parsed[i] = MustParsePath(p)
		}
		b.ReportAllocs()
		for b.Loop() {
			for _, p := range parsed {
				_ = m.GetPath(p)
			}
		}
		b.ReportMetric(float64(b.N*len(paths))/b.Elapsed().Seconds(), "gets/s")
	})
}

func BenchmarkBuildACK(b *testing.B) {
	m, err := Parse(benchOrder)
	if err != nil {
		b.Fatal(err)
	}
	h := m.Header()
	opt := ACKOptions{Outcome: Error, ControlID: "ACK1", Time: time.Date(2026, 11, 27, 8, 30, 5, 0, time.UTC),
		Errors: []ErrorDetail{{Segment: "PID", Sequence: 1, Field: 3, Code: CodeRequiredFieldMissing, Text: "PID-3 is required"}}}
	b.ReportAllocs()
	var n int
	for b.Loop() {
		n = len(BuildACK(h, opt))
	}
	b.SetBytes(int64(n))
}

// BenchmarkParseOrderPaths is the accessor path of the inbound flow on a typical order: parse,
// then read the fields a mapping reads — paths by number, every PID-3 repetition by its number —
// so that an index for long fields (issue 17) is seen not to slow the common case.
func BenchmarkParseOrderPaths(b *testing.B) {
	paths := make([]Path, 0, 16)
	for _, p := range []string{"MSH-9.1", "MSH-9.2", "MSH-10", "MSH-12", "PID-5.1", "PID-5.2", "PID-7", "PID-8",
		"PV1-2", "ORC-1", "ORC-2.1", "OBR-4.1", "OBR-4.2", "OBR-18", "OBR-24", "OBX-5"} {
		paths = append(paths, MustParsePath(p))
	}
	pid3 := MustParsePath("PID-3.1")
	b.SetBytes(int64(len(benchOrder)))
	b.ReportAllocs()
	var p Parser
	sink := 0
	for b.Loop() {
		m, err := p.Parse(benchOrder)
		if err != nil {
			b.Fatal(err)
		}
		for _, q := range paths {
			sink += len(m.GetPath(q))
		}
		q := pid3
		for q.Repetition = 1; q.Repetition <= m.Count("PID-3"); q.Repetition++ {
			sink += len(m.GetPath(q))
		}
	}
	_ = sink
}
