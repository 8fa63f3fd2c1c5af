package dimse

// Interoperability with Debian's dcmtk (echoscu, findscu, storescu): real peers, not written
// here. Skipped when dcmtk is absent, unless FERRY_REQUIRE_PEERS=1 (as in CI), which makes the
// absence a failure.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/dicom/dicomtest"
)

// corpusDICOM is the shared corpus of DICOM files beside the repository: an extra source of real
// files where it is present (CI). Tests that need a file use Ferry's own (dicom/dicomtest); the
// corpus tests add what only real equipment's files show.
const corpusDICOM = "../../../shared/corpus/dicom"

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

// runPeer runs a dcmtk program against the server and returns its exit error and output.
func runPeer(t *testing.T, path string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	return string(out), err
}

func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return host, port
}

func TestEchoscu(t *testing.T) {
	t.Parallel()
	echoscu := requirePeer(t, "echoscu", "dcmtk")
	obs := &countingObserver{}
	addr := startServer(t, &Server{CallingAETitles: []string{"TESTSCU", "SCU2"}, Metrics: obs})
	host, port := hostPort(t, addr)

	tests := []struct {
		name    string
		args    []string
		wantOK  bool
		wantOut string // in the output, case-insensitive
	}{
		{"echo", []string{"-aec", "FERRY", "-aet", "TESTSCU"}, true, ""},
		{"unknown called AE title", []string{"-aec", "WRONG", "-aet", "TESTSCU"}, false, "called ae title not recognized"},
		{"calling AE title not in the allow-list", []string{"-aec", "FERRY", "-aet", "INTRUDER"}, false, "calling ae title not recognized"},
		{"echo after rejections", []string{"-aec", "FERRY", "-aet", "TESTSCU"}, true, ""},
		{"smallest PDU size, repeated", []string{"-aec", "FERRY", "-aet", "TESTSCU", "--max-pdu", "4096", "--repeat", "5"}, true, ""},
		{"largest PDU size", []string{"-aec", "FERRY", "-aet", "SCU2", "--max-pdu", "131072"}, true, ""},
		{"128 contexts with 38 transfer syntaxes each", []string{"-aec", "FERRY", "-aet", "TESTSCU", "-ppc", "128", "-pts", "38"}, true, ""},
		{"abort instead of release", []string{"-aec", "FERRY", "-aet", "TESTSCU", "--abort"}, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-v", "-to", "10", "-ta", "10", "-td", "10"}, tc.args...)
			out, err := runPeer(t, echoscu, append(args, host, port)...)
			if tc.wantOK != (err == nil) {
				t.Fatalf("echoscu %v: err %v, want success %v; output:\n%s", tc.args, err, tc.wantOK, out)
			}
			if tc.wantOut != "" && !strings.Contains(strings.ToLower(out), tc.wantOut) {
				t.Errorf("output does not say %q:\n%s", tc.wantOut, out)
			}
		})
	}
	changes.For(t, "the condition", func() bool { return obs.count(&obs.aborts, AbortPeer) == 1 })
	if n := obs.count(&obs.ops, "C-ECHO-RQ 0000"); n != 10 {
		t.Errorf("C-ECHO operations counted = %d, want 10", n)
	}
	if n := obs.count(&obs.assoc, AssocRejectedCalledAETitle); n != 1 {
		t.Errorf("called-AE rejections = %d, want 1", n)
	}
}

func TestEchoscuSmallServerPDU(t *testing.T) {
	t.Parallel()
	echoscu := requirePeer(t, "echoscu", "dcmtk")
	addr := startServer(t, &Server{MaxPDULength: MinMaxPDULength})
	host, port := hostPort(t, addr)
	if out, err := runPeer(t, echoscu, "-v", "-aec", "FERRY", "--max-pdu", "4096", host, port); err != nil {
		t.Fatalf("echoscu: %v\n%s", err, out)
	}
}

