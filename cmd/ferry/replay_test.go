package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBulkReplayKeepsPatientOrder (issue 18, item 8): a patient's preliminary and final are both
// refused (AR) and dead; `ferry deliveries replay` replays every dead letter oldest first, so
// the EHR gets the preliminary before the final again — replayed in the list's order (newest
// first), the final would go first, nothing ahead of it in its queue.
func TestBulkReplayKeepsPatientOrder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ehr := startEHR(t, dir, "AR", "AR")
	p := startFerry(t, "sqlite:"+filepath.Join(dir, "ferry.db"), dir, serveOptions{Config: epicConfig(ehr.Addr, "")})
	p.orderAll(t, ordersORM("B1", "NW", "PLB1", "SC", "ACCB1", "71260", "CT", "20261127", "000951"))
	type listed struct {
		Deliveries []struct {
			ID        int64  `json:"id"`
			ControlID string `json:"control_id"`
		} `json:"deliveries"`
	}
	deadCount := func() int {
		var dead listed
		if p.get(t, "/api/v1/deliveries?status=dead", &dead) != 200 {
			return -1
		}
		return len(dead.Deliveries)
	}
	p.postReport(t, "preliminary", "ACCB1", "First read.", 201)
	waitFor(t, "the preliminary dead", func() bool { return deadCount() == 1 })
	p.postReport(t, "final", "ACCB1", "Final read.", 200) // a new version of the same report
	waitFor(t, "the final dead", func() bool { return deadCount() == 2 })
	var dead listed
	p.get(t, "/api/v1/deliveries?status=dead", &dead)
	// Newest first: the final, then the preliminary.
	finalID, prelimID := dead.Deliveries[0].ControlID, dead.Deliveries[1].ControlID

	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(testAdminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, status := runFerry(t, dir, "deliveries", "replay", "--url", "http://"+p.HTTPAddr, "--token-file", tokenFile,
		"--user", "ana.analyst", "--reason", "EHR interface fixed", "--destination", "STMARYS/epic")
	if status != 0 || !strings.Contains(stdout, "replayed 2 dead letters") {
		t.Fatalf("ferry deliveries replay: status %d\n%s%s", status, stdout, stderr)
	}
	waitFor(t, "both replayed reports at the EHR", func() bool { return len(ehr.messages(t)) >= 4 })
	got := ehr.messages(t)
	var order []string
	for _, m := range got[2:] {
		order = append(order, m.Value("MSH-10"))
	}
	if len(order) != 2 || order[0] != prelimID || order[1] != finalID {
		t.Errorf("replayed reports reached the EHR as %v, want the preliminary %s, then the final %s", order, prelimID, finalID)
	}
	if deadCount() != 0 {
		t.Errorf("dead letters left after the replay")
	}
	if !strings.Contains(p.stderr.String(), `msg="audit: dead letters replayed"`) {
		t.Errorf("no audit line for the bulk replay")
	}
}
