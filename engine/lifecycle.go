package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/ferryhealth/ferry/engine/turnaround"
	"github.com/ferryhealth/ferry/fhir"
	"github.com/ferryhealth/ferry/hl7"
)

// The order lifecycle (docs/orders.md): ORC-1 order control, through the order_control code
// table, becomes one of these actions on the ServiceRequest the placer (or filler) number names.
const (
	actionCreate  = "create"  // NW: a new order (an identical repeat changes nothing)
	actionChange  = "change"  // XO: new content, status kept
	actionCancel  = "cancel"  // CA, DC: revoked, off the worklist
	actionStatus  = "status"  // SC: ORC-5 says the status (IP → active, CM → completed)
	actionHold    = "hold"    // HD: on-hold, off the worklist
	actionRelease = "release" // RL: active again, back on the worklist
)

// onWorklist reports whether a ServiceRequest with this status is scheduled work for a modality.
func onWorklist(status string) bool { return status == "active" }

// SendingFacilityURL is the extension on a ServiceRequest naming the facility (MSH-4) that
// ordered it: where its results go (config: facilities[].results).
const SendingFacilityURL = "https://ferryhealth.github.io/fhir/StructureDefinition/sending-facility"

func sendingFacilityExtension(facility string) map[string]any {
	return map[string]any{"url": SendingFacilityURL, "valueString": facility}
}

// SendingFacility returns the facility that sent an order (its SendingFacilityURL extension),
// "" when it has none.
func SendingFacility(order fhir.ServiceRequest) string {
	for _, e := range order.Extension {
		if e.URL == SendingFacilityURL {
			return e.ValueString
		}
	}
	return ""
}

// order applies one ORC/OBR group.
func (w *writer) order(ctx context.Context, o orderPlan, patientID, encounterID string) error {
	keys := orderKeys(w.pl.facility, o.sr)
	if len(keys) == 0 {
		return &ProcessError{Detail: hl7.ErrorDetail{Segment: "ORC", Sequence: o.seq, Field: 2,
			Code: hl7.CodeRequiredFieldMissing, Severity: "E", Text: "no placer (ORC-2/OBR-2) or filler (ORC-3/OBR-3) order number"}}
	}
	curSR, err := w.find(ctx, "ServiceRequest", keys)
	if err != nil {
		return err
	}
	switch o.control {
	case actionCreate:
	case actionChange, actionCancel, actionStatus, actionHold, actionRelease:
		if curSR == nil {
			// HL7 table 0357 204: unknown key identifier — a change to an order Ferry never got.
			return &ProcessError{Detail: hl7.ErrorDetail{Segment: "ORC", Sequence: o.seq, Field: 2,
				Code: hl7.CodeUnknownKeyIdentifier, Severity: "E", Text: "unknown order number for order control " + o.control}}
		}
	default:
		return &ProcessError{Detail: hl7.ErrorDetail{Segment: "ORC", Sequence: o.seq, Field: 1,
			Code: hl7.CodeTableValueNotFound, Severity: "E", Text: fmt.Sprintf("order control action %q is not one Ferry knows", o.control)}}
	}

	requesterID, err := w.requester(ctx, o.requester)
	if err != nil {
		return err
	}

	content := clone(o.sr)
	if w.pl.facility != "" {
		fhir.AppendTo(content, "extension", sendingFacilityExtension(w.pl.facility))
	}
	content["subject"] = reference("Patient", patientID)
	if encounterID != "" {
		content["encounter"] = reference("Encounter", encounterID)
	}
	if requesterID != "" {
		content["requester"] = reference("Practitioner", requesterID)
	}
	status := o.status
	var cur map[string]any
	if curSR != nil {
		if cur, err = contentOf(curSR.JSON); err != nil {
			return err
		}
		if status == "" || o.control == actionCreate {
			// A change keeps the status; so does a repeated NW for an order already moving.
			status = fhir.ServiceRequestOf(cur).Status
		}
		if o.control == actionCancel || o.control == actionStatus || o.control == actionHold || o.control == actionRelease {
			// A status message carries the order again, often incompletely: only the status moves.
			content = clone(cur)
		}
	}
	if status == "" {
		status = "active"
	}
	content["status"] = status
	srID, err := w.upsert(ctx, "ServiceRequest", curSR, keys, content, nil)
	if err != nil {
		return err
	}
	if err := w.tx.AddPatientAccess(ctx, accessRows(patientID, w.pl.facility, o.doctors)); err != nil {
		return err
	}
	if curSR == nil {
		// The order's turnaround clock starts (engine/turnaround). No interval ends here, so there
		// is nothing to observe: the Processor needs no metrics.
		if _, err := turnaround.Reach(ctx, w.tx, srID, fhir.ServiceRequestOf(content), turnaround.Ordered, w.pl.now); err != nil {
			return err
		}
	} else if status == "revoked" {
		// Cancelled or discontinued: no report is due any more; its clocks stop.
		if _, err := turnaround.Reach(ctx, w.tx, srID, fhir.ServiceRequestOf(content), turnaround.Closed, w.pl.now); err != nil {
			return err
		}
	}
	return w.worklist(ctx, srID, status, o.worklist)
}

