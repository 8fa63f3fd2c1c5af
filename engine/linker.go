package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhealth/ferry/engine/patientid"
	"github.com/ferryhealth/ferry/fhir"
)

// Linker decides which order and patient a study belongs to (docs/dicom.md, "Linking"). The
// rules run in order; the first that decides, decides:
//
//  1. accession: the study's Accession Number is an order's accession (its ACSN identifier);
//  2. study-uid: the study's Study Instance UID is the one scheduled on an order;
//  3. patient-id: the study's Patient ID, read under the hospital's identifier rules
//     (MatchConfig.Identifiers), is one patient's identifier — its own, or one the
//     cross-reference learned from a linked study; then the patient's one open order that fits
//     the study (modality, date window), if exactly one does;
//  4. demographics: candidates from the blocking index, each scored field by field
//     (compareDemographics, Fellegi–Sunter weights): above AutoLink with a clear lead over the
//     next → linked; in the band down to Review, or two close together → review; below → unmatched.
//
// An order or patient found by a rule is linked only when the study's patient fields do not
// contradict that patient (birth date, sex, both name parts; a patient ID that belongs to
// another patient): a contradiction is never auto-linked but recorded for a person to decide. A
// patient ID of the patient's own authority that is none of its numbers contradicts too, except
// under rules 1 and 2 when name (in any order), birth date and sex all agree exactly: the
// accession is enough, and the study's ID becomes another identifier of the person. Every
// decision — rule, score and thresholds, the fields compared, how the Patient ID was read, the
// candidates weighed — is kept with the study.
type Linker struct {
	Resources ResourceReader
	Links     LinkStore
	Match     MatchConfig
	Now       func() time.Time // default time.Now
}

// MatchConfig is what an analyst tunes about linking (config: linking).
type MatchConfig struct {
	// Identifiers are the hospitals' identifier rules (engine/patientid, docs/dicom.md
	// "Identifier rules"): which issuers are one authority, how a Patient ID is normalised, and
	// which systems' numbers are other identifiers of the same person. A study's Patient ID is
	// read under the first hospital's rules that claim its issuer (without an issuer: the first
	// with a default authority). A Patient ID of an issuer no rule names never matches a
	// hospital's MRN; it is still learned as an identifier of the person its study is linked to
	// (system urn:ferry:issuer:<issuer>). One sent without an issuer, when no hospital has a
	// default authority, is compared exactly with the patients' identifiers in any system.
	Identifiers []*patientid.Rules
	// AutoLink is the score from which the best candidate is linked without a person (default
	// DefaultAutoLink); Review the score from which a candidate goes to the worklist rather than
	// the study being held as unmatched (DefaultReview); Margin the lead the best candidate must
	// have over the second to be linked (DefaultMargin).
	AutoLink, Review, Margin float64
	// Weights: nil means DefaultMatchWeights.
	Weights *MatchWeights
	// OrderWindowBefore and OrderWindowAfter bound an order's date (occurrence, else authored)
	// around the study date for rules 3 and 4 (defaults 30 days before, 2 days after).
	OrderWindowBefore, OrderWindowAfter time.Duration
	// MaxCandidates bounds the candidates read from the blocking index (default 50); when more
	// share a key, the study goes to a person.
	MaxCandidates int
}

// UnknownIssuerSystem prefixes the issuer of a Patient ID no identifier rule names, to make the
// system the cross-reference keeps it under.
const UnknownIssuerSystem = "urn:ferry:issuer:"

// Default thresholds. A clean match scores about 29; a typo in one name about 25; a transposed
// birth date about 19; twins (same family name, birth date and sex, another given name) about
// 17; a namesake born another day about 8.
const (
	DefaultAutoLink = 22.0
	DefaultReview   = 10.0
	DefaultMargin   = 6.0
)

// Link rules as recorded.
const (
	RuleAccession = "accession"
	RuleStudyUID  = "study-uid"
	RulePatientID = "patient-id"
	// RuleLearned: rule 3 by an identifier the patient holds only because a linked study
	// taught it (the cross-reference). Such a decision teaches nothing itself, and is decided
	// again when the teaching decision is replaced (Linker.Unlearn).
	RuleLearned      = "learned-id"
	RuleDemographics = "demographics"
	RuleManual       = "manual"
	RuleMerge        = "merge"
)

