package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/outbox"
)

// OutboxStore is what the outbox suite needs of a store: the outbox, and transactions, which
// insert deliveries with their report.
type OutboxStore interface {
	outbox.Store
	Begin(ctx context.Context) (engine.Tx, error)
}

// RunOutbox runs the contract suite of outbox.Store and Tx.InsertDelivery. open is called once
// per subtest and must return a fresh, migrated, empty store that it closes (and removes) in
// t.Cleanup; subtests run in parallel.
func RunOutbox(t *testing.T, open func(t *testing.T) OutboxStore) {
	tests := []struct {
		name string
		run  func(t *testing.T, st OutboxStore)
	}{
		{"InsertCommitted", testDeliveryInsertCommitted},
		{"InsertRolledBack", testDeliveryInsertRolledBack},
		{"DuplicateIsConflict", testDeliveryDuplicate},
		{"InvalidRejected", testDeliveryInvalid},
		{"QueueOrder", testDeliveryQueueOrder},
		{"DeadDoesNotHoldQueue", testDeliveryDeadDoesNotHoldQueue},
		{"QueuesIndependent", testDeliveryQueuesIndependent},
		{"PostponeDestination", testDeliveryPostponeDestination},
		{"NotDueBeforeNextAttempt", testDeliveryNotDueBefore},
		{"Claim", testDeliveryClaim},
		{"FinishDelivered", testDeliveryFinishDelivered},
		{"FinishRetryLater", testDeliveryFinishRetry},
		{"FinishDead", testDeliveryFinishDead},
		{"Replay", testDeliveryReplay},
		{"ReplayOnlyDead", testDeliveryReplayOnlyDead},
		{"ListFiltered", testDeliveriesFiltered},
		{"PayloadBytes", testDeliveryPayloadBytes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, open(t))
		})
	}
}

// newDelivery returns a pending MLLP delivery of DiagnosticReport/<report> version 1 to dest for
// patient, every field an inserter sets filled; created and due at baseTime, in a zone other than
// UTC.
func newDelivery(report, dest, patient string) *outbox.Delivery {
	at := baseTime.In(time.FixedZone("CET", 3600))
	return &outbox.Delivery{
		ReportID:       report,
		ReportVersion:  1,
		Destination:    dest,
		Kind:           outbox.MLLP,
		QueueKey:       dest + "|" + patient,
		Status:         outbox.Pending,
		ControlID:      "ORU-" + report,
		Payload:        []byte("MSH|^~\\&|FERRY|RAD|LIS|" + dest + "|20260301100000||ORU^R01|ORU-" + report + "|P|2.5.1\r"),
		MappingVersion: "oru_r01@1+3fa2c9d1",
		NextAttemptAt:  at,
		CreatedAt:      at,
	}
}

