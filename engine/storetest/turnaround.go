package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/turnaround"
)

// TurnaroundStore is what the turnaround suite needs of a store: the reader, and transactions,
// which mark milestones.
type TurnaroundStore interface {
	turnaround.Reader
	Begin(ctx context.Context) (engine.Tx, error)
}

// RunTurnaround runs the contract suite of turnaround.Reader and Tx.MarkTurnaround. open is
// called once per subtest and must return a fresh, migrated, empty store that it closes (and
// removes) in t.Cleanup; subtests run in parallel.
func RunTurnaround(t *testing.T, open func(t *testing.T) TurnaroundStore) {
	tests := []struct {
		name string
		run  func(t *testing.T, st TurnaroundStore)
	}{
		{"MarkCreatesAndReadsBack", testTurnaroundMarkCreates},
		{"FirstTimeKept", testTurnaroundFirstTimeKept},
		{"FinalReachesMissingPreliminary", testTurnaroundFinalReachesPreliminary},
		{"RolledBackMarksNothing", testTurnaroundRolledBack},
		{"InvalidRejected", testTurnaroundInvalid},
		{"NotFound", testTurnaroundNotFound},
		{"OverdueAgreesWithLate", testTurnaroundOverdue},
		{"OverdueOrderAndLimit", testTurnaroundOverdueLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, open(t))
		})
	}
}

// turnaroundMark is one MarkTurnaround call.
type turnaroundMark struct {
	srID, priority string
	stage          turnaround.Stage
	at             time.Time
}

