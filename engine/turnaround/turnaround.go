// Package turnaround is the turnaround clocks of issue 5: each order's milestones with the time
// each was first reached, the SLAs they are measured against, the marks the engine makes in the
// transaction of the change that reaches a milestone (Marker, Reach), the store's reads of them
// (Reader) and the Prometheus histograms (Metrics).
package turnaround

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferryhealth/ferry/fhir"
)

// Turnaround clocks (issue 5): each order's milestones — received, study complete, preliminary,
// final — kept with the time each was first reached, measured per priority against SLAs
// (config turnaround) and as histograms (ferry_turnaround_seconds).
//
// The SLA clock starts when the study is complete — its images available to the radiologist,
// the moment Ferry publishes the order's ImagingStudy — not when the order was received: a
// scheduled exam's order may wait days for its scan, and what a reading group answers for is the
// time from images to report. The time from order to study is measured but has no SLA.
//
// Each milestone is marked in the transaction of the change that reaches it (the order stored,
// the ImagingStudy published, the report version stored), so no clock moves for a change that
// was rolled back, and a clock stops exactly when the report is committed.

// Stage is one milestone of an order.
type Stage string

const (
	// Ordered: the order was received (a new ServiceRequest, at the message's
	// processing time).
	Ordered Stage = "ordered"
	// Study: the order's study is complete — linked to it and published as an
	// ImagingStudy once quiet (engine.StudyDeriver). The SLAs count from here.
	Study Stage = "study"
	// Preliminary: the first report a clinician can act on — a partial or preliminary
	// report, or a final sent without one (which then reaches both milestones at once).
	Preliminary Stage = "preliminary"
	// Final: the final report (status final, or amended, corrected, appended).
	Final Stage = "final"
	// Closed: the order ended without needing a report — cancelled or discontinued
	// (ServiceRequest revoked), or its report cancelled. Its clocks stop: never late after.
	Closed Stage = "closed"
)

// stages are the milestones in the order an order normally reaches them.
var stages = []Stage{Ordered, Study, Preliminary, Final, Closed}

// Clocks is one order's clocks: the time each milestone was first reached, zero until then.
type Clocks struct {
	ServiceRequestID string
	// Priority is the order's FHIR request-priority (routine, urgent, asap, stat) as the latest
	// milestone found it: an order raised to stat before its study is measured as stat.
	Priority      string
	OrderedAt     time.Time
	StudyAt       time.Time
	PreliminaryAt time.Time
	FinalAt       time.Time
	ClosedAt      time.Time // the order was closed without a final: zero while it is open
}

// At returns the time t reached stage, zero when it has not (or for an unknown stage).
func (t *Clocks) At(stage Stage) time.Time {
	switch stage {
	case Ordered:
		return t.OrderedAt
	case Study:
		return t.StudyAt
	case Preliminary:
		return t.PreliminaryAt
	case Final:
		return t.FinalAt
	case Closed:
		return t.ClosedAt
	}
	return time.Time{}
}

// SLA is how long one priority's reports may take, counted from the study's completion; 0 is no
// limit.
type SLA struct {
	Preliminary time.Duration
	Final       time.Duration
}

// SLAs are the SLA of each priority (FHIR request-priority code); a priority not listed has none.
type SLAs map[string]SLA

// DefaultSLAs are the SLAs when the configuration sets none: stat preliminary in 30 minutes and
// final in 4 hours; asap 1 and 8 hours; urgent 2 and 12 hours; routine no preliminary, final in
// 24 hours. Every request-priority code is listed.
func DefaultSLAs() SLAs {
	return SLAs{
		"stat":    {Preliminary: 30 * time.Minute, Final: 4 * time.Hour},
		"asap":    {Preliminary: time.Hour, Final: 8 * time.Hour},
		"urgent":  {Preliminary: 2 * time.Hour, Final: 12 * time.Hour},
		"routine": {Final: 24 * time.Hour},
	}
}

// Due returns when t's stage (preliminary or final) is due under s — the study's time plus the
// priority's SLA — and false when it has no due time: no study yet, or no SLA for the stage.
func (s SLAs) Due(t *Clocks, stage Stage) (time.Time, bool) {
	if t.StudyAt.IsZero() {
		return time.Time{}, false
	}
	var d time.Duration
	switch stage {
	case Preliminary:
		d = s[t.Priority].Preliminary
	case Final:
		d = s[t.Priority].Final
	}
	if d <= 0 {
		return time.Time{}, false
	}
	return t.StudyAt.Add(d), true
}

