package engine

import (
	"context"
	"slices"
	"strings"

	"github.com/ferryhealth/ferry/engine/patientid"
)

// The patient identity cross-reference (IHE PIX; docs/dicom.md, "Identity cross-reference"):
// every identifier Ferry has seen for a person. A person's own Patient holds the identifiers
// ADT and orders gave it, the records merged into it hold theirs, and each study linked to it
// carries the one its modality sent, as the identifier rules read it (StudyLink.Identifier) —
// learned from the linker's evidence or from a person's reconciliation, and taken back when
// that decision is replaced. Nothing is copied: each identifier is read from where it was
// recorded, with its source.

// Person is one patient as the cross-reference knows it: Ferry's Patient id (the survivor of
// any merges) and every identifier it is known by.
type Person struct {
	PatientID   string
	Identifiers []KnownIdentifier
	// Learned: the identifier the person was looked up by is one the cross-reference learned
	// from a linked study, not one of its Patient records'.
	Learned bool
}

// KnownIdentifier is one identifier of a person with where Ferry saw it.
type KnownIdentifier struct {
	System string
	Value  string
	Issuer string // the name senders use for the system (the identifier rules), "" when none
	// Source: "Patient/<id>" (ADT and orders), "merged Patient/<id>" (a record merged into the
	// person) or "study <uid> (rule …, decided by …)".
	Source string
}

// PersonsKnownBy returns the persons known by system|value: those whose records hold it (read
// under the rules of its system) and those the cross-reference learned it for.
func (l *Linker) PersonsKnownBy(ctx context.Context, system, value string) ([]Person, error) {
	system, value = strings.TrimSpace(system), strings.TrimSpace(value)
	if system == "" || value == "" {
		return nil, nil
	}
	sid := studyID{reading: patientid.Reading{Sent: value, Known: true, System: system},
		key: LinkIdentifier{System: system, Value: l.readStored(system, value)}}
	held, learned, err := l.holders(ctx, sid, map[string]string{})
	if err != nil {
		return nil, err
	}
	out := make([]Person, 0, len(held))
	for _, p := range held {
		ids, err := l.knownIdentifiers(ctx, p)
		if err != nil {
			return nil, err
		}
		out = append(out, Person{PatientID: p.id, Identifiers: ids, Learned: learned[p.id]})
	}
	return out, nil
}

// knownIdentifiers lists a person's identifiers: its records' and those its linked studies
// carried, each once (the first source seen).
func (l *Linker) knownIdentifiers(ctx context.Context, p *candidate) ([]KnownIdentifier, error) {
	var out []KnownIdentifier
	add := func(system, value, source string) {
		if value == "" || slices.ContainsFunc(out, func(k KnownIdentifier) bool { return k.System == system && k.Value == value }) {
			return
		}
		out = append(out, KnownIdentifier{System: system, Value: value, Issuer: l.issuerOf(system), Source: source})
	}
	own := map[string]bool{}
	for _, id := range p.patient.Identifier {
		own[id.System+"|"+id.Value] = true
		add(id.System, id.Value, "Patient/"+p.id)
	}
	for _, id := range p.identifiers {
		if !own[id.System+"|"+id.Value] {
			add(id.System, id.Value, "a record merged into Patient/"+p.id)
		}
	}
	links, err := l.Links.StudyLinksOfPatient(ctx, p.id)
	if err != nil {
		return nil, err
	}
	for _, lk := range links {
		if lk.Status == LinkLinked && !lk.Identifier.IsZero() {
			add(lk.Identifier.System, lk.Identifier.Value, "study "+lk.StudyInstanceUID+" (rule "+lk.Rule+", decided by "+lk.DecidedByOrLinker()+")")
		}
	}
	return out, nil
}

// issuerOf is the first issuer the identifier rules name for system ("" when none, or for an
// issuer no rule names: the one in its urn:ferry:issuer: system).
func (l *Linker) issuerOf(system string) string {
	if issuer, ok := strings.CutPrefix(system, UnknownIssuerSystem); ok {
		return issuer
	}
	for _, r := range l.Match.Identifiers {
		if issuer := r.Issuer(system); issuer != "" {
			return issuer
		}
	}
	return ""
}
