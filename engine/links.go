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
	Evidence map[string]string
	// Candidates are the patients (and orders) the demographic rule weighed, best first, with
	// their scores and evidence — what a person chooses from in the reconciliation worklist.
	Candidates []LinkCandidate
	DecidedAt  time.Time
	DecidedBy  string // DecidedByLinker, DecidedByADT, or the person who decided
	Reason     string // why, as the person gave it ("" for the linker)
	// Identifier is the study's patient identifier as the identifier rules read it (zero when
	// the study had none, or one refused). While the decision is linked it is an identifier of
	// the decision's patient: the identity cross-reference learns it, and the next study with it
	// links by rule patient-id; a later decision replaces it, so what was learned is undone with
	// the decision that taught it.
	Identifier LinkIdentifier
}

// LinkIdentifier is a patient identifier as the cross-reference keeps it: the system of the
// authority or other system that issued it (urn:ferry:issuer:<issuer> for an issuer no rule
// names) and the value as its rules normalise it.
type LinkIdentifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

// IsZero reports whether there is no identifier.
func (i LinkIdentifier) IsZero() bool { return i.Value == "" }

// Who decided a link, besides a named person.
const (
	DecidedByLinker = "linker"
	DecidedByADT    = "adt" // a patient merge moved the study with its patient
)

// LinkCandidate is one patient the linker weighed for a study, with the order it would take.
type LinkCandidate struct {
	PatientID        string            `json:"patient_id"`
	ServiceRequestID string            `json:"service_request_id,omitempty"`
	Score            float64           `json:"score"`
	Evidence         map[string]string `json:"evidence,omitempty"`
}

// LinkStatus is what became of a study.
type LinkStatus string

const (
	LinkLinked        LinkStatus = "linked"        // linked, by a rule or by a person
	LinkReview        LinkStatus = "review"        // uncertain score or close candidates: a person decides
	LinkContradiction LinkStatus = "contradiction" // a rule found an order but identifiers disagree: a person decides
	LinkUnmatched     LinkStatus = "unmatched"     // no rule found an order: held for a person
)

// Open reports whether the decision waits for a person: review, contradiction or unmatched.
func (s LinkStatus) Open() bool {
	return s == LinkReview || s == LinkContradiction || s == LinkUnmatched
}

// LinkStore keeps the linker's decisions. adapters/postgres and adapters/sqlite implement it.
type LinkStore interface {
	LinkWriter
	// StudyLink returns a study's decision, or ErrNotFound.
	StudyLink(ctx context.Context, studyInstanceUID string) (*StudyLink, error)
	// StudyLinkHistory returns every decision made for a study, oldest first (none: empty).
	StudyLinkHistory(ctx context.Context, studyInstanceUID string) ([]*StudyLink, error)
	// OpenStudyLinks returns the decisions waiting for a person (LinkStatus.Open), oldest
	// decision first, skipping offset and returning at most limit (1 to 1000).
	OpenStudyLinks(ctx context.Context, limit, offset int) ([]*StudyLink, error)
	// StudyLinksWithIdentifier returns the current linked decisions whose Identifier is
	// system|value (the cross-reference's learned identifiers), oldest first, at most limit.
	StudyLinksWithIdentifier(ctx context.Context, system, value string, limit int) ([]*StudyLink, error)
}

// LinkWriter records decisions. The Store does it in a transaction of its own; a Tx in the
// message's transaction (a patient merge moves the patient's studies with it).
type LinkWriter interface {
	// PutStudyLink records l, replacing the study's current decision, appends it to the study's
	// history and queues the study's ImagingStudy to be derived again — all in one transaction.
	PutStudyLink(ctx context.Context, l *StudyLink) error
	// StudyLinksOfPatient returns the current decisions that name patientID.
	StudyLinksOfPatient(ctx context.Context, patientID string) ([]*StudyLink, error)
}

// StorableEvidence checks l as the stores need it (a study UID, a decision time, finite scores)
// and returns its evidence as the JSON object and its candidates as the JSON array they keep:
// keys sorted, text as StorableText. DecidedBy "" is stored as DecidedByLinker.
func (l *StudyLink) StorableEvidence() (evidence, candidates string, err error) {
	switch {
	case l == nil:
		return "", "", errors.New("storing link: nil StudyLink")
	case l.StudyInstanceUID == "":
		return "", "", errors.New("storing link: no Study Instance UID")
	case l.DecidedAt.IsZero():
		return "", "", fmt.Errorf("storing link of study %s: DecidedAt is not set", l.StudyInstanceUID)
	case !finite(l.Score):
		return "", "", fmt.Errorf("storing link of study %s: score %v is not a finite number", l.StudyInstanceUID, l.Score)
	}
	cands := make([]LinkCandidate, len(l.Candidates))
	for i, c := range l.Candidates {
		if !finite(c.Score) {
			return "", "", fmt.Errorf("storing link of study %s: candidate score %v is not a finite number", l.StudyInstanceUID, c.Score)
		}
		cands[i] = LinkCandidate{PatientID: StorableText(c.PatientID), ServiceRequestID: StorableText(c.ServiceRequestID),
			Score: c.Score, Evidence: storableMap(c.Evidence)}
	}
	ev, _ := json.Marshal(storableMap(l.Evidence)) // a map[string]string always encodes
	cs, err := json.Marshal(cands)
	if err != nil {
		return "", "", fmt.Errorf("storing link of study %s: candidates: %w", l.StudyInstanceUID, err)
	}
	return string(ev), string(cs), nil
}

// DecidedByOrLinker is l.DecidedBy as stored: DecidedByLinker when empty.
func (l *StudyLink) DecidedByOrLinker() string {
	if l.DecidedBy == "" {
		return DecidedByLinker
	}
	return l.DecidedBy
}

// ParseStoredLink fills l's Evidence and Candidates from the JSON a store kept.
func (l *StudyLink) ParseStoredLink(evidence, candidates string) error {
	if err := json.Unmarshal([]byte(evidence), &l.Evidence); err != nil {
		return fmt.Errorf("reading link of study %s: evidence: %w", l.StudyInstanceUID, err)
	}
	if l.Evidence == nil {
		l.Evidence = map[string]string{}
	}
	if err := json.Unmarshal([]byte(candidates), &l.Candidates); err != nil {
		return fmt.Errorf("reading link of study %s: candidates: %w", l.StudyInstanceUID, err)
	}
	l.DecidedAt = l.DecidedAt.UTC()
	return nil
}

func storableMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[StorableText(k)] = StorableText(v)
	}
	return out
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
