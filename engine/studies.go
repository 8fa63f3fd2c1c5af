package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhealth/ferry/dicom"
)

// Instance is what Ferry keeps of one received DICOM instance besides its file: the header
// attributes that identify it, place it in its series and study, and link it to a patient and
// an order (issue: DICOM studies → the right patient and order), as dicom.ReadInstance read them
// (Header.TransferSyntaxUID is the one received and kept; Header.Size the file's bytes), and
// where the file is and where it came from. Text is as the modality wrote it, decoded to UTF-8
// from its Specific Character Set.
type Instance struct {
	dicom.Header

	// Path is the instance's file, relative to the DICOM data directory: a DICOM Part 10 file
	// (preamble, file meta information, the data set exactly as received).
	Path       string
	SHA256     string // hex digest of the file
	ReceivedAt time.Time
	// Where it came from: the association's AE titles and the peer address (or "stow-rs").
	CallingAETitle, CalledAETitle, PeerAddr string
}

// Study is a study as assembled from its instances; counts and modalities are kept current as
// instances arrive, and an instance received twice is counted once.
type Study struct {
	StudyInstanceUID       string    `json:"study_instance_uid"`
	PatientID              string    `json:"patient_id"`
	IssuerOfPatientID      string    `json:"issuer_of_patient_id"`
	PatientName            string    `json:"patient_name"`
	PatientBirthDate       string    `json:"patient_birth_date"`
	PatientSex             string    `json:"patient_sex"`
	AccessionNumber        string    `json:"accession_number"`
	StudyDate              string    `json:"study_date"`
	StudyTime              string    `json:"study_time"`
	StudyDescription       string    `json:"study_description"`
	StudyID                string    `json:"study_id"`
	ReferringPhysicianName string    `json:"referring_physician_name"`
	ModalitiesInStudy      []string  `json:"modalities_in_study"` // distinct, sorted
	NumberOfSeries         int       `json:"number_of_series"`
	NumberOfInstances      int       `json:"number_of_instances"`
	FirstReceived          time.Time `json:"first_received"`
	LastReceived           time.Time `json:"last_received"`
}

// Series is one series of a study.
type Series struct {
	SeriesInstanceUID string `json:"series_instance_uid"`
	StudyInstanceUID  string `json:"study_instance_uid"`
	Modality          string `json:"modality"`
	SeriesNumber      string `json:"series_number"`
	SeriesDescription string `json:"series_description"`
	NumberOfInstances int    `json:"number_of_instances"`
}

// InstanceStore keeps received instances and assembles them into series and studies.
// adapters/postgres and adapters/sqlite implement it.
type InstanceStore interface {
	// PutInstances records insts and updates their series and studies in one durable
	// transaction: all of them or, on error, none. An instance already stored (same SOP Instance
	// UID, a database constraint), or earlier in insts, is not counted again: its added[i] is
	// false and nothing of it changes (the first file is kept). A study takes its patient and
	// study attributes from the first instance that gives them. The intake group-commits the
	// instances that concurrent associations receive through it (InstanceCommitter).
	PutInstances(ctx context.Context, insts []*Instance) (added []bool, err error)
	// PutInstance is PutInstances of one instance.
	PutInstance(ctx context.Context, inst *Instance) (added bool, err error)
	// Instance returns one instance by SOP Instance UID, or ErrNotFound.
	Instance(ctx context.Context, sopInstanceUID string) (*Instance, error)
	// Study returns a study by Study Instance UID, or ErrNotFound.
	Study(ctx context.Context, studyInstanceUID string) (*Study, error)
	// StudySeries returns a study's series by series number, then UID.
	StudySeries(ctx context.Context, studyInstanceUID string) ([]*Series, error)
	// SeriesInstances returns a series' instances by instance number, then UID.
	SeriesInstances(ctx context.Context, seriesInstanceUID string) ([]*Instance, error)
	// SearchStudies returns the studies that match every non-empty field of f (QIDO-RS, PS3.18
	// 10.6), newest first: by study date descending, study time descending, then Study Instance
	// UID; f.PageLimit() studies at most, after skipping f.Offset. No match is an empty slice and
	// no error.
	SearchStudies(ctx context.Context, f StudyFilter) ([]*Study, error)
}

// StudyDerivation is a study queued for its FHIR ImagingStudy to be derived again: an instance
// arrived or its link changed. PutInstance and PutStudyLink queue it; Changes counts the changes
// since it was last taken off the queue.
type StudyDerivation struct {
	StudyInstanceUID string
	ChangedAt        time.Time // the latest change
	Changes          int64
}

// DerivationQueue lists the studies waiting for their ImagingStudy. adapters/postgres and
// adapters/sqlite implement it; Tx.FinishStudyDerivation takes a study off it.
type DerivationQueue interface {
	// DueStudyDerivations returns up to limit (1 to 1000) queued studies whose latest change is
	// at or before quietSince, longest quiet first.
	DueStudyDerivations(ctx context.Context, quietSince time.Time, limit int) ([]StudyDerivation, error)
}

// Page sizes of SearchStudies.
const (
	DefaultStudyLimit = 100
	MaxStudyLimit     = 1000
)

