package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferryhealth/ferry/fhir"
	"github.com/ferryhealth/ferry/hl7"
	"github.com/ferryhealth/ferry/mappings"
)

// ResourceValidator checks a resource before it is committed: fhir.Validator (google/fhir's R4
// validating unmarshaller). Validate returns an error saying what is wrong and where (a FHIR path).
type ResourceValidator interface {
	Validate(resourceJSON []byte) error
}

// Mapper applies the mapping in force to a message: *mappings.Set through MappingSource. It
// returns nil when no mapping handles the message's type from its facility.
type MappingSource interface {
	For(facility, messageType string) *mappings.Mapping
}

// Processor turns accepted orders and patient updates into resources (docs/orders.md): it maps
// a message before the commit, validates every resource it will write, and applies the order
// lifecycle in the transaction that stores the message, so that the ACK tells the truth.
type Processor struct {
	Mappings  func() MappingSource // the set in force; called per message (hot reload swaps it)
	Validator ResourceValidator
	// Reports stores the reports that come as ORU^R01 (a dictation system's): a mapping whose
	// output has a report. nil: such a message is answered AE.
	Reports *Reports
	// Trust, if set, limits a facility's merges to patients of its issuers (SenderTrust.
	// MergeIssuers); which senders may send merges at all is checked before, by Inbound.
	Trust *SenderTrust
	Now   func() time.Time // default time.Now

	// valid remembers content that passed validation: the same ordering physician, the same
	// patient on a second order, validate once (google/fhir costs ~150µs a resource); and the
	// heads (id, meta) validated per type and mapping version.
	valid validCache
}

// validCache is a bounded set of digests of resource content (type, id-independent) that
// passed validation. Content is validated as it will be written, apart from id and meta, which
// Ferry sets in a form that is always valid.
type validCache struct {
	mu sync.Mutex
	m  map[[32]byte]struct{}
}

// validCacheSize bounds the cache; when full it starts over (a cheap, safe eviction).
const validCacheSize = 16384

func (c *validCache) has(k [32]byte) bool {
	c.mu.Lock()
	_, ok := c.m[k]
	c.mu.Unlock()
	return ok
}

func (c *validCache) add(k [32]byte) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= validCacheSize {
		c.m = make(map[[32]byte]struct{}, 1024)
	}
	c.m[k] = struct{}{}
	c.mu.Unlock()
}

// ProcessError is a message Ferry understood but will not apply: an unknown order number, a
// repeated merge. It becomes an AE with an ERR saying what and where. Text holds no PHI.
type ProcessError struct {
	Detail hl7.ErrorDetail
}

func (e *ProcessError) Error() string {
	loc := ""
	if e.Detail.Segment != "" {
		loc = fmt.Sprintf("%s-%d: ", e.Detail.Segment, e.Detail.Field)
	}
	return fmt.Sprintf("%s%s (ERR %d)", loc, e.Detail.Text, e.Detail.Code)
}

func processError(code hl7.ErrorCode, seg string, field int, format string, args ...any) *ProcessError {
	return &ProcessError{Detail: hl7.ErrorDetail{Segment: seg, Sequence: 1, Field: field, Code: code,
		Severity: "E", Text: fmt.Sprintf(format, args...)}}
}

// plan is what one message will change, worked out before the commit: the mapping's output,
// its resources already validated (with placeholder ids).
type plan struct {
	err             error          // the message could not be mapped: apply fails with it
	report          map[string]any // a report (ORU^R01): the DiagnosticReport's content
	reportPatient   *reportPatient // the patient the ORU's PID names (report_patient), nil if none
	reports         *Reports       // where a report is stored
	stored          *storedReport  // the report as apply stored it, for committed
	facility        string
	mappingVersion  string
	patient         map[string]any
	encounter       map[string]any
	orders          []orderPlan
	merge           []fhir.Identifier // MRG-1 identifiers (A40)
	trust           *SenderTrust
	worklistPatient map[string]any
	now             time.Time
	// shared are the shared records known to exist (GroupCommitter's); nil where a plan is
	// applied without a group committer (reprocessing).
	shared *sharedRecords
}

type orderPlan struct {
	control   string // create, change, cancel, status, hold, release
	status    string // the ServiceRequest.status the control sets, "" to keep
	sr        map[string]any
	requester map[string]any
	// doctors are the Practitioners the order names (ORC-12, OBR-16, PV1-7, PV1-8): each sees
	// the patient (PatientAccess).
	doctors  []map[string]any
	worklist map[string]any
	seq      int // ORC occurrence, for ERR locations
}

