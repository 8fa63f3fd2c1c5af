package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/engine"
)

// ErrorQueueStore is a store with the error queue (engine/errorqueue.go).
type ErrorQueueStore interface {
	engine.Store
	engine.ErrorQueue
}

// RunErrorQueue checks the error queue: which messages are in it, requests to reprocess or
// dismiss them (never twice at once), the Reprocessor's claim and outcome, and that a message
// leaves the queue only when reprocessed successfully or dismissed.
func RunErrorQueue(t *testing.T, open func(t *testing.T) ErrorQueueStore) {
	t.Parallel()
	ctx := context.Background()
	st := open(t)

	ok := newMessage("RIS", "STMARYS", "Q1", 1)
	errored := newMessage("RIS", "STMARYS", "Q2", 2) // answered AE
	errored.Status, errored.ACKCode, errored.Error = engine.StatusError, "AE", "OBR-4: unknown procedure code"
	failed := newMessage("RIS", "STMARYS", "Q3", 3) // AA on receipt, failed later
	failed.MappingVersion, failed.ProcessingError = "orm_o01@1+abc", "OBR-4: unknown procedure code (ERR 103)"
	rej := rejected(newMessage("RIS", "STMARYS", "Q4", 4)) // a message that did not parse is not reprocessed
	other := newMessage("RIS", "GENERAL", "Q5", 5)
	other.Status, other.ACKCode, other.Error = engine.StatusError, "AE", "PID-3: no identifier"
	commit(t, st, ok, errored, failed, rej, other)

	queue := func(f engine.MessageFilter) []int64 {
		t.Helper()
		f.InErrorQueue = true
		var ids []int64
		for _, m := range list(t, st, f) {
			ids = append(ids, m.ID)
		}
		return ids
	}
	same := func(what string, got []int64, want ...int64) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %v, want %v", what, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s: %v, want %v", what, got, want)
			}
		}
	}
	same("the queue, newest first", queue(engine.MessageFilter{}), other.ID, failed.ID, errored.ID)
	same("the queue of one facility", queue(engine.MessageFilter{SendingFacility: "STMARYS"}), failed.ID, errored.ID)
	if n, err := st.CountMessages(ctx, engine.MessageFilter{InErrorQueue: true, SendingFacility: "STMARYS", Limit: 1}); err != nil || n != 2 {
		t.Fatalf("CountMessages: %d, %v; want 2 (limit does not apply)", n, err)
	}
	if n, oldest, err := st.ErrorQueueStats(ctx); err != nil || n != 3 || !oldest.Equal(errored.ReceivedAt) {
		t.Fatalf("ErrorQueueStats: %d, %v, %v; want 3 since %v", n, oldest, err, errored.ReceivedAt)
	}

	at := baseTime.Add(time.Hour)
	request := func(f engine.MessageFilter, kind engine.ReprocessKind, reason string) int {
		t.Helper()
		n, err := st.RequestReprocessing(ctx, engine.ReprocessRequest{Filter: f, Kind: kind, By: "ana", Reason: reason, At: at})
		if err != nil {
			t.Fatalf("RequestReprocessing(%+v, %s): %v", f, kind, err)
		}
		return n
	}
	if _, err := st.RequestReprocessing(ctx, engine.ReprocessRequest{Kind: engine.ReprocessDismiss, By: "ana", At: at}); err == nil {
		t.Fatal("a dismissal without a reason was recorded")
	}
	if n := request(engine.MessageFilter{ControlID: "Q4"}, engine.ReprocessRun, ""); n != 0 {
		t.Fatalf("a rejected message was queued for reprocessing (%d)", n)
	}
	if n := request(engine.MessageFilter{SendingFacility: "STMARYS"}, engine.ReprocessRun, "procedures table fixed"); n != 2 {
		t.Fatalf("reprocess STMARYS: %d queued, want 2", n)
	}
	if n := request(engine.MessageFilter{SendingFacility: "STMARYS"}, engine.ReprocessRun, "again"); n != 0 {
		t.Fatalf("reprocess while queued: %d queued again, want 0", n)
	}
	same("queued messages stay in the queue", queue(engine.MessageFilter{}), other.ID, failed.ID, errored.ID)
	if n := request(engine.MessageFilter{ControlID: "Q5"}, engine.ReprocessDismiss, "test feed, ignore"); n != 1 {
		t.Fatalf("dismiss: %d, want 1", n)
	}
	same("a dismissed message leaves the queue", queue(engine.MessageFilter{}), failed.ID, errored.ID)

	// The Reprocessor's claim: in arrival order, with the message; once.
	run := func(outcome func(*engine.Reprocessing)) []*engine.Reprocessing {
		t.Helper()
		begun, err := st.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tx := begun.(engine.ReprocessTx)
		reqs, msgs, err := tx.ClaimReprocessing(ctx, 10)
		if err != nil {
			t.Fatalf("ClaimReprocessing: %v", err)
		}
		for i, r := range reqs {
			if msgs[i].ID != r.MessageID || len(msgs[i].Raw) == 0 || r.State != engine.ReprocessRunning {
				t.Fatalf("claimed %+v with message %d (%d raw bytes)", r, msgs[i].ID, len(msgs[i].Raw))
			}
			r.FinishedAt, r.MappingVersion = at.Add(time.Minute), "orm_o01@2+def"
			outcome(r)
			if err := tx.FinishReprocessing(ctx, r); err != nil {
				t.Fatalf("FinishReprocessing: %v", err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		return reqs
	}
	first := run(func(r *engine.Reprocessing) {
		r.State, r.Error = engine.ReprocessFailed, "OBR-4: still unknown (ERR 103)"
	})
	if len(first) != 2 || first[0].MessageID != errored.ID || first[1].MessageID != failed.ID {
		t.Fatalf("claimed %+v, want the two STMARYS requests in arrival order", first)
	}
	if again := run(func(*engine.Reprocessing) {}); len(again) != 0 {
		t.Fatalf("claimed %d requests twice", len(again))
	}
	same("failed again: still in the queue", queue(engine.MessageFilter{}), failed.ID, errored.ID)
	if n := request(engine.MessageFilter{ControlID: "Q2"}, engine.ReprocessRun, "table fixed, really"); n != 1 {
		t.Fatalf("reprocess after a failure: %d, want 1", n)
	}
	run(func(r *engine.Reprocessing) { r.State = engine.ReprocessDone })
	same("reprocessed: off the queue", queue(engine.MessageFilter{}), failed.ID)

	hist, err := st.Reprocessings(ctx, errored.ID)
	if err != nil || len(hist) != 2 {
		t.Fatalf("Reprocessings: %d, %v; want 2", len(hist), err)
	}
	if h := hist[0]; h.State != engine.ReprocessFailed || h.Error != "OBR-4: still unknown (ERR 103)" || h.RequestedBy != "ana" ||
		h.Reason != "procedures table fixed" || !h.RequestedAt.Equal(at) || !h.FinishedAt.Equal(at.Add(time.Minute)) {
		t.Errorf("first request %+v", h)
	}
	if h := hist[1]; h.State != engine.ReprocessDone || h.MappingVersion != "orm_o01@2+def" || h.Kind != engine.ReprocessRun {
		t.Errorf("second request %+v", h)
	}
	if d, err := st.Reprocessings(ctx, other.ID); err != nil || len(d) != 1 || d[0].Kind != engine.ReprocessDismiss || d[0].State != engine.ReprocessDone {
		t.Errorf("dismissal %+v, %v", d, err)
	}
	if got := read(t, st, errored.ID); got.Status != engine.StatusError || got.Error != errored.Error {
		t.Errorf("the message itself changed: %+v", got)
	}
	if n, oldest, err := st.ErrorQueueStats(ctx); err != nil || n != 1 || !oldest.Equal(failed.ReceivedAt) {
		t.Fatalf("ErrorQueueStats: %d, %v, %v; want 1 since %v", n, oldest, err, failed.ReceivedAt)
	}
}
