package turnaround

import (
	"reflect"
	"testing"
	"time"
)

// TestSLAsLate: when each milestone is due and late under the default SLAs.
func TestSLAsLate(t *testing.T) {
	t.Parallel()
	study := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	sla := DefaultSLAs()
	for _, tc := range []struct {
		name string
		t    Clocks
		now  time.Time
		want []Lateness
	}{
		{"NoStudy", Clocks{Priority: "stat", OrderedAt: study}, study.Add(48 * time.Hour), nil},
		{"StatDue", Clocks{Priority: "stat", StudyAt: study}, study.Add(30 * time.Minute), nil},
		{"StatPreliminaryLate", Clocks{Priority: "stat", StudyAt: study}, study.Add(45 * time.Minute),
			[]Lateness{{Stage: Preliminary, Due: study.Add(30 * time.Minute), By: 15 * time.Minute}}},
		{"StatBothLate", Clocks{Priority: "stat", StudyAt: study}, study.Add(5 * time.Hour),
			[]Lateness{{Stage: Preliminary, Due: study.Add(30 * time.Minute), By: 4*time.Hour + 30*time.Minute},
				{Stage: Final, Due: study.Add(4 * time.Hour), By: time.Hour}}},
		{"StatFinalLate", Clocks{Priority: "stat", StudyAt: study, PreliminaryAt: study.Add(10 * time.Minute)}, study.Add(5 * time.Hour),
			[]Lateness{{Stage: Final, Due: study.Add(4 * time.Hour), By: time.Hour}}},
		{"FinalIn", Clocks{Priority: "stat", StudyAt: study, PreliminaryAt: study.Add(time.Hour), FinalAt: study.Add(9 * time.Hour)}, study.Add(10 * time.Hour), nil},
		{"RoutineNoPreliminarySLA", Clocks{Priority: "routine", StudyAt: study}, study.Add(23 * time.Hour), nil},
		{"RoutineFinalLate", Clocks{Priority: "routine", StudyAt: study}, study.Add(25 * time.Hour),
			[]Lateness{{Stage: Final, Due: study.Add(24 * time.Hour), By: time.Hour}}},
		{"UnknownPriority", Clocks{Priority: "whenever", StudyAt: study}, study.Add(100 * time.Hour), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := sla.Late(&tc.t, tc.now); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Late = %+v, want %+v", got, tc.want)
			}
		})
	}
}