// Plan maps msg and validates the resources it yields. It returns (nil, nil) when no mapping
// handles the message (it is then only stored). Otherwise the plan says which mapping version
// applied, also when it fails: with a *mappings.Error or *ProcessError for a message that cannot
// be mapped, or a validation error.
func (p *Processor) Plan(msg *hl7.Message) (*plan, error) {
	h := msg.Header()
	m := p.Mappings().For(h.SendingFacility, h.MessageCode+"^"+h.TriggerEvent)
	if m == nil {
		return nil, nil
	}
	failed := func(err error) (*plan, error) {
		return &plan{mappingVersion: m.Version, err: err}, err
	}
	out, err := m.Apply(msg)
	if err != nil {
		return failed(err)
	}
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	pl := &plan{facility: h.SendingFacility, mappingVersion: m.Version, now: now().UTC().Truncate(time.Millisecond), trust: p.Trust}
	mo := decodeOutput(out)
	if rep := mo.report; rep != nil {
		// A report: stored like one the reading platform posts (Reports.store), in the
		// message's transaction.
		if p.Reports == nil {
			return failed(processError(hl7.CodeUnsupportedMessageType, "MSH", 9, "reports are not taken here"))
		}
		pl.report, pl.reports = rep, p.Reports
		if rp := mo.reportPatient; len(rp) > 0 {
			p := fhir.PatientOf(rp)
			pl.reportPatient = &reportPatient{Person: &p, v2: true}
		}
		if p.Validator != nil {
			body, err := resourceJSON("DiagnosticReport", placeholderID, 1, pl.now, pl.mappingVersion, rep)
			if err != nil {
				return failed(err)
			}
			if err := p.Validator.Validate(body); err != nil {
				return failed(&ProcessError{Detail: hl7.ErrorDetail{Code: hl7.CodeDataType, Severity: "E",
					Text: "the mapped DiagnosticReport is not valid FHIR R4: " + limit(err.Error(), 300)}})
			}
		}
		return pl, nil
	}
	pl.patient, pl.encounter, pl.worklistPatient = mo.patient, mo.encounter, mo.worklistPatient
	if mo.merge {
		pl.merge = mo.mergePrior
		if len(pl.merge) == 0 {
			return failed(processError(hl7.CodeRequiredFieldMissing, "MRG", 1, "merge without a prior patient identifier in MRG-1"))
		}
	}
	// Another configured hospital's numbers are only that hospital's to send: they neither find
	// nor change its patients from here, and are not kept (issue "Trust at every door").
	if foreign := p.Trust.ForeignIssuers(pl.facility); len(foreign) > 0 {
		if pl.patient != nil {
			patient, kept, dropped := fhir.WithoutIdentifiers(pl.patient, func(id fhir.Identifier) bool { return identifierOfIssuers(id, foreign) })
			if dropped > 0 && kept == 0 {
				return failed(processError(hl7.CodeApplicationInternalError, "PID", 3, "PID-3 has only identifiers of other facilities' registers (%s)", strings.Join(foreign, ", ")))
			}
			pl.patient = patient
		}
		if pl.merge != nil {
			if pl.merge = slices.DeleteFunc(pl.merge, func(id fhir.Identifier) bool { return identifierOfIssuers(id, foreign) }); len(pl.merge) == 0 {
				return failed(processError(hl7.CodeApplicationInternalError, "MRG", 1, "MRG-1 names only identifiers of other facilities' registers (%s)", strings.Join(foreign, ", ")))
			}
		}
	}
	for _, op := range mo.orders {
		if op.sr != nil {
			pl.orders = append(pl.orders, op)
		}
	}
	if pl.patient == nil {
		if len(pl.orders) > 0 || pl.merge != nil {
			return failed(processError(hl7.CodeRequiredFieldMissing, "PID", 3, "no patient identifier"))
		}
		return nil, nil
	}
	if err := p.validatePlan(pl); err != nil {
		return failed(err)
	}
	return pl, nil
}

// mappedOutput is what a mapping made of a message (docs/mappings.md names the keys), decoded
// once at the mapping's boundary: the resources stay content trees (stored as they are), the
// rest is typed.
type mappedOutput struct {
	report          map[string]any // a DiagnosticReport's content (ORU^R01)
	reportPatient   map[string]any // the patient an ORU's PID names, as Patient fields
	patient         map[string]any
	encounter       map[string]any
	worklistPatient map[string]any
	merge           bool // an A40 (MRG): mergePrior are MRG-1's identifiers
	mergePrior      []fhir.Identifier
	orders          []orderPlan
}

