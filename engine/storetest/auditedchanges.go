package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/audit"
	"github.com/ferryhealth/ferry/engine/outbox"
)

// AuditedChangeStore is what the audited-changes suite needs: the changes a person makes through
// the admin API that the store commits itself (a study link, a delivery replay, a reprocessing
// request) and the audit trail they are committed with.
type AuditedChangeStore interface {
	engine.Store
	engine.LinkStore
	engine.ErrorQueue
	outbox.Store
	audit.Reader
}

// RunAuditedChanges checks that a change made with an audit event pending in its context
// (audit.WithPending, as the HTTP gate puts one) commits with that event, in one transaction, or
// neither commits; and that the chain stays whole when such changes and the Recorder's events
// are appended at once. open is called once per subtest and must return a fresh, migrated, empty
// store that it closes in t.Cleanup; subtests run in parallel.
func RunAuditedChanges(t *testing.T, open func(t *testing.T) AuditedChangeStore) {
	tests := []struct {
		name string
		run  func(t *testing.T, st AuditedChangeStore)
	}{
		{"LinkCommittedWithItsEvent", testLinkAudited},
		{"ReplayCommittedWithItsEvent", testReplayAudited},
		{"ReprocessingCommittedWithItsEvent", testReprocessingAudited},
		{"ConcurrentChangesKeepTheChain", testAuditedChangesConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, open(t))
		})
	}
}

// pendingChange returns a context carrying an event pending for a change, and the Pending.
func pendingChange(action audit.Action, agent, entity string) (context.Context, *audit.Pending) {
	p := &audit.Pending{Event: &audit.Event{RecordedAt: baseTime, Action: action, Outcome: audit.OutcomeSuccess,
		Agent: agent, Role: "analyst", Address: "10.0.0.9", Entity: entity}}
	return audit.WithPending(context.Background(), p), p
}