// requester returns the id of the ordering practitioner, "" for none: the one known to be stored
// with this content (sharedRecords), else the one found by its keys, created or updated.
func (w *writer) requester(ctx context.Context, requester map[string]any) (string, error) {
	if requester == nil {
		return "", nil
	}
	keys := requesterKeys(w.pl.facility, requester)
	if w.pl.shared != nil {
		if rec, ok := w.pl.shared.lookup(keys[0]); ok {
			if d, err := contentDigest("Practitioner", requester); err == nil && d == rec.content {
				return rec.id, nil
			}
			w.pl.shared.forget(keys[0]) // this order changes it: read it again next time
		}
	}
	return w.upsertByKeys(ctx, "Practitioner", keys, requester, nil)
}

// orderKeys are the business keys of an order: its placer and filler numbers.
func orderKeys(facility string, sr map[string]any) []string {
	var keys []string
	for _, id := range fhir.IdentifiersOf(sr["identifier"]) {
		switch id.TypeCode() {
		case "PLAC":
			keys = append(keys, identifierKey(facility, "placer", id))
		case "FILL":
			keys = append(keys, identifierKey(facility, "filler", id))
		}
	}
	return slices.DeleteFunc(keys, func(k string) bool { return k == "" })
}

// requesterKeys are the business keys of an ordering practitioner: its identifiers, or its name
// when it has none.
func requesterKeys(facility string, requester map[string]any) []string {
	if keys := identifierKeys(facility, "identifier", fhir.IdentifiersOf(requester["identifier"])); len(keys) > 0 {
		return keys
	}
	return []string{practitionerNameKey(facility, requester)}
}

// practitionerNameKey keys a practitioner sent without an ID by name, within the facility.
func practitionerNameKey(facility string, p map[string]any) string {
	b, _ := json.Marshal(p["name"])
	return "name|facility:" + facility + "|" + string(b)
}

// worklist keeps the Modality Worklist in step with the order: an active order is scheduled
// work (its item replaced with the latest mapping), any other status removes it.
func (w *writer) worklist(ctx context.Context, srID, status string, fields map[string]any) error {
	if !onWorklist(status) || fields == nil {
		return w.tx.DeleteWorklistItem(ctx, srID)
	}
	item, err := worklistItem(fields)
	if err != nil {
		return err
	}
	item.ServiceRequestID = srID
	if w.redirectedTo != nil {
		// The order came under the identifier of a patient merged away: the modality must see
		// the survivor.
		setWorklistPatient(item, *w.redirectedTo)
	}
	return w.tx.PutWorklistItem(ctx, item)
}

// setWorklistPatient fills an item's patient attributes from a stored Patient (dicomPatient).
func setWorklistPatient(item *WorklistItem, patient fhir.Patient) {
	d := dicomPatient(patient)
	item.PatientName, item.PatientID, item.IssuerOfPatientID = d.PatientName, d.PatientID, d.IssuerOfPatientID
	item.PatientBirthDate, item.PatientSex = d.PatientBirthDate, d.PatientSex
}

// dicomPatient is a stored Patient as DICOM names a patient (PS3.3 C.7.1.1), for the worklist
// and for QIDO-RS: its name (official, else usual, else the first) as PN family^given^middle^
// prefix^suffix; its MR identifier (else the first) with that identifier's assigner as issuer;
// birth date as DA; gender as M, F, O or "".
func dicomPatient(p fhir.Patient) PatientIdentity {
	var out PatientIdentity
	if n, ok := pickName(p); ok {
		part := func(l []string, i int) string {
			if i < len(l) {
				return l[i]
			}
			return ""
		}
		parts := []string{n.Family, part(n.Given, 0), part(n.Given, 1), part(n.Prefix, 0), part(n.Suffix, 0)}
		for len(parts) > 0 && parts[len(parts)-1] == "" {
			parts = parts[:len(parts)-1]
		}
		out.PatientName = strings.Join(parts, "^")
	}
	var pick fhir.Identifier
	if i := slices.IndexFunc(p.Identifier, func(id fhir.Identifier) bool { return id.TypeCode() == "MR" }); i >= 0 {
		pick = p.Identifier[i]
	} else if len(p.Identifier) > 0 {
		pick = p.Identifier[0]
	}
	out.PatientID, out.IssuerOfPatientID = pick.Value, pick.Assigner
	if bd := p.BirthDate; len(bd) == 10 {
		out.PatientBirthDate = strings.ReplaceAll(bd, "-", "")
	}
	switch p.Gender {
	case "male":
		out.PatientSex = "M"
	case "female":
		out.PatientSex = "F"
	case "other":
		out.PatientSex = "O"
	}
	return out
}

