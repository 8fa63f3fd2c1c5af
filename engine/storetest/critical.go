package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
	"github.com/ferryhealth/ferry/engine/critical"
)

// CriticalStore is what the critical results suite needs of a store: the rows and their
// acknowledgement (critical.Store, critical.AlertStore), resources (the report's version),
// who may see which patient (a physician acknowledges only for their own), users (a break-glass
// grant names one) and the audit trail (the acknowledgement is audited in its transaction).
type CriticalStore interface {
	engine.Store
	critical.Store
	critical.AlertStore
	access.PatientStore
	access.Store
	audit.Reader
}

// RunCritical runs the contract suite of critical results: the row written in a report's
// transaction (once per report), the acknowledgement (first kept, audited in its transaction,
// only by the patient's own physician), the counts the metrics read, and the alert's claim, retry
// and once-only answer. open is called once per subtest and must return a fresh, migrated, empty
// store that it closes in t.Cleanup; subtests run in parallel.
func RunCritical(t *testing.T, open func(t *testing.T) CriticalStore) {
	tests := []struct {
		name string
		run  func(t *testing.T, st CriticalStore)
	}{
		{"RowOncePerReport", testCriticalRow},
		{"StatsAndAlertClaims", testCriticalAlerts},
		{"Acknowledge", testCriticalAcknowledge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, open(t))
		})
	}
}

var criticalAt = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)

// putCritical stores report id's version with a critical result row, as engine.Reports does.
func putCritical(t *testing.T, st CriticalStore, id string, version int64, patient string, at time.Time) {
	t.Helper()
	ctx := context.Background()
	tx := begin(t, st)
	put(t, tx, newResource("DiagnosticReport", id, version, at, fmt.Sprintf(`,"status":"final","subject":{"reference":"Patient/%s"}`, patient), nil))
	if err := tx.PutCriticalResult(ctx, &engine.CriticalResult{ReportID: id, Version: version, PatientID: patient,
		OrderID: "sr-" + id, ReportedAt: at}); err != nil {
		t.Fatalf("PutCriticalResult(%s v%d): %v", id, version, err)
	}
	commitTx(t, tx)
}

