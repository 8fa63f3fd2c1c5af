package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/hl7"
	"github.com/ferryhealth/ferry/mappings"
)

// corpusDir is ../shared/corpus seen from the repository root; the test runs in cmd/ferry.
const corpusDir = "../../../shared/corpus"

// requireCorpus returns the corpus directory, skipping the test when it is absent.
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
	// App and Facility are MSH-3 and MSH-4: with MSH-10 they make the duplicate key.
	App, Facility string
	Enhanced      bool   // MSH-15 or MSH-16 valued: expect CA instead of AA
	Features      string // INDEX.tsv features column
}

func (m corpusMessage) name() string {
	if m.Index > 1 {
		return fmt.Sprintf("%s[%d]", m.File, m.Index)
	}
	return m.File
}

// exclusion says why a corpus file cannot reasonably be answered AA, and what it must be
// answered instead (docs/acks.md).
type exclusion struct {
	reason string
	// reject: the header is unusable, AR (CR). Otherwise a segment after MSH is at fault: AE (CE).
	reject bool
}

func (e exclusion) code(enhanced bool) string {
	switch {
	case e.reject && enhanced:
		return "CR"
	case e.reject:
		return "AR"
	case enhanced:
		return "CE"
	}
	return "AE"
}

// answered reports whether ack is the negative acknowledgment e calls for, with an ERR segment
// and MSA-2 echoing whatever MSH-10 could be read.
func (e exclusion) answered(ack *ackInfo, m corpusMessage) bool {
	return ack.Code == e.code(m.Enhanced) && len(ack.ERRCodes) > 0 && ack.MSA2 == m.ControlID
}

