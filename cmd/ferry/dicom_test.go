package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeAnswersCEcho: `ferry serve` answers dcmtk's echoscu on its DICOM listener with AE
// title FERRY, rejects an unknown called AE title, and keeps serving.
func TestServeAnswersCEcho(t *testing.T) {
	t.Parallel()
	echoscu := requirePeer(t, "echoscu", "dcmtk")
	dir := t.TempDir()
	p := startFerry(t, "sqlite:"+filepath.Join(dir, "ferry.db"), dir, serveOptions{})
	host, port, err := net.SplitHostPort(p.DICOMAddr)
	if err != nil {
		t.Fatalf("DICOM address %q: %v", p.DICOMAddr, err)
	}
	echo := func(called string) (string, error) {
		out, err := exec.Command(echoscu, "-aec", called, "-aet", "FERRYTEST", host, port).CombinedOutput()
		return string(out), err
	}
	if out, err := echo("FERRY"); err != nil {
		t.Fatalf("echoscu to FERRY: %v\n%s", err, out)
	}
	out, err := echo("WRONG")
	if err == nil || !strings.Contains(out, "Called AE Title Not Recognized") {
		t.Errorf("echoscu to WRONG: err %v, output %q; want the association rejected", err, out)
	}
	if out, err := echo("FERRY"); err != nil {
		t.Fatalf("echoscu after a rejection: %v\n%s", err, out)
	}
}

// TestServeStoresInstances: dcmtk's storescu sends corpus instances to `ferry serve`; each is
// kept as a Part 10 file under the DICOM data directory (STUDY/SERIES/SOP.dcm), a second copy
// is accepted and not stored again, and only the configured calling AE titles may associate.
func TestServeStoresInstances(t *testing.T) {
	t.Parallel()
	storescu := requirePeer(t, "storescu", "dcmtk")
	corpus := requireCorpus(t)
	files := []struct{ path, study, series, sop string }{}
	rows, err := os.ReadFile(filepath.Join(corpus, "dicom", "INDEX.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(rows), "\n")[1:] {
		f := strings.Split(line, "\t")
		// Uncompressed MR and CR files of pydicom's test set.
		if len(f) > 12 && strings.Contains(f[0], "pydicom-debian/test_files__MR_small") && f[12] == "1.2.840.10008.1.2.1" {
			files = append(files, struct{ path, study, series, sop string }{filepath.Join(corpus, f[0]), f[4], f[9], f[10]})
		}
	}
	if len(files) == 0 {
		t.Fatal("no MR_small files in the corpus index")
	}
	dir := t.TempDir()
	p := startFerry(t, "sqlite:"+filepath.Join(dir, "ferry.db"), dir,
		serveOptions{Config: "dicom:\n  accept_calling_ae_titles: [MODALITY1]\n"})
	host, port, _ := net.SplitHostPort(p.DICOMAddr)
	send := func(aet string, paths ...string) ([]byte, error) {
		args := append([]string{"-aet", aet, "-aec", "FERRY", host, port}, paths...)
		return exec.Command(storescu, args...).CombinedOutput()
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, f.path)
	}
	for round := range 2 { // the second round sends the same instances again
		if out, err := send("MODALITY1", paths...); err != nil {
			t.Fatalf("storescu round %d: %v\n%s", round, err, out)
		}
	}
	for _, f := range files {
		stored := filepath.Join(dir, "ferry-data", "dicom", f.study, f.series, f.sop+".dcm")
		b, err := os.ReadFile(stored)
		if err != nil {
			t.Errorf("%s not stored: %v", f.path, err)
			continue
		}
		if len(b) < 132 || string(b[128:132]) != "DICM" {
			t.Errorf("%s is not a DICOM Part 10 file", stored)
		}
	}
	if out, err := send("STRANGER", paths[0]); err == nil || !strings.Contains(string(out), "Calling AE Title Not Recognized") {
		t.Errorf("storescu from an unlisted AE title: err %v\n%s", err, out)
	}
	if out, err := send("MODALITY1", paths[0]); err != nil {
		t.Fatalf("storescu after a rejection: %v\n%s", err, out)
	}
}
