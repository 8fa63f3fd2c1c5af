package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhealth/ferry/fhir"
)

// Linker decides which order and patient a study belongs to (docs/dicom.md, "Linking"). The
// rules run in order; the first that decides, decides:
//
//  1. accession: the study's Accession Number is an order's accession (its ACSN identifier);
//  2. study-uid: the study's Study Instance UID is the one scheduled on an order;
//  3. patient-id: the study's Patient ID, within its issuer and after that issuer's
//     normalisation (MatchConfig.Issuers), is one patient's identifier; then the patient's one
//     open order that fits the study (modality, date window), if exactly one does;
//  4. demographics: candidates from the blocking index, each scored field by field
//     (compareDemographics, Fellegi–Sunter weights): above AutoLink with a clear lead over the
//     next → linked; in the band down to Review, or two close together → review; below → unmatched.
//
// An order or patient found by a rule is linked only when the study's patient fields do not
// contradict that patient (birth date, sex, both name parts; a patient ID of the same issuer that
// differs, or that belongs to another patient): a contradiction is never auto-linked but recorded
// for a person to decide. Every decision — rule, score, the fields compared, the candidates
// weighed — is kept with the study.
type Linker struct {
	Resources ResourceReader
	Links     LinkStore
	Match     MatchConfig
	Now       func() time.Time // default time.Now
}

// MatchConfig is what an analyst tunes about linking (config: linking).
type MatchConfig struct {
	// Issuers says how each issuer's patient IDs are written by modalities and which identifier
	// system they are in Ferry. A study whose IssuerOfPatientID no rule names, and which has one,
	// is not linked by patient ID (an MRN means nothing without its authority).
	Issuers []IssuerRule
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

// IssuerRule describes one issuer of patient IDs as modalities send them.
type IssuerRule struct {
	Issuer             string   // IssuerOfPatientID (0010,0021) as sent; "" for studies without one
	System             string   // the identifier system of these IDs in Ferry; "" = any system
	IgnoreLeadingZeros bool     // "000123" and "123" are the same ID
	Prefixes           []string // removed from the ID the modality sent ("MRN-123" → "123")
}

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
	RuleAccession    = "accession"
	RuleStudyUID     = "study-uid"
	RulePatientID    = "patient-id"
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
		c, err := l.compare(ctx, s, patient)
		if err != nil {
			return nil, err
		}
		maps.Copy(link.Evidence, c.Evidence)
		if c.Contradicts || c.IDContradicts {
			link.Status = LinkContradiction
		} else {
			link.Status, link.Score = LinkLinked, 1
		}
		return link, nil
	}

	// Rule 3: the patient's own identifier.
	byID, err := l.patientsByID(ctx, s, link.Evidence)
	if err != nil {
		return nil, err
	}
	if len(byID) == 1 {
		c, err := l.compare(ctx, s, byID[0])
		if err != nil {
			return nil, err
		}
		maps.Copy(link.Evidence, c.Evidence)
		link.Rule, link.PatientID, link.Score = RulePatientID, byID[0].id, c.Score
		if c.Contradicts || c.IDContradicts {
			link.Status = LinkContradiction
			return link, nil
		}
		link.Status = LinkLinked
		link.ServiceRequestID, err = l.pickOrder(ctx, s, byID[0].id, link.Evidence)
		return link, err
	}

	// Rule 4: demographics.
	return link, l.demographics(ctx, s, link, byID)
}

// sameDecision reports whether two decisions say the same: status, rule, order, patient,
// score, who decided and the evidence (not when).
func sameDecision(a, b *StudyLink) bool {
	return a.Status == b.Status && a.Rule == b.Rule && a.ServiceRequestID == b.ServiceRequestID &&
		a.PatientID == b.PatientID && a.Score == b.Score && a.DecidedByOrLinker() == b.DecidedByOrLinker() &&
		maps.Equal(a.Evidence, b.Evidence) && len(a.Candidates) == len(b.Candidates)
}

// candidate is a patient a rule is weighing: its id (the survivor, for a merged patient), the
// Patient, and the identifiers it answers to (its own and those of the patients merged into it).
type candidate struct {
	id          string
	patient     fhir.Patient
	identifiers []fhir.Identifier
}