// The Patient index entries the linker searches (patientLinkIndex): names no FHIR search
// parameter can have, so the REST API never offers them.
const (
	linkIDParam    = "link:id"    // System: the identifier system; Value: normalizedIdentifier
	linkBlockParam = "link:block" // Value: a blocking key (blockingKeys)
)

// patientLinkIndex returns a Patient's entries for the linker's index: each identifier
// normalised, and the blocking keys of its name and birth date.
func patientLinkIndex(patient fhir.Patient) []fhir.IndexEntry {
	var entries []fhir.IndexEntry
	for _, id := range patient.Identifier {
		if n := normalizedIdentifier(id.Value); n != "" {
			entries = append(entries, fhir.IndexEntry{Param: linkIDParam, System: id.System, Value: n})
		}
	}
	for _, k := range blockingKeys(fhirName(patient), strings.ReplaceAll(patient.BirthDate, "-", "")) {
		entries = append(entries, fhir.IndexEntry{Param: linkBlockParam, Value: k})
	}
	return entries
}

func (c *MatchConfig) weights() MatchWeights {
	if c.Weights != nil {
		return *c.Weights
	}
	return DefaultMatchWeights
}

func orDefault(v, d float64) float64 {
	if v == 0 {
		return d
	}
	return v
}

// LinkStudy decides s's link and records it.
func (l *Linker) LinkStudy(ctx context.Context, s *Study) (*StudyLink, error) {
	link, err := l.decide(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("linking study %s: %w", s.StudyInstanceUID, err)
	}
	if cur, err := l.Links.StudyLink(ctx, s.StudyInstanceUID); err == nil && sameDecision(cur, link) {
		return cur, nil // decided the same again: nothing to record, nothing to derive
	}
	return link, l.Links.PutStudyLink(ctx, link)
}

func (l *Linker) decide(ctx context.Context, s *Study) (*StudyLink, error) {
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	link := &StudyLink{StudyInstanceUID: s.StudyInstanceUID, Status: LinkUnmatched, Evidence: map[string]string{},
		DecidedAt: now().UTC(), DecidedBy: DecidedByLinker}

	// The study's Patient ID as the hospital's rules read it, and who holds it: one lookup for
	// every rule below.
	sid := l.readStudyID(s.IssuerOfPatientID, s.PatientID)
	if sid.reading.Sent != "" {
		link.Evidence["patient_id_reading"] = sid.reading.Explain()
	}
	link.Identifier = sid.learnable()
	held, learned, err := l.holders(ctx, sid, link.Evidence)
	if err != nil {
		return nil, err
	}

	// Rules 1 and 2: an order named by the study (both looked up in one query).
	acc := strings.TrimSpace(s.AccessionNumber)
	byAccession, byUID, err := l.ordersNamedBy(ctx, acc, s.StudyInstanceUID)
	if err != nil {
		return nil, err
	}
	for _, r := range []struct {
		name, value string
		found       []*Resource
	}{
		{RuleAccession, acc, byAccession},
		{RuleStudyUID, s.StudyInstanceUID, byUID},
	} {
		if r.value == "" {
			continue
		}
		found := r.found
		link.Evidence[r.name] = r.value + " | " + strconv.Itoa(len(found)) + " order(s)"
		switch len(found) {
		case 0:
			continue
		case 1:
		default:
			link.Status, link.Rule = LinkContradiction, r.name
			return link, nil
		}
		sr := found[0]
		patient, err := l.orderPatient(ctx, sr)
		if err != nil {
			return nil, err
		}
		link.Rule, link.ServiceRequestID, link.PatientID = r.name, sr.ID, patient.id
		c := l.compare(s, sid, held, patient)
		maps.Copy(link.Evidence, c.Evidence)
		switch {
		case c.Contradicts || c.IDContradicts:
			link.Status = LinkContradiction
		case c.IDDiffers && !l.enoughWithOrder(c):
			link.Status = LinkContradiction
			link.Evidence["patient_id"] += "; name, birth date and sex do not agree well enough for the order alone to decide"
		default:
			link.Status, link.Score = LinkLinked, 1
			if c.IDDiffers {
				link.Evidence["patient_id"] += "; the order and the demographics agree (score " + strconv.FormatFloat(c.Score, 'f', -1, 64) +
					"): the study's ID becomes another identifier of the person"
			}
		}
		return link, nil
	}

	// Rule 3: the patient's own identifier, or one learned from a linked study.
	if len(held) == 1 {
		p := held[0]
		c := l.compare(s, sid, held, p)
		maps.Copy(link.Evidence, c.Evidence)
		link.Rule, link.PatientID, link.Score = RulePatientID, p.id, c.Score
		if learned[p.id] {
			link.Rule = RuleLearned
		}
		if c.Contradicts {
			link.Status = LinkContradiction
			return link, nil
		}
		link.Status = LinkLinked
		link.ServiceRequestID, err = l.pickOrder(ctx, s, p.id, link.Evidence)
		return link, err
	}

	// Rule 4: demographics.
	return link, l.demographics(ctx, s, sid, link, held)
}