// trail returns every event of st's trail, checking that the chain holds.
func trail(t *testing.T, st audit.Reader) []*audit.Event {
	t.Helper()
	ctx := context.Background()
	if res, err := audit.Verify(ctx, st); err != nil || res.Broken != 0 {
		t.Fatalf("audit.Verify: %+v, %v; want the chain whole", res, err)
	}
	var all []*audit.Event
	for after := int64(0); ; {
		evs, err := st.AuditEvents(ctx, audit.Filter{AfterSeq: after, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return all
		}
		all = append(all, evs...)
		after = evs[len(evs)-1].Seq
	}
}

// recordedAs checks that p was recorded as the only event of the trail, naming patient.
func recordedAs(t *testing.T, st audit.Reader, p *audit.Pending, patient string) {
	t.Helper()
	evs := trail(t, st)
	if !p.Recorded || len(evs) != 1 {
		t.Fatalf("Recorded %v, %d events in the trail; want the change's event recorded, alone", p.Recorded, len(evs))
	}
	if e := evs[0]; e.Seq != p.Event.Seq || e.Entity != p.Event.Entity || e.Agent != p.Event.Agent || e.Patient != patient {
		t.Errorf("event %+v; want seq %d, %q by %s about %q", e, p.Event.Seq, p.Event.Entity, p.Event.Agent, patient)
	}
}

// testLinkAudited: a person's link commits with its event (which names the linked patient); a
// link the store refuses records neither.
func testLinkAudited(t *testing.T, st AuditedChangeStore) {
	bad := newLink(1)
	bad.Status = "maybe" // refused by the store
	ctx, p := pendingChange(audit.ActionLink, "ana", "POST /api/v1/studies/x/link")
	if err := st.PutStudyLink(ctx, bad); err == nil {
		t.Fatal("a link of unknown status was stored")
	}
	if p.Recorded || len(trail(t, st)) != 0 {
		t.Fatalf("a refused link left its event (Recorded %v)", p.Recorded)
	}
	l := newLink(1)
	l.DecidedBy = "ana"
	if err := st.PutStudyLink(ctx, l); err != nil {
		t.Fatal(err)
	}
	recordedAs(t, st, p, "Patient/"+l.PatientID)
	if got, err := st.StudyLink(context.Background(), l.StudyInstanceUID); err != nil || got.DecidedBy != "ana" {
		t.Fatalf("StudyLink: %+v, %v; want the person's decision", got, err)
	}
	// Recorded once: a second change in the same request appends no second copy.
	if err := st.PutStudyLink(ctx, l); err != nil {
		t.Fatal(err)
	}
	if n := len(trail(t, st)); n != 1 {
		t.Errorf("%d events after a second change under a recorded event, want 1", n)
	}
}

// testReplayAudited: a replay commits with its event; one refused (not a dead letter) records
// neither.
func testReplayAudited(t *testing.T, st AuditedChangeStore) {
	dead, pending := newDelivery("rep-1", "STMARYS/LIS", "pat-1"), newDelivery("rep-2", "STMARYS/LIS", "pat-2")
	insertDeliveries(t, st, dead, pending)
	now := baseTime.Add(time.Minute)
	if !claimDelivery(t, st, dead.ID, now, now.Add(time.Minute)) {
		t.Fatal("claim failed")
	}
	finishDelivery(t, st, dead.ID, outbox.Outcome{Status: outbox.Dead, LastError: "refused: AR", Response: "MSA|AR", At: now})

	ctx, p := pendingChange(audit.ActionReplay, "ana", fmt.Sprintf("POST /api/v1/deliveries/%d/replay", pending.ID))
	if err := st.ReplayDelivery(ctx, pending.ID, nil, "", now); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("ReplayDelivery of a pending delivery: %v, want ErrNotFound", err)
	}
	if p.Recorded || len(trail(t, st)) != 0 {
		t.Fatalf("a refused replay left its event (Recorded %v)", p.Recorded)
	}
	ctx, p = pendingChange(audit.ActionReplay, "ana", fmt.Sprintf("POST /api/v1/deliveries/%d/replay", dead.ID))
	p.Event.Patient = "Patient/pat-1"
	if err := st.ReplayDelivery(ctx, dead.ID, nil, "", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	recordedAs(t, st, p, "Patient/pat-1")
	if d := readDelivery(t, st, dead.ID); d.Status != outbox.Pending {
		t.Errorf("replayed delivery is %s, want pending", d.Status)
	}
}

// testReprocessingAudited: a reprocessing request commits with its event; one that matches no
// message records neither.
func testReprocessingAudited(t *testing.T, st AuditedChangeStore) {
	failed := newMessage("RIS", "STMARYS", "Q1", 1)
	failed.Status, failed.ACKCode, failed.Error = engine.StatusError, "AE", "OBR-4: unknown procedure code"
	commit(t, st, failed)
	at := baseTime.Add(time.Hour)

	ctx, p := pendingChange(audit.ActionReplay, "ana", "POST /api/v1/messages/999/reprocess")
	n, err := st.RequestReprocessing(ctx, engine.ReprocessRequest{Filter: engine.MessageFilter{ID: failed.ID + 999},
		Kind: engine.ReprocessRun, By: "ana", At: at})
	if err != nil || n != 0 {
		t.Fatalf("RequestReprocessing of no message: %d, %v; want 0, nil", n, err)
	}
	if p.Recorded || len(trail(t, st)) != 0 {
		t.Fatalf("a request that matched nothing left its event (Recorded %v)", p.Recorded)
	}
	ctx, p = pendingChange(audit.ActionUpdate, "ana", fmt.Sprintf("POST /api/v1/messages/%d/dismiss", failed.ID))
	n, err = st.RequestReprocessing(ctx, engine.ReprocessRequest{Filter: engine.MessageFilter{ID: failed.ID},
		Kind: engine.ReprocessDismiss, By: "ana", Reason: "sent again by the EHR", At: at})
	if err != nil || n != 1 {
		t.Fatalf("RequestReprocessing: %d, %v; want 1", n, err)
	}
	recordedAs(t, st, p, "")
	if reqs, err := st.Reprocessings(context.Background(), failed.ID); err != nil || len(reqs) != 1 {
		t.Errorf("Reprocessings: %d, %v; want the dismissal", len(reqs), err)
	}
}

// testAuditedChangesConcurrent: links made at once, each with its event, beside reads recorded
// through a Recorder, leave one unbroken chain holding every event once.
func testAuditedChangesConcurrent(t *testing.T, st AuditedChangeStore) {
	const workers, each = 4, 8
	rec := &audit.Recorder{Begin: st.Begin}
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				ctx, _ := pendingChange(audit.ActionLink, fmt.Sprint("w", w), fmt.Sprintf("link %d.%d", w, i))
				l := newLink(w*each + i + 1)
				if err := st.PutStudyLink(ctx, l); err != nil {
					errs <- err
					return
				}
			}
		})
		wg.Go(func() {
			for i := range each {
				e := &audit.Event{RecordedAt: baseTime, Action: audit.ActionRead, Outcome: audit.OutcomeSuccess,
					Agent: fmt.Sprint("r", w), Entity: fmt.Sprintf("read %d.%d", w, i)}
				if err := rec.Record(context.Background(), e); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	evs := trail(t, st)
	seen := map[string]bool{}
	for _, e := range evs {
		if seen[e.Entity] {
			t.Errorf("event %q recorded twice", e.Entity)
		}
		seen[e.Entity] = true
	}
	if len(evs) != 2*workers*each || len(seen) != 2*workers*each {
		t.Errorf("%d events (%d distinct), want %d", len(evs), len(seen), 2*workers*each)
	}
}
