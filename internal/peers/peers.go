// Package peers runs other projects' programs on what Ferry produces, as a second opinion in
// tests: ../shared/peers (@medplum/core, @medplum/hl7; FERRY_PEERS_DIR names an installed copy,
// which .ci/run makes) and installed tools such as dcmtk's. Without them a test skips with a
// line saying why, or fails when FERRY_REQUIRE_PEERS=1.
package peers

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ValidateFHIR checks files (FHIR R4 resources or Bundles as JSON) with @medplum/core through
// fhir-validate.mjs and fails t, listing the problems, when any is invalid.
func ValidateFHIR(t testing.TB, files []string) {
	t.Helper()
	dir := os.Getenv("FERRY_PEERS_DIR")
	if dir == "" {
		msg := "FERRY_PEERS_DIR not set: the second opinion (@medplum/core) is skipped; see .ci/run"
		if os.Getenv("FERRY_REQUIRE_PEERS") == "1" {
			t.Fatal(msg)
		}
		t.Log(msg)
		return
	}
	cmd := exec.Command("node", append([]string{filepath.Join(dir, "fhir-validate.mjs")}, files...)...)
	cmd.Dir = dir
	res, err := cmd.CombinedOutput()
	if err != nil {
		var bad []string
		for _, line := range strings.Split(string(res), "\n") {
			if strings.HasPrefix(line, "INVALID") || strings.HasPrefix(line, "  ") {
				bad = append(bad, line)
			}
		}
		t.Fatalf("@medplum/core finds invalid resources (%v):\n%s", err, strings.Join(bad[:min(len(bad), 60)], "\n"))
	}
	out := strings.TrimSpace(string(res))
	t.Logf("@medplum/core: %s", out[strings.LastIndexByte(out, '\n')+1:])
}

// Program returns the path of another project's program a test runs (dcmtk's tools, mllp_send),
// skipping the test when it is not installed, or failing it when FERRY_REQUIRE_PEERS=1 (as in CI).
// pkg names the Debian package that provides it.
func Program(t testing.TB, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		msg := name + " not found (install Debian's " + pkg + "); FERRY_REQUIRE_PEERS=1 fails instead of skipping"
		if os.Getenv("FERRY_REQUIRE_PEERS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

// Python returns a Python 3 that imports module (Debian's python3 packages, such as
// python3-pydicom: /usr/bin/python3 first, as a virtual environment on PATH may lack them),
// skipping the test when there is none, or failing it when FERRY_REQUIRE_PEERS=1. pkg names the
// Debian package that provides the module.
func Python(t testing.TB, module, pkg string) string {
	t.Helper()
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import "+module).Run() == nil {
			return py
		}
	}
	msg := "no python3 that imports " + module + " (install Debian's " + pkg + "); FERRY_REQUIRE_PEERS=1 fails instead of skipping"
	if os.Getenv("FERRY_REQUIRE_PEERS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
