package access

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/audit"
	"github.com/ferryhealth/ferry/fhir"
)

// Which patients an identity reaches (docs/security.md, "A physician's patients"). A physician
// reaches the patients of the orders that name one of its practitioner identifiers as requester,
// ordering, attending or referring doctor (engine.PatientAccess, kept by the order's
// transaction), across merged identities, and the patients it holds a break-glass grant for. A
// radiologist limited to facilities reaches the patients with an order from one of them. Every
// other role reaches every patient its permissions let it read.
//
// Patients answers that question once, for every path: Reader (FHIR read, vread, history,
// search, and the search's identifier resolution) and Studies (QIDO-RS, and WADO-RS through the
// same study lookup) ask it, so a physician gets the same answer whichever way it asks, and a
// record outside its patients is "not found" — never "forbidden", which would confirm that it
// exists.

// PatientStore keeps who may see which patient and the break-glass grants (adapters/sqlstore).
type PatientStore interface {
	// PatientAccessOf returns the rows of the patients.
	PatientAccessOf(ctx context.Context, patientIDs []string) ([]engine.PatientAccess, error)
	// PatientsByPractitioner returns the rows naming any of the identifier values, whatever
	// their system (the caller compares it).
	PatientsByPractitioner(ctx context.Context, values []string) ([]engine.PatientAccess, error)
	// PatientsOfFacilities returns the patients with an order from one of the sending
	// facilities.
	PatientsOfFacilities(ctx context.Context, facilities []string) ([]string, error)
	PutBreakGlass(ctx context.Context, g *BreakGlass) error
	// BreakGlassGrants returns the user's grants that have not expired at now.
	BreakGlassGrants(ctx context.Context, user string, now time.Time) ([]*BreakGlass, error)
}

// BreakGlass is a physician's access to a patient who is not theirs, given for a reason and for
// a while (issue 12: "time-limited, flagged and audited").
type BreakGlass struct {
	User      string
	PatientID string // Ferry's Patient id
	Reason    string
	GrantedAt time.Time
	ExpiresAt time.Time
}

// DefaultBreakGlassFor is how long a break-glass grant lasts unless configured.
const DefaultBreakGlassFor = time.Hour

// MaxBreakGlassReason bounds the reason's length (it is kept in the audit trail).
const MaxBreakGlassReason = 1000

// Limited reports whether id reads only some patients' data: a physician, or a radiologist
// limited to facilities.
func (id *Identity) Limited() bool {
	return id != nil && (id.Role == RolePhysician || id.Role == RoleRadiologist && len(id.Facilities) > 0)
}

// Patients decides which patients an identity reaches.
type Patients struct {
	Store PatientStore
	// Resources reads Patients to follow merges (engine.ResourceReader of the store).
	Resources interface {
		Resource(ctx context.Context, typ, id string) (*engine.Resource, error)
	}
	// SendingFacilities maps a facility's id (a user's --facility, facilities[].id) to the
	// sending facility (MSH-4) its orders carry; an id not listed is compared as it is.
	SendingFacilities map[string]string
	// BreakGlassFor is how long a grant lasts; 0 means DefaultBreakGlassFor.
	BreakGlassFor time.Duration
	Now           func() time.Time
}

func (p *Patients) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// ErrNoIdentity is a read of patient data through the limited readers without an identity in
// its context: refused (a wiring mistake must not open every record).
var ErrNoIdentity = errors.New("reading patient data without an identity")

