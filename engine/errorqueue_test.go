package engine_test

import (
	"context"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/mappings"
)

// TestReprocessAfterTheCauseIsFixed: orders refused because the procedures table lacks their code
// — one acknowledged on receipt and failed later, one answered AE — wait in the error queue.
// Reprocessed while the table is still wrong they fail again and stay; once the code is added
// they are placed, in arrival order, and leave the queue; the messages themselves are unchanged.
func TestReprocessAfterTheCauseIsFixed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newOrderHarness(t)
	broken, fixed := procedureSets(t)
	current := broken
	h.in.Processor.Mappings = func() engine.MappingSource { return current }

	h.in.AckOnReceipt = true
	h.mustAccept(mshORM, pidFor("000555", "DOE^JANE"), orc("NW", "PL55", "SC"), obrCode("PL55", "ACC55", "99999"))
	worker := &engine.PendingWorker{Store: h.st, Processor: h.in.Processor}
	if n, err := worker.ProcessBatch(ctx); err != nil || n != 1 {
		t.Fatalf("ProcessBatch: %d, %v", n, err)
	}
	h.in.AckOnReceipt = false
	if code, _ := h.send(mshORM, pidFor("000556", "ROE^RICHARD"), orc("NW", "PL56", "SC"), obrCode("PL56", "ACC56", "99999")); code != "AE" {
		t.Fatalf("order with an unknown code answered %s, want AE", code)
	}
	inQueue := func() int {
		t.Helper()
		n, err := h.st.CountMessages(ctx, engine.MessageFilter{InErrorQueue: true})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := inQueue(); n != 2 {
		t.Fatalf("%d messages in the error queue, want 2", n)
	}

	rp := &engine.Reprocessor{Store: h.st, Processor: h.in.Processor}
	request := func(reason string) {
		t.Helper()
		n, err := h.st.RequestReprocessing(ctx, engine.ReprocessRequest{Filter: engine.MessageFilter{InErrorQueue: true},
			Kind: engine.ReprocessRun, By: "ana", Reason: reason, At: time.Date(2026, 12, 8, 9, 0, 0, 0, time.UTC)})
		if err != nil || n != 2 {
			t.Fatalf("RequestReprocessing: %d, %v; want 2", n, err)
		}
		if n, err := rp.RunBatch(ctx); err != nil || n != 2 {
			t.Fatalf("RunBatch: %d, %v; want 2", n, err)
		}
	}
	request("too early")
	if n := inQueue(); n != 2 {
		t.Fatalf("failed again, yet %d left in the queue", 2-n)
	}
	if srs := h.search("ServiceRequest"); len(srs) != 0 {
		t.Fatalf("%d orders placed by a failed reprocessing", len(srs))
	}

	current = fixed
	request("procedure 99999 added to the procedures table")
	if n := inQueue(); n != 0 {
		t.Fatalf("%d messages still in the queue after a successful reprocessing", n)
	}
	for _, placer := range []string{"PL55", "PL56"} {
		if srs := h.search("ServiceRequest", eq("identifier", placer)); len(srs) != 1 {
			t.Errorf("order %s: %d ServiceRequests, want 1", placer, len(srs))
		}
	}
	msgs, err := h.st.Messages(ctx, engine.MessageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		hist, err := h.st.Reprocessings(ctx, m.ID)
		if err != nil || len(hist) != 2 {
			t.Fatalf("message %d: %d requests, %v", m.ID, len(hist), err)
		}
		if hist[0].State != engine.ReprocessFailed || !strings.Contains(hist[0].Error, "ERR 103") ||
			hist[1].State != engine.ReprocessDone || hist[1].MappingVersion == "" {
			t.Errorf("message %d: requests %+v, %+v", m.ID, hist[0], hist[1])
		}
		if m.ControlID == "C0002" && (m.Status != engine.StatusError || m.ACKCode != "AE") {
			t.Errorf("the AE'd message was rewritten: %+v", m)
		}
	}
}

// obrCode is obr with the procedure code given.
func obrCode(placer, acc, code string) string {
	return strings.Replace(obr(placer, acc), "71260^", code+"^", 1)
}

// procedureSets are the shipped mappings with a procedures table that refuses codes it lacks
// (broken) and the same with code 99999 added (fixed).
func procedureSets(t *testing.T) (broken, fixed *mappings.Set) {
	t.Helper()
	table, err := fs.ReadFile(mappings.Shipped(), "tables/procedures.yaml")
	if err != nil {
		t.Fatal(err)
	}
	strict := strings.Replace(string(table), "\nmissing: empty\n", "\nmissing: error\n", 1)
	if strict == string(table) {
		t.Fatal("the shipped procedures table no longer says missing: empty")
	}
	withCode := strings.Replace(strict, "\nrows:\n", "\nrows:\n  \"99999\": {system: \"http://loinc.org\", code: \"24627-2\", scheme: LN, display: \"CT Chest\", modality: CT}\n", 1)
	load := func(body string) *mappings.Set {
		site := fstest.MapFS{"tables/procedures.yaml": {Data: []byte(body)}}
		set, err := mappings.Load(mappings.Source{Base: []fs.FS{mappings.Shipped(), site}})
		if err != nil {
			t.Fatal(err)
		}
		return set
	}
	return load(strict), load(withCode)
}
