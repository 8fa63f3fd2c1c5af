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
	"strings"
	"sync"
	"testing"
	"time"
)

// corpusDICOM is the shared corpus of DICOM files, beside the repository.
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
	waitFor(t, func() bool { return obs.count(&obs.aborts, AbortPeer) == 1 })
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
	waitFor(t, func() bool { return obs.count(&obs.ops, "C-ECHO-RQ 0000") == peers*repeats })
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
		_, body, ts, err := SplitFile(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		ds, err := DecodeDataSet(body, ts, DecodeOptions{})
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if got := ds.String(TagAccessionNumber); got != "ACC9" {
			t.Errorf("%s: accession %q, want the query's", filepath.Base(f), got)
		}
	}
}

// TestStorescu checks that a C-STORE data set streamed by storescu arrives byte for byte.
func TestStorescu(t *testing.T) {
	t.Parallel()
	storescu := requirePeer(t, "storescu", "dcmtk")
	src := filepath.Join(corpusDICOM, "pydicom-debian", "test_files__MR_small.dcm")
	orig, err := os.ReadFile(src)
	if err != nil {
		t.Skipf("corpus file absent (%v): this test needs ../shared/corpus beside the repository", err)
	}
	const mrImageStorage = "1.2.840.10008.5.1.4.1.1.4"
	dir := t.TempDir()
	addr := startServer(t, &Server{Services: []Service{{SOPClass: mrImageStorage, Handler: &storeHandler{dir: dir}}}})
	host, port := hostPort(t, addr)
	// --max-pdu 4096: the 10 KB instance arrives in several fragments.
	if out, err := runPeer(t, storescu, "-v", "-aec", "FERRY", "-aet", "MODALITY", "--max-send-pdu", "4096", host, port, src); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	_, origBody, origTS, err := SplitFile(orig)
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
	meta, body, ts, err := SplitFile(stored)
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
	if got := meta.String(NewTag(0x0002, 0x0016)); got != "MODALITY" {
		t.Errorf("source AE title %q", got)
	}
}

// withoutTrailingPadding returns the data set with its Data Set Trailing Padding removed.
func withoutTrailingPadding(t *testing.T, b []byte, ts string) []byte {
	t.Helper()
	ds, err := DecodeDataSet(b, ts, DecodeOptions{StopAt: NewTag(0xFFFC, 0xFFFC)})
	if err != nil {
		t.Fatal(err)
	}
	out, err := EncodeDataSet(ds, ts)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
