package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/turnaround"
	"github.com/ferryhealth/ferry/fhir"
)

// turnaroundClock is the fake time of the turnaround test, read by the processor, the deriver
// and the report intake.
type turnaroundClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *turnaroundClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *turnaroundClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// TestTurnaroundClocks: a stat order is received, its study arrives two hours later and is
// published, the preliminary comes 40 minutes after the study and the final 5 hours after it.
// Each milestone is recorded at its first time, Overdue lists the order exactly while a
// milestone is past the stat SLA (30 minutes, 4 hours from the study), and the histograms hold
// each interval once. A routine order whose final comes without a preliminary reaches both.
func TestTurnaroundClocks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ordered := time.Date(2026, 11, 27, 13, 30, 0, 0, time.UTC)
	clock := &turnaroundClock{t: ordered}
	h := newOrderHarness(t)
	h.in.Processor.Now = clock.now
	stat := strings.Replace(orc("NW", "PLT1", "SC"), "^^R|", "^^S|", 1) // ORC-7.6 S: stat
	h.mustAccept(mshORM, pidFor("000123", "DOE^JANE"), stat, obr("PLT1", "ACCT1"))
	h.mustAccept(mshORM, pidFor("000123", "DOE^JANE"), orc("NW", "PLT2", "SC"), obr("PLT2", "ACCT2"))
	order := h.search("ServiceRequest", eq("identifier", "PLT1"))[0]
	routine := h.search("ServiceRequest", eq("identifier", "PLT2"))[0]["id"].(string)
	if order["priority"] != "stat" {
		t.Fatalf("the order's priority is %v, want stat", order["priority"])
	}
	srID := order["id"].(string)
	clocks := func(id string) *turnaround.Clocks {
		t.Helper()
		ta, err := h.st.Turnaround(ctx, id)
		if err != nil {
			t.Fatalf("Turnaround(%s): %v", id, err)
		}
		return ta
	}
	if got := clocks(srID); got.Priority != "stat" || !got.OrderedAt.Equal(ordered) || !got.StudyAt.IsZero() {
		t.Errorf("after the order: %+v, want stat ordered at %s", got, ordered)
	}
	// The same order again is not a new order: its clock keeps the first time.
	clock.set(ordered.Add(time.Minute))
	h.mustAccept(mshORM, pidFor("000123", "DOE^JANE"), stat, obr("PLT1", "ACCT1"))
	if got := clocks(srID); !got.OrderedAt.Equal(ordered) {
		t.Errorf("a repeated NW moved the order's time to %s", got.OrderedAt)
	}

	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	metrics := turnaround.NewMetrics(reg)
	deriver := &engine.StudyDeriver{Store: h.st, Validator: v, Settle: time.Second, Zone: time.UTC,
		Now: clock.now, ObserveTurnaround: metrics.Observe}
	intake := &engine.Intake{Store: h.st, Dir: t.TempDir(), Linker: &engine.Linker{Resources: h.st, Links: h.st, Now: clock.now}}
	storeStudy := func(uid, accession string) {
		t.Helper()
		tmp := filepath.Join(intake.Dir, "incoming")
		if err := os.WriteFile(tmp, []byte("DICM"), 0o600); err != nil {
			t.Fatal(err)
		}
		inst := &engine.Instance{
			Header: dicom.Header{
				StudyInstanceUID:  uid,
				SeriesInstanceUID: uid + ".1",
				SOPInstanceUID:    uid + ".1.1",
				SOPClassUID:       "1.2.840.10008.5.1.4.1.1.2",
				Modality:          "CT",
				AccessionNumber:   accession,
				PatientID:         "000123",
				PatientName:       "DOE^JANE",
				PatientBirthDate:  "19800102",
				PatientSex:        "F",
				StudyDate:         "20261127",
				StudyTime:         "153000",
				InstanceNumber:    "1",
				Size:              4,
			},
			ReceivedAt: clock.now(),
		}
		if _, err := intake.StoreInstance(ctx, inst, tmp); err != nil {
			t.Fatal(err)
		}
	}
	derive := func() {
		t.Helper()
		if n, err := deriver.DeriveDue(ctx); err != nil || n != 1 {
			t.Fatalf("DeriveDue = %d, %v; want 1", n, err)
		}
	}
	overdue := func(at time.Time) map[string][]turnaround.Stage {
		t.Helper()
		got, err := h.st.Overdue(ctx, at, turnaround.DefaultSLAs(), 100)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]turnaround.Stage{}
		for _, ta := range got {
			for _, l := range turnaround.DefaultSLAs().Late(ta, at) {
				out[ta.ServiceRequestID] = append(out[ta.ServiceRequestID], l.Stage)
			}
		}
		return out
	}

	// The scan, two hours after the order; published once quiet.
	clock.set(ordered.Add(2 * time.Hour))
	storeStudy("1.2.826.0.1.3680043.10.91", "ACCT1")
	study := ordered.Add(2*time.Hour + 2*time.Second)
	clock.set(study)
	derive()
	if got := clocks(srID); !got.StudyAt.Equal(study) || !got.OrderedAt.Equal(ordered) {
		t.Errorf("after the study: %+v, want the study at %s", got, study)
	}
	if got := overdue(study.Add(30 * time.Minute)); len(got) != 0 {
		t.Errorf("overdue 30 minutes after the study: %v, want none (due, not late)", got)
	}
	if got, want := overdue(study.Add(31*time.Minute)), map[string][]turnaround.Stage{srID: {turnaround.Preliminary}}; !reflect.DeepEqual(got, want) {
		t.Errorf("overdue 31 minutes after the study: %v, want %v", got, want)
	}

	rs := &engine.Reports{Store: h.st, Validator: v, Now: clock.now, ObserveTurnaround: metrics.Observe}
	submit := func(at time.Time, status, accession string) {
		t.Helper()
		clock.set(at)
		if _, _, err := rs.Submit(ctx, reportJSON(status, accession, "No acute finding."), ""); err != nil {
			t.Fatalf("%s report: %v", status, err)
		}
	}
	prelim := study.Add(40 * time.Minute)
	submit(prelim, "preliminary", "ACCT1")
	if got := overdue(study.Add(4 * time.Hour)); len(got) != 0 {
		t.Errorf("overdue 4 hours after the study, with the preliminary in: %v, want none", got)
	}
	if got, want := overdue(study.Add(4*time.Hour+time.Second)), map[string][]turnaround.Stage{srID: {turnaround.Final}}; !reflect.DeepEqual(got, want) {
		t.Errorf("overdue past 4 hours: %v, want %v", got, want)
	}
	final := study.Add(5 * time.Hour)
	submit(final, "final", "ACCT1")
	submit(final.Add(time.Hour), "amended", "ACCT1") // an amendment is not a new final
	want := &turnaround.Clocks{ServiceRequestID: srID, Priority: "stat", OrderedAt: ordered, StudyAt: study, PreliminaryAt: prelim, FinalAt: final}
	if got := clocks(srID); !reflect.DeepEqual(got, want) {
		t.Errorf("after the final:\n%+v, want\n%+v", got, want)
	}
	if got := overdue(final.Add(24 * time.Hour)); len(got) != 0 {
		t.Errorf("overdue after the final: %v, want none", got)
	}

	// The routine order: study, then a final with no preliminary before it.
	routineStudy := final.Add(time.Hour + 2*time.Second)
	clock.set(routineStudy.Add(-2 * time.Second))
	storeStudy("1.2.826.0.1.3680043.10.92", "ACCT2")
	clock.set(routineStudy)
	derive()
	if got, want := overdue(routineStudy.Add(25*time.Hour)), map[string][]turnaround.Stage{routine: {turnaround.Final}}; !reflect.DeepEqual(got, want) {
		t.Errorf("the routine order a day after its study: %v, want %v", got, want)
	}
	routineFinal := routineStudy.Add(26 * time.Hour)
	submit(routineFinal, "final", "ACCT2")
	if got := clocks(routine); !got.PreliminaryAt.Equal(routineFinal) || !got.FinalAt.Equal(routineFinal) || got.Priority != "routine" {
		t.Errorf("a final without a preliminary: %+v, want both at %s", got, routineFinal)
	}

	// A third stat order, scanned, then cancelled while its preliminary is late: its clocks
	// stop, and it leaves the overdue list.
	h.mustAccept(mshORM, pidFor("000123", "DOE^JANE"), strings.Replace(orc("NW", "PLT3", "SC"), "^^R|", "^^S|", 1), obr("PLT3", "ACCT3"))
	cancelled := h.search("ServiceRequest", eq("identifier", "PLT3"))[0]["id"].(string)
	clock.set(routineFinal.Add(time.Hour))
	storeStudy("1.2.826.0.1.3680043.10.93", "ACCT3")
	cancelStudy := routineFinal.Add(time.Hour + 2*time.Second)
	clock.set(cancelStudy)
	derive()
	if got := overdue(cancelStudy.Add(time.Hour)); len(got[cancelled]) != 1 {
		t.Errorf("the third order an hour after its study: %v, want its preliminary late", got)
	}
	cancelAt := cancelStudy.Add(time.Hour)
	clock.set(cancelAt)
	h.mustAccept(mshORM, pidFor("000123", "DOE^JANE"), orc("CA", "PLT3", "CA"), obr("PLT3", "ACCT3"))
	if got := clocks(cancelled); !got.ClosedAt.Equal(cancelAt) || !got.PreliminaryAt.IsZero() {
		t.Errorf("after the cancel: %+v, want closed at %s", got, cancelAt)
	}
	if got := overdue(cancelAt.Add(48 * time.Hour)); len(got) != 0 {
		t.Errorf("overdue after the cancel: %v, want none", got)
	}

	statToStudy := (study.Sub(ordered) + cancelStudy.Sub(routineFinal)).Seconds() / 2
	wantSeconds := map[[2]string][]float64{
		// Two stat orders reached their study (histogramSums gives their mean, twice).
		{"stat", "order_to_study"}:          {statToStudy, statToStudy},
		{"stat", "study_to_preliminary"}:    {prelim.Sub(study).Seconds()},
		{"stat", "study_to_final"}:          {final.Sub(study).Seconds()},
		{"routine", "order_to_study"}:       {routineStudy.Sub(ordered).Seconds()},
		{"routine", "study_to_preliminary"}: {routineFinal.Sub(routineStudy).Seconds()},
		{"routine", "study_to_final"}:       {routineFinal.Sub(routineStudy).Seconds()},
	}
	if got := histogramSums(t, reg, "ferry_turnaround_seconds"); !reflect.DeepEqual(got, wantSeconds) {
		t.Errorf("ferry_turnaround_seconds (count and sum by priority, interval):\n%v, want\n%v", got, wantSeconds)
	}
}