// sameDecision reports whether two decisions say the same: status, rule, order, patient,
// score, who decided, the identifier and the evidence (not when).
func sameDecision(a, b *StudyLink) bool {
	return a.Status == b.Status && a.Rule == b.Rule && a.ServiceRequestID == b.ServiceRequestID &&
		a.PatientID == b.PatientID && a.Score == b.Score && a.DecidedByOrLinker() == b.DecidedByOrLinker() &&
		a.Identifier == b.Identifier && maps.Equal(a.Evidence, b.Evidence) && len(a.Candidates) == len(b.Candidates)
}

// candidate is a patient a rule is weighing: its id (the survivor, for a merged patient), the
// Patient, and the identifiers it answers to (its own and those of the patients merged into it).
type candidate struct {
	id          string
	patient     fhir.Patient
	identifiers []fhir.Identifier
}

// comparison of a study with a candidate, patient ID included: held are the patients holding
// the study's ID (holders).
func (l *Linker) compare(s *Study, sid studyID, held []*candidate, p *candidate) comparison {
	c := compareDemographics(l.Match.weights(), s, p.patient)
	sent := sid.reading.Sent
	switch outcome := l.compareID(sid, held, p); outcome {
	case outcomeAgree:
		w := l.Match.weights().PatientIDAgree
		c.Score = math.Round((c.Score+w)*100) / 100
		c.Evidence["patient_id"] = sent + " | " + outcomeAgree + " (+" + strconv.FormatFloat(w, 'f', -1, 64) + ")"
	case outcomeDisagree:
		c.IDContradicts = true
		c.Evidence["patient_id"] = sent + " | another patient's | " + outcomeDisagree
	case outcomeDiffers:
		c.IDDiffers = true
		c.Evidence["patient_id"] = sent + " | " + strings.Join(identifierValues(p.identifiers), ",") + " | " + outcomeDiffers
	case "":
	default:
		c.Evidence["patient_id"] = sent + " | " + outcome
	}
	return c
}

// enoughWithOrder reports whether the demographics, with the order the accession names, decide
// though the study's patient ID is none of the patient's numbers: name (in any order and case),
// birth date and sex agree exactly, or the birth date agrees and the demographic score alone
// reaches auto_link (a typo in one name).
func (l *Linker) enoughWithOrder(c comparison) bool {
	return c.agreesExactly() || (c.BirthDate == outcomeAgree && c.Score >= orDefault(l.Match.AutoLink, DefaultAutoLink))
}

// outcomeDiffers: the study's patient ID is of an authority the patient has numbers of, and is
// none of them (nor anyone else's): another format, a mistyped or an unrecorded number.
const outcomeDiffers = "differs"

// compareID compares the study's patient ID with a patient's identifiers: agrees when the
// patient holds it (held); contradicts when another patient does; differs when the patient has
// numbers of the ID's authority (or, for an ID read in no system, any numbers) and this is none
// of them; "" when there is nothing to compare, else why it cannot be compared.
func (l *Linker) compareID(sid studyID, held []*candidate, p *candidate) string {
	switch {
	case sid.reading.Sent == "":
		return ""
	case sid.reading.Refused != "":
		return "refused: " + sid.reading.Refused
	case slices.ContainsFunc(held, func(h *candidate) bool { return h.id == p.id }):
		return outcomeAgree
	case len(held) > 0:
		return outcomeDisagree
	case sid.anySystem:
		if len(p.identifiers) > 0 {
			return outcomeDiffers
		}
	case sid.reading.Known:
		if slices.ContainsFunc(p.identifiers, func(id fhir.Identifier) bool { return id.System == sid.key.System }) {
			return outcomeDiffers
		}
	}
	return "not comparable"
}

