package engine

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"

	"github.com/ferryhealth/ferry/fhir"
)

// The demographic comparison behind the linker's fourth rule (docs/dicom.md, "Linking"): a study's
// patient fields — DICOM PN, DA and CS as the modality wrote them — against a FHIR Patient's,
// field by field, each outcome weighted as Fellegi and Sunter did (log2 m/u: m the chance of the
// outcome when both records are the same person, u when they are two people drawn at random).
// The weights add up to the score the thresholds judge.

// personName is a name as the linker compares it: each part cut into tokens, each token lower
// case, accents and punctuation removed ("Müller-Lüdenscheidt" → muller, ludenscheidt).
type personName struct {
	Family []string
	Given  []string // first, then middle names
	// Unordered: the name came as one run of words ("JOHN DOE") and which is the family name is
	// not known; all its tokens are in Family.
	Unordered bool
}

func (n personName) empty() bool { return len(n.Family) == 0 && len(n.Given) == 0 }

// dicomName reads a DICOM PN (PS3.5 6.2): the first component group (alphabetic), components
// family^given^middle^prefix^suffix. A modality console often gets "Doe, John" (HL7/US style)
// or "John Doe" typed into the one field: a comma splits family from given, and a run of words
// without either is kept unordered.
func dicomName(pn string) personName {
	pn, _, _ = strings.Cut(pn, "=")
	if strings.Contains(pn, "^") {
		parts := strings.Split(pn, "^")
		n := personName{Family: nameTokens(parts[0])}
		for _, p := range parts[1:min(len(parts), 3)] { // given, middle
			n.Given = append(n.Given, nameTokens(p)...)
		}
		return n
	}
	if family, given, ok := strings.Cut(pn, ","); ok {
		return personName{Family: nameTokens(family), Given: nameTokens(given)}
	}
	return personName{Family: nameTokens(pn), Unordered: true}
}

// pickName returns a Patient's name: the official one, else the usual one, else the first; ok
// false when it has none.
func pickName(patient fhir.Patient) (name fhir.HumanName, ok bool) {
	for _, use := range []string{"official", "usual", ""} {
		for _, n := range patient.Name {
			if use == "" || n.Use == use {
				return n, true
			}
		}
	}
	return fhir.HumanName{}, false
}

// fhirName reads a Patient's name (pickName) as the linker compares it.
func fhirName(patient fhir.Patient) personName {
	pick, _ := pickName(patient)
	n := personName{Family: nameTokens(pick.Family)}
	for _, g := range pick.Given {
		n.Given = append(n.Given, nameTokens(g)...)
	}
	return n
}

// nameTokens cuts a name part into comparable tokens: decomposed (NFD) with combining marks
// dropped, lower case, split at anything not a letter or digit; ß becomes ss, æ ae, ø o, as
// they are transliterated when a keyboard lacks them.
func nameTokens(s string) []string {
	var tokens []string
	var b strings.Builder
	flush := func() {
		if b.Len() > 0 {
			tokens = append(tokens, b.String())
			b.Reset()
		}
	}
	for _, r := range norm.NFD.String(s) {
		switch {
		case unicode.Is(unicode.Mn, r):
		case r == 'ß' || r == 'ẞ':
			b.WriteString("ss")
		case r == 'æ' || r == 'Æ':
			b.WriteString("ae")
		case r == 'ø' || r == 'Ø':
			b.WriteByte('o')
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(unicode.ToLower(r))
		default:
			flush()
		}
	}
	flush()
	return tokens
}

// phonetic is a token's American Soundex code (letter + three digits), the blocking key that lets
// a misspelt name still meet its record: Smith and Smyth both S530. It reads the Latin letters a
// to z only (tokens are lower case, accents removed): a name in another script has no code, and
// is found by its birth date.
func phonetic(token string) string {
	codes := func(r byte) byte {
		switch r {
		case 'b', 'f', 'p', 'v':
			return '1'
		case 'c', 'g', 'j', 'k', 'q', 's', 'x', 'z':
			return '2'
		case 'd', 't':
			return '3'
		case 'l':
			return '4'
		case 'm', 'n':
			return '5'
		case 'r':
			return '6'
		case 'h', 'w':
			return 'h' // does not separate two equal codes
		}
		return 0 // vowels (and y): separate
	}
	var out []byte
	var last byte
	for i := 0; i < len(token) && len(out) < 4; i++ {
		c := token[i]
		if c < 'a' || c > 'z' {
			continue // digits, and letters of scripts Soundex does not cover
		}
		code := codes(c)
		if len(out) == 0 {
			out = append(out, c-'a'+'A')
			last = code
			continue
		}
		switch {
		case code == 'h':
		case code == 0:
			last = 0
		case code != last:
			out = append(out, code)
			last = code
		}
	}
	if len(out) == 0 {
		return ""
	}
	for len(out) < 4 {
		out = append(out, '0')
	}
	return string(out)
}

