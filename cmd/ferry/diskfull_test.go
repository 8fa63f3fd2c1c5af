package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestDiskFull is issue 18's full disk, on a small tmpfs of its own holding the embedded store
// and the DICOM data: while nothing more can be written, messages are answered AE (never AA for
// a message that is not stored), a C-STORE is refused, /readyz says 503; once space is freed,
// the service is back without a restart and every message answered AA is stored exactly once.
// It needs to mount a file system (root, as in CI's container); elsewhere it skips.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: -short")
	}
	t.Parallel()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=48m"); err != nil {
		t.Skipf("cannot mount a small tmpfs for a full disk (%v): needs root", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting the tmpfs: %v", err)
		}
	})
	storescu := requirePeer(t, "storescu", "dcmtk")
	instance := studyFile(t, t.TempDir())
	p := startFerry(t, "sqlite:"+filepath.Join(dir, "ferry.db"), dir, serveOptions{})
	host, port, _ := net.SplitHostPort(p.DICOMAddr)
	cstore := func() string {
		out, _ := exec.Command(storescu, "-v", "-aec", "FERRY", host, port, instance).CombinedOutput()
		return string(out)
	}
	sender := dialMLLP(t, p.MLLPAddr)
	acked := map[string]bool{}
	send := func(id string) string {
		ack, err := sender.roundTrip(ormMessage("STMARYS", id), hangGuard)
		if err != nil {
			t.Fatalf("sending %s: %v", id, err)
		}
		if ack.Code == "AA" {
			acked[id] = true
		}
		return ack.Code
	}
	if code := send("FULL-BEFORE"); code != "AA" {
		t.Fatalf("before the disk is full: %s, want AA", code)
	}

	filler := filepath.Join(dir, "filler")
	fill(t, filler)
	// SQLite may still have room in pages it holds; the messages that fit are stored (AA), and
	// within a few the store runs out: AE from then on.
	full := false
	for i := range 40 {
		if code := send(fmt.Sprintf("FULL-%d", i)); code != "AA" {
			if code != "AE" {
				t.Errorf("message FULL-%d on a full disk: %s, want AE", i, code)
			}
			full = true
			t.Logf("on the full disk, %d messages still fitted (AA), then AE", i)
			break
		}
	}
	if !full {
		t.Fatal("40 messages answered AA on a full disk")
	}
	if code := p.get(t, "/readyz", nil); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz on a full disk: %d, want 503", code)
	}
	if out := cstore(); strings.Contains(out, "Received Store Response (Success)") {
		t.Errorf("C-STORE on a full disk answered Success:\n%s", out)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if code := send("FULL-AFTER"); code != "AA" {
		t.Errorf("once space is freed: %s, want AA", code)
	}
	if out := cstore(); !strings.Contains(out, "Received Store Response (Success)") {
		t.Errorf("C-STORE once space is freed: no Success\n%s", out)
	}
	if code := p.get(t, "/readyz", nil); code != http.StatusOK {
		t.Errorf("/readyz once space is freed and a commit went through: %d, want 200", code)
	}
	for id := range acked {
		if ms := p.byControlID(t, id); len(ms) != 1 {
			t.Errorf("message %s answered AA, stored as %v; want once", id, statuses(ms))
		}
	}
}

// fill writes path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			break
		}
	}
	// The last, partial chunk: what is left is less than a page.
	for _, n := range []int{64 << 10, 4 << 10, 512} {
		for {
			if _, err := f.Write(chunk[:n]); err != nil {
				break
			}
		}
	}
}