// insertDeliveries inserts ds in one transaction and commits it.
func insertDeliveries(t *testing.T, st OutboxStore, ds ...*outbox.Delivery) {
	t.Helper()
	ctx := context.Background()
	tx, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if err := tx.InsertDelivery(ctx, d); err != nil {
			tx.Rollback()
			t.Fatalf("InsertDelivery(%s v%d → %s): %v", d.ReportID, d.ReportVersion, d.Destination, err)
		}
		if d.ID == 0 {
			t.Fatalf("InsertDelivery(%s): ID not set", d.ReportID)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func readDelivery(t *testing.T, st OutboxStore, id int64) *outbox.Delivery {
	t.Helper()
	d, err := st.Delivery(context.Background(), id)
	if err != nil {
		t.Fatalf("Delivery(%d): %v", id, err)
	}
	return d
}

// dueIDs returns the IDs DueDeliveries returns at now, in its order.
func dueIDs(t *testing.T, st OutboxStore, now time.Time) []int64 {
	t.Helper()
	due, err := st.DueDeliveries(context.Background(), now, 100, nil)
	if err != nil {
		t.Fatalf("DueDeliveries(%s): %v", now, err)
	}
	ids := []int64{}
	for _, d := range due {
		ids = append(ids, d.ID)
	}
	return ids
}

func checkDue(t *testing.T, st OutboxStore, now time.Time, want ...int64) {
	t.Helper()
	if want == nil {
		want = []int64{}
	}
	if got := dueIDs(t, st, now); !reflect.DeepEqual(got, want) {
		t.Errorf("due at %s: %v, want %v", now.Format(time.RFC3339Nano), got, want)
	}
}

func claimDelivery(t *testing.T, st OutboxStore, id int64, now, leaseUntil time.Time) bool {
	t.Helper()
	ok, err := st.ClaimDelivery(context.Background(), id, now, leaseUntil)
	if err != nil {
		t.Fatalf("ClaimDelivery(%d): %v", id, err)
	}
	return ok
}

func finishDelivery(t *testing.T, st OutboxStore, id int64, o outbox.Outcome) {
	t.Helper()
	if err := st.FinishDelivery(context.Background(), id, o); err != nil {
		t.Fatalf("FinishDelivery(%d, %s): %v", id, o.Status, err)
	}
}

// checkDelivery compares got with want, its times as instants that must come back in UTC (the
// zero time for unset ones).
func checkDelivery(t *testing.T, got, want *outbox.Delivery) {
	t.Helper()
	g, w := *got, *want
	checkInstants(t, fmt.Sprintf("delivery %d", got.ID), []instant{
		{"NextAttemptAt", &g.NextAttemptAt, &w.NextAttemptAt},
		{"LeaseUntil", &g.LeaseUntil, &w.LeaseUntil},
		{"CreatedAt", &g.CreatedAt, &w.CreatedAt},
		{"DeliveredAt", &g.DeliveredAt, &w.DeliveredAt},
	})
	if !reflect.DeepEqual(g, w) {
		t.Errorf("Delivery = %+v,\nwant %+v", g, w)
	}
}

// instant is a time field of a value read back (got) and of the value expected (want).
type instant struct {
	name      string
	got, want *time.Time
}

// checkInstants compares each field as an instant (the zero time for unset ones) that must come
// back in UTC, then zeroes both, so that the values can be compared whole after.
func checkInstants(t *testing.T, what string, fields []instant) {
	t.Helper()
	for _, f := range fields {
		if !f.got.Equal(*f.want) || f.got.IsZero() != f.want.IsZero() {
			t.Errorf("%s: %s = %s, want %s", what, f.name, *f.got, *f.want)
		}
		if !f.got.IsZero() && f.got.Location() != time.UTC {
			t.Errorf("%s: %s %s is not in UTC", what, f.name, *f.got)
		}
		*f.got, *f.want = time.Time{}, time.Time{}
	}
}

// testDeliveryInsertCommitted: a delivery inserted in a committed transaction reads back as
// inserted, by ID and in the listing.
func testDeliveryInsertCommitted(t *testing.T, st OutboxStore) {
	d := newDelivery("rep-1", "STMARYS/LIS", "pat-1")
	d.Kind, d.Response = outbox.FHIR, "—" // not ASCII
	insertDeliveries(t, st, d)
	checkDelivery(t, readDelivery(t, st, d.ID), d)
	list, err := st.Deliveries(context.Background(), outbox.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("Deliveries: %d, want 1", len(list))
	}
	checkDelivery(t, list[0], d)
}

func testDeliveryInsertRolledBack(t *testing.T, st OutboxStore) {
	ctx := context.Background()
	tx, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := newDelivery("rep-1", "STMARYS/LIS", "pat-1")
	if err := tx.InsertDelivery(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Delivery(ctx, d.ID); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Delivery after rollback: %v, want ErrNotFound", err)
	}
	if list, err := st.Deliveries(ctx, outbox.Filter{}); err != nil || len(list) != 0 {
		t.Errorf("Deliveries after rollback: %d, %v; want none", len(list), err)
	}
	checkDue(t, st, baseTime.Add(time.Hour))
}

// testDeliveryDuplicate: a report version goes once to a destination; another version, or
// another destination, is a delivery of its own.
func testDeliveryDuplicate(t *testing.T, st OutboxStore) {
	ctx := context.Background()
	insertDeliveries(t, st, newDelivery("rep-1", "STMARYS/LIS", "pat-1"))

	tx, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	again := newDelivery("rep-1", "STMARYS/LIS", "pat-1")
	again.ControlID = "ORU-other"
	if err := tx.InsertDelivery(ctx, again); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("second delivery of rep-1 v1 to STMARYS/LIS: %v, want ErrConflict", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}

	v2 := newDelivery("rep-1", "STMARYS/LIS", "pat-1")
	v2.ReportVersion = 2
	insertDeliveries(t, st, v2, newDelivery("rep-1", "STMARYS/RIS", "pat-1"))
	if list, err := st.Deliveries(ctx, outbox.Filter{ReportID: "rep-1"}); err != nil || len(list) != 3 {
		t.Errorf("deliveries of rep-1: %d, %v; want 3", len(list), err)
	}
}

// testDeliveryInvalid: Validate's refusals come back from InsertDelivery and store nothing.
func testDeliveryInvalid(t *testing.T, st OutboxStore) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		change func(d *outbox.Delivery) *outbox.Delivery
	}{
		{"nil", func(*outbox.Delivery) *outbox.Delivery { return nil }},
		{"no report", func(d *outbox.Delivery) *outbox.Delivery { d.ReportID = ""; return d }},
		{"version 0", func(d *outbox.Delivery) *outbox.Delivery { d.ReportVersion = 0; return d }},
		{"no destination", func(d *outbox.Delivery) *outbox.Delivery { d.Destination = ""; return d }},
		{"no queue key", func(d *outbox.Delivery) *outbox.Delivery { d.QueueKey = ""; return d }},
		{"no control id", func(d *outbox.Delivery) *outbox.Delivery { d.ControlID = ""; return d }},
		{"unknown kind", func(d *outbox.Delivery) *outbox.Delivery { d.Kind = "sftp"; return d }},
		{"delivered", func(d *outbox.Delivery) *outbox.Delivery { d.Status = outbox.Delivered; return d }},
		{"no status", func(d *outbox.Delivery) *outbox.Delivery { d.Status = ""; return d }},
		{"no CreatedAt", func(d *outbox.Delivery) *outbox.Delivery { d.CreatedAt = time.Time{}; return d }},
		{"no NextAttemptAt", func(d *outbox.Delivery) *outbox.Delivery { d.NextAttemptAt = time.Time{}; return d }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx, err := st.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			err = tx.InsertDelivery(ctx, tc.change(newDelivery("rep-1", "STMARYS/LIS", "pat-1")))
			if err == nil || errors.Is(err, engine.ErrConflict) {
				t.Fatalf("InsertDelivery: %v, want a validation error", err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
		})
	}
	if list, err := st.Deliveries(ctx, outbox.Filter{}); err != nil || len(list) != 0 {
		t.Errorf("Deliveries: %d, %v; want none", len(list), err)
	}
}

// testDeliveryQueueOrder: of two pending deliveries of one queue only the first is due (a
// final never overtakes its preliminary); once it is delivered the second is.
func testDeliveryQueueOrder(t *testing.T, st OutboxStore) {
	prelim, final := newDelivery("rep-1", "STMARYS/LIS", "pat-1"), newDelivery("rep-1", "STMARYS/LIS", "pat-1")
	final.ReportVersion = 2
	insertDeliveries(t, st, prelim)
	insertDeliveries(t, st, final)
	now := baseTime.Add(time.Minute)
	checkDue(t, st, now, prelim.ID)
	if claimDelivery(t, st, final.ID, now, now.Add(time.Minute)) {
		t.Error("claimed the second of a queue while the first is pending")
	}
	if !claimDelivery(t, st, prelim.ID, now, now.Add(time.Minute)) {
		t.Fatal("could not claim the first of a queue")
	}
	checkDue(t, st, now) // the first is leased, the second still waits for it
	finishDelivery(t, st, prelim.ID, outbox.Outcome{Status: outbox.Delivered, Response: "MSA|AA", At: now})
	checkDue(t, st, now, final.ID)
	if !claimDelivery(t, st, final.ID, now, now.Add(time.Minute)) {
		t.Error("could not claim the second of a queue after the first was delivered")
	}
}

// testDeliveryDeadDoesNotHoldQueue: a dead letter, inserted dead or finished dead, does not hold
// up the deliveries after it.
func testDeliveryDeadDoesNotHoldQueue(t *testing.T, st OutboxStore) {
	refused := newDelivery("rep-1", "STMARYS/LIS", "pat-1")
	refused.Status, refused.LastError = outbox.Dead, "no route for this patient"
	first, second := newDelivery("rep-2", "STMARYS/LIS", "pat-1"), newDelivery("rep-3", "STMARYS/LIS", "pat-1")
	insertDeliveries(t, st, refused, first, second)
	now := baseTime.Add(time.Minute)
	checkDue(t, st, now, first.ID)
	if !claimDelivery(t, st, first.ID, now, now.Add(time.Minute)) {
		t.Fatal("could not claim the first pending delivery")
	}
	finishDelivery(t, st, first.ID, outbox.Outcome{Status: outbox.Dead, LastError: "AR", Response: "MSA|AR", At: now})
	checkDue(t, st, now, second.ID)
}

// testDeliveryQueuesIndependent: the head of each queue is due; longest due first.
func testDeliveryQueuesIndependent(t *testing.T, st OutboxStore) {
	a1, a2 := newDelivery("rep-a1", "STMARYS/LIS", "pat-1"), newDelivery("rep-a2", "STMARYS/LIS", "pat-1")
	b1 := newDelivery("rep-b1", "STMARYS/LIS", "pat-2") // another patient
	c1 := newDelivery("rep-c1", "STJOHNS/LIS", "pat-1") // another destination
	c1.NextAttemptAt = baseTime.Add(-time.Second)       // due longest
	insertDeliveries(t, st, a1, a2, b1, c1)
	now := baseTime.Add(time.Minute)
	checkDue(t, st, now, c1.ID, a1.ID, b1.ID)
	if !claimDelivery(t, st, b1.ID, now, now.Add(time.Minute)) {
		t.Error("could not claim the head of another patient's queue")
	}
	if claimDelivery(t, st, a2.ID, now, now.Add(time.Minute)) {
		t.Error("claimed the second of a queue")
	}
	checkDue(t, st, now, c1.ID, a1.ID)
	if due, err := st.DueDeliveries(context.Background(), now, 1, nil); err != nil || len(due) != 1 || due[0].ID != c1.ID {
		t.Errorf("DueDeliveries(limit 1): %d, %v; want only %d", len(due), err, c1.ID)
	}
	// A destination whose senders are busy is left out.
	for _, tc := range []struct {
		busy []string
		want []int64
	}{
		{[]string{"STMARYS/LIS"}, []int64{c1.ID}},
		{[]string{"STJOHNS/LIS", "ELSEWHERE/X"}, []int64{a1.ID}},
		{[]string{"STMARYS/LIS", "STJOHNS/LIS"}, nil},
		{[]string{}, []int64{c1.ID, a1.ID}},
	} {
		due, err := st.DueDeliveries(context.Background(), now, 100, tc.busy)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, d := range due {
			got = append(got, d.ID)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("DueDeliveries(busy %v) = %v, want %v", tc.busy, got, tc.want)
		}
	}
}

// testDeliveryPostponeDestination: a destination that is down has all its pending deliveries —
// heads and those behind them, not those leased — moved to the retry time; no other destination
// moves, not even one whose name starts with the same characters.
func testDeliveryPostponeDestination(t *testing.T, st OutboxStore) {
	ctx := context.Background()
	a1, a2 := newDelivery("rep-a1", "STMARYS/LIS", "pat-1"), newDelivery("rep-a2", "STMARYS/LIS", "pat-1")
	leased := newDelivery("rep-b1", "STMARYS/LIS", "pat-2")
	later := newDelivery("rep-c1", "STMARYS/LIS", "pat-3")
	later.NextAttemptAt = baseTime.Add(2 * time.Hour) // already due after the new time: kept
	other := newDelivery("rep-d1", "STJOHNS/LIS", "pat-1")
	namesake := newDelivery("rep-e1", "STMARYS/LIS2", "pat-1")
	insertDeliveries(t, st, a1, a2, leased, later, other, namesake)
	now := baseTime.Add(time.Minute)
	if !claimDelivery(t, st, leased.ID, now, now.Add(time.Minute)) {
		t.Fatal("claim failed")
	}
	until := now.Add(time.Hour)
	n, err := st.PostponeDestination(ctx, "STMARYS/LIS", now, until)
	if err != nil || n != 2 {
		t.Fatalf("PostponeDestination = %d, %v; want 2 (the two of pat-1)", n, err)
	}
	checkDue(t, st, now, other.ID, namesake.ID)
	// Later the lease has run out (its sender died, say): the leased one is due as it was.
	checkDue(t, st, until.Add(-time.Microsecond), leased.ID, other.ID, namesake.ID)
	checkDue(t, st, until, leased.ID, other.ID, namesake.ID, a1.ID)
	for _, d := range []*outbox.Delivery{a1, a2} {
		if got := readDelivery(t, st, d.ID); !got.NextAttemptAt.Equal(until) || got.Attempts != 0 {
			t.Errorf("delivery %d after the postponement: due %s, %d attempts; want %s, 0", d.ID, got.NextAttemptAt, got.Attempts, until)
		}
	}
	for _, d := range []*outbox.Delivery{leased, later, other, namesake} {
		if got := readDelivery(t, st, d.ID); !got.NextAttemptAt.Equal(d.NextAttemptAt) {
			t.Errorf("delivery %d (%s) moved to %s", d.ID, d.QueueKey, got.NextAttemptAt)
		}
	}
}

// testDeliveryNotDueBefore: a delivery is due from its NextAttemptAt, not before; nor can it be
// claimed before.
func testDeliveryNotDueBefore(t *testing.T, st OutboxStore) {
	d := newDelivery("rep-1", "STMARYS/LIS", "pat-1")
	d.NextAttemptAt = baseTime.Add(10 * time.Minute)
	insertDeliveries(t, st, d)
	before := d.NextAttemptAt.Add(-time.Microsecond)
	checkDue(t, st, before)
	if claimDelivery(t, st, d.ID, before, before.Add(time.Minute)) {
		t.Error("claimed a delivery before it is due")
	}
	checkDue(t, st, d.NextAttemptAt, d.ID)
}

// testDeliveryClaim: a claim leases the delivery and counts the attempt; a second claim fails
// while the lease runs, and succeeds once it has run out (a crashed sender's delivery is sent
// by another).
func testDeliveryClaim(t *testing.T, st OutboxStore) {
	d := newDelivery("rep-1", "STMARYS/LIS", "pat-1")
	insertDeliveries(t, st, d)
	now := baseTime.Add(time.Minute)
	lease := now.Add(30 * time.Second)
	if !claimDelivery(t, st, d.ID, now, lease) {
		t.Fatal("first claim failed")
	}
	got := readDelivery(t, st, d.ID)
	if got.Attempts != 1 || !got.LeaseUntil.Equal(lease) || got.Status != outbox.Pending {
		t.Errorf("after a claim: attempts %d, lease until %s, %s; want 1, %s, pending", got.Attempts, got.LeaseUntil, got.Status, lease)
	}
	if claimDelivery(t, st, d.ID, now.Add(time.Second), now.Add(time.Minute)) {
		t.Error("second claim succeeded while the first's lease runs")
	}
	checkDue(t, st, lease.Add(-time.Microsecond))
	if claimDelivery(t, st, d.ID, lease.Add(-time.Microsecond), lease.Add(time.Minute)) {
		t.Error("claim succeeded a microsecond before the lease ran out")
	}
	later := lease.Add(time.Second)
	checkDue(t, st, later, d.ID)
	if !claimDelivery(t, st, d.ID, later, later.Add(30*time.Second)) {
		t.Fatal("claim after the lease ran out failed")
	}
	if got := readDelivery(t, st, d.ID); got.Attempts != 2 || !got.LeaseUntil.Equal(later.Add(30*time.Second)) {
		t.Errorf("after a second claim: attempts %d, lease until %s; want 2, %s", got.Attempts, got.LeaseUntil, later.Add(30*time.Second))
	}
	if claimDelivery(t, st, d.ID+1000, later, later.Add(time.Minute)) {
		t.Error("claimed a delivery that does not exist")
	}
}

func testDeliveryFinishDelivered(t *testing.T, st OutboxStore) {
	d := newDelivery("rep-1", "STMARYS/LIS", "pat-1")
	insertDeliveries(t, st, d)
	now := baseTime.Add(time.Minute)
	if !claimDelivery(t, st, d.ID, now, now.Add(time.Minute)) {
		t.Fatal("claim failed")
	}
	at := now.Add(1500 * time.Millisecond)
	finishDelivery(t, st, d.ID, outbox.Outcome{Status: outbox.Delivered, Response: "MSH|…\rMSA|AA|ORU-rep-1\r", At: at})
	want := *d
	want.Status, want.Attempts, want.Response, want.DeliveredAt = outbox.Delivered, 1, "MSH|…\rMSA|AA|ORU-rep-1\r", at
	checkDelivery(t, readDelivery(t, st, d.ID), &want)
	checkDue(t, st, now.Add(time.Hour))
	if claimDelivery(t, st, d.ID, now.Add(time.Hour), now.Add(2*time.Hour)) {
		t.Error("claimed a delivered delivery")
	}
	// A sender whose lease ran out cannot undo what another recorded.
	err := st.FinishDelivery(context.Background(), d.ID, outbox.Outcome{Status: outbox.Pending, NextAttemptAt: now, At: now})
	if !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("FinishDelivery of a delivered delivery: %v, want ErrNotFound", err)
	}
	if got := readDelivery(t, st, d.ID); got.Status != outbox.Delivered {
		t.Errorf("status %s after a late finish, want delivered", got.Status)
	}
}