// Reaches reports whether id reaches patientID (Ferry's Patient id), and by which break-glass
// grant when only a grant lets it (nil otherwise).
func (p *Patients) Reaches(ctx context.Context, id *Identity, patientID string) (bool, *BreakGlass, error) {
	if !id.Limited() {
		return id != nil, nil, nil
	}
	// The patient's own rows first: a merge copied the other record's to it, so the merges
	// need following only for what reached the survivor after the merge.
	ids := []string{patientID}
	for pass := range 2 {
		if pass == 1 {
			merged, err := p.mergedIDs(ctx, patientID)
			if err != nil {
				return false, nil, err
			}
			if len(merged) == 1 {
				break
			}
			ids = merged
		}
		rows, err := p.Store.PatientAccessOf(ctx, ids)
		if err != nil {
			return false, nil, err
		}
		for _, r := range rows {
			if p.grants(id, r) {
				return true, nil, nil
			}
		}
	}
	if id.Role != RolePhysician {
		return false, nil, nil
	}
	grants, err := p.Store.BreakGlassGrants(ctx, id.User, p.now())
	if err != nil {
		return false, nil, err
	}
	for _, g := range slices.Backward(grants) { // the latest grant names the reason
		if slices.Contains(ids, g.PatientID) {
			return true, g, nil
		}
	}
	return false, nil, nil
}

// grants reports whether row r lets id see its patient.
func (p *Patients) grants(id *Identity, r engine.PatientAccess) bool {
	switch id.Role {
	case RolePhysician:
		if r.Value == "" {
			return false
		}
		for _, pr := range id.Practitioners {
			if pr.Matches(r.System, r.Value) {
				return true
			}
		}
	case RoleRadiologist:
		return slices.Contains(p.sendingFacilities(id), r.Facility)
	}
	return false
}

func (p *Patients) sendingFacilities(id *Identity) []string {
	out := make([]string, len(id.Facilities))
	for i, f := range id.Facilities {
		out[i] = f
		if sf, ok := p.SendingFacilities[f]; ok {
			out[i] = sf
		}
	}
	return out
}

// mergedIDs returns patientID and the patients it was merged into, in order (a merge leaves a
// replaced-by link on the record merged away; engine.ReplacedBy).
func (p *Patients) mergedIDs(ctx context.Context, patientID string) ([]string, error) {
	ids := []string{patientID}
	for range 16 {
		r, err := p.Resources.Resource(ctx, "Patient", ids[len(ids)-1])
		if errors.Is(err, engine.ErrNotFound) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("following the merges of a patient: %w", err)
		}
		next := engine.ReplacedBy(r.JSON)
		if next == "" || slices.Contains(ids, next) {
			break
		}
		ids = append(ids, next)
	}
	return ids, nil
}

// Reached returns the ids of every patient id reaches, sorted, for a search limited to them
// (Limited identities only), and the break-glass grants among them.
func (p *Patients) Reached(ctx context.Context, id *Identity) ([]string, []*BreakGlass, error) {
	set := map[string]bool{}
	var grants []*BreakGlass
	switch id.Role {
	case RolePhysician:
		values := make([]string, 0, len(id.Practitioners))
		for _, pr := range id.Practitioners {
			values = append(values, pr.Value)
		}
		rows, err := p.Store.PatientsByPractitioner(ctx, values)
		if err != nil {
			return nil, nil, err
		}
		for _, r := range rows {
			if p.grants(id, r) {
				set[r.PatientID] = true
			}
		}
		gs, err := p.Store.BreakGlassGrants(ctx, id.User, p.now())
		if err != nil {
			return nil, nil, err
		}
		for _, g := range gs {
			if !set[g.PatientID] {
				set[g.PatientID] = true
				grants = append(grants, g)
			}
		}
	case RoleRadiologist:
		ids, err := p.Store.PatientsOfFacilities(ctx, p.sendingFacilities(id))
		if err != nil {
			return nil, nil, err
		}
		for _, pid := range ids {
			set[pid] = true
		}
	}
	out := make([]string, 0, len(set))
	for pid := range set {
		out = append(out, pid)
	}
	slices.Sort(out)
	return out, grants, nil
}

// BreakGlass grants id a time-limited access to patientID for reason. Only a physician breaks
// the glass: other roles either reach every patient or are limited by where they read for.
func (p *Patients) BreakGlass(ctx context.Context, id *Identity, patientID, reason string) (*BreakGlass, error) {
	if id == nil || id.Role != RolePhysician {
		return nil, errors.New("only a physician breaks the glass")
	}
	reason = strings.TrimSpace(reason)
	if reason == "" || len(reason) > MaxBreakGlassReason {
		return nil, fmt.Errorf("a reason of 1 to %d characters is required", MaxBreakGlassReason)
	}
	d := p.BreakGlassFor
	if d <= 0 {
		d = DefaultBreakGlassFor
	}
	now := p.now().UTC()
	g := &BreakGlass{User: id.User, PatientID: patientID, Reason: reason, GrantedAt: now, ExpiresAt: now.Add(d)}
	if err := p.Store.PutBreakGlass(ctx, g); err != nil {
		return nil, err
	}
	return g, nil
}