func testCriticalRow(t *testing.T, st CriticalStore) {
	ctx := context.Background()
	if _, err := st.CriticalResult(ctx, "r1"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("CriticalResult of no row: %v, want ErrNotFound", err)
	}
	putCritical(t, st, "r1", 1, "p1", criticalAt)
	putCritical(t, st, "r1", 2, "p1", criticalAt.Add(time.Hour)) // a later critical version keeps the row
	got, err := st.CriticalResult(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	want := engine.CriticalResult{ReportID: "r1", Version: 1, PatientID: "p1", OrderID: "sr-r1", ReportedAt: criticalAt}
	if *got != want {
		t.Errorf("CriticalResult = %+v, want %+v (the first critical version's)", *got, want)
	}
	// A row written in a transaction rolled back is not kept.
	tx := begin(t, st)
	if err := tx.PutCriticalResult(ctx, &engine.CriticalResult{ReportID: "r2", Version: 1, PatientID: "p1", OrderID: "sr", ReportedAt: criticalAt}); err != nil {
		t.Fatal(err)
	}
	tx.Rollback()
	if _, err := st.CriticalResult(ctx, "r2"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("CriticalResult after a rollback: %v, want ErrNotFound", err)
	}
	tx = begin(t, st)
	if err := tx.PutCriticalResult(ctx, &engine.CriticalResult{ReportID: "r3"}); err == nil {
		t.Error("PutCriticalResult without version, patient, order or time: no error")
	}
}

func testCriticalAlerts(t *testing.T, st CriticalStore) {
	ctx := context.Background()
	putCritical(t, st, "old", 1, "p1", criticalAt)
	putCritical(t, st, "older", 1, "p1", criticalAt.Add(-time.Minute))
	putCritical(t, st, "new", 1, "p1", criticalAt.Add(2*time.Hour))
	now := criticalAt.Add(2*time.Hour + time.Minute)
	within := time.Hour
	stats, err := st.CriticalStats(ctx, now.Add(-within))
	if want := (engine.CriticalStats{Unacknowledged: 3, Overdue: 2, Oldest: criticalAt.Add(-time.Minute)}); err != nil || stats != want {
		t.Fatalf("CriticalStats = %+v, %v; want %+v", stats, err, want)
	}
	due := func(at time.Time) []string {
		t.Helper()
		rs, err := st.DueCriticalAlerts(ctx, at.Add(-within), at, 10)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range rs {
			ids = append(ids, r.ReportID)
		}
		return ids
	}
	if got := due(now); fmt.Sprint(got) != "[older old]" {
		t.Fatalf("due alerts %v, want [older old] (oldest first; new is within its hour)", got)
	}
	claim := func(id string, at time.Time) bool {
		t.Helper()
		ok, err := st.ClaimCriticalAlert(ctx, id, at, at.Add(2*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !claim("old", now) || claim("old", now.Add(time.Minute)) {
		t.Fatal("claims of old: want the first only (the second within the lease)")
	}
	if got := due(now.Add(time.Minute)); fmt.Sprint(got) != "[older]" {
		t.Fatalf("due alerts while old is claimed: %v, want [older]", got)
	}
	// The attempt failed: tried again from retry on, by any node.
	retry := now.Add(10 * time.Minute)
	if err := st.FinishCriticalAlert(ctx, "old", time.Time{}, retry); err != nil {
		t.Fatal(err)
	}
	if got := due(retry.Add(-time.Second)); fmt.Sprint(got) != "[older]" {
		t.Fatalf("due alerts before the retry: %v, want [older]", got)
	}
	if !claim("old", retry) {
		t.Fatal("claim at the retry: refused")
	}
	if err := st.FinishCriticalAlert(ctx, "old", retry.Add(time.Second), time.Time{}); err != nil {
		t.Fatal(err)
	}
	got, err := st.CriticalResult(ctx, "old")
	if err != nil || got.NotifyAttempts != 2 || !got.NotifiedAt.Equal(retry.Add(time.Second)) {
		t.Fatalf("old after its answer: %+v, %v; want 2 attempts, notified", got, err)
	}
	// Answered: never sent again, though still unacknowledged.
	if got := due(retry.Add(time.Hour)); fmt.Sprint(got) != "[older new]" {
		t.Fatalf("due alerts later: %v, want [older new]", got)
	}
	if claim("old", retry.Add(time.Hour)) {
		t.Error("an answered alert was claimed again")
	}
	// Acknowledged: neither due nor counted.
	tx := begin(t, st)
	ack := tx.(critical.Tx)
	if ok, err := ack.AcknowledgeCritical(ctx, "older", "dr.lee", 1, now); err != nil || !ok {
		t.Fatalf("AcknowledgeCritical: %v, %v", ok, err)
	}
	commitTx(t, tx)
	if got := due(retry.Add(time.Hour)); fmt.Sprint(got) != "[new]" {
		t.Errorf("due alerts after older's acknowledgement: %v, want [new]", got)
	}
	if claim("older", retry.Add(time.Hour)) {
		t.Error("an acknowledged result's alert was claimed")
	}
	stats, err = st.CriticalStats(ctx, now.Add(-within))
	if want := (engine.CriticalStats{Unacknowledged: 2, Overdue: 1, Oldest: criticalAt}); err != nil || stats != want {
		t.Errorf("CriticalStats after an acknowledgement = %+v, %v; want %+v", stats, err, want)
	}
	if stats, err := st.CriticalStats(ctx, now); err != nil || stats.Overdue != 2 {
		t.Errorf("CriticalStats = %+v, %v; want 2 overdue", stats, err)
	}
}

func testCriticalAcknowledge(t *testing.T, st CriticalStore) {
	ctx := context.Background()
	people := &access.Service{Store: st}
	for _, u := range []*access.User{
		{Name: "dr.own", Role: access.RolePhysician, Practitioners: []access.Practitioner{{System: "urn:npi", Value: "OWN1"}}},
		{Name: "dr.other", Role: access.RolePhysician, Practitioners: []access.Practitioner{{System: "urn:npi", Value: "OTHER1"}}},
		{Name: "dr.glass", Role: access.RolePhysician, Practitioners: []access.Practitioner{{System: "urn:npi", Value: "GLASS1"}}},
		{Name: "rad", Role: access.RoleRadiologist},
	} {
		if err := people.AddUser(ctx, u, ""); err != nil {
			t.Fatal(err)
		}
	}
	ident := func(name string) *access.Identity {
		u, err := st.User(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return &access.Identity{User: u.Name, Role: u.Role, Practitioners: u.Practitioners, Facilities: u.Facilities}
	}
	tx := begin(t, st)
	if err := tx.AddPatientAccess(ctx, []engine.PatientAccess{{PatientID: "p1", Facility: "STMARYS", System: "urn:npi", Value: "OWN1"}}); err != nil {
		t.Fatal(err)
	}
	commitTx(t, tx)
	putCritical(t, st, "r1", 1, "p1", criticalAt)
	// The version read is the report's current one.
	tx = begin(t, st)
	put(t, tx, newResource("DiagnosticReport", "r1", 2, criticalAt.Add(time.Minute), `,"status":"amended","subject":{"reference":"Patient/p1"}`, nil))
	commitTx(t, tx)
	patients := &access.Patients{Store: st, Resources: st}
	if _, err := patients.BreakGlass(ctx, ident("dr.glass"), "p1", "covering the ward tonight"); err != nil {
		t.Fatal(err)
	}
	ackAt := criticalAt.Add(30 * time.Minute)
	svc := &critical.Service{Store: st, Patients: patients, Reports: st, Audit: &audit.Recorder{Begin: st.Begin},
		Now: func() time.Time { return ackAt }}

	for _, c := range []struct {
		who, report string
		want        error
	}{
		{"rad", "r1", critical.ErrNotPhysician},
		{"dr.other", "r1", engine.ErrNotFound},
		{"dr.glass", "r1", critical.ErrNotTheirPatient},
		{"dr.own", "no-such-report", engine.ErrNotFound},
	} {
		if err := svc.Acknowledge(ctx, ident(c.who), c.report, "192.0.2.7"); !errors.Is(err, c.want) {
			t.Errorf("Acknowledge by %s of %s: %v, want %v", c.who, c.report, err, c.want)
		}
	}
	if _, _, ok, err := svc.Acknowledgement(ctx, "r1"); ok || err != nil {
		t.Fatalf("Acknowledgement before any: ok %v, %v", ok, err)
	}
	if err := svc.Acknowledge(ctx, ident("dr.own"), "r1", "192.0.2.7"); err != nil {
		t.Fatalf("Acknowledge by the patient's own physician: %v", err)
	}
	svc.Now = func() time.Time { return ackAt.Add(time.Hour) }
	if err := svc.Acknowledge(ctx, ident("dr.own"), "r1", "192.0.2.7"); err != nil {
		t.Fatalf("Acknowledge again: %v (want nil: the first is kept)", err)
	}
	by, at, ok, err := svc.Acknowledgement(ctx, "r1")
	if err != nil || !ok || by != "dr.own" || !at.Equal(ackAt) {
		t.Errorf("Acknowledgement = %s, %v, %v, %v; want dr.own at %v", by, at, ok, err, ackAt)
	}
	if r, err := st.CriticalResult(ctx, "r1"); err != nil || r.AcknowledgedVersion != 2 {
		t.Errorf("acknowledged version: %+v, %v; want 2 (the version the physician had)", r, err)
	}
	if _, _, ok, err := svc.Acknowledgement(ctx, "not-critical"); ok || err != nil {
		t.Errorf("Acknowledgement of a report with no critical result: ok %v, %v", ok, err)
	}
	// The audit trail: each refusal, and the acknowledgement once (the repeat changed nothing).
	evs, err := st.AuditEvents(ctx, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		if e.Action == audit.ActionUpdate {
			got = append(got, fmt.Sprintf("%s:%s:%s:%s", e.Agent, e.Outcome, e.Patient, e.Detail))
		}
	}
	want := "[rad:4::not a physician dr.other:4:Patient/p1:not among the physician's patients dr.glass:4:Patient/p1:break-glass access only dr.own:4::no critical result dr.own:0:Patient/p1:version 2 read]"
	if fmt.Sprint(got) != want {
		t.Errorf("audit trail\n%v\nwant\n%s", got, want)
	}
}