// comparison of a study with a candidate, patient ID included.
func (l *Linker) compare(ctx context.Context, s *Study, p *candidate) (comparison, error) {
	c := compareDemographics(l.Match.weights(), s, p.patient)
	outcome, err := l.compareID(ctx, s, p)
	if err != nil {
		return c, err
	}
	switch outcome {
	case outcomeAgree:
		w := l.Match.weights().PatientIDAgree
		c.Score = c.Score + w
		c.Evidence["patient_id"] = strings.TrimSpace(s.PatientID) + " | " + outcomeAgree + " (+" + strconv.FormatFloat(w, 'f', -1, 64) + ")"
	case outcomeDisagree:
		c.IDContradicts = true
		c.Evidence["patient_id"] = strings.TrimSpace(s.PatientID) + " | " + strings.Join(identifierValues(p.identifiers), ",") + " | " + outcomeDisagree
	case "":
	default:
		c.Evidence["patient_id"] = strings.TrimSpace(s.PatientID) + " | " + outcome
	}
	return c, nil
}

// compareID compares the study's patient ID with a patient's identifiers: agrees when one is the
// same ID (under its issuer's rule); contradicts when the issuer's system is among the patient's
// and the ID is not, or when the ID is another patient's; "" when there is nothing to compare.
func (l *Linker) compareID(ctx context.Context, s *Study, p *candidate) (string, error) {
	value := strings.TrimSpace(s.PatientID)
	if value == "" {
		return "", nil
	}
	rule, ok := l.issuerRule(s.IssuerOfPatientID)
	if !ok {
		return "issuer " + strings.TrimSpace(s.IssuerOfPatientID) + " not configured", nil
	}
	value = rule.strip(value)
	inSystem := false
	for _, id := range p.identifiers {
		if rule.System != "" && id.System != rule.System {
			continue
		}
		inSystem = true
		if rule.same(value, id.Value) {
			return outcomeAgree, nil
		}
	}
	if inSystem {
		// The patient has IDs of this issuer (of any issuer, for a rule without a system, or a
		// study without an issuer and no rule for that: the local MRN is assumed) and this is
		// none of them.
		return outcomeDisagree, nil
	}
	// Not comparable within a system: a contradiction still, if the ID is another patient's.
	others, err := l.patientsWithID(ctx, rule, value)
	if err != nil {
		return "", err
	}
	for _, o := range others {
		if o.id != p.id {
			return outcomeDisagree, nil
		}
	}
	return "not comparable", nil
}

// issuerRule returns the rule for an IssuerOfPatientID: the one naming it; for a study without
// an issuer, the rule for "" or else one comparing IDs exactly in any system.
func (l *Linker) issuerRule(issuer string) (IssuerRule, bool) {
	issuer = strings.TrimSpace(issuer)
	for _, r := range l.Match.Issuers {
		if strings.TrimSpace(r.Issuer) == issuer {
			return r, true
		}
	}
	return IssuerRule{}, issuer == ""
}

// strip removes the rule's prefixes (the first that matches) and surrounding spaces.
func (r IssuerRule) strip(v string) string {
	v = strings.TrimSpace(v)
	for _, p := range r.Prefixes {
		if rest, ok := strings.CutPrefix(v, p); ok && rest != "" {
			return strings.TrimSpace(rest)
		}
	}
	return v
}

// same compares a stripped study ID with a stored identifier value under the rule.
func (r IssuerRule) same(study, stored string) bool {
	stored = r.strip(stored)
	if r.IgnoreLeadingZeros {
		study, stored = strings.TrimLeft(study, "0"), strings.TrimLeft(stored, "0")
	}
	return study != "" && study == stored
}

// patientsByID is rule 3's lookup: the patients (survivors) holding the study's patient ID
// under its issuer's rule.
func (l *Linker) patientsByID(ctx context.Context, s *Study, evidence map[string]string) ([]*candidate, error) {
	value := strings.TrimSpace(s.PatientID)
	if value == "" {
		return nil, nil
	}
	rule, ok := l.issuerRule(s.IssuerOfPatientID)
	if !ok {
		evidence[RulePatientID] = value + " | issuer " + strings.TrimSpace(s.IssuerOfPatientID) + " not configured"
		return nil, nil
	}
	found, err := l.patientsWithID(ctx, rule, rule.strip(value))
	if err != nil {
		return nil, err
	}
	evidence[RulePatientID] = value + " | " + strconv.Itoa(len(found)) + " patient(s)"
	return found, nil
}