// studyID is a study's Patient ID as the identifier rules read it.
type studyID struct {
	reading patientid.Reading
	// key is what it is looked up by: the system and normalised value (zero when refused).
	key LinkIdentifier
	// anySystem: sent without an issuer and no hospital has a default authority: compared
	// exactly with identifiers of any system, never learned.
	anySystem bool
}

// learnable is the identifier a linked decision teaches the cross-reference (zero: none).
func (sid studyID) learnable() LinkIdentifier {
	if sid.anySystem {
		return LinkIdentifier{}
	}
	return sid.key
}

// readStudyID reads a Patient ID as sent with its issuer under the first hospital's rules that
// claim the issuer (MatchConfig.Identifiers).
func (l *Linker) readStudyID(issuer, value string) studyID {
	issuer, value = strings.TrimSpace(issuer), strings.TrimSpace(value)
	if value == "" {
		return studyID{}
	}
	for _, r := range l.Match.Identifiers {
		if rd := r.Read(issuer, value); rd.Known {
			sid := studyID{reading: rd}
			if rd.Refused == "" {
				sid.key = LinkIdentifier{System: rd.System, Value: rd.Value}
			}
			return sid
		}
	}
	rd := patientid.Reading{Issuer: issuer, Sent: value, Value: value}
	if issuer == "" {
		return studyID{reading: rd, key: LinkIdentifier{Value: value}, anySystem: true}
	}
	return studyID{reading: rd, key: LinkIdentifier{System: UnknownIssuerSystem + issuer, Value: value}}
}

// readStored is a Patient's identifier value as the rules of its system normalise it.
func (l *Linker) readStored(system, value string) string {
	for _, r := range l.Match.Identifiers {
		if rd := r.ReadStored(system, value); rd.Known {
			return rd.Value
		}
	}
	return strings.TrimSpace(value)
}

// holds reports whether a Patient's identifier is the study's.
func (l *Linker) holds(sid studyID, id fhir.Identifier) bool {
	if sid.anySystem {
		return strings.TrimSpace(id.Value) == sid.key.Value
	}
	return id.System == sid.key.System && l.readStored(id.System, id.Value) == sid.key.Value
}

// holders returns the distinct patients (survivors) holding the study's ID: among their own
// identifiers and those of the records merged into them (the Patient index), and among the
// identifiers the cross-reference learned from linked studies (StudyLinksWithIdentifier; a
// decision of rule learned-id teaches nothing). learned are the holders found only there, each
// named in the evidence with the decision that taught it.
func (l *Linker) holders(ctx context.Context, sid studyID, evidence map[string]string) (held []*candidate, learned map[string]bool, err error) {
	if sid.key.IsZero() {
		return nil, nil, nil
	}
	var out []*candidate
	add := func(p *candidate) {
		if !slices.ContainsFunc(out, func(x *candidate) bool { return x.id == p.id }) {
			out = append(out, p)
		}
	}
	if key := normalizedIdentifier(sid.key.Value); key != "" {
		rs, err := l.Resources.SearchResources(ctx, ResourceQuery{Type: "Patient", Count: 20, Filters: []SearchFilter{
			{Param: linkIDParam, Op: SearchEq, Values: []SearchValue{{System: sid.key.System, Value: key}}}}})
		if err != nil {
			return nil, nil, err
		}
		for _, r := range rs {
			c, err := contentOf(r.JSON)
			if err != nil {
				return nil, nil, err
			}
			patient := fhir.PatientOf(c)
			if !slices.ContainsFunc(patient.Identifier, func(id fhir.Identifier) bool { return l.holds(sid, id) }) {
				continue
			}
			p, err := l.survivor(ctx, r, patient)
			if err != nil {
				return nil, nil, err
			}
			add(p)
		}
	}
	if learn := sid.learnable(); !learn.IsZero() {
		taught, err := l.Links.StudyLinksWithIdentifier(ctx, learn.System, learn.Value, 20)
		if err != nil {
			return nil, nil, err
		}
		var notes []string
		for _, t := range taught {
			if t.PatientID == "" || t.Rule == RuleLearned || slices.ContainsFunc(out, func(x *candidate) bool { return x.id == t.PatientID }) {
				continue
			}
			p, err := l.patient(ctx, t.PatientID)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, nil, err
			}
			if slices.ContainsFunc(out, func(x *candidate) bool { return x.id == p.id }) {
				continue // a survivor that holds it already
			}
			if learned == nil {
				learned = map[string]bool{}
			}
			add(p)
			learned[p.id] = true
			notes = append(notes, "Patient/"+p.id+" from study "+t.StudyInstanceUID+" (rule "+t.Rule+", decided by "+t.DecidedByOrLinker()+")")
		}
		if len(notes) > 0 {
			evidence["patient_id_learned"] = strings.Join(notes, "; ")
		}
	}
	if sid.reading.Sent != "" {
		evidence[RulePatientID] = sid.reading.Sent + " | " + strconv.Itoa(len(out)) + " patient(s)"
	}
	return out, learned, nil
}