// worklistItem decodes the mapping's worklist fields (docs/mappings.md names them).
func worklistItem(fields map[string]any) (*WorklistItem, error) {
	b, err := json.Marshal(fields)
	if err != nil {
		return nil, err
	}
	var item WorklistItem
	if err := json.Unmarshal(b, &item); err != nil {
		return nil, fmt.Errorf("worklist fields: %w", err)
	}
	return &item, nil
}

// refreshWorklistPatient rewrites the patient attributes of the worklist items of a patient's
// active orders after an ADT update or merge (IHE RAD-12 patient update reaches the modality).
//
// It starts from the worklist, not from a search of the patient's active ServiceRequests: every
// item is an active order (worklist), so the items scheduled under the patient's IDs are the
// candidates, each confirmed by its ServiceRequest (still active, still this patient's). That is
// an index probe on worklist_items.patient_id and a primary-key read per item, whatever the
// tables' statistics say and however many orders are active (issue 18 item 4: a search with
// status=active walked every active order under a generic plan).
func (w *writer) refreshWorklistPatient(ctx context.Context, patientID string, fields map[string]any) error {
	var patient *WorklistItem
	subject := "Patient/" + patientID
	// Items are found by the patient IDs they were scheduled under: the survivor's and, after a
	// merge, the old patient's.
	seen := map[string]bool{}
	for _, pid := range w.patientIDs {
		items, err := w.tx.WorklistItems(ctx, WorklistFilter{PatientID: pid})
		if err != nil {
			return err
		}
		for _, it := range items {
			if seen[it.ServiceRequestID] {
				continue
			}
			seen[it.ServiceRequestID] = true
			if ok, err := w.activeOrderOf(ctx, it.ServiceRequestID, subject); err != nil || !ok {
				if err != nil {
					return err
				}
				continue
			}
			if patient == nil {
				if patient, err = worklistItem(fields); err != nil {
					return err
				}
			}
			it.PatientName, it.PatientID, it.IssuerOfPatientID = patient.PatientName, patient.PatientID, patient.IssuerOfPatientID
			it.PatientBirthDate, it.PatientSex = patient.PatientBirthDate, patient.PatientSex
			if err := w.tx.PutWorklistItem(ctx, it); err != nil {
				return err
			}
		}
	}
	return nil
}

// activeOrderOf reports whether ServiceRequest/id is active and its subject is subject.
func (w *writer) activeOrderOf(ctx context.Context, id, subject string) (bool, error) {
	r, err := w.tx.Resource(ctx, "ServiceRequest", id)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	content, err := contentOf(r.JSON)
	if err != nil {
		return false, err
	}
	sr := fhir.ServiceRequestOf(content)
	return sr.Status == "active" && sr.Subject.Reference == subject, nil
}