// patientsWithID returns the distinct patients (survivors) with an identifier that is value
// under rule.
func (l *Linker) patientsWithID(ctx context.Context, rule IssuerRule, value string) ([]*candidate, error) {
	key := normalizedIdentifier(value)
	if key == "" {
		return nil, nil
	}
	rs, err := l.Resources.SearchResources(ctx, ResourceQuery{Type: "Patient", Count: 20, Filters: []SearchFilter{
		{Param: linkIDParam, Op: SearchEq, Values: []SearchValue{{System: rule.System, Value: key}}}}})
	if err != nil {
		return nil, err
	}
	var out []*candidate
	for _, r := range rs {
		c, err := contentOf(r.JSON)
		if err != nil {
			return nil, err
		}
		patient := fhir.PatientOf(c)
		match := false
		for _, id := range patient.Identifier {
			if (rule.System == "" || id.System == rule.System) && rule.same(value, id.Value) {
				match = true
			}
		}
		if !match {
			continue
		}
		p, err := l.survivor(ctx, r, patient)
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(out, func(x *candidate) bool { return x.id == p.id }) {
			out = append(out, p)
		}
	}
	return out, nil
}

// demographics is rule 4: candidates from the blocking index, scored and ranked. byID are the
// patients rule 3 found when it found more than one; they are weighed too.
func (l *Linker) demographics(ctx context.Context, s *Study, link *StudyLink, byID []*candidate) error {
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
		c, err := l.compare(ctx, s, &candidate{id: p.id, patient: record, identifiers: p.identifiers})
		if err != nil {
			return err
		}
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
	switch j := judged[top.PatientID]; {
	case j.IDContradicts && top.Score >= review:
		// Demographics say this patient, the patient ID another.
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
	p, err := l.Resources.Resource(ctx, "Patient", id)
	if err != nil {
		return nil, err
	}
	pc, err := contentOf(p.JSON)
	if err != nil {
		return nil, err
	}
	return l.survivor(ctx, p, fhir.PatientOf(pc))
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
	IssuerOfPatientID string // (0010,0021): the issuer an IssuerRule names for its system, else its assigner
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
	r, err := l.Resources.Resource(ctx, "Patient", link.PatientID)
	if err != nil {
		return nil, fmt.Errorf("reading the linked patient of study %s: %w", studyInstanceUID, err)
	}
	content, err := contentOf(r.JSON)
	if err != nil {
		return nil, err
	}
	p, err := l.survivor(ctx, r, fhir.PatientOf(content))
	if err != nil {
		return nil, err
	}
	return l.identity(p.id, p.patient), nil
}

func (l *Linker) identity(id string, p fhir.Patient) *PatientIdentity {
	out := dicomPatient(p)
	out.PatientFHIRID = id
	// The issuer as the modalities know it: the rule for the MRN's system, else its assigner.
	for _, mrn := range p.Identifier {
		if mrn.Value != out.PatientID {
			continue
		}
		for _, r := range l.Match.Issuers {
			if system := mrn.System; system != "" && r.System == system {
				out.IssuerOfPatientID = r.Issuer
				return &out
			}
		}
		break
	}
	return &out
}

// PatientsWithID returns the Ferry ids of the patients (survivors, after merges) holding a
// patient ID under the rule for its issuer (IssuerOfPatientID as a viewer sends it), for finding
// studies under the linked identity. An issuer no rule names finds nobody.
func (l *Linker) PatientsWithID(ctx context.Context, issuer, patientID string) ([]string, error) {
	rule, ok := l.issuerRule(issuer)
	if !ok {
		return nil, nil
	}
	found, err := l.patientsWithID(ctx, rule, rule.strip(patientID))
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(found))
	for i, p := range found {
		ids[i] = p.id
	}
	return ids, nil
}