// What one request's reads decided, for its audit event: the gate puts a Disclosure in the
// request's context (WithDisclosure), the limited readers fill it in.

// Disclosure is what the limited readers decided for one request.
type Disclosure struct {
	mu sync.Mutex
	// Refused is the patient ("Patient/ID") of a record refused as not found, "" when none.
	Refused string
	// BreakGlass is the reason of the break-glass grant a read relied on, "" when none.
	BreakGlass string
}

func (d *Disclosure) refuse(patient string) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.Refused == "" {
		d.Refused = patient
	}
}

func (d *Disclosure) brokeGlass(g *BreakGlass) {
	if d == nil || g == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.BreakGlass = g.Reason
}

// Result returns what was decided (the refused patient, the break-glass reason).
func (d *Disclosure) Result() (refused, breakGlass string) {
	if d == nil {
		return "", ""
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.Refused, d.BreakGlass
}

type ctxKey int

const (
	identityCtx ctxKey = iota
	disclosureCtx
)

// WithIdentity returns ctx carrying the identity of its request (the HTTP gate sets it).
func WithIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, identityCtx, id)
}

// IdentityFrom returns the identity WithIdentity put in ctx, nil when none.
func IdentityFrom(ctx context.Context) *Identity {
	id, _ := ctx.Value(identityCtx).(*Identity)
	return id
}

// WithDisclosure returns ctx carrying d.
func WithDisclosure(ctx context.Context, d *Disclosure) context.Context {
	return context.WithValue(ctx, disclosureCtx, d)
}

func disclosureFrom(ctx context.Context) *Disclosure {
	d, _ := ctx.Value(disclosureCtx).(*Disclosure)
	return d
}

// Resources is the FHIR resource reading the Reader limits (engine.ResourceReader).
type Resources interface {
	Resource(ctx context.Context, typ, id string) (*engine.Resource, error)
	ResourceVersion(ctx context.Context, typ, id string, version int64) (*engine.Resource, error)
	ResourceHistory(ctx context.Context, typ, id string) ([]*engine.Resource, error)
	SearchResources(ctx context.Context, q engine.ResourceQuery) ([]*engine.Resource, error)
}

// Reader is Resources limited to the patients the identity in each call's context reaches
// (IdentityFrom): a record of another patient is engine.ErrNotFound, a search finds only the
// patients' records. Records of no patient (Practitioner, Organization, Endpoint) are read as
// they are. A call without an identity is refused (ErrNoIdentity).
type Reader struct {
	Patients  *Patients
	Resources Resources
}

var _ Resources = (*Reader)(nil)

// patientBearing reports whether records of typ belong to a patient: a Patient, or a type with
// FHIR's patient search parameter.
func patientBearing(typ string) bool {
	if typ == "Patient" {
		return true
	}
	_, ok := fhir.LookupSearchParam(typ, "patient")
	return ok
}

// check returns r when the identity in ctx reaches its patient, engine.ErrNotFound (the refusal
// noted in the request's Disclosure) when it does not.
func (rd *Reader) check(ctx context.Context, r *engine.Resource) error {
	id := IdentityFrom(ctx)
	if id == nil {
		return ErrNoIdentity
	}
	if !id.Limited() || !patientBearing(r.Type) {
		return nil
	}
	patient := audit.PatientOf(r.Type, r.ID, r.JSON)
	ok, grant := false, (*BreakGlass)(nil)
	if pid, found := strings.CutPrefix(patient, "Patient/"); found {
		var err error
		if ok, grant, err = rd.Patients.Reaches(ctx, id, pid); err != nil {
			return err
		}
	}
	if !ok {
		disclosureFrom(ctx).refuse(patient)
		return fmt.Errorf("%s/%s: not among the patients of %s: %w", r.Type, r.ID, id.User, engine.ErrNotFound)
	}
	disclosureFrom(ctx).brokeGlass(grant)
	return nil
}