// jaroWinkler is the Jaro–Winkler similarity of two tokens, 0 (nothing alike) to 1 (equal), the
// usual string comparator of record linkage (Winkler 1990): transpositions and a shared prefix
// count for, not against.
func jaroWinkler(a, b string) float64 {
	if a == b {
		return 1
	}
	ra, rb := []rune(a), []rune(b)
	if len(ra) == 0 || len(rb) == 0 {
		return 0
	}
	window := max(len(ra), len(rb))/2 - 1
	matchedA, matchedB := make([]bool, len(ra)), make([]bool, len(rb))
	matches := 0
	for i := range ra {
		for j := max(0, i-window); j < min(len(rb), i+window+1); j++ {
			if !matchedB[j] && ra[i] == rb[j] {
				matchedA[i], matchedB[j] = true, true
				matches++
				break
			}
		}
	}
	if matches == 0 {
		return 0
	}
	transpositions, j := 0, 0
	for i := range ra {
		if !matchedA[i] {
			continue
		}
		for !matchedB[j] {
			j++
		}
		if ra[i] != rb[j] {
			transpositions++
		}
		j++
	}
	m := float64(matches)
	jaro := (m/float64(len(ra)) + m/float64(len(rb)) + (m-float64(transpositions)/2)/m) / 3
	prefix := 0
	for prefix < min(4, len(ra), len(rb)) && ra[prefix] == rb[prefix] {
		prefix++
	}
	return jaro + float64(prefix)*0.1*(1-jaro)
}

// Outcomes of comparing one field.
const (
	outcomeAgree      = "agrees"
	outcomeSimilar    = "similar"     // a typo apart (Jaro–Winkler ≥ 0.88)
	outcomeInitial    = "initial"     // one side gives only the initial, and it agrees
	outcomeTransposed = "transposed"  // birth date: two digits swapped, or day and month
	outcomeSwapped    = "swapped"     // family and given given the other way round
	outcomeDisagree   = "contradicts" // as the exact rules word it
	outcomeMissing    = "missing"     // one side has nothing to compare
)

// similarTokens is the Jaro–Winkler similarity from which two name tokens count as a typo apart.
const similarTokens = 0.88

// MatchWeights are the Fellegi–Sunter weights (log2 m/u) of each field's outcomes. The defaults
// (DefaultMatchWeights) come from the usual m and u of hospital registration data; an analyst can
// override them in config.
type MatchWeights struct {
	FamilyAgree, FamilySimilar, FamilyDisagree             float64
	GivenAgree, GivenSimilar, GivenInitial, GivenDisagree  float64
	BirthDateAgree, BirthDateTransposed, BirthDateDisagree float64
	SexAgree, SexDisagree                                  float64
	SwappedPenalty                                         float64 // added when family and given are swapped
	PatientIDAgree                                         float64 // the study's patient ID is one of the patient's
}

// weight is log2(m/u).
func weight(m, u float64) float64 { return math.Round(math.Log2(m/u)*100) / 100 }

// DefaultMatchWeights: family names agree for 95% of true pairs and 1% of random ones, given
// names 92% and 1%, birth dates 97% and 1 in 25,000 (a population's spread of birth dates), sex
// 98% and 50%; typos, initials and transposed dates share the rest of m.
var DefaultMatchWeights = MatchWeights{
	FamilyAgree:         weight(0.95, 0.01),
	FamilySimilar:       weight(0.03, 0.005),
	FamilyDisagree:      weight(0.02, 0.985),
	GivenAgree:          weight(0.92, 0.01),
	GivenSimilar:        weight(0.04, 0.004),
	GivenInitial:        weight(0.02, 0.07),
	GivenDisagree:       weight(0.02, 0.916),
	BirthDateAgree:      weight(0.97, 0.00004),
	BirthDateTransposed: weight(0.01, 0.0003),
	BirthDateDisagree:   weight(0.02, 0.9997),
	SexAgree:            weight(0.98, 0.5),
	SexDisagree:         weight(0.02, 0.5),
	SwappedPenalty:      -1,
	PatientIDAgree:      weight(0.9, 0.0001),
}

// comparison is the outcome of comparing a study's patient fields with one Patient.
type comparison struct {
	Score    float64
	Evidence map[string]string
	// Contradicts: a field disagrees outright — a name part (not merely a typo apart), the birth
	// date (not merely transposed) or sex: never linked without a person.
	Contradicts bool
	// IDContradicts: the study's patient ID is another patient's (Linker.compareID).
	IDContradicts bool
	// IDDiffers: the study's patient ID is of an authority this patient has numbers of, and is
	// none of them (nor anyone's).
	IDDiffers bool
	// The outcome of each field: family, given, birth date, sex.
	Family, Given, BirthDate, Sex string
}

