package patientid

import (
	"os"
	"strings"
	"testing"
)

func stMarys(t testing.TB) *Rules {
	t.Helper()
	data, err := os.ReadFile("testdata/STMARYS.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, err := Load(data)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestExampleRules runs the tests beside the example rules, as an analyst's own run.
func TestExampleRules(t *testing.T) {
	r := stMarys(t)
	if len(r.Tests) < 10 {
		t.Fatalf("only %d tests beside the example", len(r.Tests))
	}
	for _, f := range r.Run() {
		t.Error(f)
	}
}

func TestExplain(t *testing.T) {
	r := stMarys(t)
	for _, tc := range []struct{ issuer, value, want string }{
		{"STMARYS", "MRN0012345", "PatientID MRN0012345 read as 12345 under St Mary's MRN rule 1 (prefix MRN removed), rule 2 (leading zeros dropped)"},
		{"", "12345", "PatientID 12345 read as 12345 under St Mary's MRN"},
		{"SMBILL", "7992739871-4", "PatientID 7992739871-4 refused under St Mary's billing number rule 1 (check digit 4 of luhn does not check: a mistyped number)"},
		{"SMPACS", "p1", "PatientID p1 read as P1 under St Mary's PACS rule 1 (upper-cased): another system's number for the same person"},
		{"OTHER", "1", "PatientID 1 of issuer OTHER, which no rule names"},
	} {
		if got := r.Read(tc.issuer, tc.value).Explain(); got != tc.want {
			t.Errorf("%s %s:\n got %s\nwant %s", tc.issuer, tc.value, got, tc.want)
		}
	}
}

func TestSame(t *testing.T) {
	r := stMarys(t)
	if !Same(r.Read("SMH", "MRN-0012345"), r.Read("2.16.840.1.113883.3.9999.1", "12345")) {
		t.Error("one MRN written two ways under two names of one authority is not the same")
	}
	if Same(r.Read("STMARYS", "12345"), r.Read("SMPACS", "12345")) {
		t.Error("an MRN and a PACS number with the same digits are the same")
	}
	if Same(r.Read("OTHER", "12345"), r.Read("OTHER", "12345")) {
		t.Error("identifiers of an unknown issuer compare as the same")
	}
}

func TestLoadRefusesBadRules(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"two things in a step", "authorities: [{name: A, system: s, normalize: [{drop_leading_zeros: true, case: upper}]}]", "exactly one thing"},
		{"nothing in a step", "authorities: [{name: A, system: s, normalize: [{}]}]", "exactly one thing"},
		{"issuer twice", "authorities: [{name: A, system: s, issuers: [X]}, {name: B, system: t, issuers: [x]}]", "belongs to both"},
		{"two defaults", "authorities: [{name: A, system: s, default: true}, {name: B, system: t, default: true}]", "more than one authority"},
		{"no system", "authorities: [{name: A}]", "needs a name and a system"},
		{"bad scheme", "authorities: [{name: A, system: s, normalize: [{check_digit: {scheme: verhoeff, separator: '-'}}]}]", "luhn or mod11"},
		{"check digit without separator", "authorities: [{name: A, system: s, normalize: [{check_digit: {scheme: luhn}}]}]", "separator"},
		{"bad case", "authorities: [{name: A, system: s, normalize: [{case: title}]}]", "upper or lower"},
		{"unknown field", "authorities: [{name: A, system: s, prefixes: [X]}]", "prefixes"},
		{"other without issuers", "other_systems: [{name: P, system: s}]", "its issuers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want one about %q", err, tc.want)
			}
		})
	}
}

func TestCheckDigits(t *testing.T) {
	for _, tc := range []struct {
		scheme, number string
		want           byte
		ok             bool
	}{
		{"luhn", "7992739871", '3', true},
		{"luhn", "4539578763621486"[:15], '6', true},
		{"mod11", "123456", '0', true}, // 6·2+5·3+4·4+3·5+2·6+1·7 = 77 = 7·11: (11-0) mod 11
		{"mod11", "10", '8', true},     // 0·2+1·3 = 3: 11-3
		{"mod11", "1", '9', true},      // 1·2 = 2: 11-2
		{"mod11", "5", '1', true},      // 5·2 = 10: 11-10
		{"mod11", "6", 0, false},       // 6·2 = 12, 12 mod 11 = 1: a digit of 10, which no number carries
		{"luhn", "12a4", 0, false},
		{"luhn", "", 0, false},
	} {
		got, ok := checkDigit(tc.scheme, tc.number)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("%s %s: %c %v, want %c %v", tc.scheme, tc.number, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzRead: whatever a modality writes, a reading is usable (known, a value, not refused) or
// says why not, and never panics.
func FuzzRead(f *testing.F) {
	r := stMarys(f)
	for _, tc := range r.Tests {
		f.Add(tc.Issuer, tc.Value)
	}
	f.Fuzz(func(t *testing.T, issuer, value string) {
		rd := r.Read(issuer, value)
		if rd.Known && rd.Refused == "" && rd.Value == "" {
			t.Fatalf("%q %q: usable with an empty value", issuer, value)
		}
		if rd.Refused != "" && rd.Value != "" {
			t.Fatalf("%q %q: refused with a value", issuer, value)
		}
		_ = rd.Explain()
	})
}