func (rd *Reader) Resource(ctx context.Context, typ, id string) (*engine.Resource, error) {
	r, err := rd.Resources.Resource(ctx, typ, id)
	if err != nil {
		return nil, err
	}
	if err := rd.check(ctx, r); err != nil {
		return nil, err
	}
	return r, nil
}

func (rd *Reader) ResourceVersion(ctx context.Context, typ, id string, version int64) (*engine.Resource, error) {
	r, err := rd.Resources.ResourceVersion(ctx, typ, id, version)
	if err != nil {
		return nil, err
	}
	if err := rd.check(ctx, r); err != nil {
		return nil, err
	}
	return r, nil
}

// ResourceHistory checks every version: a record that changed patient (a merge moved an order)
// is shown only to who reaches each of them.
func (rd *Reader) ResourceHistory(ctx context.Context, typ, id string) ([]*engine.Resource, error) {
	versions, err := rd.Resources.ResourceHistory(ctx, typ, id)
	if err != nil {
		return nil, err
	}
	checked := map[string]bool{} // by patient: versions mostly share one
	for _, r := range versions {
		if p := audit.PatientOf(r.Type, r.ID, r.JSON); !checked[p] {
			if err := rd.check(ctx, r); err != nil {
				return nil, err
			}
			checked[p] = true
		}
	}
	return versions, nil
}

// SearchResources adds to q a filter on the reached patients: _id for Patients, patient for
// the types that have it. The store answers it from its index, as any filter.
func (rd *Reader) SearchResources(ctx context.Context, q engine.ResourceQuery) ([]*engine.Resource, error) {
	id := IdentityFrom(ctx)
	if id == nil {
		return nil, ErrNoIdentity
	}
	if !id.Limited() || !patientBearing(q.Type) {
		return rd.Resources.SearchResources(ctx, q)
	}
	ids, grants, err := rd.Patients.Reached(ctx, id)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, nil
	}
	f := engine.SearchFilter{Param: "patient", Op: engine.SearchEq, Values: make([]engine.SearchValue, len(ids))}
	for i, pid := range ids {
		f.Values[i] = engine.SearchValue{Value: "Patient/" + pid}
		if q.Type == "Patient" {
			f.Param, f.Values[i].Value = "_id", pid
		}
	}
	q.Filters = append(slices.Clip(q.Filters), f)
	found, err := rd.Resources.SearchResources(ctx, q)
	if err != nil {
		return nil, err
	}
	// A match of a patient reached only by breaking the glass is audited as such.
	for _, g := range grants {
		for _, r := range found {
			if audit.PatientOf(r.Type, r.ID, r.JSON) == "Patient/"+g.PatientID {
				disclosureFrom(ctx).brokeGlass(g)
			}
		}
	}
	return found, nil
}

// StudySearcher is QIDO-RS's study search (engine.InstanceStore).
type StudySearcher interface {
	SearchStudies(ctx context.Context, f engine.StudyFilter) ([]*engine.Study, error)
}

// Studies is a StudySearcher limited to the studies linked to the patients the identity in the
// context reaches (QIDO-RS; WADO-RS finds a study through the same search, so it is limited
// alike). A study not linked to a patient is reached only by the identities not Limited.
type Studies struct {
	Patients *Patients
	Studies  StudySearcher
}

func (s *Studies) SearchStudies(ctx context.Context, f engine.StudyFilter) ([]*engine.Study, error) {
	id := IdentityFrom(ctx)
	if id == nil {
		return nil, ErrNoIdentity
	}
	if id.Limited() {
		ids, _, err := s.Patients.Reached(ctx, id)
		if err != nil {
			return nil, err
		}
		f.WithinPatients, f.Within = ids, true
	}
	return s.Studies.SearchStudies(ctx, f)
}