// agreesExactly reports whether name (in any order and case), birth date and sex agree with no
// typo or transposition (sex may be missing on either side): the demographics under which an
// order's accession is enough evidence though the patient ID differs.
func (c comparison) agreesExactly() bool {
	name := func(o string) bool { return o == outcomeAgree || o == outcomeSwapped }
	return name(c.Family) && name(c.Given) && c.BirthDate == outcomeAgree && (c.Sex == outcomeAgree || c.Sex == outcomeMissing)
}

// compareDemographics compares a study's patient name (DICOM PN), birth date (DA) and sex (CS)
// with a FHIR Patient's and scores the outcomes with w. The evidence gives each field's outcome
// and weight ("similar (+2.58)"), with the values for birth date and sex — never the names.
func compareDemographics(w MatchWeights, s *Study, patient fhir.Patient) comparison {
	return comparePerson(w, claimedPerson{Name: dicomName(s.PatientName), BirthDate: s.PatientBirthDate, Sex: s.PatientSex}, patient)
}

// claimedPerson is who a study or a report says its patient is: the name, the birth date as
// YYYYMMDD and the sex as M or F (DICOM's forms; anything else is missing).
type claimedPerson struct {
	Name      personName
	BirthDate string
	Sex       string
}

// comparePerson compares a claimed person with a FHIR Patient (compareDemographics).
func comparePerson(w MatchWeights, s claimedPerson, patient fhir.Patient) comparison {
	c := comparison{Evidence: map[string]string{}}
	record := func(field, values, outcome string, weight float64) {
		text := outcome
		if outcome != outcomeMissing {
			text += " (" + strconv.FormatFloat(weight, 'f', -1, 64) + ")"
			if weight > 0 {
				text = strings.Replace(text, "(", "(+", 1)
			}
		}
		if values != "" {
			text = values + " | " + text
		}
		c.Evidence[field] = text
		c.Score += weight
	}

	sn, pn := s.Name, fhirName(patient)
	family, given := compareNames(sn, pn)
	familyWeights := map[string]float64{outcomeAgree: w.FamilyAgree, outcomeSwapped: w.FamilyAgree,
		outcomeSimilar: w.FamilySimilar, outcomeDisagree: w.FamilyDisagree}
	givenWeights := map[string]float64{outcomeAgree: w.GivenAgree, outcomeSwapped: w.GivenAgree,
		outcomeSimilar: w.GivenSimilar, outcomeInitial: w.GivenInitial, outcomeDisagree: w.GivenDisagree}
	c.Family, c.Given = family, given
	record("family", "", family, familyWeights[family])
	record("given", "", given, givenWeights[given])
	if family == outcomeSwapped {
		c.Score += w.SwappedPenalty
	}
	if family == outcomeDisagree || given == outcomeDisagree {
		c.Contradicts = true
	}

	studyBirth := strings.TrimSpace(s.BirthDate)
	birth := patient.BirthDate
	o := compareBirthDates(studyBirth, strings.ReplaceAll(birth, "-", ""))
	c.BirthDate = o
	record("birth_date", studyBirth+" | "+birth, o, map[string]float64{outcomeAgree: w.BirthDateAgree,
		outcomeTransposed: w.BirthDateTransposed, outcomeDisagree: w.BirthDateDisagree}[o])
	if o == outcomeDisagree {
		c.Contradicts = true
	}

	gender := patient.Gender
	sex := strings.ToUpper(strings.TrimSpace(s.Sex))
	switch {
	case (sex != "M" && sex != "F") || (gender != "male" && gender != "female"):
		c.Sex = outcomeMissing
		record("sex", sex+" | "+gender, outcomeMissing, 0)
	case sexAgrees(sex, gender):
		c.Sex = outcomeAgree
		record("sex", sex+" | "+gender, outcomeAgree, w.SexAgree)
	default:
		c.Sex = outcomeDisagree
		record("sex", sex+" | "+gender, outcomeDisagree, w.SexDisagree)
		c.Contradicts = true
	}
	c.Score = math.Round(c.Score*100) / 100
	return c
}

// compareNames returns the outcomes for the family and the given name. Swapped: the study's
// family is the patient's given name and the other way round (a console filled in backwards).
func compareNames(study, patient personName) (family, given string) {
	if study.empty() || patient.empty() {
		return outcomeMissing, outcomeMissing
	}
	if study.Unordered {
		// "JOHN DOE": the family name is whichever token agrees with the patient's.
		all := study.Family
		family = bestTokens(all, patient.Family)
		given = bestTokens(all, patient.Given)
		if len(patient.Given) == 0 {
			given = outcomeMissing
		}
		return family, given
	}
	family = bestTokens(study.Family, patient.Family)
	given = compareGiven(study.Given, patient.Given)
	if family != outcomeAgree && given != outcomeAgree {
		crossF := bestTokens(study.Family, patient.Given)
		crossG := bestTokens(study.Given, patient.Family)
		if crossF == outcomeAgree && crossG == outcomeAgree {
			return outcomeSwapped, outcomeSwapped
		}
	}
	return family, given
}

