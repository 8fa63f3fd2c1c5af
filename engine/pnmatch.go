package engine

import (
	"context"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"

	"github.com/ferryhealth/ferry/fhir"
)

// MaxNamePattern bounds a PatientName query value (PS3.5: PN is 64 characters a component
// group; three groups and their separators).
const MaxNamePattern = 3*64 + 2

// NamePattern is a PatientName query value as QIDO-RS and C-FIND match it (PS3.4 C.2.2.2.4
// wild card matching; PS3.18 8.3.4.1): `*` any run of characters, `?` one, letters compared
// without regard to case; trailing `^` and spaces of both sides do not count. A value of one
// component group is matched with the name's alphabetic group.
type NamePattern string

// Matches reports whether the PN pn matches the pattern. The work is bounded by
// len(pattern)×len(pn): both are bounded by the callers (MaxNamePattern; stored names are
// bounded by what an instance may carry).
func (p NamePattern) Matches(pn string) bool {
	pat := foldName(strings.TrimRight(string(p), "^ "))
	if !strings.Contains(pat, "=") {
		pn, _, _ = strings.Cut(pn, "=")
	}
	return globMatch([]rune(pat), []rune(foldName(strings.TrimRight(pn, "^ "))))
}

// foldName is a name without case or accents: decomposed (NFD), combining marks dropped, lower
// case ("Müller" and "MULLER" fold alike).
func foldName(s string) string {
	var b strings.Builder
	for _, r := range norm.NFD.String(s) {
		if !unicode.Is(unicode.Mn, r) {
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// globMatch is wildcard matching with `*` and `?`, by the usual backtracking over the last
// star: at most len(p)×len(s) steps.
func globMatch(p, s []rune) bool {
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			pi, si = pi+1, si+1
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi, mark = star+1, mark+1
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// LikePattern is the pattern as a SQL LIKE pattern with `\` as the escape character, lower
// case, trailing `^` and spaces dropped: what a store compares with lower(rtrim(name, '^ ')).
func (p NamePattern) LikePattern() string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimRight(string(p), "^ ")) {
		switch r {
		case '\\', '%', '_':
			b.WriteRune('\\')
			b.WriteRune(r)
		case '*':
			b.WriteRune('%')
		case '?':
			b.WriteRune('_')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// maxNameCandidates bounds the Patients read for one PatientName query (PatientsWithName).
const maxNameCandidates = 500

// PatientsWithName returns Ferry's ids of the patients whose name, as DICOM writes it
// (FAMILY^GIVEN^MIDDLE), matches the pattern: for QIDO-RS to find the studies linked to them
// under the name Ferry holds, not the one their modality sent. Candidates come from the
// Patient index by the family name's letters before the first wildcard; a pattern that starts
// with a wildcard, or a prefix more than maxNameCandidates patients share, gives complete=false
// and no ids: the caller then matches linked studies by the name their modality sent.
func (l *Linker) PatientsWithName(ctx context.Context, pattern string) (ids []string, complete bool, err error) {
	family, _, _ := strings.Cut(pattern, "^")
	literal := family
	if i := strings.IndexAny(family, "*?"); i >= 0 {
		literal = family[:i]
	}
	prefix := fhir.NormalizeString(literal)
	if prefix == "" {
		return nil, false, nil
	}
	rs, err := l.Resources.SearchResources(ctx, ResourceQuery{Type: "Patient", Count: maxNameCandidates + 1, Filters: []SearchFilter{
		{Param: "family", Op: SearchPrefix, Values: []SearchValue{{Value: prefix}}}}})
	if err != nil {
		return nil, false, err
	}
	if len(rs) > maxNameCandidates {
		return nil, false, nil
	}
	for _, r := range rs {
		c, err := contentOf(r.JSON)
		if err != nil {
			return nil, false, err
		}
		if NamePattern(pattern).Matches(dicomPatient(fhir.PatientOf(c)).PatientName) {
			ids = append(ids, r.ID)
		}
	}
	return ids, true, nil
}