// StudyFilter selects studies for SearchStudies. Empty fields match every study; matching is
// exact, byte for byte (PS3.4 C.2.2.2.1 single value matching), on the values the modality sent.
type StudyFilter struct {
	PatientID         string // (0010,0020)
	IssuerOfPatientID string // (0010,0021); with PatientID, the MRN's assigning authority
	AccessionNumber   string // (0008,0050)
	// StudyInstanceUIDs: any of these (0020,000D) (PS3.4 C.2.2.2.2 list of UID matching).
	StudyInstanceUIDs []string
	// StudyDateFrom and StudyDateTo bound (0008,0020), DA (YYYYMMDD), both inclusive; either may
	// be empty for an open range (PS3.4 C.2.2.2.5 range matching). With either set, a study
	// without a study date does not match.
	StudyDateFrom, StudyDateTo string
	ModalityInStudy            string // one of (0008,0061)
	// PatientName (0010,0010) is a NamePattern: wildcards, case-insensitive (ASCII letters, in
	// the store), trailing ^ ignored; matched with the name the modality sent. With
	// LinkedIdentity, a study linked to one of NamePatientIDs (the patients whose name Ferry
	// holds matches: Linker.PatientsWithName) matches too.
	PatientName    string
	NamePatientIDs []string
	// LinkedIdentity makes PatientID match the identity of the patient a study is linked to
	// rather than the one its modality sent — "the link wins" (QIDO-RS with the linker, issue:
	// a viewer finds studies under the right patient). It applies only with PatientID set; then
	// a study linked to a patient (its study_links decision is 'linked' and names a patient)
	// matches when that patient is among LinkedPatientIDs, whatever its modality sent, and a
	// study not linked (no decision, or one waiting for a person) matches PatientID and
	// IssuerOfPatientID against what its modality sent, as without it. So a study linked to
	// another patient never matches by the Patient ID its modality sent. Without PatientID it
	// changes nothing: IssuerOfPatientID alone matches what the modality sent.
	LinkedIdentity bool
	// LinkedPatientIDs are Ferry's Patient ids (survivors of merges) that hold the PatientID
	// searched for (Linker.PatientsWithID); read only with LinkedIdentity. None: no linked study
	// matches.
	LinkedPatientIDs []string
	// Within limits the studies to those linked (status linked) to one of WithinPatients,
	// Ferry's Patient ids: the patients a physician reaches (engine/access.Studies). None: no
	// study matches.
	Within         bool
	WithinPatients []string
	// Limit is the page size: 0 (or less) means DefaultStudyLimit; more than MaxStudyLimit is
	// MaxStudyLimit. Offset skips that many matches (less than 0 counts as 0).
	Limit, Offset int
}

// PageLimit is f.Limit as SearchStudies applies it: DefaultStudyLimit when not set, at most
// MaxStudyLimit.
func (f StudyFilter) PageLimit() int {
	switch {
	case f.Limit <= 0:
		return DefaultStudyLimit
	case f.Limit > MaxStudyLimit:
		return MaxStudyLimit
	}
	return f.Limit
}

// PageOffset is f.Offset as SearchStudies applies it: never negative.
func (f StudyFilter) PageOffset() int {
	return max(f.Offset, 0)
}

// Validate rejects an instance that no correct caller sends, before anything is written.
func (inst *Instance) Validate() error {
	switch {
	case inst == nil:
		return errors.New("storing instance: nil")
	case inst.SOPInstanceUID == "", inst.SeriesInstanceUID == "", inst.StudyInstanceUID == "":
		return fmt.Errorf("storing instance %q: SOP, series and study instance UIDs are required", inst.SOPInstanceUID)
	case inst.ReceivedAt.IsZero():
		return fmt.Errorf("storing instance %s: ReceivedAt is not set", inst.SOPInstanceUID)
	case inst.Size < 0:
		return fmt.Errorf("storing instance %s: negative size", inst.SOPInstanceUID)
	}
	return nil
}

// Storable returns a copy of inst with every text field as the stores keep text (StorableText).
func (inst *Instance) Storable() Instance {
	in := *inst
	for _, p := range []*string{&in.SOPInstanceUID, &in.SOPClassUID, &in.SeriesInstanceUID,
		&in.StudyInstanceUID, &in.TransferSyntaxUID, &in.Modality, &in.SeriesNumber,
		&in.SeriesDescription, &in.InstanceNumber, &in.PatientID, &in.IssuerOfPatientID,
		&in.PatientName, &in.PatientBirthDate, &in.PatientSex, &in.AccessionNumber, &in.StudyDate,
		&in.StudyTime, &in.StudyDescription, &in.StudyID, &in.ReferringPhysicianName, &in.Path,
		&in.SHA256, &in.CallingAETitle, &in.CalledAETitle, &in.PeerAddr} {
		*p = StorableText(*p)
	}
	return in
}

// InstanceLockOrder returns the indexes of insts in the order a store writes them in one
// transaction: by study, series and SOP Instance UID, so two transactions that write rows of
// the same studies lock them in one order and never wait for each other in a cycle.
func InstanceLockOrder(insts []*Instance) []int {
	order := make([]int, len(insts))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		x, y := insts[a], insts[b]
		if c := strings.Compare(x.StudyInstanceUID, y.StudyInstanceUID); c != 0 {
			return c
		}
		if c := strings.Compare(x.SeriesInstanceUID, y.SeriesInstanceUID); c != 0 {
			return c
		}
		return strings.Compare(x.SOPInstanceUID, y.SOPInstanceUID)
	})
	return order
}

// IntegerString returns the value of a DICOM IS (Integer String, PS3.5 6.2: leading and trailing
// spaces allowed), or false when it is empty or not a number — for ordering series and instances
// 2 before 10.
func IntegerString(is string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(is), 10, 64)
	return n, err == nil
}
