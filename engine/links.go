package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
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

// StorableEvidence checks l as the stores need it (a study UID, a decision time, a finite score)
// and returns its evidence as the JSON object they keep: keys sorted, text as StorableText.
func (l *StudyLink) StorableEvidence() (string, error) {
	switch {
	case l == nil:
		return "", errors.New("storing link: nil StudyLink")
	case l.StudyInstanceUID == "":
		return "", errors.New("storing link: no Study Instance UID")
	case l.DecidedAt.IsZero():
		return "", fmt.Errorf("storing link of study %s: DecidedAt is not set", l.StudyInstanceUID)
	case math.IsNaN(l.Score) || math.IsInf(l.Score, 0):
		return "", fmt.Errorf("storing link of study %s: score %v is not a finite number", l.StudyInstanceUID, l.Score)
	}
	ev := make(map[string]string, len(l.Evidence))
	for k, v := range l.Evidence {
		ev[StorableText(k)] = StorableText(v)
	}
	b, err := json.Marshal(ev) // a map[string]string always encodes
	if err != nil {
		return "", fmt.Errorf("storing link of study %s: evidence: %w", l.StudyInstanceUID, err)
	}
	return string(b), nil
}