// Unlearn decides again the studies linked by rule learned-id to prev's patient with prev's
// identifier, once prev — a decision that taught the identifier — has been replaced (a person
// unlinked or relinked its study): what it taught is undone, and each such study links again
// only on other evidence. study reads a study by UID. It returns how many were decided again.
func (l *Linker) Unlearn(ctx context.Context, prev *StudyLink, study func(ctx context.Context, uid string) (*Study, error)) (int, error) {
	if prev == nil || prev.Status != LinkLinked || prev.Identifier.IsZero() || prev.Rule == RuleLearned {
		return 0, nil
	}
	taught, err := l.Links.StudyLinksWithIdentifier(ctx, prev.Identifier.System, prev.Identifier.Value, 1000)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, t := range taught {
		if t.Rule != RuleLearned || t.PatientID != prev.PatientID || t.StudyInstanceUID == prev.StudyInstanceUID {
			continue
		}
		s, err := study(ctx, t.StudyInstanceUID)
		if err != nil {
			return n, fmt.Errorf("unlearning: reading study %s: %w", t.StudyInstanceUID, err)
		}
		if _, err := l.LinkStudy(ctx, s); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// patient returns the candidate a Patient id stands for (the survivor, when it was merged).
func (l *Linker) patient(ctx context.Context, id string) (*candidate, error) {
	r, err := l.Resources.Resource(ctx, "Patient", id)
	if err != nil {
		return nil, err
	}
	c, err := contentOf(r.JSON)
	if err != nil {
		return nil, err
	}
	return l.survivor(ctx, r, fhir.PatientOf(c))
}

// demographics is rule 4: candidates from the blocking index, scored and ranked. byID are the
// patients rule 3 found when it found more than one; they are weighed too.
func (l *Linker) demographics(ctx context.Context, s *Study, sid studyID, link *StudyLink, byID []*candidate) error {
	birth := strings.TrimSpace(s.PatientBirthDate)
	keys := blockingKeys(dicomName(s.PatientName), birth)
	if isDate(birth) {
		// With a birth date, the name-only key adds only candidates whose birth date disagrees,
		// who score too low to be linked; without one, it is all there is (for a person).
		keys = slices.DeleteFunc(keys, func(k string) bool { return strings.HasPrefix(k, "nn:") })
	}
	if len(keys) == 0 && len(byID) == 0 {
		link.Evidence[RuleDemographics] = "no name or birth date to compare"
		return nil
	}
	limit := cmp.Or(l.Match.MaxCandidates, 50)
	var found []*Resource
	if len(keys) > 0 {
		values := make([]SearchValue, len(keys))
		for i, k := range keys {
			values[i] = SearchValue{Value: k}
		}
		var err error
		found, err = l.Resources.SearchResources(ctx, ResourceQuery{Type: "Patient", Count: limit + 1,
			Filters: []SearchFilter{{Param: linkBlockParam, Op: SearchEq, Values: values}}})
		if err != nil {
			return err
		}
	}
	if len(found) > limit {
		link.Status = LinkReview
		link.Evidence[RuleDemographics] = "more than " + strconv.Itoa(limit) + " candidates share a blocking key"
		return nil
	}

	// Score each candidate record; a merged-away record stands for its survivor, which keeps
	// the best score of its records.
	best := map[string]LinkCandidate{}
	judged := map[string]comparison{} // the best record's comparison, by candidate
	weigh := func(p *candidate, record fhir.Patient) error {
		c := l.compare(s, sid, byID, &candidate{id: p.id, patient: record, identifiers: p.identifiers})
		if prev, ok := best[p.id]; !ok || c.Score > prev.Score {
			best[p.id] = LinkCandidate{PatientID: p.id, Score: c.Score, Evidence: c.Evidence}
			judged[p.id] = c
		}
		return nil
	}
	for _, r := range found {
		content, err := contentOf(r.JSON)
		if err != nil {
			return err
		}
		record := fhir.PatientOf(content)
		p, err := l.survivor(ctx, r, record)
		if err != nil {
			return err
		}
		if err := weigh(p, record); err != nil {
			return err
		}
	}
	for _, p := range byID {
		if _, ok := best[p.id]; !ok {
			if err := weigh(p, p.patient); err != nil {
				return err
			}
		}
	}
	cands := make([]LinkCandidate, 0, len(best))
	for _, c := range best {
		cands = append(cands, c)
	}
	slices.SortFunc(cands, func(a, b LinkCandidate) int {
		return cmp.Or(cmp.Compare(b.Score, a.Score), strings.Compare(a.PatientID, b.PatientID))
	})
	if len(cands) > 5 {
		cands = cands[:5]
	}
	link.Evidence[RuleDemographics] = strconv.Itoa(len(best)) + " candidate(s)"
	if len(cands) == 0 {
		return nil
	}
	link.Candidates = cands
	top := cands[0]
	link.Score = top.Score
	auto := orDefault(l.Match.AutoLink, DefaultAutoLink)
	review := orDefault(l.Match.Review, DefaultReview)
	margin := orDefault(l.Match.Margin, DefaultMargin)
	clear := len(cands) == 1 || top.Score-cands[1].Score >= margin
	link.Evidence["thresholds"] = "score " + strconv.FormatFloat(top.Score, 'f', -1, 64) + "; auto_link " + strconv.FormatFloat(auto, 'f', -1, 64) +
		", review " + strconv.FormatFloat(review, 'f', -1, 64) + ", margin " + strconv.FormatFloat(margin, 'f', -1, 64)
	switch j := judged[top.PatientID]; {
	case (j.IDContradicts || j.IDDiffers) && top.Score >= review:
		// Demographics say this patient, the patient ID another (or another of its numbers).
		link.Status, link.Rule, link.PatientID = LinkContradiction, RuleDemographics, top.PatientID
	case top.Score >= auto && clear && !j.Contradicts:
		link.Status, link.Rule, link.PatientID = LinkLinked, RuleDemographics, top.PatientID
		maps.Copy(link.Evidence, top.Evidence)
		var err error
		link.ServiceRequestID, err = l.pickOrder(ctx, s, top.PatientID, link.Evidence)
		return err
	case top.Score >= review:
		link.Status, link.Rule = LinkReview, RuleDemographics
		if !clear {
			link.Evidence["margin"] = strconv.FormatFloat(top.Score-cands[1].Score, 'f', 2, 64) + " < " + strconv.FormatFloat(margin, 'f', -1, 64)
		}
	}
	return nil
}

// survivor returns the candidate a Patient stands for: the patient that replaced it, following
// merges, with the identifiers of every record merged into that one.
func (l *Linker) survivor(ctx context.Context, r *Resource, patient fhir.Patient) (*candidate, error) {
	if s, err := survivor(ctx, l.Resources, r); err != nil {
		return nil, err
	} else if s.ID != r.ID {
		content, err := contentOf(s.JSON)
		if err != nil {
			return nil, err
		}
		patient, r = fhir.PatientOf(content), s
	}
	ids, err := identifiersOfPerson(ctx, l.Resources, r.ID, patient)
	if err != nil {
		return nil, err
	}
	return &candidate{id: r.ID, patient: patient, identifiers: ids}, nil
}

// identifiersOfPerson returns the identifiers of a Patient (id, its content) and of every record
// merged into it, through its replaces links: all the numbers the person is known by. A link to
// a record the store no longer has is passed over.
func identifiersOfPerson(ctx context.Context, rd ResourceReader, id string, patient fhir.Patient) ([]fhir.Identifier, error) {
	var out []fhir.Identifier
	seen := map[string]bool{id: true}
	queue := []fhir.Patient{patient}
	for len(queue) > 0 && len(seen) < 32 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, p.Identifier...)
		for _, lk := range p.Link {
			id, ok := strings.CutPrefix(lk.Other.Reference, "Patient/")
			if lk.Type != "replaces" || !ok || seen[id] {
				continue
			}
			seen[id] = true
			old, err := rd.Resource(ctx, "Patient", id)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			oc, err := contentOf(old.JSON)
			if err != nil {
				return nil, err
			}
			queue = append(queue, fhir.PatientOf(oc))
		}
	}
	return out, nil
}

