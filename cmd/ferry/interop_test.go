package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/hl7"
)

// corpusDir is ../shared/corpus seen from the repository root; the test runs in cmd/ferry.
const corpusDir = "../../../shared/corpus"

// corpusOrEmpty returns the corpus directory, skipping the test when it is absent.
func requireCorpus(t *testing.T) string {
	t.Helper()
	index := filepath.Join(corpusDir, "hl7v2", "INDEX.tsv")
	if _, err := os.Stat(index); err != nil {
		t.Skipf("corpus absent (%v): the interop test needs ../shared/corpus beside the repository", err)
	}
	return corpusDir
}

// requirePeer returns the path of a peer program, skipping (or, with FERRY_REQUIRE_PEERS=1,
// failing) when it is not installed.
func requirePeer(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		msg := fmt.Sprintf("%s not found (install Debian %s); set FERRY_REQUIRE_PEERS=1 to fail instead of skipping", name, pkg)
		if os.Getenv("FERRY_REQUIRE_PEERS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

// corpusMessage is one message of a corpus file, as sent.
type corpusMessage struct {
	File      string // path relative to the corpus, as in INDEX.tsv
	Index     int    // 1-based message number within the file
	Data      []byte // segment ends CR, no BOM
	ControlID string // MSH-10 per hl7.ReadHeader
	Enhanced  bool   // MSH-15 or MSH-16 valued: expect CA instead of AA
	Features  string // INDEX.tsv features column
}

func (m corpusMessage) name() string {
	if m.Index > 1 {
		return fmt.Sprintf("%s[%d]", m.File, m.Index)
	}
	return m.File
}

// interopExclusions are corpus files of the selected types that cannot reasonably be answered AA:
// each is sent like the others and must be answered AR or AE (CR/CE) with an ERR segment. The
// reason says why AA would be wrong.
var interopExclusions = map[string]string{
	// filled in from the corpus: see the comments on each entry
}

// loadInteropCorpus reads INDEX.tsv and returns every message of every file whose type (column
// 4) starts with ORM, OMI, ORU or ADT.
func loadInteropCorpus(t *testing.T, corpus string) []corpusMessage {
	t.Helper()
	f, err := os.Open(filepath.Join(corpus, "hl7v2", "INDEX.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comma = '\t'
	r.LazyQuotes = true
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		t.Fatalf("INDEX.tsv: %v", err)
	}
	if len(header) < 11 || header[0] != "file" || header[3] != "type" || header[10] != "features" {
		t.Fatalf("INDEX.tsv: unexpected columns %q", header)
	}
	var out []corpusMessage
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("INDEX.tsv: %v", err)
		}
		typ := rec[3]
		if !(strings.HasPrefix(typ, "ORM") || strings.HasPrefix(typ, "OMI") || strings.HasPrefix(typ, "ORU") || strings.HasPrefix(typ, "ADT")) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(corpus, rec[0]))
		if err != nil {
			t.Fatalf("reading corpus file: %v", err)
		}
		data = bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))
		msgs, err := hl7.SplitBatch(data)
		if err != nil || len(msgs) == 0 {
			// Not splittable as a batch: sent as it is, one message.
			msgs = [][]byte{data}
		}
		for i, m := range msgs {
			m = hl7.NormalizeSegmentEnds(m)
			cm := corpusMessage{File: rec[0], Index: i + 1, Data: m, Features: rec[10]}
			if h, err := hl7.ReadHeader(m); err == nil {
				cm.ControlID = h.ControlID
				cm.Enhanced = h.Enhanced()
			}
			out = append(out, cm)
		}
	}
	return out
}

// TestInteropMLLPSend sends every order, result and ADT message of the corpus through the real
// mllp_send (Debian python3-hl7) and checks each ACK: AA (CA in enhanced mode) with MSA-2 equal
// to the message's MSH-10, and every message stored.
func TestInteropMLLPSend(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: -short")
	}
	t.Parallel()
	corpus := requireCorpus(t)
	mllpSend := requirePeer(t, "mllp_send", "python3-hl7")
	msgs := loadInteropCorpus(t, corpus)
	if len(msgs) < 100 {
		t.Fatalf("only %d corpus messages of types ORM/OMI/ORU/ADT; the corpus looks incomplete", len(msgs))
	}

	// One file of MLLP frames, as mllp_send -f reads it (it splits on 0x1C).
	var stream bytes.Buffer
	for _, m := range msgs {
		if bytes.IndexByte(m.Data, 0x1C) >= 0 {
			t.Fatalf("%s contains 0x1C and cannot be framed for mllp_send", m.name())
		}
		stream.Write(frame(m.Data))
	}

	forEachStore(t, func(t *testing.T, db, dir string) {
		p := startFerry(t, db, dir, serveOptions{})
		framed := filepath.Join(dir, "corpus.mllp")
		if err := os.WriteFile(framed, stream.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		_, port, _ := strings.Cut(p.MLLPAddr, ":")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, mllpSend, "-f", framed, "-p", port, "127.0.0.1")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("mllp_send: %v\nstderr:\n%s", err, stderr.String())
		}
		t.Logf("mllp_send: %d messages in %v", len(msgs), time.Since(start).Round(time.Millisecond))

		acks := splitACKs(stdout.Bytes())
		if len(acks) != len(msgs) {
			t.Fatalf("mllp_send printed %d ACKs for %d messages; stderr:\n%s", len(acks), len(msgs), stderr.String())
		}
		var failures []string
		for i, m := range msgs {
			ack, err := parseACK(acks[i])
			if err != nil {
				failures = append(failures, fmt.Sprintf("%s: %v", m.name(), err))
				continue
			}
			if reason, excluded := interopExclusions[m.File]; excluded {
				if (ack.Code != "AR" && ack.Code != "AE" && ack.Code != "CR" && ack.Code != "CE") || ack.ERR == "" {
					failures = append(failures, fmt.Sprintf("%s (excluded: %s): %v, want AR/AE with ERR", m.name(), reason, ack))
				}
				continue
			}
			want := "AA"
			if m.Enhanced {
				want = "CA"
			}
			if ack.Code != want || ack.MSA2 != m.ControlID {
				failures = append(failures, fmt.Sprintf("%s: %v, want MSA-1=%s MSA-2=%q", m.name(), ack, want, m.ControlID))
			}
		}
		if len(failures) > 0 {
			t.Errorf("%d of %d corpus messages not answered as expected:\n%s", len(failures), len(msgs), strings.Join(failures, "\n"))
		}

		// Every message is stored, whatever its fate.
		if stored := p.messages(t, nil); len(stored) != len(msgs) {
			t.Errorf("%d messages stored, want %d (every message received is stored)", len(stored), len(msgs))
		}
	})
}

// splitACKs cuts mllp_send's output (each ACK printed as received, framing included, followed by
// a newline) into the ACKs' contents.
func splitACKs(out []byte) [][]byte {
	var acks [][]byte
	for _, part := range bytes.Split(out, []byte{0x0B})[1:] {
		end := bytes.IndexByte(part, 0x1C)
		if end < 0 {
			end = len(part)
		}
		acks = append(acks, part[:end])
	}
	return acks
}
