package engine

import (
	"context"
	"time"
)

// StudyLink is the linker's decision for a study (issue: DICOM studies → the right patient and
// order): which order and patient it belongs to, by which rule, with what score, and the evidence
// — the fields compared — so that a person can see why. One per study; a new decision replaces
// the previous one.
type StudyLink struct {
	StudyInstanceUID string
	Status           LinkStatus
	ServiceRequestID string // the order, "" when none
	PatientID        string // Ferry's Patient id, "" when none
	Rule             string // accession, study-uid, … ("" when unmatched)
	Score            float64
	// Evidence lists the fields compared: name → "study value | order or patient value | outcome".
	// It holds identifiers and dates (patient data: stored and shown to the analyst, never logged),
	// never names.
	Evidence  map[string]string
	DecidedAt time.Time
}

// LinkStatus is what became of a study.
type LinkStatus string

const (
	LinkLinked        LinkStatus = "linked"        // auto-linked by a rule
	LinkContradiction LinkStatus = "contradiction" // a rule found an order but identifiers disagree: a person decides
	LinkUnmatched     LinkStatus = "unmatched"     // no rule found an order: held for a person
)

// LinkStore keeps the linker's decisions. adapters/postgres and adapters/sqlite implement it.
type LinkStore interface {
	// PutStudyLink records l, replacing the study's previous decision.
	PutStudyLink(ctx context.Context, l *StudyLink) error
	// StudyLink returns a study's decision, or ErrNotFound.
	StudyLink(ctx context.Context, studyInstanceUID string) (*StudyLink, error)
}