// interopExclusions are the corpus files of the selected types that cannot reasonably be answered
// AA, each with the reason. They are sent like the others and must get the negative ACK their
// fault calls for, with an ERR segment. "FILE[n]" names only the nth message of a file that
// SplitBatch cuts into several; "FILE" names them all.
var interopExclusions = func() map[string]exclusion {
	groups := []struct {
		exclusion
		files []string
	}{
		{exclusion{"no MSH-10: nothing to echo in MSA-2 or to recognise a duplicate by (ERR 101 at MSH-10)", true}, []string{
			// Snippets from other projects' unit tests that leave MSH-10 empty.
			"hl7v2/efferent-hl7-dotnetcore/Program_L661.hl7",
			"hl7v2/hapi-hl7v2/ExampleParseMessages_L52.hl7",
			"hl7v2/hapi-hl7v2/ExampleUseTerser_L55.hl7",
			"hl7v2/hapi-hl7v2/FastParserTest_L156.hl7",
			"hl7v2/hapi-hl7v2/Hl7V2MessageImplTest_L117.hl7",
			"hl7v2/hapi-hl7v2/NewPipeParserTest_L1423.hl7",
			"hl7v2/hapi-hl7v2/NewPipeParserTest_L1568.hl7",
			"hl7v2/hapi-hl7v2/NewPipeParserTest_L1579.hl7",
			"hl7v2/hapi-hl7v2/NewPipeParserTest_L1584.hl7",
			"hl7v2/hapi-hl7v2/NewPipeParserTest_L1589.hl7",
			"hl7v2/hapi-hl7v2/NewPipeParserTest_L1594.hl7",
			"hl7v2/hapi-hl7v2/ParserTest_L159.hl7",
			"hl7v2/hapi-hl7v2/ParserTest_L174.hl7",
			"hl7v2/hapi-hl7v2/ParserTest_L189.hl7",
			"hl7v2/lfh-hl7v2-fhir-converter/HL7ConditionFHIRConversionTest_L191.hl7",
			"hl7v2/lfh-hl7v2-fhir-converter/HL7ConditionFHIRConversionTest_L311.hl7",
			"hl7v2/lfh-hl7v2-fhir-converter/HL7DataExtractorTest_L138.hl7",
			"hl7v2/lfh-hl7v2-fhir-converter/HL7DataExtractorTest_L347.hl7",
			"hl7v2/lfh-hl7v2-fhir-converter/HL7DataExtractorTest_L367.hl7",
			"hl7v2/lfh-hl7v2-fhir-converter/Hl7EncounterFHIRConversionTest_L764.hl7",
			"hl7v2/lfh-hl7v2-fhir-converter/Hl7EncounterFHIRConversionTest_L793.hl7",
			"hl7v2/lfh-hl7v2-fhir-converter/Hl7ExpressionTest_L165.hl7",
			"hl7v2/lfh-hl7v2-fhir-converter/Hl7ExpressionTest_L197.hl7",
			"hl7v2/lfh-hl7v2-fhir-converter/Hl7MessageTest_L159.hl7",
			"hl7v2/lfh-hl7v2-fhir-converter/Hl7MessageTest_L193.hl7",
			"hl7v2/lfh-hl7v2-fhir-converter/Hl7MessageTest_L263.hl7",
			"hl7v2/lfh-hl7v2-fhir-converter/Hl7ObservationFHIRConversionTest_L53.hl7",
			"hl7v2/lfh-hl7v2-fhir-converter/Hl7PatientFHIRConversionTest_L36.hl7", // 10 messages, none with MSH-10
			"hl7v2/lfh-hl7v2-fhir-converter/ResourceExpressionTest_L161.hl7",
			"hl7v2/lfh-hl7v2-fhir-converter/ResourceExpressionTest_L191.hl7",
			"hl7v2/lfh-hl7v2-fhir-converter/ResourceExpressionTest_L36.hl7",
			"hl7v2/lfh-hl7v2-fhir-converter/ResourceExpressionTest_L67.hl7",
			"hl7v2/lfh-hl7v2-fhir-converter/ResourceExpressionTest_L95.hl7",
			"hl7v2/nhapi/LegacyPipeParser__HL7Exception__stackoverflow2.hl7", // INDEX: malformed
			"hl7v2/node-hl7/hl7.parser.test_L52.hl7",
			"hl7v2/openmrs-radiology/ORM_O01Test_L65.hl7",
			"hl7v2/pacs-bridge/hl7_validation_edge_cases_test_L149.hl7",
		}},
		{exclusion{"MSH-2 encoding characters unusable: missing, repeated (a doubled backslash copied from source code) or not printable ASCII (ERR 101/102 at MSH-2)", true}, []string{
			"hl7v2/lfh-hl7v2-fhir-converter/Hl7ORUMessageTest_L124.hl7",
			"hl7v2/lfh-hl7v2-fhir-converter/Hl7ORUMessageTest_L305.hl7",
			"hl7v2/lfh-hl7v2-fhir-converter/Hl7ORUMessageTest_L60.hl7",
			"hl7v2/lfh-hl7v2-fhir-converter/sample_win.hl7",
			"hl7v2/pacs-bridge/hl7_malformed_segment_recovery_test_L231.hl7", // MSH|????|
			"hl7v2/pacs-bridge/hl7_malformed_segment_recovery_test_L239.hl7", // MSH||
			// Fuzzer output (INDEX: malformed).
			"hl7v2/nhapi/PipeParser__HL7Exception__id_000118_sig_02_src_001039_002153_op_splice_rep_16.hl7",
			"hl7v2/nhapi/PipeParser__HL7Exception__id_000119_sig_02_src_001911_op_havoc_rep_64.hl7",
			"hl7v2/nhapi/PipeParser__HL7Exception__id_000123_sig_02_src_000372_002313_op_splice_rep_8.hl7",
			"hl7v2/nhapi/PipeParser__HL7Exception__id_000151_sig_02_src_001351_op_havoc_rep_2.hl7",
			"hl7v2/nhapi/PipeParser__HL7Exception__id_000176_sig_02_src_002656_002699_op_splice_rep_32.hl7",
			"hl7v2/nhapi/PipeParser__HL7Exception__id_000205_sig_02_src_001449_op_havoc_rep_2.hl7",
			"hl7v2/nhapi/PipeParser__NoException__id_000168_sig_02_src_002426_002144_op_splice_rep_8.hl7",
		}},
		{exclusion{"MSH-12 missing or not an HL7 v2.x version (ERR 101/203 at MSH-12)", true}, []string{
			"hl7v2/kardianos-hl7/error__adt.hl7",           // version "1"
			"hl7v2/pacs-bridge/hl7_extended_test_L379.hl7", // version "9.9"
			"hl7v2/ruby-hl7/test.hl7",                      // MSH ends at MSH-10
		}},
		{exclusion{"MSH-9 without a trigger event (ERR 101 at MSH-9)", true}, []string{
			"hl7v2/ruby-hl7/obxobr.hl7",                       // "ORU" alone
			"hl7v2/hapi-hl7v2/EncodingCharactersTest_L14.hl7", // MSH-2 "~\&": "^" is not a separator, so MSH-9 is one component
		}},
		{exclusion{"not a message: lines before the MSH (a comment, a PID) (ERR 100)", true}, []string{
			"hl7v2/hapi-hl7v2/Hl7V2MessageCollectionTest_L137.hl7",
			"hl7v2/hapi-hl7v2/Hl7V2MessageCollectionTest_L161.hl7",
			"hl7v2/pacs-bridge/hl7_validation_edge_cases_test_L170.hl7",
		}},
		{exclusion{"a broken batch: BHS inside a message, so it cannot be split (ERR 100)", true}, []string{
			"hl7v2/python-hl7/samples_L115.hl7",
			"hl7v2/python-hl7/samples_L272.hl7",
			"hl7v2/python-hl7/samples_L289.hl7",
		}},
		{exclusion{"a line after MSH that is not a segment: a segment wrapped onto the next line, a comment, source code, \"...\" or an invalid segment ID (ERR 100, AE: a fault after MSH)", false}, []string{
			"hl7v2/dcm4che/ORU_R01-PDF.hl7",                                  // base64 OBX-5 wrapped
			"hl7v2/lenaten-hl7/epic-oru-r01.hl7",                             // OBR-4 wrapped
			"hl7v2/ruby-hl7/realm__realm-lead-laboratory-result.hl7",         // PID-3 wrapped
			"hl7v2/pacs-bridge/01_hl7_v2x_overview_L36.hl7",                  // "..."
			"hl7v2/pacs-bridge/hl7_malformed_segment_recovery_test_L158.hl7", // PIDEXTRA
			"hl7v2/pacs-bridge/hl7_malformed_segment_recovery_test_L188.hl7", // BAD1
			"hl7v2/hapi-hl7v2/NewPipeParserTest_L415.hl7",                    // "I|…"
			"hl7v2/hapi-hl7v2/Hl7V2MessageCollectionTest_L177.hl7[1]",        // "#" comment lines
			"hl7v2/hapi-hl7v2/Hl7V2MessageCollectionTest_L185.hl7[1]",
			"hl7v2/hapi-hl7v2/Hl7V2MessageCollectionTest_L223.hl7[1]",
			"hl7v2/hapi-hl7v2/Hl7V2MessageCollectionTest_L431.hl7[1]",
			"hl7v2/hapi-hl7v2/Hl7V2MessageCollectionTest_L481.hl7", // Java source lines
			// Fuzzer output (INDEX: malformed).
			"hl7v2/nhapi/PipeParser__HL7Exception__id_000092_sig_02_src_001582_001861_op_splice_rep_16.hl7",
			"hl7v2/nhapi/PipeParser__NoException__id_000109_sig_02_src_001098_002192_op_splice_rep_4.hl7",
			"hl7v2/nhapi/PipeParser__NoException__id_000146_sig_02_src_000682_002159_op_splice_rep_4.hl7",
		}},
	}
	out := map[string]exclusion{}
	for _, g := range groups {
		for _, f := range g.files {
			out[f] = g.exclusion
		}
	}
	return out
}()

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
				cm.ControlID, cm.App, cm.Facility = h.ControlID, h.SendingApplication, h.SendingFacility
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
	mappingSet, err := mappings.Load(mappings.Source{Base: []fs.FS{mappings.Shipped()}})
	if err != nil {
		t.Fatal(err)
	}
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
		// The ACK of the first accepted message of each MSH-3/MSH-4/MSH-10 key: corpus files
		// reuse control IDs (MSG001 …), and a later message with the same key is a duplicate,
		// answered with the original's ACK byte for byte (docs/acks.md) — even when its own mode
		// would call for CA instead of AA.
		original := map[[3]string][]byte{}
		usedExclusions := map[string]bool{}
		var accepted, duplicates, excludedN, processErrors, lifecycleErrors int
		for i, m := range msgs {
			ack, err := parseACK(acks[i])
			if err != nil {
				failures = append(failures, fmt.Sprintf("%s: %v", m.name(), err))
				continue
			}
			exKey := fmt.Sprintf("%s[%d]", m.File, m.Index)
			ex, excluded := interopExclusions[exKey]
			if !excluded {
				exKey = m.File
				ex, excluded = interopExclusions[exKey]
			}
			if excluded {
				usedExclusions[exKey] = true
				excludedN++
				if !ex.answered(ack, m) {
					failures = append(failures, fmt.Sprintf("%s (excluded: %s): %v, want %s with an ERR segment", m.name(), ex.reason, ack, ex.code(m.Enhanced)))
				}
				continue
			}
			key := [3]string{m.App, m.Facility, m.ControlID}
			if orig, ok := original[key]; ok {
				if !bytes.Equal(ack.Raw, orig) {
					failures = append(failures, fmt.Sprintf("%s: %v, want the ACK of the earlier message with the same MSH-3/4/10, byte for byte: %q", m.name(), ack, orig))
				}
				duplicates++
				continue
			}
			want := "AA"
			if m.Enhanced {
				want = "CA"
			}
			// A message a shipped mapping handles is processed in its commit (docs/orders.md):
			// one the mapping cannot map must be answered AE/CE with the ERR code and field the
			// mapping gives (the same the golden files in mappings/testdata record), and one the
			// order lifecycle refuses (a change to an order the corpus never created, a merge of
			// an unknown patient) AE/CE with ERR 204/205.
			if res, err := mappingSet.Try(m.Data); err == nil {
				wantErr := ""
				if res.Error != nil {
					wantErr = strconv.Itoa(res.Error.Code)
				}
				errCode := "AE"
				if m.Enhanced {
					errCode = "CE"
				}
				switch {
				case wantErr != "" && (ack.Code != errCode || !ack.hasERRCode(wantErr)):
					failures = append(failures, fmt.Sprintf("%s: %v, want %s with ERR %s at %s (%s)", m.name(), ack, errCode, wantErr, res.Error.Field, res.Error.Text))
					continue
				case wantErr != "":
					processErrors++
					continue
				case ack.Code == errCode && (ack.hasERRCode("204") || ack.hasERRCode("205")):
					lifecycleErrors++
					continue
				case ack.Code == errCode && ack.hasERRCode("102") && strings.Contains(ack.ERR, "is not valid FHIR R4"):
					// Content FHIR forbids (control characters in a name): refused, kept.
					t.Logf("%s: refused as invalid FHIR: %s", m.name(), ack.ERR)
					lifecycleErrors++
					continue
				}
			}
			if ack.Code != want || ack.MSA2 != m.ControlID {
				failures = append(failures, fmt.Sprintf("%s [%s]: %v, want MSA-1=%s MSA-2=%q", m.name(), m.Features, ack, want, m.ControlID))
				continue
			}
			original[key] = ack.Raw
			accepted++
		}
		for f := range interopExclusions {
			if !usedExclusions[f] {
				failures = append(failures, fmt.Sprintf("exclusion %s matches no message sent: remove it", f))
			}
		}
		t.Logf("%d messages: %d accepted, %d duplicates (answered with their original's ACK), %d excluded (answered AR/AE), %d not mappable (AE as the mapping says), %d refused by the order lifecycle (AE 204/205)",
			len(msgs), accepted, duplicates, excludedN, processErrors, lifecycleErrors)
		if len(failures) > 0 {
			t.Fatalf("%d of %d corpus messages not answered as expected:\n%s", len(failures), len(msgs), strings.Join(failures, "\n"))
		}

		// Every message is stored, whatever its fate, with the status its ACK says.
		byStatus := map[string]int{}
		for _, m := range p.messages(t, nil) {
			byStatus[m.Status]++
		}
		want := map[string]int{"accepted": accepted, "duplicate": duplicates, "rejected": excludedN, "error": processErrors + lifecycleErrors}
		if want["error"] == 0 {
			delete(want, "error")
		}
		if !maps.Equal(byStatus, want) {
			t.Errorf("stored by status %v, want %v (every message received is stored)", byStatus, want)
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