// orderPatient returns the patient of an order (the survivor, when it was merged).
func (l *Linker) orderPatient(ctx context.Context, sr *Resource) (*candidate, error) {
	c, err := contentOf(sr.JSON)
	if err != nil {
		return nil, err
	}
	id, ok := strings.CutPrefix(fhir.ServiceRequestOf(c).Subject.Reference, "Patient/")
	if !ok {
		return nil, errors.New("order without a patient")
	}
	return l.patient(ctx, id)
}

// pickOrder returns the patient's one open order (active, on hold, draft) that fits the study:
// a modality of the study's, and its date within the window around the study date; of several
// that fit, the one whose procedure the study description names. "" when none or several fit:
// the study is linked to the patient, and a person may name the order.
func (l *Linker) pickOrder(ctx context.Context, s *Study, patientID string, evidence map[string]string) (string, error) {
	// By patient only: a patient has few orders, and a status filter matches most of everyone's.
	rs, err := l.Resources.SearchResources(ctx, ResourceQuery{Type: "ServiceRequest", Count: 200, Filters: []SearchFilter{
		{Param: "subject", Op: SearchEq, Values: []SearchValue{{Value: "Patient/" + patientID}}},
	}})
	if err != nil {
		return "", err
	}
	open := 0
	studyDay, dateErr := time.Parse("20060102", strings.TrimSpace(s.StudyDate))
	before := cmp.Or(l.Match.OrderWindowBefore, 30*24*time.Hour)
	after := cmp.Or(l.Match.OrderWindowAfter, 2*24*time.Hour)
	var fits, byProcedure []string
	described := nameTokens(s.StudyDescription)
	for _, r := range rs {
		c, err := contentOf(r.JSON)
		if err != nil {
			return "", err
		}
		sr := fhir.ServiceRequestOf(c)
		if st := sr.Status; st != "active" && st != "on-hold" && st != "draft" {
			continue
		}
		open++
		if m := orderModality(sr); m != "" && len(s.ModalitiesInStudy) > 0 && !slices.Contains(s.ModalitiesInStudy, m) {
			continue
		}
		if dateErr == nil {
			when := cmp.Or(sr.OccurrenceDateTime, sr.AuthoredOn)
			if t, ok := parseFHIRDay(when); ok && (t.Before(studyDay.Add(-before)) || t.After(studyDay.Add(after))) {
				continue
			}
		}
		fits = append(fits, r.ID)
		if sharesProcedureWord(described, sr.Code) {
			byProcedure = append(byProcedure, r.ID)
		}
	}
	evidence["order"] = strconv.Itoa(len(fits)) + " of " + strconv.Itoa(open) + " open order(s) fit"
	switch {
	case len(fits) == 1:
		return fits[0], nil
	case len(fits) > 1 && len(byProcedure) == 1:
		// Several fit by modality and date; the study description names one's procedure.
		evidence["order"] += ", 1 by procedure"
		return byProcedure[0], nil
	}
	return "", nil
}

