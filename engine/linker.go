package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Linker decides which order and patient a study belongs to (docs/dicom.md, "Linking"). The
// rules run in order and the first that finds an order decides:
//
//  1. accession: the study's Accession Number is an order's accession (its ACSN identifier);
//  2. study-uid: the study's Study Instance UID is the one scheduled on an order (the
//     urn:dicom:uid identifier the order mappings give it).
//
// An order found by a rule is linked only when the study's patient fields do not contradict the
// order's patient (patient ID among the patient's identifiers, birth date, sex): a contradiction
// is never auto-linked but recorded for a person to decide. The decision — rule, score and the
// fields compared — is kept with the study. The patient-identifier and demographic rules come next.
type Linker struct {
	Resources ResourceReader
	Links     LinkStore
	Now       func() time.Time // default time.Now
}

// LinkStudy decides s's link and records it.
func (l *Linker) LinkStudy(ctx context.Context, s *Study) (*StudyLink, error) {
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	link := &StudyLink{StudyInstanceUID: s.StudyInstanceUID, Status: LinkUnmatched, Evidence: map[string]string{}, DecidedAt: now().UTC()}
	rules := []struct {
		name  string
		value string
		find  func() ([]*Resource, error)
	}{
		{"accession", s.AccessionNumber, func() ([]*Resource, error) { return l.ordersByAccession(ctx, s.AccessionNumber) }},
		{"study-uid", s.StudyInstanceUID, func() ([]*Resource, error) {
			return l.orders(ctx, SearchValue{System: "urn:dicom:uid", Value: "urn:oid:" + s.StudyInstanceUID})
		}},
	}
	for _, r := range rules {
		if r.value == "" {
			continue
		}
		found, err := r.find()
		if err != nil {
			return nil, fmt.Errorf("linking study %s: %w", s.StudyInstanceUID, err)
		}
		link.Evidence[r.name] = r.value + " | " + strconv.Itoa(len(found)) + " order(s)"
		switch len(found) {
		case 0:
			continue
		case 1:
		default:
			link.Status, link.Rule = LinkContradiction, r.name
			return link, l.Links.PutStudyLink(ctx, link)
		}
		sr := found[0]
		link.Rule, link.ServiceRequestID = r.name, sr.ID
		patientID, contradictions, err := l.checkPatient(ctx, s, sr, link.Evidence)
		if err != nil {
			return nil, fmt.Errorf("linking study %s: %w", s.StudyInstanceUID, err)
		}
		link.PatientID = patientID
		if contradictions > 0 {
			link.Status = LinkContradiction
		} else {
			link.Status, link.Score = LinkLinked, 1
		}
		return link, l.Links.PutStudyLink(ctx, link)
	}
	return link, l.Links.PutStudyLink(ctx, link)
}

// orders returns the ServiceRequests with an identifier matching v.
func (l *Linker) orders(ctx context.Context, v SearchValue) ([]*Resource, error) {
	return l.Resources.SearchResources(ctx, ResourceQuery{Type: "ServiceRequest", Count: 10, Filters: []SearchFilter{
		{Param: "identifier", Op: SearchEq, Values: []SearchValue{v}}}})
}

// ordersByAccession returns the orders whose accession (an ACSN identifier) is acc; other
// identifiers with the same value (a placer number that happens to match) do not count.
func (l *Linker) ordersByAccession(ctx context.Context, acc string) ([]*Resource, error) {
	found, err := l.orders(ctx, SearchValue{Value: acc})
	if err != nil {
		return nil, err
	}
	var out []*Resource
	for _, r := range found {
		c, err := contentOf(r.JSON)
		if err != nil {
			return nil, err
		}
		for _, x := range asList(c["identifier"]) {
			id := asMap(x)
			if v, _ := id["value"].(string); v == acc && identifierType(id) == "ACSN" {
				out = append(out, r)
				break
			}
		}
	}
	return out, nil
}

// checkPatient compares the study's patient fields with the order's patient (the survivor, when
// it was merged) and returns that patient's id and how many fields contradict it. Fields the study
// leaves empty are not compared.
func (l *Linker) checkPatient(ctx context.Context, s *Study, sr *Resource, evidence map[string]string) (string, int, error) {
	c, err := contentOf(sr.JSON)
	if err != nil {
		return "", 0, err
	}
	ref, _ := asMap(c["subject"])["reference"].(string)
	id, ok := strings.CutPrefix(ref, "Patient/")
	if !ok {
		return "", 0, errors.New("order without a patient")
	}
	p, err := l.Resources.Resource(ctx, "Patient", id)
	if err != nil {
		return "", 0, err
	}
	for range 16 { // a merged patient: the survivor
		next := replacedBy(p.JSON)
		if next == "" {
			break
		}
		if p, err = l.Resources.Resource(ctx, "Patient", next); err != nil {
			return "", 0, err
		}
	}
	pc, err := contentOf(p.JSON)
	if err != nil {
		return "", 0, err
	}
	contradictions := 0
	compare := func(field, study, patient string, same bool) {
		if study == "" || patient == "" {
			return
		}
		outcome := "agrees"
		if !same {
			outcome = "contradicts"
			contradictions++
		}
		evidence[field] = study + " | " + patient + " | " + outcome
	}
	if s.PatientID != "" {
		values := identifierValues(pc["identifier"])
		compare("patient_id", s.PatientID, strings.Join(values, ","), containsTrimmed(values, s.PatientID))
	}
	birth, _ := pc["birthDate"].(string)
	compare("birth_date", s.PatientBirthDate, birth, strings.ReplaceAll(birth, "-", "") == s.PatientBirthDate)
	gender, _ := pc["gender"].(string)
	compare("sex", s.PatientSex, gender, sexAgrees(s.PatientSex, gender))
	return p.ID, contradictions, nil
}

// containsTrimmed reports whether v is among values, ignoring surrounding spaces (DICOM LO pads).
func containsTrimmed(values []string, v string) bool {
	v = strings.TrimSpace(v)
	for _, x := range values {
		if strings.TrimSpace(x) == v {
			return true
		}
	}
	return false
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
