package main

import (
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/hl7"
)

// TestErrorQueueReprocess is issue 14's data-safety hole, end to end on both stores: orders
// acknowledged on receipt whose procedure code the table lacks fail after their AA and wait in
// the error queue (the message log's queue=errors). One is dismissed with a reason; `ferry
// reprocess` counts the other and runs it again — failing while the table still lacks the code,
// placed once the analyst has added it. (An order answered AE is reprocessed the same way:
// engine's TestReprocessAfterTheCauseIsFixed.)
func TestErrorQueueReprocess(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, db, dir string) {
		tables := filepath.Join(dir, "maps", "tables")
		if err := os.MkdirAll(tables, 0o755); err != nil {
			t.Fatal(err)
		}
		write := func(body string) {
			t.Helper()
			path := filepath.Join(tables, "procedures.yaml")
			if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			later := time.Now().Add(time.Duration(len(body)) * time.Second) // coarse file clocks
			_ = os.Chtimes(path, later, later)
		}
		const strict = "table: procedures\nmissing: error\nrows:\n  \"71260\": {system: \"http://loinc.org\", code: \"24627-2\", display: CT Chest, modality: CT}\n"
		write(strict)
		p := startFerry(t, db, dir, serveOptions{Config: "mllp:\n  ack: on_receipt\nmappings:\n  dir: maps\n  reload_interval: 50ms\n"})
		order := func(ctrl string) string {
			return ordersORM(ctrl, "NW", "PL"+ctrl, "SC", "ACC"+ctrl, "99999", "CT", "20261127", "000777")
		}
		if codes := mllpSendAll(t, p.MLLPAddr, order("EQ1"), order("EQ2")); codes[0] != "AA" || codes[1] != "AA" {
			t.Fatalf("acknowledged on receipt: %v, want AA AA", codes)
		}
		tokenFile := filepath.Join(dir, "token")
		if err := os.WriteFile(tokenFile, []byte(testAdminToken), 0o600); err != nil {
			t.Fatal(err)
		}
		reprocess := func(args ...string) (string, string, int) {
			return runFerry(t, dir, append([]string{"reprocess", "--url", "http://" + p.HTTPAddr, "--token-file", tokenFile, "--user", "ana"}, args...)...)
		}
		queue := func() []apiMessage { return p.messages(t, url.Values{"queue": {"errors"}}) }
		waitFor(t, "both orders to fail after their AA", func() bool { return len(queue()) == 2 })
		for _, m := range queue() {
			if !strings.Contains(m.ProcessingError, "ERR 103") {
				t.Errorf("message %s in the queue with processing error %q", m.ControlID, m.ProcessingError)
			}
		}

		// The queue exported as an HL7 file reads back as the two messages.
		code, file := p.request(t, "GET", "/api/v1/messages/export?queue=errors&format=hl7", "", nil)
		if msgs, err := hl7.SplitBatch(file); code != 200 || err != nil || len(msgs) != 2 ||
			!strings.Contains(string(msgs[0]), "|EQ2|") || !strings.Contains(string(msgs[1]), "|EQ1|") {
			t.Errorf("export: HTTP %d, %d messages (%v):\n%s", code, len(msgs), err, file)
		}

		// The analyst dismisses EQ2 (a test order), with a reason; EQ1 stays.
		eq2 := p.byControlID(t, "EQ2")[0]
		out, errOut, status := reprocess("--id", strconv.FormatInt(eq2.ID, 10), "--dismiss", "--reason", "test order from the RIS vendor")
		if status != 0 {
			t.Fatalf("ferry reprocess --dismiss: %d %s %s", status, out, errOut)
		}
		// Counted, then run while the table still lacks the code: it fails again and stays.
		out, errOut, status = reprocess("--facility", "STMARYS", "--reason", "retry")
		if status != 0 || !strings.Contains(out, "1 messages in the error queue match") || !strings.Contains(out, "queued 1") {
			t.Fatalf("ferry reprocess: %d\n%s%s", status, out, errOut)
		}
		eq1 := p.byControlID(t, "EQ1")[0]
		waitFor(t, "the first reprocessing to fail", func() bool {
			h := p.message(t, eq1.ID).Reprocessing
			return len(h) == 1 && h[0].State == "failed"
		})
		if q := queue(); len(q) != 1 || q[0].ControlID != "EQ1" {
			t.Fatalf("queue after a failed reprocessing and a dismissal: %v", q)
		}

		// The analyst adds the code; reprocessed, the order is placed and leaves the queue.
		write(strict + "  \"99999\": {system: \"http://loinc.org\", code: \"24627-2\", display: CT Chest, modality: CT}\n")
		awaitOutput(t, p.stderr, p.exited, "the fixed table to be loaded", func(log string) bool {
			return strings.Count(log, "mappings reloaded") >= 1
		})
		out, errOut, status = reprocess("--id", strconv.FormatInt(eq1.ID, 10), "--reason", "procedure 99999 added")
		if status != 0 {
			t.Fatalf("ferry reprocess --id: %d %s %s", status, out, errOut)
		}
		waitFor(t, "the order to be placed", func() bool {
			return len(p.fhirSearch(t, "ServiceRequest", url.Values{"identifier": {"PLEQ1"}})) == 1
		})
		waitFor(t, "the queue to empty", func() bool { return len(queue()) == 0 })
		h := p.message(t, eq1.ID).Reprocessing
		if len(h) != 2 || h[0].State != "failed" || h[1].State != "done" || h[1].Reason != "procedure 99999 added" || h[1].MappingVersion == "" {
			t.Errorf("EQ1's reprocessing: %+v", h)
		}
		if got := p.message(t, eq1.ID); got.ProcessingError == "" || got.Status != "accepted" {
			t.Errorf("the original was rewritten: %+v", got)
		}
		if n := p.metric(t, "ferry_error_queue_messages"); n != 0 {
			t.Errorf("ferry_error_queue_messages %v, want 0", n)
		}
		// Nothing left to run: a second request for EQ1 is refused (409), not queued.
		if code := p.post(t, "/api/v1/messages/"+strconv.FormatInt(eq1.ID, 10)+"/reprocess", map[string]string{"user": "ana", "reason": "again"}); code != 409 {
			t.Errorf("reprocess of a message no longer in the queue: HTTP %d, want 409", code)
		}
	})
}
