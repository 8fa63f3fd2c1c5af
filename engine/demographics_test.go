package engine

import (
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ferryhealth/ferry/fhir"
)

func TestDicomName(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		pn   string
		want personName
	}{
		{"DOE^JOHN", personName{Family: []string{"doe"}, Given: []string{"john"}}},
		{"Doe^John^Q^Dr^Jr", personName{Family: []string{"doe"}, Given: []string{"john", "q"}}},
		{"Müller-Lüdenscheidt^José María", personName{Family: []string{"muller", "ludenscheidt"}, Given: []string{"jose", "maria"}}},
		{"Doe, John", personName{Family: []string{"doe"}, Given: []string{"john"}}},
		{"JOHN DOE", personName{Family: []string{"john", "doe"}, Unordered: true}},
		{"Yamada^Tarou=山田^太郎=やまだ^たろう", personName{Family: []string{"yamada"}, Given: []string{"tarou"}}},
		{"O'BRIEN^SEÁN", personName{Family: []string{"o", "brien"}, Given: []string{"sean"}}},
		{"STRAẞE^JØRGEN", personName{Family: []string{"strasse"}, Given: []string{"jorgen"}}},
		{"", personName{Unordered: true}},
		{"^^", personName{}},
	} {
		if got := dicomName(tt.pn); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("dicomName(%q) = %+v, want %+v", tt.pn, got, tt.want)
		}
	}
}

func TestFHIRName(t *testing.T) {
	t.Parallel()
	p := map[string]any{"name": []any{
		map[string]any{"use": "maiden", "family": "Smith", "given": []any{"Anna"}},
		map[string]any{"use": "official", "family": "Jones", "given": []any{"Anna", "Maria"}},
	}}
	want := personName{Family: []string{"jones"}, Given: []string{"anna", "maria"}}
	if got := fhirName(fhir.PatientOf(p)); !reflect.DeepEqual(got, want) {
		t.Errorf("fhirName = %+v, want %+v", got, want)
	}
	if got := fhirName(fhir.PatientOf(map[string]any{})); !got.empty() {
		t.Errorf("fhirName(no name) = %+v, want empty", got)
	}
}