// Lateness is a milestone past its SLA.
type Lateness struct {
	Stage Stage         // preliminary or final
	Due   time.Time     // the study's time plus the SLA
	By    time.Duration // how far past Due, at the time asked
}

// Late returns the milestones of t past their due time at now (strictly after it), preliminary
// first. An order is never late before its study, nor once its final is in (the final answers
// the preliminary too) or it was closed. Reader.Overdue returns the orders for which
// Late is not empty.
func (s SLAs) Late(t *Clocks, now time.Time) []Lateness {
	if !t.FinalAt.IsZero() || !t.ClosedAt.IsZero() {
		return nil
	}
	var out []Lateness
	for _, stage := range []Stage{Preliminary, Final} {
		if !t.At(stage).IsZero() {
			continue
		}
		if due, ok := s.Due(t, stage); ok && now.After(due) {
			out = append(out, Lateness{Stage: stage, Due: due, By: now.Sub(due)})
		}
	}
	return out
}

// OverdueBound is one priority's part of a store's overdue query: an order of Priority that has
// its study but not its final is late (SLAs.Late) when its study is before StudyBefore and it
// has no preliminary or its study is before FinalBefore as well.
type OverdueBound struct {
	Priority    string
	StudyBefore time.Time // now less the shorter of the priority's SLAs
	FinalBefore time.Time // now less the final's SLA; zero when the priority has none
}

// OverdueBounds returns the bounds of the priorities with an SLA at now, by priority: what
// Reader.Overdue asks of the database, so that it agrees with Late.
func (s SLAs) OverdueBounds(now time.Time) []OverdueBound {
	var out []OverdueBound
	for _, p := range slices.Sorted(maps.Keys(s)) {
		d := s[p]
		first := d.Final
		if d.Preliminary > 0 && (first <= 0 || d.Preliminary < first) {
			first = d.Preliminary
		}
		if first <= 0 {
			continue
		}
		b := OverdueBound{Priority: p, StudyBefore: now.Add(-first)}
		if d.Final > 0 {
			b.FinalBefore = now.Add(-d.Final)
		}
		out = append(out, b)
	}
	return out
}

// Marker is the transaction's part: the engine's Tx implements it.
type Marker interface {
	// MarkTurnaround records that order srID reached stage at and returns its clocks as they
	// now stand (the transaction's own marks included). The first mark of an order creates its
	// row; a milestone already reached keeps its first time, and a final reaches the preliminary
	// too when it is missing. priority replaces the stored one. An invalid mark
	// (ValidateMark) is an error that leaves the transaction usable.
	MarkTurnaround(ctx context.Context, srID, priority string, stage Stage, at time.Time) (*Clocks, error)
}

// Reader reads the clocks, for the admin API. adapters/postgres and adapters/sqlite
// implement it.
type Reader interface {
	// Overdue returns up to limit (1 to 1000; 0 means 100) orders that sla.Late finds late at
	// now, oldest study first (ties by ServiceRequestID).
	Overdue(ctx context.Context, now time.Time, sla SLAs, limit int) ([]*Clocks, error)
	// Turnaround returns one order's clocks, or the store's not-found error (engine.ErrNotFound)
	// when it has reached no milestone Ferry recorded.
	Turnaround(ctx context.Context, srID string) (*Clocks, error)
}

// ValidateMark rejects a mark no correct caller makes: no order, a priority that is
// not a request-priority code, an unknown stage or no time.
func ValidateMark(srID, priority string, stage Stage, at time.Time) error {
	switch {
	case srID == "":
		return errors.New("marking turnaround: no ServiceRequest id")
	case !isRequestPriority(priority):
		return fmt.Errorf("marking turnaround of ServiceRequest/%s: priority %q is not routine, urgent, asap or stat", srID, priority)
	case !slices.Contains(stages, stage):
		return fmt.Errorf("marking turnaround of ServiceRequest/%s: stage %q is not ordered, study, preliminary, final or closed", srID, stage)
	case at.IsZero():
		return fmt.Errorf("marking turnaround %s of ServiceRequest/%s: no time", stage, srID)
	}
	return nil
}