// bestTokens compares two token lists by their best pair: agree when a token is shared (a
// double-barrelled name recorded in part) or the lists are equal once joined ("mc donald" and
// "mcdonald"), similar when a pair is a typo apart.
func bestTokens(a, b []string) string {
	if len(a) == 0 || len(b) == 0 {
		return outcomeMissing
	}
	if strings.Join(a, "") == strings.Join(b, "") {
		return outcomeAgree
	}
	best := 0.0
	for _, x := range a {
		for _, y := range b {
			if len(x) == 1 || len(y) == 1 {
				continue // initials are judged for given names only
			}
			best = max(best, jaroWinkler(x, y))
		}
	}
	switch {
	case best == 1:
		return outcomeAgree
	case best >= similarTokens:
		return outcomeSimilar
	}
	return outcomeDisagree
}

// compareGiven compares first given names (a middle name recorded or not changes nothing); a
// one-letter given name on either side agrees as an initial.
func compareGiven(a, b []string) string {
	if len(a) == 0 || len(b) == 0 {
		return outcomeMissing
	}
	x, y := a[0], b[0]
	switch {
	case x == y:
		return outcomeAgree
	case (len(x) == 1 || len(y) == 1) && x[0] == y[0]:
		return outcomeInitial
	case len(x) > 1 && len(y) > 1 && jaroWinkler(x, y) >= similarTokens:
		return outcomeSimilar
	}
	// The first given name may be recorded as middle on one side: any shared full token.
	for _, s := range a {
		if len(s) > 1 && slices.Contains(b, s) {
			return outcomeAgree
		}
	}
	return outcomeDisagree
}

// compareBirthDates compares two YYYYMMDD dates: agree; transposed when two adjacent digits are
// swapped or day and month are (a keying error, not another person); disagree otherwise.
func compareBirthDates(a, b string) string {
	if !isDate(a) || !isDate(b) {
		return outcomeMissing
	}
	if a == b {
		return outcomeAgree
	}
	if a[:4]+a[6:8]+a[4:6] == b {
		return outcomeTransposed
	}
	var diff []int
	for i := 0; i < 8; i++ {
		if a[i] != b[i] {
			diff = append(diff, i)
		}
	}
	if len(diff) == 2 && diff[1] == diff[0]+1 && a[diff[0]] == b[diff[1]] && a[diff[1]] == b[diff[0]] {
		return outcomeTransposed
	}
	return outcomeDisagree
}

// isDate reports whether s has a DA's form, YYYYMMDD: eight digits.
func isDate(s string) bool {
	if len(s) != 8 {
		return false
	}
	for i := 0; i < 8; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// blockingKeys are the keys under which a Patient is indexed for the demographic rule and under
// which a study's patient looks for candidates (the Patient index's linkBlockParam): so that
// candidates come from an index, not a scan.
//
//	dob:YYYYMMDD                      the birth date: every candidate born that day
//	nd:<soundex>:<sorted date digits> a name token with the birth date's digits in any order:
//	                                  transposed dates, names swapped or misspelt elsewhere
//	nn:<soundex>:<soundex>            family and first given name (either order): birth date
//	                                  missing or wrong
func blockingKeys(n personName, birthDate string) []string {
	var keys []string
	add := func(k string) {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	digits := ""
	if isDate(birthDate) {
		add("dob:" + birthDate)
		d := []byte(birthDate)
		slices.Sort(d)
		digits = string(d)
	}
	tokens := append(append([]string{}, n.Family...), n.Given...)
	if digits != "" {
		for _, t := range tokens {
			if p := phonetic(t); p != "" && len(t) > 1 {
				add("nd:" + p + ":" + digits)
			}
		}
	}
	var first, second string
	switch {
	case n.Unordered && len(n.Family) >= 2:
		first, second = n.Family[0], n.Family[len(n.Family)-1]
	case len(n.Family) > 0 && len(n.Given) > 0:
		first, second = n.Family[0], n.Given[0]
	}
	if p, q := phonetic(first), phonetic(second); p != "" && q != "" && len(first) > 1 && len(second) > 1 {
		if q < p {
			p, q = q, p
		}
		add("nn:" + p + ":" + q)
	}
	return keys
}

// normalizedIdentifier is an identifier value as the Patient index keeps it for the third rule
// (linkIDParam): upper case, letters and digits only, leading zeros dropped — the loosest form
// any issuer's normalisation can ask for; the rule then compares with the issuer's own.
func normalizedIdentifier(v string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(v) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			if b.Len() == 0 && r == '0' {
				continue
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}