// testDeliveryFinishRetry: a failed attempt leaves the delivery pending, due again at the
// outcome's NextAttemptAt, its lease ended and its error kept.
func testDeliveryFinishRetry(t *testing.T, st OutboxStore) {
	d := newDelivery("rep-1", "STMARYS/LIS", "pat-1")
	insertDeliveries(t, st, d)
	now := baseTime.Add(time.Minute)
	if !claimDelivery(t, st, d.ID, now, now.Add(time.Hour)) {
		t.Fatal("claim failed")
	}
	retry := now.Add(5 * time.Minute)
	finishDelivery(t, st, d.ID, outbox.Outcome{Status: outbox.Pending, NextAttemptAt: retry,
		LastError: "connection refused", At: now.Add(time.Second)})
	want := *d
	want.Attempts, want.NextAttemptAt, want.LastError = 1, retry, "connection refused"
	checkDelivery(t, readDelivery(t, st, d.ID), &want)
	checkDue(t, st, retry.Add(-time.Microsecond))
	checkDue(t, st, retry, d.ID) // the lease (an hour) ended with the attempt
	if !claimDelivery(t, st, d.ID, retry, retry.Add(time.Minute)) {
		t.Error("could not claim a retry when due")
	}
	if err := st.FinishDelivery(context.Background(), d.ID, outbox.Outcome{Status: outbox.Pending}); err == nil {
		t.Error("FinishDelivery(pending) without NextAttemptAt: no error")
	}
	if err := st.FinishDelivery(context.Background(), d.ID, outbox.Outcome{Status: "lost", At: now}); err == nil {
		t.Error("FinishDelivery with an unknown status: no error")
	}
	if err := st.FinishDelivery(context.Background(), d.ID+1000, outbox.Outcome{Status: outbox.Dead, At: now}); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("FinishDelivery of an unknown delivery: %v, want ErrNotFound", err)
	}
}