// histogramSums returns, per (priority, interval), a histogram's sum repeated count times: one
// value when it was observed once.
func histogramSums(t *testing.T, reg *prometheus.Registry, name string) map[[2]string][]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[[2]string][]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			h := m.GetHistogram()
			key := [2]string{labels["priority"], labels["interval"]}
			for range h.GetSampleCount() {
				out[key] = append(out[key], h.GetSampleSum()/float64(h.GetSampleCount()))
			}
		}
	}
	return out
}

// TestTurnaroundMetricsObserve: an interval is observed only when both its milestones are there
// and in order, labelled with a bounded priority; a nil TurnaroundMetrics observes nothing.
func TestTurnaroundMetricsObserve(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	reg := prometheus.NewRegistry()
	m := turnaround.NewMetrics(reg)
	m.Observe(&turnaround.Clocks{Priority: "urgent", OrderedAt: at, StudyAt: at.Add(time.Hour)}, turnaround.Study)
	m.Observe(&turnaround.Clocks{Priority: "urgent", StudyAt: at.Add(time.Hour)}, turnaround.Study)                                   // no order time
	m.Observe(&turnaround.Clocks{Priority: "urgent", StudyAt: at, PreliminaryAt: at.Add(-time.Minute)}, turnaround.Preliminary)       // report before the study
	m.Observe(&turnaround.Clocks{Priority: "bogus", StudyAt: at, PreliminaryAt: at.Add(2 * time.Minute)}, turnaround.Preliminary)     // label bounded
	m.Observe(&turnaround.Clocks{Priority: "urgent", OrderedAt: at, StudyAt: at, FinalAt: at.Add(3 * time.Hour)}, turnaround.Ordered) // ends nothing
	m.Observe(&turnaround.Clocks{Priority: "urgent", StudyAt: at, PreliminaryAt: at, FinalAt: at.Add(3 * time.Hour)}, turnaround.Final)
	var none *turnaround.Metrics
	none.Observe(&turnaround.Clocks{Priority: "stat", StudyAt: at, FinalAt: at.Add(time.Hour)}, turnaround.Final)

	want := map[[2]string][]float64{
		{"urgent", "order_to_study"}:      {3600},
		{"other", "study_to_preliminary"}: {120},
		{"urgent", "study_to_final"}:      {3 * 3600},
	}
	if got := histogramSums(t, reg, "ferry_turnaround_seconds"); !reflect.DeepEqual(got, want) {
		t.Errorf("ferry_turnaround_seconds = %v, want %v", got, want)
	}
}
