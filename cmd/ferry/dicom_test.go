package main

import (
	"net"
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