// merge applies an A40: the patient MRG-1 names is merged into patientID (the survivor, from
// PID): the old one gets active=false and a replaced-by link, the survivor a replaces link, and
// the old patient's orders move to the survivor. Its identifiers stay with it, so they resolve —
// through the link — to the survivor. A merge of a patient into itself, of one already merged,
// or into one that was itself merged away, is refused (AE).
func (w *writer) merge(ctx context.Context, survivorID string) error {
	keys := identifierKeys(w.pl.facility, "identifier", w.pl.merge)
	prior, err := w.find(ctx, "Patient", keys)
	if err != nil {
		return err
	}
	if prior == nil {
		return processError(hl7.CodeUnknownKeyIdentifier, "MRG", 1, "the prior patient in MRG-1 is not known")
	}
	priorID := prior.ID
	if priorID == survivorID {
		return processError(hl7.CodeDuplicateKey, "MRG", 1, "the patient in MRG-1 is already merged into the one in PID-3 (or is the same patient)")
	}
	if to := ReplacedBy(prior.JSON); to != "" {
		return processError(hl7.CodeDuplicateKey, "MRG", 1, "the patient in MRG-1 was already merged")
	}
	survivor, err := w.tx.Resource(ctx, "Patient", survivorID)
	if err != nil {
		return err
	}
	if ReplacedBy(survivor.JSON) != "" {
		return processError(hl7.CodeDuplicateKey, "PID", 3, "the surviving patient in PID-3 was itself merged into another")
	}

	pc, err := contentOf(prior.JSON)
	if err != nil {
		return err
	}
	sc, err := contentOf(survivor.JSON)
	if err != nil {
		return err
	}
	priorView := fhir.PatientOf(pc)
	// A hospital merges only its own patients: both must carry an identifier of its issuers,
	// so a sender trusted with merges cannot fold another hospital's patient into one of its own.
	if issuers, ok := w.pl.trust.MergeIssuers(w.pl.facility); ok {
		if !ofIssuers(priorView, issuers) {
			return processError(hl7.CodeApplicationInternalError, "MRG", 1, "the prior patient in MRG-1 has no identifier of facility %q's issuers (%s)", w.pl.facility, strings.Join(issuers, ", "))
		}
		if !ofIssuers(fhir.PatientOf(sc), issuers) {
			return processError(hl7.CodeApplicationInternalError, "PID", 3, "the surviving patient in PID-3 has no identifier of facility %q's issuers (%s)", w.pl.facility, strings.Join(issuers, ", "))
		}
	}
	pc["active"] = false
	fhir.AppendTo(pc, "link", map[string]any{"other": reference("Patient", survivorID), "type": "replaced-by"})
	if err := w.put(ctx, "Patient", priorID, prior.VersionID+1, prior.Keys, pc); err != nil {
		return err
	}
	fhir.AppendTo(sc, "link", map[string]any{"other": reference("Patient", priorID), "type": "replaces"})
	if err := w.put(ctx, "Patient", survivorID, survivor.VersionID+1, survivor.Keys, sc); err != nil {
		return err
	}
	w.patientIDs = append(w.patientIDs, identifierValues(priorView.Identifier)...)
	// Whoever saw either record sees the merged patient, under both ids (docs/security.md).
	if err := w.tx.SharePatientAccess(ctx, priorID, survivorID); err != nil {
		return err
	}

	// Move every order (and encounter) of the old patient to the survivor.
	for _, typ := range []string{"ServiceRequest", "Encounter"} {
		for {
			rs, err := w.tx.SearchResources(ctx, ResourceQuery{Type: typ, Count: 100, Filters: []SearchFilter{
				{Param: "patient", Op: SearchEq, Values: []SearchValue{{Value: "Patient/" + priorID}}}}})
			if err != nil {
				return err
			}
			if len(rs) == 0 {
				break
			}
			for _, found := range rs {
				// Read it whole: a search result need not carry the keys PutResource keeps.
				r, err := w.tx.Resource(ctx, typ, found.ID)
				if err != nil {
					return err
				}
				c, err := contentOf(r.JSON)
				if err != nil {
					return err
				}
				c["subject"] = reference("Patient", survivorID)
				if err := w.put(ctx, typ, r.ID, r.VersionID+1, r.Keys, c); err != nil {
					return err
				}
			}
		}
	}
	return w.moveStudies(ctx, priorID, survivorID)
}

// moveStudies moves the studies linked to a merged patient to the survivor (IHE PIR), in the
// merge's transaction: each gets a new decision naming the survivor, kept in its history after
// the one it replaces, and its ImagingStudy is derived again.
func (w *writer) moveStudies(ctx context.Context, priorID, survivorID string) error {
	links, err := w.tx.StudyLinksOfPatient(ctx, priorID)
	if err != nil {
		return err
	}
	for _, l := range links {
		moved := *l
		moved.PatientID, moved.Rule = survivorID, RuleMerge
		moved.Evidence, moved.Candidates = maps.Clone(l.Evidence), slices.Clone(l.Candidates)
		moved.Evidence["merged_from"] = "Patient/" + priorID + " | rule " + l.Rule
		moved.DecidedAt, moved.DecidedBy, moved.Reason = w.pl.now, DecidedByADT, "patient merged into Patient/"+survivorID+" (ADT A40)"
		for i, c := range moved.Candidates {
			if c.PatientID == priorID {
				moved.Candidates[i].PatientID = survivorID
			}
		}
		if err := w.tx.PutStudyLink(ctx, &moved); err != nil {
			return err
		}
	}
	return nil
}

// identifierValues returns the values of a list of FHIR Identifiers.
func identifierValues(ids []fhir.Identifier) []string {
	var out []string
	for _, id := range ids {
		if id.Value != "" {
			out = append(out, id.Value)
		}
	}
	return out
}