// sharesProcedureWord reports whether the study description's words include a word (three
// letters or more, not a modality's name) of the order's procedure: its codings' displays or text.
func sharesProcedureWord(described []string, code fhir.CodeableConcept) bool {
	if len(described) == 0 {
		return false
	}
	texts := []string{code.Text}
	for _, cd := range code.Coding {
		texts = append(texts, cd.Display)
	}
	for _, t := range texts {
		for _, w := range nameTokens(t) {
			if len(w) >= 3 && !genericProcedureWords[w] && slices.Contains(described, w) {
				return true
			}
		}
	}
	return false
}

// genericProcedureWords say nothing about which procedure it was.
var genericProcedureWords = map[string]bool{"with": true, "without": true, "contrast": true, "and": true,
	"the": true, "mri": true, "ct": true, "xr": true, "us": true, "views": true, "view": true, "wo": true}

// orderModality is the DICOM modality an order's orderDetail gives (the order mappings put it
// there), "" when none.
func orderModality(sr fhir.ServiceRequest) string {
	for _, d := range sr.OrderDetail {
		for _, c := range d.Coding {
			if c.System == "http://dicom.nema.org/resources/ontology/DCM" {
				return c.Code
			}
		}
	}
	return ""
}

// parseFHIRDay reads the day of a FHIR date or dateTime, as written (its own zone's day).
func parseFHIRDay(s string) (time.Time, bool) {
	if len(s) < 10 {
		return time.Time{}, false
	}
	t, err := time.Parse("2006-01-02", s[:10])
	return t, err == nil
}