func testDeliveryFinishDead(t *testing.T, st OutboxStore) {
	d := newDelivery("rep-1", "STMARYS/LIS", "pat-1")
	insertDeliveries(t, st, d)
	now := baseTime.Add(time.Minute)
	if !claimDelivery(t, st, d.ID, now, now.Add(time.Minute)) {
		t.Fatal("claim failed")
	}
	finishDelivery(t, st, d.ID, outbox.Outcome{Status: outbox.Dead, LastError: "refused: AR",
		Response: "MSA|AR|ORU-rep-1", At: now})
	want := *d
	want.Status, want.Attempts, want.LastError, want.Response = outbox.Dead, 1, "refused: AR", "MSA|AR|ORU-rep-1"
	checkDelivery(t, readDelivery(t, st, d.ID), &want)
	checkDue(t, st, now.Add(time.Hour))
}

// testDeliveryReplay: a replayed dead letter is pending, due at once, with no attempts and no
// error; its payload and mapping version are replaced when a new payload is given, kept when not.
func testDeliveryReplay(t *testing.T, st OutboxStore) {
	ctx := context.Background()
	d, kept := newDelivery("rep-1", "STMARYS/LIS", "pat-1"), newDelivery("rep-2", "STJOHNS/LIS", "pat-2")
	insertDeliveries(t, st, d, kept)
	now := baseTime.Add(time.Minute)
	for _, x := range []*outbox.Delivery{d, kept} {
		if !claimDelivery(t, st, x.ID, now, now.Add(time.Minute)) {
			t.Fatal("claim failed")
		}
		finishDelivery(t, st, x.ID, outbox.Outcome{Status: outbox.Dead, LastError: "refused: AR", Response: "MSA|AR", At: now})
	}
	replayAt := now.Add(time.Hour)
	payload := []byte("MSH|^~\\&|FERRY|RAD|LIS|STMARYS|20260301110000||ORU^R01|ORU-rep-1|P|2.5.1\rOBX|1|TX|||again\r")
	if err := st.ReplayDelivery(ctx, d.ID, payload, "oru_r01@2+77aa01b2", replayAt); err != nil {
		t.Fatal(err)
	}
	if err := st.ReplayDelivery(ctx, kept.ID, nil, "ignored", replayAt); err != nil {
		t.Fatal(err)
	}
	want := *d
	want.Payload, want.MappingVersion, want.NextAttemptAt, want.Response = payload, "oru_r01@2+77aa01b2", replayAt, "MSA|AR"
	checkDelivery(t, readDelivery(t, st, d.ID), &want)
	want = *kept
	want.NextAttemptAt, want.Response = replayAt, "MSA|AR"
	checkDelivery(t, readDelivery(t, st, kept.ID), &want)
	checkDue(t, st, replayAt.Add(-time.Microsecond))
	checkDue(t, st, replayAt, d.ID, kept.ID)
}