func TestEchoscuConcurrent(t *testing.T) {
	t.Parallel()
	echoscu := requirePeer(t, "echoscu", "dcmtk")
	obs := &countingObserver{}
	addr := startServer(t, &Server{Metrics: obs})
	host, port := hostPort(t, addr)
	const peers, repeats = 8, 3
	var wg sync.WaitGroup
	errs := make(chan string, peers)
	for i := range peers {
		wg.Go(func() {
			out, err := runPeer(t, echoscu, "-aec", "FERRY", "-aet", fmt.Sprintf("SCU%d", i), "--repeat", fmt.Sprint(repeats), host, port)
			if err != nil {
				errs <- fmt.Sprintf("echoscu %d: %v\n%s", i, err, out)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	changes.For(t, "the condition", func() bool { return obs.count(&obs.ops, "C-ECHO-RQ 0000") == peers*repeats })
}

// TestFindscu checks pending C-FIND responses and identifiers against dcmtk's findscu.
func TestFindscu(t *testing.T) {
	t.Parallel()
	findscu := requirePeer(t, "findscu", "dcmtk")
	addr := startServer(t, &Server{Services: []Service{{SOPClass: modalityWorklistFind, Handler: &findHandler{}}}})
	host, port := hostPort(t, addr)
	dir := t.TempDir()
	out, err := runPeer(t, findscu, "-v", "-W", "-aec", "FERRY", "-k", "AccessionNumber=ACC9", "-k", "PatientID",
		"-k", "ScheduledProcedureStepSequence[0].Modality=CT", "-X", "-od", dir, host, port)
	if err != nil {
		t.Fatalf("findscu: %v\n%s", err, out)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 3 {
		t.Fatalf("findscu wrote %d responses, want 3; output:\n%s", len(files), out)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, body, ts, err := dicom.SplitFile(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		ds, err := dicom.DecodeDataSet(body, ts, dicom.DecodeOptions{})
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if got := ds.String(dicom.TagAccessionNumber); got != "ACC9" {
			t.Errorf("%s: accession %q, want the query's", filepath.Base(f), got)
		}
	}
}

// TestStorescu checks that a C-STORE data set streamed by storescu arrives byte for byte.
func TestStorescu(t *testing.T) {
	t.Parallel()
	storescu := requirePeer(t, "storescu", "dcmtk")
	// Ferry's own CT instance, 10 KB of pixel data.
	src := dicomtest.WriteInstance(t, t.TempDir(), "ct.dcm", dicomtest.Instance(ctImageStorage, "1.2.826.0.1.3680043.8.498.7", 10<<10))
	orig, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addr := startServer(t, &Server{Services: []Service{{SOPClass: ctImageStorage, Handler: &storeHandler{dir: dir}}}})
	host, port := hostPort(t, addr)
	// --max-pdu 4096: the 10 KB instance arrives in several fragments.
	if out, err := runPeer(t, storescu, "-v", "-aec", "FERRY", "-aet", "MODALITY", "--max-send-pdu", "4096", host, port, src); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	_, origBody, origTS, err := dicom.SplitFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.dcm"))
	if len(files) != 1 {
		t.Fatalf("%d files stored, want 1", len(files))
	}
	stored, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	meta, body, ts, err := dicom.SplitFile(stored)
	if err != nil {
		t.Fatal(err)
	}
	if ts != origTS {
		t.Fatalf("stored transfer syntax %s, sent %s", ts, origTS)
	}
	// storescu drops the Data Set Trailing Padding (FFFC,FFFC); the rest must be as sent.
	if want := withoutTrailingPadding(t, origBody, ts); !bytes.Equal(body, want) {
		t.Errorf("stored data set: %d bytes; sent %d bytes (%d without trailing padding)", len(body), len(origBody), len(want))
	}
	if got := meta.String(dicom.NewTag(0x0002, 0x0016)); got != "MODALITY" {
		t.Errorf("source AE title %q", got)
	}
}

// withoutTrailingPadding returns the data set with its Data Set Trailing Padding removed.
func withoutTrailingPadding(t *testing.T, b []byte, ts string) []byte {
	t.Helper()
	ds, err := dicom.DecodeDataSet(b, ts, dicom.DecodeOptions{StopAt: dicom.NewTag(0xFFFC, 0xFFFC)})
	if err != nil {
		t.Fatal(err)
	}
	out, err := dicom.EncodeDataSet(ds, ts)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// worklistDump is a findscu query in dump2dcm's text form: the return keys a modality asks for,
// with the top-level keys and Scheduled Procedure Step keys given (empty strings: universal).
func worklistDump(top map[string]string, step map[string]string) string {
	var b strings.Builder
	line := func(indent, tag, vr, v string) { fmt.Fprintf(&b, "%s(%s) %s [%s]\n", indent, tag, vr, v) }
	line("", "0008,0005", "CS", top["0008,0005"])
	line("", "0008,0050", "SH", top["0008,0050"])
	line("", "0010,0010", "PN", top["0010,0010"])
	line("", "0010,0020", "LO", top["0010,0020"])
	line("", "0020,000d", "UI", top["0020,000d"])
	b.WriteString("(0040,0100) SQ (Sequence with undefined length)\n  (fffe,e000) na (Item with undefined length)\n")
	line("    ", "0008,0060", "CS", step["0008,0060"])
	line("    ", "0040,0001", "AE", step["0040,0001"])
	line("    ", "0040,0002", "DA", step["0040,0002"])
	line("    ", "0040,0003", "TM", step["0040,0003"])
	line("    ", "0040,0009", "SH", step["0040,0009"])
	b.WriteString("    (0040,0008) SQ (Sequence with undefined length)\n    (fffe,e0dd) na (SequenceDelimitationItem)\n")
	b.WriteString("  (fffe,e00d) na (ItemDelimitationItem)\n(fffe,e0dd) na (SequenceDelimitationItem)\n")
	return b.String()
}

// readResponses decodes the responses findscu extracted (-X) into dir, in order.
func readResponses(t *testing.T, dir string) []*dicom.DataSet {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "rsp*.dcm"))
	slices.Sort(files)
	var out []*dicom.DataSet
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, body, ts, err := dicom.SplitFile(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		ds, err := dicom.DecodeDataSet(body, ts, dicom.DecodeOptions{})
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, ds)
	}
	return out
}

// TestFindscuWorklist queries the Modality Worklist SCP with dcmtk's findscu -W: query files
// written as text and converted by dump2dcm, responses extracted to files and decoded.
func TestFindscuWorklist(t *testing.T) {
	t.Parallel()
	findscu := requirePeer(t, "findscu", "dcmtk")
	dump2dcm := requirePeer(t, "dump2dcm", "dcmtk")
	src := &memoryWorklist{items: testWorklist(), filter: true}
	addr := startServer(t, &Server{Services: []Service{WorklistService(src, testLogger(t))}})
	host, port := hostPort(t, addr)
	work := t.TempDir()
	names := map[string]string{} // accession → patient name
	for _, it := range src.items {
		names[it.AccessionNumber] = it.PatientName
	}

	tests := []struct {
		name        string
		top, step   map[string]string
		args        []string // more findscu options
		wantAccs    string   // accession numbers of the responses, in order
		wantFail    string   // instead: findscu fails and says this (case-insensitive)
		wantCharset string   // Specific Character Set of the responses
		wantName    string   // bytes of the first response's Patient's Name
	}{
		{name: "universal", wantAccs: "ACC1,ACC2,ACC3,ACC4,ACC5,ACC6"},
		{name: "date range", step: map[string]string{"0040,0002": "20240105-20240106"}, wantAccs: "ACC1,ACC2,ACC3,ACC4"},
		{name: "date range and time range combined", step: map[string]string{"0040,0002": "20240105-20240106", "0040,0003": "1200-0800"}, wantAccs: "ACC2,ACC3"},
		{name: "modality", step: map[string]string{"0008,0060": "CT"}, wantAccs: "ACC1,ACC3,ACC4,ACC6"},
		{name: "modality, station and today", step: map[string]string{"0008,0060": "CT", "0040,0001": "CTAE1", "0040,0002": "20240106"}, wantAccs: "ACC4"},
		{name: "accession", top: map[string]string{"0008,0050": "ACC3"}, wantAccs: "ACC3"},
		{name: "patient ID", top: map[string]string{"0010,0020": "P1"}, wantAccs: "ACC1,ACC6"},
		{name: "patient name wildcard, implicit VR", top: map[string]string{"0010,0010": "doe*"}, args: []string{"-xi"}, wantAccs: "ACC1,ACC3,ACC5"},
		{name: "study instance UID list", top: map[string]string{"0020,000d": `1.2.3.2\1.2.3.5`}, wantAccs: "ACC2,ACC5"},
		{name: "latin-1 query, latin-1 answer", top: map[string]string{"0008,0005": "ISO_IR 100", "0010,0010": "M\xfcller*"}, wantAccs: "ACC2", wantCharset: "ISO_IR 100", wantName: "M\xfcller^Hans"},
		{name: "UTF-8 query, UTF-8 answer", top: map[string]string{"0008,0005": "ISO_IR 192", "0010,0010": "Ng*"}, wantAccs: "ACC6", wantCharset: "ISO_IR 192", wantName: "Ng^李"},
		{name: "unknown called AE title", args: []string{"-aec", "PACS"}, wantFail: "called ae title not recognized"},
		{name: "query after the rejection", top: map[string]string{"0008,0050": "ACC5"}, wantAccs: "ACC5"},
	}
	for i, tc := range tests {
		// Not parallel: the rejection and the query after it run in order.
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(work, fmt.Sprint(i))
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			dump, query := filepath.Join(dir, "query.dump"), filepath.Join(dir, "query.dcm")
			if err := os.WriteFile(dump, []byte(worklistDump(tc.top, tc.step)), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := runPeer(t, dump2dcm, dump, query); err != nil {
				t.Fatalf("dump2dcm: %v\n%s", err, out)
			}
			args := append([]string{"-v", "-W", "-aet", "CT01", "-aec", "FERRY", "-X", "-od", dir}, tc.args...)
			out, err := runPeer(t, findscu, append(args, host, port, query)...)
			if tc.wantFail != "" {
				if err == nil || !strings.Contains(strings.ToLower(out), tc.wantFail) {
					t.Fatalf("findscu: err %v, want a failure saying %q; output:\n%s", err, tc.wantFail, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("findscu: %v\n%s", err, out)
			}
			rsps := readResponses(t, dir)
			var accs []string
			for _, r := range rsps {
				accs = append(accs, r.String(dicom.TagAccessionNumber))
				// Specific Character Set only where the text is not ASCII: the query's set when
				// it holds the text, else UTF-8.
				want := tc.wantCharset
				if want == "" && !dicom.IsASCII(names[r.String(dicom.TagAccessionNumber)]) {
					want = "ISO_IR 192"
				}
				if got := r.String(dicom.TagSpecificCharacterSet); got != want {
					t.Errorf("%s: Specific Character Set %q, want %q", r.String(dicom.TagAccessionNumber), got, want)
				}
				if step := r.Get(dicom.TagScheduledProcedureStepSequence); step == nil || len(step.Items) != 1 {
					t.Errorf("%s: no Scheduled Procedure Step item", r.String(dicom.TagAccessionNumber))
				}
			}
			if strings.Join(accs, ",") != tc.wantAccs {
				t.Errorf("responses %v, want %s; output:\n%s", accs, tc.wantAccs, out)
			}
			if tc.wantName != "" && len(rsps) > 0 {
				if got := string(rsps[0].Get(dicom.TagPatientName).Value); strings.TrimRight(got, " ") != tc.wantName {
					t.Errorf("patient name bytes %q, want %q", got, tc.wantName)
				}
			}
		})
	}
}