// ordersNamedBy returns the orders whose accession (an ACSN identifier: a placer number that
// happens to have the same value does not count) is acc, and those scheduled with the Study
// Instance UID uid (the urn:dicom:uid identifier), in one query.
func (l *Linker) ordersNamedBy(ctx context.Context, acc, uid string) (byAccession, byUID []*Resource, err error) {
	oid := "urn:oid:" + uid
	values := []SearchValue{{System: "urn:dicom:uid", Value: oid}}
	if acc != "" {
		values = append(values, SearchValue{Value: acc})
	}
	found, err := l.Resources.SearchResources(ctx, ResourceQuery{Type: "ServiceRequest", Count: 20, Filters: []SearchFilter{
		{Param: "identifier", Op: SearchEq, Values: values}}})
	if err != nil {
		return nil, nil, err
	}
	for _, r := range found {
		c, err := contentOf(r.JSON)
		if err != nil {
			return nil, nil, err
		}
		accession, scheduled := false, false
		for _, id := range fhir.IdentifiersOf(c["identifier"]) {
			accession = accession || (acc != "" && id.Value == acc && id.TypeCode() == "ACSN")
			scheduled = scheduled || (id.Value == oid && id.System == "urn:dicom:uid")
		}
		if accession {
			byAccession = append(byAccession, r)
		}
		if scheduled {
			byUID = append(byUID, r)
		}
	}
	return byAccession, byUID, nil
}

// sexAgrees compares DICOM Patient's Sex (M, F, O) with FHIR administrative gender.
func sexAgrees(dicomSex, gender string) bool {
	switch strings.ToUpper(strings.TrimSpace(dicomSex)) {
	case "M":
		return gender == "male"
	case "F":
		return gender == "female"
	default:
		return true // O or unknown: nothing to contradict
	}
}

// PatientIdentity is a patient as DICOM names it (PS3.3 C.7.1.1): what a viewer shows for a
// study linked to that patient, instead of what the modality sent.
type PatientIdentity struct {
	PatientFHIRID     string // Ferry's Patient id
	PatientID         string // (0010,0020): the MRN (an identifier of type MR, else the first)
	IssuerOfPatientID string // (0010,0021): the first issuer the identifier rules name for the MRN's system
	PatientName       string // (0010,0010) PN: FAMILY^GIVEN^MIDDLE
	PatientBirthDate  string // (0010,0030) DA
	PatientSex        string // (0010,0040) M, F, O or ""
}

// LinkedIdentity returns the identity of the patient a study is linked to (the survivor, after
// merges), or nil when the study is not linked.
func (l *Linker) LinkedIdentity(ctx context.Context, studyInstanceUID string) (*PatientIdentity, error) {
	link, err := l.Links.StudyLink(ctx, studyInstanceUID)
	if errors.Is(err, ErrNotFound) || (err == nil && (link.Status != LinkLinked || link.PatientID == "")) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p, err := l.patient(ctx, link.PatientID)
	if err != nil {
		return nil, fmt.Errorf("reading the linked patient of study %s: %w", studyInstanceUID, err)
	}
	return l.identity(p.id, p.patient), nil
}

func (l *Linker) identity(id string, p fhir.Patient) *PatientIdentity {
	out := dicomPatient(p)
	out.PatientFHIRID = id
	// The issuer as the modalities know it: the rules' first issuer for the MRN's system.
	for _, mrn := range p.Identifier {
		if mrn.Value == out.PatientID && mrn.System != "" {
			out.IssuerOfPatientID = l.issuerOf(mrn.System)
			break
		}
	}
	return &out
}

// PatientsWithID returns the Ferry ids of the patients (survivors, after merges) holding a
// patient ID as the identifier rules read it with its issuer (IssuerOfPatientID as a viewer
// sends it): among their own identifiers and those the cross-reference learned from linked
// studies, for finding studies under the linked identity.
func (l *Linker) PatientsWithID(ctx context.Context, issuer, patientID string) ([]string, error) {
	found, _, err := l.holders(ctx, l.readStudyID(issuer, patientID), map[string]string{})
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(found))
	for i, p := range found {
		ids[i] = p.id
	}
	return ids, nil
}