// decodeOutput reads a mapping's output; a key absent or of another shape reads as absent.
func decodeOutput(out map[string]any) mappedOutput {
	object := func(x any) map[string]any {
		m, _ := x.(map[string]any)
		return m
	}
	text := func(x any) string {
		s, _ := x.(string)
		return s
	}
	mo := mappedOutput{report: object(out["report"]), reportPatient: object(out["report_patient"]),
		patient: object(out["patient"]), encounter: object(out["encounter"]), worklistPatient: object(out["worklist_patient"])}
	if mg := object(out["merge"]); mg != nil {
		mo.merge, mo.mergePrior = true, fhir.IdentifiersOf(mg["prior"])
	}
	orders, _ := out["orders"].([]any)
	for i, x := range orders {
		o := object(x)
		op := orderPlan{seq: i + 1, control: text(o["control"]), status: text(o["status"]),
			sr: object(o["service_request"]), requester: object(o["requester"]), worklist: object(o["worklist"])}
		docs, _ := o["doctors"].([]any)
		for _, d := range docs {
			if d := object(d); d != nil {
				op.doctors = append(op.doctors, d)
			}
		}
		if op.requester != nil {
			op.doctors = append(op.doctors, op.requester)
		}
		mo.orders = append(mo.orders, op)
	}
	return mo
}

// placeholderID stands for ids not known until the transaction; validation does not depend on
// the value, only on its form.
const placeholderID = "00000000-0000-4000-8000-000000000000"

// validatePlan validates every resource the plan may write, with placeholder ids and references.
func (p *Processor) validatePlan(pl *plan) error {
	if p.Validator == nil {
		return nil
	}
	for _, r := range pl.drafts() {
		b, err := marshalJSON(r.content)
		if err != nil {
			return err
		}
		key := validKey(r.typ, b)
		if p.valid.has(key) {
			continue
		}
		// The head (id, meta) is Ferry's, not the mapping's: its values change per write but
		// not its form, which depends on the type and the mapping version alone. It is
		// validated with the first content of each, and the content alone after that — unless
		// the content has an id (or _id) or meta of its own, which would clash with the head's.
		head := validKey(r.typ, []byte("\x00head\x00"+pl.mappingVersion))
		_, ownID := r.content["id"]
		_, ownIDExt := r.content["_id"]
		_, ownMeta := r.content["meta"]
		ownID = ownID || ownIDExt
		var body []byte
		if p.valid.has(head) && !ownID && !ownMeta {
			body = withType(r.typ, b)
		} else {
			body = withHead(r.typ, placeholderID, 1, pl.now, pl.mappingVersion, b)
		}
		if err := p.Validator.Validate(body); err != nil {
			return &ProcessError{Detail: hl7.ErrorDetail{Code: hl7.CodeDataType, Severity: "E",
				Text: "the mapped " + r.typ + " is not valid FHIR R4: " + limit(err.Error(), 300)}}
		}
		p.valid.add(key)
		p.valid.add(head)
	}
	return nil
}

// validKey is the validCache key of typ with content b.
func validKey(typ string, b []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(typ))
	h.Write(b)
	var key [32]byte
	h.Sum(key[:0])
	return key
}

// draft is a resource a plan may write, with placeholder references where the ids are not
// known until the transaction.
type draft struct {
	typ     string
	content map[string]any
}

// drafts are the resources of the plan as they will be written, apart from ids and meta.
func (pl *plan) drafts() []draft {
	ref := func(t string) map[string]any { return map[string]any{"reference": t + "/" + placeholderID} }
	var out []draft
	add := func(typ string, content, refs map[string]any) {
		if content != nil {
			out = append(out, draft{typ, withFields(content, refs)})
		}
	}
	add("Patient", pl.patient, nil)
	add("Encounter", pl.encounter, map[string]any{"subject": ref("Patient")})
	for _, o := range pl.orders {
		add("Practitioner", o.requester, nil)
		refs := map[string]any{"subject": ref("Patient")}
		if o.requester != nil {
			refs["requester"] = ref("Practitioner")
		}
		if pl.encounter != nil {
			refs["encounter"] = ref("Encounter")
		}
		add("ServiceRequest", o.sr, refs)
	}
	return out
}