// isRequestPriority reports whether p is a FHIR R4 request-priority code.
func isRequestPriority(p string) bool {
	return p == "routine" || p == "urgent" || p == "asap" || p == "stat"
}

// orderPriority is a ServiceRequest's priority; routine when it has none (FHIR R4: without a
// priority a request is performed with normal priority).
func orderPriority(sr fhir.ServiceRequest) string {
	if p := sr.Priority; isRequestPriority(p) {
		return p
	}
	return "routine"
}

// ReportStage is the milestone a report version with status reaches (FHIR R4
// diagnostic-report-status): partial and preliminary the preliminary; final and its later
// versions the final; cancelled closes the order's clocks (no report will come); registered
// and entered-in-error none (a report sent in error leaves the order waiting for the right one).
func ReportStage(status string) (Stage, bool) {
	switch status {
	case "partial", "preliminary":
		return Preliminary, true
	case "final", "amended", "corrected", "appended":
		return Final, true
	case "cancelled":
		return Closed, true
	}
	return "", false
}

// Reached is a milestone marked in a transaction, to be observed once it has committed.
type Reached struct {
	t       *Clocks
	reached []Stage // the stages this mark reached first
}

// Reach marks stage of order srID (its content sr, for the priority) at now in tx. The
// time is kept to the millisecond, which every store holds exactly, so that the stored time
// equal to it tells that this mark reached the stage first.
func Reach(ctx context.Context, tx Marker, srID string, sr fhir.ServiceRequest, stage Stage, now time.Time) (Reached, error) {
	at := now.UTC().Truncate(time.Millisecond)
	t, err := tx.MarkTurnaround(ctx, srID, orderPriority(sr), stage, at)
	if err != nil {
		return Reached{}, fmt.Errorf("marking turnaround %s of ServiceRequest/%s: %w", stage, srID, err)
	}
	m := Reached{t: t}
	for _, s := range stages {
		if (s == stage || (stage == Final && s == Preliminary)) && t.At(s).Equal(at) {
			m.reached = append(m.reached, s)
		}
	}
	return m, nil
}

// Observe reports the stages the mark reached first to fn (nil: nothing).
func (m Reached) Observe(fn func(*Clocks, Stage)) {
	if fn == nil || m.t == nil {
		return
	}
	for _, s := range m.reached {
		fn(m.t, s)
	}
}

// Metrics are the clocks' Prometheus series.
type Metrics struct {
	// Seconds: priority, interval (order_to_study, study_to_preliminary, study_to_final).
	Seconds *prometheus.HistogramVec
}

// NewMetrics creates the series and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ferry_turnaround_seconds",
			Help: "Time between an order's milestones, by priority and interval: order_to_study (received to images complete), study_to_preliminary and study_to_final (the SLA clocks); observed when the later milestone is first reached.",
			Buckets: []float64{60, 5 * 60, 10 * 60, 15 * 60, 30 * 60, 45 * 60, 3600, 2 * 3600, 4 * 3600,
				8 * 3600, 12 * 3600, 24 * 3600, 48 * 3600, 72 * 3600, 7 * 24 * 3600},
		}, []string{"priority", "interval"}),
	}
	if reg != nil {
		reg.MustRegister(m.Seconds)
	}
	return m
}

// Observe records the interval that t's stage ends, when t has the milestone it starts from and
// the two are in order (a report filed before its study was published measures nothing). It
// fits engine.StudyDeriver.ObserveTurnaround and engine.Reports.ObserveTurnaround; a nil m records nothing.
func (m *Metrics) Observe(t *Clocks, stage Stage) {
	if m == nil || t == nil {
		return
	}
	var from time.Time
	var interval string
	switch stage {
	case Study:
		from, interval = t.OrderedAt, "order_to_study"
	case Preliminary:
		from, interval = t.StudyAt, "study_to_preliminary"
	case Final:
		from, interval = t.StudyAt, "study_to_final"
	default:
		return
	}
	to := t.At(stage)
	if from.IsZero() || to.IsZero() || to.Before(from) {
		return
	}
	priority := t.Priority
	if !isRequestPriority(priority) {
		priority = "other" // bounded labels whatever a store returns
	}
	m.Seconds.WithLabelValues(priority, interval).Observe(to.Sub(from).Seconds())
}
