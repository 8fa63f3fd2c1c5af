package audit_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/adapters/sqlite"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/audit"
)

// TestChangesAppendInTheChangesTransaction: a transaction begun for a request carrying a Pending
// event appends it when it stores a resource, and commits both or neither; a transaction that
// stores no resource (a refusal kept for an analyst) appends nothing.
func TestChangesAppendInTheChangesTransaction(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	changes := audit.Changes{ChangeStore: st}
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	report := func(id string) *engine.Resource {
		return &engine.Resource{Type: "DiagnosticReport", ID: id, VersionID: 1, LastUpdated: at,
			JSON: []byte(`{"resourceType":"DiagnosticReport","id":"` + id + `","status":"final","code":{"text":"CT"},"subject":{"reference":"Patient/p9"}}`)}
	}
	pending := func() (*audit.Pending, context.Context) {
		p := &audit.Pending{Event: &audit.Event{RecordedAt: at, Action: audit.ActionCreate, Outcome: audit.OutcomeSuccess, Agent: "pscribe", Role: "system"}}
		return p, audit.WithPending(ctx, p)
	}

	// Rolled back: nothing.
	p, rctx := pending()
	tx, err := changes.Begin(rctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.PutResource(rctx, report("r0")); err != nil {
		t.Fatal(err)
	}
	tx.Rollback()
	// No resource stored: nothing.
	p2, rctx2 := pending()
	tx, err = changes.Begin(rctx2)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	// Committed with its change.
	p3, rctx3 := pending()
	tx, err = changes.Begin(rctx3)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.PutResource(rctx3, report("r1")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if p.Recorded || p2.Recorded || !p3.Recorded {
		t.Errorf("Recorded: rolled back %v, no change %v, committed %v; want false, false, true", p.Recorded, p2.Recorded, p3.Recorded)
	}
	evs, err := st.AuditEvents(ctx, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Patient != "Patient/p9" || evs[0].Agent != "pscribe" || evs[0].Action != audit.ActionCreate {
		t.Errorf("events %+v, want the one committed change, naming Patient/p9", evs)
	}
	if _, err := st.Resource(ctx, "DiagnosticReport", "r0"); err == nil {
		t.Error("the rolled-back report was stored")
	}
}