func testDeliveryReplayOnlyDead(t *testing.T, st OutboxStore) {
	ctx := context.Background()
	pending, delivered := newDelivery("rep-1", "STMARYS/LIS", "pat-1"), newDelivery("rep-2", "STMARYS/LIS", "pat-2")
	insertDeliveries(t, st, pending, delivered)
	now := baseTime.Add(time.Minute)
	if !claimDelivery(t, st, delivered.ID, now, now.Add(time.Minute)) {
		t.Fatal("claim failed")
	}
	finishDelivery(t, st, delivered.ID, outbox.Outcome{Status: outbox.Delivered, Response: "MSA|AA", At: now})
	for _, id := range []int64{pending.ID, delivered.ID, delivered.ID + 1000} {
		if err := st.ReplayDelivery(ctx, id, []byte("new"), "v", now); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("ReplayDelivery(%d): %v, want ErrNotFound", id, err)
		}
	}
	if got := readDelivery(t, st, pending.ID); !bytes.Equal(got.Payload, pending.Payload) {
		t.Errorf("a refused replay changed the payload to %q", got.Payload)
	}
	if got := readDelivery(t, st, delivered.ID); got.Status != outbox.Delivered {
		t.Errorf("a refused replay changed the status to %s", got.Status)
	}
}

// testDeliveriesFiltered: the listing filters by status, report and destination, newest first,
// a page at a time.
func testDeliveriesFiltered(t *testing.T, st OutboxStore) {
	ctx := context.Background()
	var all []*outbox.Delivery
	for i := range 6 {
		d := newDelivery(fmt.Sprintf("rep-%d", i%3), []string{"STMARYS/LIS", "STJOHNS/LIS"}[i%2], fmt.Sprintf("pat-%d", i))
		d.ReportVersion = int64(1 + i/3)
		if i%3 == 2 {
			d.Status = outbox.Dead
		}
		all = append(all, d)
	}
	insertDeliveries(t, st, all...)
	// all: 0 rep-0 MARYS pending, 1 rep-1 JOHNS pending, 2 rep-2 MARYS dead,
	//      3 rep-0 JOHNS pending, 4 rep-1 MARYS pending, 5 rep-2 JOHNS dead
	for _, tc := range []struct {
		name string
		f    outbox.Filter
		want []int // indexes into all, newest first
	}{
		{"all", outbox.Filter{}, []int{5, 4, 3, 2, 1, 0}},
		{"dead", outbox.Filter{Status: outbox.Dead}, []int{5, 2}},
		{"pending", outbox.Filter{Status: outbox.Pending}, []int{4, 3, 1, 0}},
		{"delivered", outbox.Filter{Status: outbox.Delivered}, []int{}},
		{"report", outbox.Filter{ReportID: "rep-0"}, []int{3, 0}},
		{"destination", outbox.Filter{Destination: "STMARYS/LIS"}, []int{4, 2, 0}},
		{"all three", outbox.Filter{Status: outbox.Pending, ReportID: "rep-1", Destination: "STJOHNS/LIS"}, []int{1}},
		{"unknown report", outbox.Filter{ReportID: "rep-9"}, []int{}},
		{"limit", outbox.Filter{Limit: 2}, []int{5, 4}},
		{"offset", outbox.Filter{Limit: 2, Offset: 2}, []int{3, 2}},
		{"past the end", outbox.Filter{Limit: 2, Offset: 6}, []int{}},
		{"filtered page", outbox.Filter{Status: outbox.Pending, Limit: 3, Offset: 1}, []int{3, 1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			list, err := st.Deliveries(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			got, want := []int64{}, []int64{}
			for _, d := range list {
				got = append(got, d.ID)
			}
			for _, i := range tc.want {
				want = append(want, all[i].ID)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Deliveries(%+v) = %v, want %v", tc.f, got, want)
			}
			for _, d := range list {
				if len(d.Payload) == 0 {
					t.Errorf("delivery %d listed without its payload", d.ID)
				}
			}
		})
	}
}

// testDeliveryPayloadBytes: the payload comes back byte for byte, MLLP framing bytes, NUL and
// bytes that are not UTF-8 included; after a replay too.
func testDeliveryPayloadBytes(t *testing.T, st OutboxStore) {
	ctx := context.Background()
	payload := []byte("\x0bMSH|^~\\&|FERRY\x00|R\xe9SULTAT|\xff\xfe\r\x1c\x0d")
	d := newDelivery("rep-1", "STMARYS/LIS", "pat-1")
	d.Payload = payload
	d.Status = outbox.Dead
	insertDeliveries(t, st, d)
	if got := readDelivery(t, st, d.ID).Payload; !bytes.Equal(got, payload) {
		t.Errorf("payload = %q, want %q", got, payload)
	}
	replayed := append([]byte{0x00}, payload...)
	if err := st.ReplayDelivery(ctx, d.ID, replayed, "v", baseTime); err != nil {
		t.Fatal(err)
	}
	if got := readDelivery(t, st, d.ID).Payload; !bytes.Equal(got, replayed) {
		t.Errorf("replayed payload = %q, want %q", got, replayed)
	}
}