// withFields returns content with extra fields set (a shallow copy when there are any).
func withFields(content map[string]any, extra map[string]any) map[string]any {
	if len(extra) == 0 {
		return content
	}
	out := make(map[string]any, len(content)+len(extra))
	for k, v := range content {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// resourceJSON renders a resource: resourceType first, then id and meta, then the content
// (its keys sorted, so the same content always gives the same bytes).
func resourceJSON(typ, id string, version int64, updated time.Time, source string, content map[string]any) ([]byte, error) {
	body, err := marshalJSON(content)
	if err != nil {
		return nil, fmt.Errorf("rendering %s: %w", typ, err)
	}
	return withHead(typ, id, version, updated, source, body), nil
}

// withType puts resourceType alone in front of a content object already rendered.
func withType(typ string, body []byte) []byte {
	b := make([]byte, 0, len(body)+40)
	b = append(b, `{"resourceType":`...)
	b = appendJSONString(b, typ)
	return appendFields(b, body)
}

// appendFields ends the object begun in b with the fields of the object body.
func appendFields(b, body []byte) []byte {
	if len(body) > 2 {
		b = append(b, ',')
		return append(b, body[1:]...)
	}
	return append(b, '}')
}

// withHead puts resourceType, id and meta in front of a content object already rendered.
func withHead(typ, id string, version int64, updated time.Time, source string, body []byte) []byte {
	b := make([]byte, 0, len(body)+160)
	b = append(b, `{"resourceType":`...)
	b = appendJSONString(b, typ)
	b = append(b, `,"id":`...)
	b = appendJSONString(b, id)
	b = append(b, `,"meta":{"lastUpdated":`...)
	b = appendJSONString(b, updated.UTC().Format(fhirInstant))
	if source != "" {
		b = append(b, `,"source":`...)
		b = appendJSONString(b, "urn:ferry:mapping:"+source)
	}
	b = append(b, `,"versionId":`...)
	b = appendJSONString(b, strconv.FormatInt(version, 10))
	b = append(b, '}')
	return appendFields(b, body)
}

// fhirInstant is FHIR's instant with milliseconds, in UTC.
const fhirInstant = "2006-01-02T15:04:05.000Z07:00"

// newID returns a new logical id: a random UUID (RFC 9562 version 4).
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// committed does what waits for the commit of the transaction apply wrote in: for a report,
// its turnaround metrics, critical-finding log and the deliverer's nudge (Reports.committed).
func (pl *plan) committed() {
	if pl != nil && pl.stored != nil {
		pl.reports.committed(pl.stored)
	}
}

// recordKeys names the records the plan may change, type and business key (Patient, Encounter,
// ServiceRequest): two plans that share none cannot conflict, so the group committer runs a
// transaction only once no other in flight holds one of its keys
// (GroupCommitter.commitWithEffects). Ordering practitioners are shared by many orders and
// created before the transaction (sharedRecords), so they are not named; a report's plan names
// none: both are retried on a conflict.
func (pl *plan) recordKeys() []string {
	if pl == nil || pl.err != nil || pl.patient == nil {
		return nil
	}
	var out []string
	add := func(typ string, keys []string) {
		for _, k := range keys {
			out = append(out, typ+"\x00"+k)
		}
	}
	add("Patient", identifierKeys(pl.facility, "identifier", fhir.IdentifiersOf(pl.patient["identifier"])))
	add("Patient", identifierKeys(pl.facility, "identifier", pl.merge))
	if pl.encounter != nil {
		add("Encounter", identifierKeys(pl.facility, "identifier", fhir.IdentifiersOf(pl.encounter["identifier"])))
	}
	for _, o := range pl.orders {
		add("ServiceRequest", orderKeys(pl.facility, o.sr))
	}
	return out
}

// apply writes the plan's effects in tx. m is the message being stored (its ID is set).
func (pl *plan) apply(ctx context.Context, tx Tx, m *InboundMessage) error {
	if pl.err != nil {
		return pl.err
	}
	if pl.report != nil {
		var err error
		pl.stored, err = pl.reports.store(ctx, tx, pl.report, "", pl.reportPatient)
		var re *ReportError
		if errors.As(err, &re) && re.V2.Segment != "" {
			d := re.V2
			d.Text = limit(d.Text, 300)
			return &ProcessError{Detail: d}
		}
		if errors.As(err, &re) {
			// Located where the dictation system can look: the order numbers, or the status.
			code, seg, field := hl7.CodeUnknownKeyIdentifier, "OBR", 2
			if re.Status == 409 {
				code, field = hl7.CodeApplicationInternalError, 25
			}
			return &ProcessError{Detail: hl7.ErrorDetail{Segment: seg, Sequence: 1, Field: field, Code: code, Severity: "E", Text: limit(re.Error(), 300)}}
		}
		return err
	}
	w := &writer{tx: tx, pl: pl}
	patientID, err := w.patient(ctx)
	if err != nil {
		return err
	}
	if pl.merge != nil {
		if err := w.merge(ctx, patientID); err != nil {
			return err
		}
	}
	encounterID := ""
	if pl.encounter != nil {
		if encounterID, err = w.upsertByKeys(ctx, "Encounter", identifierKeys(pl.facility, "identifier", fhir.IdentifiersOf(pl.encounter["identifier"])),
			withFields(pl.encounter, map[string]any{"subject": reference("Patient", patientID)}), nil); err != nil {
			return err
		}
	}
	for _, o := range pl.orders {
		if err := w.order(ctx, o, patientID, encounterID); err != nil {
			return err
		}
	}
	if pl.worklistPatient != nil && pl.orders == nil {
		if err := w.refreshWorklistPatient(ctx, patientID, pl.worklistPatient); err != nil {
			return err
		}
	}
	return nil
}

type writer struct {
	tx Tx
	pl *plan
	// patientIDs are the identifier values the patient's worklist items may carry as Patient ID.
	patientIDs []string
	// redirectedTo is the stored Patient a message's identifier led to through a merge, nil when
	// the message named the patient directly.
	redirectedTo *fhir.Patient
}

func reference(typ, id string) map[string]any {
	return map[string]any{"reference": typ + "/" + id}
}

// identifierKeys returns the business keys of a list of FHIR Identifiers: kind|scope|value,
// where scope is the identifier system, or — for an identifier whose authority Ferry could not
// resolve to a system — the sending facility and the assigner, so that two hospitals' local
// numbers never collide.
func identifierKeys(facility, kind string, ids []fhir.Identifier) []string {
	var keys []string
	for _, id := range ids {
		if k := identifierKey(facility, kind, id); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

func identifierKey(facility, kind string, id fhir.Identifier) string {
	if id.Value == "" {
		return ""
	}
	scope := id.System
	if scope == "" {
		scope = "facility:" + facility + "/" + id.Assigner
	}
	return kind + "|" + scope + "|" + id.Value
}

// find returns the current version of the resource of typ holding any of keys (one round
// trip), or nil when none does.
func (w *writer) find(ctx context.Context, typ string, keys []string) (*Resource, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	r, err := w.tx.ResourceByKeys(ctx, typ, keys)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return r, err
}

// survivor follows replaced-by links from a merged patient to the one that replaced it.
func survivor(ctx context.Context, rd resourceReading, r *Resource) (*Resource, error) {
	for range 16 {
		next := ReplacedBy(r.JSON)
		if next == "" {
			return r, nil
		}
		var err error
		if r, err = rd.Resource(ctx, "Patient", next); err != nil {
			return nil, err
		}
	}
	return nil, errors.New("patient merge chain longer than 16 links")
}

// resourceReading is the one read survivor makes (ResourceReader's Resource).
type resourceReading interface {
	Resource(ctx context.Context, typ, id string) (*Resource, error)
}

// ReplacedBy returns the id in a Patient's replaced-by link (the patient it was merged into),
// "" when it has none.
func ReplacedBy(body []byte) string {
	var p struct {
		Link []struct {
			Other struct {
				Reference string `json:"reference"`
			} `json:"other"`
			Type string `json:"type"`
		} `json:"link"`
	}
	if json.Unmarshal(body, &p) != nil {
		return ""
	}
	for _, l := range p.Link {
		if l.Type == "replaced-by" {
			return strings.TrimPrefix(l.Other.Reference, "Patient/")
		}
	}
	return ""
}

// patient finds the message's patient by identifier (not by name: never duplicated per order,
// never guessed) and creates or updates it; it returns the id of the patient now holding the
// identifiers (the survivor, for one that was merged).
func (w *writer) patient(ctx context.Context) (string, error) {
	ids := fhir.IdentifiersOf(w.pl.patient["identifier"])
	keys := identifierKeys(w.pl.facility, "identifier", ids)
	if len(keys) == 0 {
		return "", processError(hl7.CodeRequiredFieldMissing, "PID", 3, "no usable patient identifier in PID-3")
	}
	cur, err := w.find(ctx, "Patient", keys)
	if err != nil {
		return "", err
	}
	w.patientIDs = identifierValues(ids)
	if cur != nil {
		s, err := survivor(ctx, w.tx, cur)
		if err != nil {
			return "", err
		}
		if s.ID != cur.ID {
			// The sender still uses the identifier of a patient merged away: the message
			// belongs to the survivor, whose record it does not change (the old identifier
			// stays with the old patient, and the survivor's demographics come from messages
			// about the survivor).
			sc, err := contentOf(s.JSON)
			if err != nil {
				return "", err
			}
			p := fhir.PatientOf(sc)
			w.redirectedTo = &p
			return s.ID, nil
		}
	}
	return w.upsert(ctx, "Patient", cur, keys, w.pl.patient, mergePatient)
}

// mergePatient keeps what the stored Patient has that a message does not carry: identifiers from
// other feeds (appended after the message's), links and active=false of a merge.
func mergePatient(old, next map[string]any) map[string]any {
	out := fhir.WithIdentifiersAppended(next, old, func(id fhir.Identifier) string { return identifierKey("", "", id) })
	if l, ok := old["link"]; ok {
		out["link"] = l
	}
	if a := fhir.PatientOf(old).Active; a != nil && !*a {
		out["active"] = false
	}
	return out
}

// clone is a shallow copy of m, so that changing its keys leaves the plan's maps alone.
func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+2)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// upsertByKeys is upsert for a resource found by its keys.
func (w *writer) upsertByKeys(ctx context.Context, typ string, keys []string, content map[string]any, merge func(old, next map[string]any) map[string]any) (string, error) {
	cur, err := w.find(ctx, typ, keys)
	if err != nil {
		return "", err
	}
	return w.upsert(ctx, typ, cur, keys, content, merge)
}

// upsert creates typ with content (cur nil), or writes a new version of cur when its content
// differs from the stored one; identical content writes nothing ("identical repeats change
// nothing"). merge, if set, combines the stored content with the new. It returns the id.
func (w *writer) upsert(ctx context.Context, typ string, cur *Resource, keys []string, content map[string]any, merge func(old, next map[string]any) map[string]any) (string, error) {
	if cur == nil {
		id := newID()
		return id, w.put(ctx, typ, id, 1, keys, content)
	}
	old, err := contentOf(cur.JSON)
	if err != nil {
		return "", err
	}
	if merge != nil {
		content = merge(old, content)
	}
	same, err := sameContent(old, content)
	if err != nil || same {
		return cur.ID, err
	}
	return cur.ID, w.put(ctx, typ, cur.ID, cur.VersionID+1, unionKeys(cur.Keys, keys), content)
}

func unionKeys(a, b []string) []string {
	out := append([]string(nil), b...)
	for _, k := range a {
		found := false
		for _, x := range out {
			if x == k {
				found = true
				break
			}
		}
		if !found {
			out = append(out, k)
		}
	}
	return out
}

// contentOf decodes a stored resource without its resourceType, id and meta.
func contentOf(body []byte) (map[string]any, error) {
	m, err := fhir.DecodeContent(body)
	if err != nil {
		return nil, fmt.Errorf("decoding stored resource: %w", err)
	}
	return m, nil
}

// sameContent compares two contents as JSON (numbers and key order normalised by the encoder).
func sameContent(a, b map[string]any) (bool, error) {
	ja, err := marshalJSON(a)
	if err != nil {
		return false, err
	}
	jb, err := marshalJSON(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(ja, jb), nil
}

// put writes version of typ/id with content, its search index and keys.
func (w *writer) put(ctx context.Context, typ, id string, version int64, keys []string, content map[string]any) error {
	body, err := resourceJSON(typ, id, version, w.pl.now, w.pl.mappingVersion, content)
	if err != nil {
		return err
	}
	index, err := fhir.Index(typ, body)
	if err != nil {
		return fmt.Errorf("indexing %s: %w", typ, err)
	}
	if typ == "Patient" {
		index = append(index, patientLinkIndex(fhir.PatientOf(content))...)
	}
	r := &Resource{Type: typ, ID: id, VersionID: version, LastUpdated: w.pl.now, JSON: body, Index: index, Keys: keys}
	if err := w.tx.PutResource(ctx, r); err != nil {
		return fmt.Errorf("storing %s/%s: %w", typ, id, err)
	}
	return nil
}