func TestPhonetic(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"robert": "R163", "rupert": "R163", "rubin": "R150", "ashcraft": "A261", "tymczak": "T522",
		"pfister": "P236", "smith": "S530", "smyth": "S530", "lee": "L000", "": "", "123": "",
	} {
		if got := phonetic(in); got != want {
			t.Errorf("phonetic(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestJaroWinkler(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		a, b string
		want float64
	}{
		{"martha", "marhta", 0.961},
		{"dwayne", "duane", 0.84},
		{"dixon", "dicksonx", 0.813},
		{"same", "same", 1},
		{"abc", "", 0},
		{"abc", "xyz", 0},
	} {
		if got := jaroWinkler(tt.a, tt.b); math.Abs(got-tt.want) > 0.001 {
			t.Errorf("jaroWinkler(%q, %q) = %.3f, want %.3f", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestCompareBirthDates(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ a, b, want string }{
		{"19800412", "19800412", outcomeAgree},
		{"19800412", "19800421", outcomeTransposed}, // last two digits
		{"19800412", "19804012", outcomeTransposed}, // adjacent digits across month/day
		{"19800412", "19801204", outcomeTransposed}, // day and month
		{"19800412", "19800413", outcomeDisagree},
		{"19800412", "19810412", outcomeDisagree},
		{"19800412", "08190412", outcomeDisagree}, // two swaps
		{"19800412", "", outcomeMissing},
		{"1980", "19800412", outcomeMissing},
	} {
		if got := compareBirthDates(tt.a, tt.b); got != tt.want {
			t.Errorf("compareBirthDates(%s, %s) = %s, want %s", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestCompareNames(t *testing.T) {
	t.Parallel()
	patient := personName{Family: []string{"doe"}, Given: []string{"john", "paul"}}
	for _, tt := range []struct {
		pn            string
		family, given string
	}{
		{"DOE^JOHN", outcomeAgree, outcomeAgree},
		{"Doe, John", outcomeAgree, outcomeAgree},
		{"DOE^PAUL", outcomeAgree, outcomeAgree}, // middle name used as first
		{"DOE^J", outcomeAgree, outcomeInitial},
		{"DOE^JOHM", outcomeAgree, outcomeSimilar},
		{"DEO^JOHN", outcomeAgree, outcomeAgree}, // short names: "deo" is no typo of "doe" by JW ≥ 0.88? see below
		{"JOHN^DOE", outcomeSwapped, outcomeSwapped},
		{"JOHN DOE", outcomeAgree, outcomeAgree},
		{"ROE^JANE", outcomeDisagree, outcomeDisagree},
		{"DOE^JANE", outcomeAgree, outcomeDisagree},
		{"", outcomeMissing, outcomeMissing},
	} {
		family, given := compareNames(dicomName(tt.pn), patient)
		if tt.pn == "DEO^JOHN" {
			// A transposition in a three-letter name: Jaro–Winkler gives 0.87, just short of a
			// typo; the given name still agrees.
			if given != outcomeAgree {
				t.Errorf("compareNames(%q): given %s, want agrees", tt.pn, given)
			}
			continue
		}
		if family != tt.family || given != tt.given {
			t.Errorf("compareNames(%q) = %s, %s; want %s, %s", tt.pn, family, given, tt.family, tt.given)
		}
	}
}

// TestDemographicScores: the default weights put a clean match and a typo above the auto-link
// threshold, a twin (another given name) and a transposed birth date in the band a person
// decides, and a namesake born another day below it.
func TestDemographicScores(t *testing.T) {
	t.Parallel()
	patient := map[string]any{"name": []any{map[string]any{"family": "Müller", "given": []any{"Anna"}}},
		"birthDate": "1980-04-12", "gender": "female"}
	for _, tt := range []struct {
		name, pn, birth, sex string
		band                 string // auto, review, below
		contradicts          bool
	}{
		{"clean", "MULLER^ANNA", "19800412", "F", "auto", false},
		{"typo in family", "MULER^ANNA", "19800412", "F", "auto", false},
		{"swapped", "ANNA^MÜLLER", "19800412", "F", "auto", false},
		{"no sex", "Müller, Anna", "19800412", "", "auto", false},
		{"transposed birth date", "MULLER^ANNA", "19800421", "F", "review", false},
		{"twin", "MULLER^BERTA", "19800412", "F", "review", true},
		{"other sex", "MULLER^ANNA", "19800412", "M", "auto", true},
		{"namesake born another day", "MULLER^ANNA", "19800517", "F", "below", true},
		{"stranger", "SMITH^JOHN", "19551103", "M", "below", true},
	} {
		s := &Study{PatientName: tt.pn, PatientBirthDate: tt.birth, PatientSex: tt.sex}
		c := compareDemographics(DefaultMatchWeights, s, fhir.PatientOf(patient))
		band := "below"
		switch {
		case c.Score >= DefaultAutoLink:
			band = "auto"
		case c.Score >= DefaultReview:
			band = "review"
		}
		if band != tt.band || c.Contradicts != tt.contradicts {
			t.Errorf("%s: score %.2f (%s), contradicts %v; want %s, %v; evidence %v", tt.name, c.Score, band, c.Contradicts, tt.band, tt.contradicts, c.Evidence)
		}
		for field, text := range c.Evidence {
			if strings.Contains(strings.ToLower(text), "anna") || strings.Contains(strings.ToLower(text), "muller") {
				t.Errorf("%s: evidence %s holds a name: %q", tt.name, field, text)
			}
		}
	}
}

// TestBlockingKeysMeet: a study's keys share at least one with its patient's under each kind of
// noise the demographic rule is meant to absorb.
func TestBlockingKeysMeet(t *testing.T) {
	t.Parallel()
	patient := blockingKeys(personName{Family: []string{"muller"}, Given: []string{"anna"}}, "19800412")
	for _, tt := range []struct{ name, pn, birth string }{
		{"clean", "MULLER^ANNA", "19800412"},
		{"typo", "MULER^ANA", "19800412"},
		{"swapped", "ANNA^MULLER", "19800412"},
		{"unordered", "ANNA MULLER", "19800412"},
		{"transposed date", "MULLER^ANNA", "19800421"},
		{"transposed date, swapped names", "ANNA^MULLER", "19801204"},
		{"no birth date", "MULLER^ANNA", ""},
		{"wrong birth date", "Muller, Anna", "19750101"},
	} {
		study := blockingKeys(dicomName(tt.pn), tt.birth)
		if !slices.ContainsFunc(study, func(k string) bool { return slices.Contains(patient, k) }) {
			t.Errorf("%s: study keys %v meet none of the patient's %v", tt.name, study, patient)
		}
	}
}

func TestNormalizedIdentifier(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"000123": "123", "MRN-0042": "MRN0042", " a 12 ": "A12", "0000": "", "": ""} {
		if got := normalizedIdentifier(in); got != want {
			t.Errorf("normalizedIdentifier(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzDemographics: any PN, date and sex a modality sends compares without panicking, with a
// finite score, keys of valid UTF-8 and no name in the evidence.
func FuzzDemographics(f *testing.F) {
	for _, s := range []string{"DOE^JOHN", "Doe, John", "Yamada^Tarou=山田^太郎", "^^^^", "=", "\xff\xfe", "A B C D E F"} {
		f.Add(s, "19800412", "M")
	}
	patient := map[string]any{"name": []any{map[string]any{"family": "Doe", "given": []any{"John"}}},
		"birthDate": "1980-04-12", "gender": "male"}
	f.Fuzz(func(t *testing.T, pn, birth, sex string) {
		c := compareDemographics(DefaultMatchWeights, &Study{PatientName: pn, PatientBirthDate: birth, PatientSex: sex}, fhir.PatientOf(patient))
		if math.IsNaN(c.Score) || math.IsInf(c.Score, 0) {
			t.Fatalf("score %v", c.Score)
		}
		for _, k := range blockingKeys(dicomName(pn), birth) {
			if !utf8.ValidString(k) {
				t.Fatalf("key %q is not UTF-8", k)
			}
		}
		jaroWinkler(pn, birth)
	})
}