// markTurnaround makes marks in one transaction, commits it, and returns the row the last mark
// returned.
func markTurnaround(t *testing.T, st TurnaroundStore, marks ...turnaroundMark) *turnaround.Clocks {
	t.Helper()
	ctx := context.Background()
	tx, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var last *turnaround.Clocks
	for _, m := range marks {
		if last, err = tx.MarkTurnaround(ctx, m.srID, m.priority, m.stage, m.at); err != nil {
			tx.Rollback()
			t.Fatalf("MarkTurnaround(%s, %s, %s): %v", m.srID, m.priority, m.stage, err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return last
}

func readTurnaround(t *testing.T, st TurnaroundStore, srID string) *turnaround.Clocks {
	t.Helper()
	ta, err := st.Turnaround(context.Background(), srID)
	if err != nil {
		t.Fatalf("Turnaround(%s): %v", srID, err)
	}
	return ta
}

// checkTurnaround compares got with want, its times as instants that must come back in UTC (the
// zero time for milestones not reached).
func checkTurnaround(t *testing.T, got, want *turnaround.Clocks) {
	t.Helper()
	g, w := *got, *want
	checkInstants(t, "turnaround of "+want.ServiceRequestID, []instant{
		{"OrderedAt", &g.OrderedAt, &w.OrderedAt},
		{"StudyAt", &g.StudyAt, &w.StudyAt},
		{"PreliminaryAt", &g.PreliminaryAt, &w.PreliminaryAt},
		{"FinalAt", &g.FinalAt, &w.FinalAt},
		{"ClosedAt", &g.ClosedAt, &w.ClosedAt},
	})
	if !reflect.DeepEqual(g, w) {
		t.Errorf("Turnaround = %+v,\nwant %+v", g, w)
	}
}

// testTurnaroundMarkCreates: the first mark creates the row, which MarkTurnaround returns and
// Turnaround reads back; a time given in another zone comes back as the same instant in UTC, and
// times keep their milliseconds.
func testTurnaroundMarkCreates(t *testing.T, st TurnaroundStore) {
	at := baseTime.Add(123 * time.Millisecond).In(time.FixedZone("EST", -5*3600))
	want := &turnaround.Clocks{ServiceRequestID: "sr-1", Priority: "stat", OrderedAt: at}
	checkTurnaround(t, markTurnaround(t, st, turnaroundMark{"sr-1", "stat", turnaround.Ordered, at}), want)
	checkTurnaround(t, readTurnaround(t, st, "sr-1"), want)
}

// testTurnaroundFirstTimeKept: a milestone reached again keeps its first time; each mark sees
// the transaction's earlier ones, and the priority is the latest mark's.
func testTurnaroundFirstTimeKept(t *testing.T, st TurnaroundStore) {
	ordered, study, prelim := baseTime, baseTime.Add(2*time.Hour), baseTime.Add(2*time.Hour+20*time.Minute)
	got := markTurnaround(t, st,
		turnaroundMark{"sr-1", "routine", turnaround.Ordered, ordered},
		turnaroundMark{"sr-1", "routine", turnaround.Ordered, ordered.Add(time.Minute)}, // an NW repeated
		turnaroundMark{"sr-1", "stat", turnaround.Study, study})
	want := &turnaround.Clocks{ServiceRequestID: "sr-1", Priority: "stat", OrderedAt: ordered, StudyAt: study}
	checkTurnaround(t, got, want)

	markTurnaround(t, st, turnaroundMark{"sr-1", "stat", turnaround.Study, study.Add(10 * time.Minute)}, // derived again
		turnaroundMark{"sr-1", "stat", turnaround.Preliminary, prelim})
	got = markTurnaround(t, st, turnaroundMark{"sr-1", "stat", turnaround.Preliminary, prelim.Add(5 * time.Minute)})
	want.PreliminaryAt = prelim
	checkTurnaround(t, got, want)
	checkTurnaround(t, readTurnaround(t, st, "sr-1"), want)
}

// testTurnaroundFinalReachesPreliminary: a final with no preliminary before it reaches both; a
// final after a preliminary keeps the preliminary's time; an amendment changes neither.
func testTurnaroundFinalReachesPreliminary(t *testing.T, st TurnaroundStore) {
	study := baseTime
	direct := study.Add(3 * time.Hour)
	checkTurnaround(t, markTurnaround(t, st,
		turnaroundMark{"direct", "routine", turnaround.Study, study},
		turnaroundMark{"direct", "routine", turnaround.Final, direct}),
		&turnaround.Clocks{ServiceRequestID: "direct", Priority: "routine", StudyAt: study, PreliminaryAt: direct, FinalAt: direct})

	prelim, final := study.Add(20*time.Minute), study.Add(2*time.Hour)
	markTurnaround(t, st,
		turnaroundMark{"stepped", "stat", turnaround.Study, study},
		turnaroundMark{"stepped", "stat", turnaround.Preliminary, prelim},
		turnaroundMark{"stepped", "stat", turnaround.Final, final})
	markTurnaround(t, st, turnaroundMark{"stepped", "stat", turnaround.Final, final.Add(time.Hour)}) // amended
	checkTurnaround(t, readTurnaround(t, st, "stepped"),
		&turnaround.Clocks{ServiceRequestID: "stepped", Priority: "stat", StudyAt: study, PreliminaryAt: prelim, FinalAt: final})
}

func testTurnaroundRolledBack(t *testing.T, st TurnaroundStore) {
	ctx := context.Background()
	tx, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.MarkTurnaround(ctx, "sr-1", "stat", turnaround.Ordered, baseTime); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Turnaround(ctx, "sr-1"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Turnaround after a rolled back mark: %v, want ErrNotFound", err)
	}
}

// testTurnaroundInvalid: turnaround.ValidateMark's refusals come back from MarkTurnaround, store
// nothing and leave the transaction usable.
func testTurnaroundInvalid(t *testing.T, st TurnaroundStore) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		m    turnaroundMark
	}{
		{"NoOrder", turnaroundMark{"", "stat", turnaround.Ordered, baseTime}},
		{"UnknownPriority", turnaroundMark{"sr-1", "whenever", turnaround.Ordered, baseTime}},
		{"NoPriority", turnaroundMark{"sr-1", "", turnaround.Ordered, baseTime}},
		{"UnknownStage", turnaroundMark{"sr-1", "stat", "scheduled", baseTime}},
		{"NoTime", turnaroundMark{"sr-1", "stat", turnaround.Study, time.Time{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx, err := st.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if _, err := tx.MarkTurnaround(ctx, tc.m.srID, tc.m.priority, tc.m.stage, tc.m.at); err == nil {
				t.Fatal("MarkTurnaround: nil error, want a validation error")
			}
			if _, err := tx.MarkTurnaround(ctx, "sr-2", "stat", turnaround.Ordered, baseTime); err != nil {
				t.Fatalf("the transaction is not usable after a refused mark: %v", err)
			}
		})
	}
	if _, err := st.Turnaround(ctx, "sr-1"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Turnaround after refused marks: %v, want ErrNotFound", err)
	}
}

func testTurnaroundNotFound(t *testing.T, st TurnaroundStore) {
	if _, err := st.Turnaround(context.Background(), "no-such-order"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Turnaround(no-such-order): %v, want ErrNotFound", err)
	}
}

// testTurnaroundOverdue: at several times, under the default SLAs and under SLAs that leave
// priorities or stages out, Overdue returns exactly the orders SLAs.Late finds late — due times
// strictly passed, nothing before the study, nothing once the final is in.
func testTurnaroundOverdue(t *testing.T, st TurnaroundStore) {
	now := baseTime.Add(48 * time.Hour)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	rows := []*turnaround.Clocks{
		{ServiceRequestID: "stat-prelim-late", Priority: "stat", OrderedAt: ago(3 * time.Hour), StudyAt: ago(31 * time.Minute)},
		{ServiceRequestID: "stat-prelim-due", Priority: "stat", StudyAt: ago(30 * time.Minute)}, // due now: not yet late
		{ServiceRequestID: "stat-in-time", Priority: "stat", StudyAt: ago(29 * time.Minute)},
		{ServiceRequestID: "stat-final-late", Priority: "stat", StudyAt: ago(5 * time.Hour), PreliminaryAt: ago(4*time.Hour + 50*time.Minute)},
		{ServiceRequestID: "stat-both-late", Priority: "stat", StudyAt: ago(6 * time.Hour)},
		{ServiceRequestID: "stat-done", Priority: "stat", StudyAt: ago(10 * time.Hour), PreliminaryAt: ago(9 * time.Hour), FinalAt: ago(8 * time.Hour)},
		{ServiceRequestID: "stat-no-study", Priority: "stat", OrderedAt: ago(40 * time.Hour)},
		{ServiceRequestID: "asap-prelim-late", Priority: "asap", StudyAt: ago(90 * time.Minute)},
		{ServiceRequestID: "urgent-in-time", Priority: "urgent", StudyAt: ago(90 * time.Minute)},
		{ServiceRequestID: "urgent-final-late", Priority: "urgent", StudyAt: ago(13 * time.Hour), PreliminaryAt: ago(12 * time.Hour)},
		{ServiceRequestID: "routine-in-time", Priority: "routine", StudyAt: ago(23 * time.Hour)},
		{ServiceRequestID: "routine-final-late", Priority: "routine", StudyAt: ago(25 * time.Hour)},
		{ServiceRequestID: "routine-direct-final", Priority: "routine", StudyAt: ago(30 * time.Hour), PreliminaryAt: ago(2 * time.Hour), FinalAt: ago(2 * time.Hour)},
		// Cancelled after its study, and a report cancelled after the preliminary: never late.
		{ServiceRequestID: "stat-cancelled", Priority: "stat", StudyAt: ago(6 * time.Hour), ClosedAt: ago(5 * time.Hour)},
		{ServiceRequestID: "urgent-report-cancelled", Priority: "urgent", StudyAt: ago(13 * time.Hour), PreliminaryAt: ago(12 * time.Hour), ClosedAt: ago(12 * time.Hour)},
	}
	var marks []turnaroundMark
	for _, r := range rows {
		for _, s := range []turnaround.Stage{turnaround.Ordered, turnaround.Study, turnaround.Preliminary, turnaround.Final, turnaround.Closed} {
			if at := r.At(s); !at.IsZero() {
				marks = append(marks, turnaroundMark{r.ServiceRequestID, r.Priority, s, at})
			}
		}
	}
	markTurnaround(t, st, marks...)

	defaults := turnaround.DefaultSLAs()
	statOnly := turnaround.SLAs{"stat": {Preliminary: 30 * time.Minute}}                   // no final SLA
	finalOnly := turnaround.SLAs{"stat": {Final: time.Hour}, "urgent": {Final: time.Hour}} // no preliminary SLA
	for _, tc := range []struct {
		name string
		sla  turnaround.SLAs
		now  time.Time
		want []string // oldest study first
	}{
		{"Defaults", defaults, now, []string{"routine-final-late", "urgent-final-late", "stat-both-late", "stat-final-late", "asap-prelim-late", "stat-prelim-late"}},
		{"DefaultsLater", defaults, now.Add(time.Millisecond), []string{"routine-final-late", "urgent-final-late", "stat-both-late", "stat-final-late", "asap-prelim-late", "stat-prelim-late", "stat-prelim-due"}},
		{"DefaultsEarlier", defaults, now.Add(-5 * time.Hour), []string{"stat-both-late"}},
		{"StatPreliminaryOnly", statOnly, now, []string{"stat-both-late", "stat-prelim-late"}},
		{"FinalOnly", finalOnly, now, []string{"urgent-final-late", "stat-both-late", "stat-final-late", "urgent-in-time"}},
		{"None", turnaround.SLAs{}, now, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := st.Overdue(context.Background(), tc.now, tc.sla, 0)
			if err != nil {
				t.Fatalf("Overdue: %v", err)
			}
			ids := []string{}
			for _, r := range got {
				ids = append(ids, r.ServiceRequestID)
				if len(tc.sla.Late(r, tc.now)) == 0 {
					t.Errorf("Overdue returned %s, which SLAs.Late finds in time", r.ServiceRequestID)
				}
			}
			if !reflect.DeepEqual(ids, tc.want) {
				t.Errorf("Overdue = %v,\nwant %v", ids, tc.want)
			}
			var late []string
			for _, r := range rows {
				if len(tc.sla.Late(r, tc.now)) > 0 {
					late = append(late, r.ServiceRequestID)
				}
			}
			if len(late) != len(tc.want) {
				t.Errorf("SLAs.Late finds %d late (%v), the store %d", len(late), late, len(ids))
			}
		})
	}
	for _, r := range rows {
		checkTurnaround(t, readTurnaround(t, st, r.ServiceRequestID), r)
	}
}

// testTurnaroundOverdueLimit: Overdue returns at most limit orders, the oldest studies first,
// ties by ServiceRequestID.
func testTurnaroundOverdueLimit(t *testing.T, st TurnaroundStore) {
	var marks []turnaroundMark
	for i := range 12 {
		at := baseTime.Add(time.Duration(i/2) * time.Minute) // two orders a study time
		marks = append(marks, turnaroundMark{fmt.Sprintf("sr-%02d", 11-i), "routine", turnaround.Study, at})
	}
	markTurnaround(t, st, marks...)
	got, err := st.Overdue(context.Background(), baseTime.Add(72*time.Hour), turnaround.DefaultSLAs(), 5)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range got {
		ids = append(ids, r.ServiceRequestID)
	}
	if want := []string{"sr-10", "sr-11", "sr-08", "sr-09", "sr-06"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("Overdue(limit 5) = %v, want %v", ids, want)
	}
}
