// Package patientid reads patient identifiers the way a hospital's systems write them. One
// hospital's rules, which an interface analyst edits as YAML with tests beside them, say which
// issuers are the same assigning authority (STMARYS, SMH and an OID are one MRN), how a value is
// normalised before it is compared (prefixes and suffixes to strip, leading zeros, case,
// separators, a check digit), and which other systems' numbers are further identifiers of the
// same person (a PACS's own numbers, an outside imaging centre's).
//
// Every reading says what it did, rule by rule, so a linking decision can be explained to the
// person who checks it: "PatientID MRN0012345 read as 12345 under St Mary's MRN rule 1 (prefix
// MRN removed), rule 2 (leading zeros dropped)".
package patientid

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
)

// Rules are one hospital's identifier rules (a file such as identifiers/STMARYS.yaml).
type Rules struct {
	Facility    string        `yaml:"facility"` // the sending facility (MSH-4) they belong to
	Authorities []Authority   `yaml:"authorities"`
	Others      []OtherSystem `yaml:"other_systems"`
	Tests       []Test        `yaml:"tests"`
}

// Authority is one assigning authority of patient identifiers.
type Authority struct {
	Name    string   `yaml:"name"`    // for people: "St Mary's MRN"
	System  string   `yaml:"system"`  // the identifier system Ferry stores these under
	Issuers []string `yaml:"issuers"` // the names and OIDs senders use for it (CX.4, IssuerOfPatientID)
	// Default: a value sent without an issuer is this authority's (the hospital's own MRN).
	Default bool   `yaml:"default"`
	Steps   []Step `yaml:"normalize"` // applied in order, numbered from 1 in explanations
}

// Step is one normalisation rule. Exactly one of its fields is set.
type Step struct {
	StripPrefixes    []string    `yaml:"strip_prefixes"`     // the first that matches is removed ("MRN", "MRN-")
	StripSuffixes    []string    `yaml:"strip_suffixes"`     // likewise at the end
	DropLeadingZeros bool        `yaml:"drop_leading_zeros"` // 0012345 and 12345 are one number
	Case             string      `yaml:"case"`               // upper or lower
	Remove           string      `yaml:"remove"`             // characters removed anywhere (separators: "-. /")
	CheckDigit       *CheckDigit `yaml:"check_digit"`
}

// CheckDigit is a check digit the authority appends after a separator ("123456-7"). A value
// whose check digit is wrong is refused: it is a mistyped number and must not link to anyone.
// A value without the separator is taken as it is (senders often leave the digit off).
type CheckDigit struct {
	Scheme    string `yaml:"scheme"`    // luhn (mod 10) or mod11
	Separator string `yaml:"separator"` // what stands between the number and its digit
	Keep      bool   `yaml:"keep"`      // keep the digit in the normalised value (default: drop it)
}

// OtherSystem names numbers from another system that identify the same person (a PACS's own
// patient IDs, an outside imaging centre's): they are kept as further identifiers of the person
// once a study links by other evidence, but never match an authority's numbers.
type OtherSystem struct {
	Name    string   `yaml:"name"`
	System  string   `yaml:"system"`
	Issuers []string `yaml:"issuers"`
	Steps   []Step   `yaml:"normalize"`
}

// Test is one expectation beside the rules: issuer and value as sent, and what they read as.
type Test struct {
	Issuer string `yaml:"issuer"`
	Value  string `yaml:"value"`
	System string `yaml:"system"` // the system expected; empty with Refused or Unknown
	Want   string `yaml:"want"`   // the normalised value expected
	// Refused: the value must be refused (a wrong check digit, nothing left after stripping).
	Refused bool `yaml:"refused"`
	// Unknown: no authority or other system claims the issuer.
	Unknown bool `yaml:"unknown"`
}

// Reading is what Read made of an identifier.
type Reading struct {
	Issuer, Sent string // as sent
	Known        bool   // an authority or other system claims the issuer
	Other        bool   // it is another system's number (OtherSystem), not an authority's
	Name, System string // the authority or other system
	Value        string // normalised; empty when refused
	Refused      string // why the value cannot be used, if it cannot
	Applied      []Applied
}

// Applied is one step that changed the value.
type Applied struct {
	Rule   int    // 1-based, within its authority's steps
	What   string // "prefix MRN removed"
	Result string
}

// Load parses rules from YAML and checks them: every step sets one thing, schemes are known,
// an issuer belongs to one authority, at most one authority is the default.
func Load(data []byte) (*Rules, error) {
	var r Rules
	if err := yaml.UnmarshalWithOptions(data, &r, yaml.Strict()); err != nil {
		return nil, fmt.Errorf("identifier rules: %w", err)
	}
	return &r, r.Check()
}

// Check checks rules built in code as Load checks those it parses.
func (r *Rules) Check() error {
	var errs []error
	seen := map[string]string{}
	defaults := 0
	claim := func(owner string, issuers []string) {
		for _, is := range issuers {
			key := strings.ToUpper(strings.TrimSpace(is))
			if prev, dup := seen[key]; dup && prev != owner {
				errs = append(errs, fmt.Errorf("issuer %q belongs to both %s and %s", is, prev, owner))
			}
			seen[key] = owner
		}
	}
	checkSteps := func(owner string, steps []Step) {
		for i, s := range steps {
			if err := s.check(); err != nil {
				errs = append(errs, fmt.Errorf("%s rule %d: %w", owner, i+1, err))
			}
		}
	}
	for _, a := range r.Authorities {
		if a.Name == "" || a.System == "" {
			errs = append(errs, fmt.Errorf("an authority needs a name and a system (%q, %q)", a.Name, a.System))
		}
		if a.Default {
			defaults++
		}
		claim(a.Name, a.Issuers)
		checkSteps(a.Name, a.Steps)
	}
	for _, o := range r.Others {
		if o.Name == "" || o.System == "" || len(o.Issuers) == 0 {
			errs = append(errs, fmt.Errorf("another system needs a name, a system and its issuers (%q)", o.Name))
		}
		claim(o.Name, o.Issuers)
		checkSteps(o.Name, o.Steps)
	}
	if defaults > 1 {
		errs = append(errs, errors.New("more than one authority is the default for values sent without an issuer"))
	}
	return errors.Join(errs...)
}

func (s Step) check() error {
	set := 0
	for _, on := range []bool{len(s.StripPrefixes) > 0, len(s.StripSuffixes) > 0, s.DropLeadingZeros, s.Case != "", s.Remove != "", s.CheckDigit != nil} {
		if on {
			set++
		}
	}
	if set != 1 {
		return fmt.Errorf("a step does exactly one thing (this one does %d)", set)
	}
	if s.Case != "" && s.Case != "upper" && s.Case != "lower" {
		return fmt.Errorf("case %q: upper or lower", s.Case)
	}
	if c := s.CheckDigit; c != nil {
		if c.Scheme != "luhn" && c.Scheme != "mod11" {
			return fmt.Errorf("check digit scheme %q: luhn or mod11", c.Scheme)
		}
		if c.Separator == "" {
			return errors.New("check digit: a separator is required (a digit cannot be told from the number without one)")
		}
	}
	return nil
}

// Read reads value as sent with issuer (IssuerOfPatientID or CX.4; empty when none was sent).
func (r *Rules) Read(issuer, value string) Reading {
	key := strings.ToUpper(strings.TrimSpace(issuer))
	return r.read(Reading{Issuer: issuer, Sent: value},
		func(a Authority) bool { return (key == "" && a.Default) || containsFold(a.Issuers, key) },
		func(o OtherSystem) bool { return containsFold(o.Issuers, key) })
}

// ReadStored reads a value Ferry holds under system (a Patient's identifier, from ADT or an
// order) with the steps of the authority or other system that uses that system, so that it
// compares with a Read of what a modality sent. Known is false when no rule uses the system.
func (r *Rules) ReadStored(system, value string) Reading {
	return r.read(Reading{Sent: value},
		func(a Authority) bool { return a.System == system },
		func(o OtherSystem) bool { return o.System == system })
}

// read reads rd.Sent under the first authority, else the first other system, that claims it.
func (r *Rules) read(rd Reading, authority func(Authority) bool, other func(OtherSystem) bool) Reading {
	var steps []Step
	for _, a := range r.Authorities {
		if authority(a) {
			rd.Known, rd.Name, rd.System, steps = true, a.Name, a.System, a.Steps
			break
		}
	}
	if !rd.Known {
		for _, o := range r.Others {
			if other(o) {
				rd.Known, rd.Other, rd.Name, rd.System, steps = true, true, o.Name, o.System, o.Steps
				break
			}
		}
	}
	v := strings.TrimSpace(rd.Sent)
	if !rd.Known {
		rd.Value = v
		return rd
	}
	return rd.normalise(v, steps)
}

// normalise applies steps to v, recording each that changed it.
func (rd Reading) normalise(v string, steps []Step) Reading {
	for i, s := range steps {
		next, what, refused := s.apply(v)
		if refused != "" {
			rd.Refused = refused
			rd.Applied = append(rd.Applied, Applied{Rule: i + 1, What: refused})
			return rd
		}
		if next != v {
			rd.Applied = append(rd.Applied, Applied{Rule: i + 1, What: what, Result: next})
			v = next
		}
	}
	if v == "" {
		rd.Refused = "nothing is left of the value after its rules"
		return rd
	}
	rd.Value = v
	return rd
}

// Issuer is the name senders use for the authority or other system of system (the first of its
// issuers), "" when no rule uses it: what DICOM's Issuer of Patient ID says for Ferry's MRNs.
func (r *Rules) Issuer(system string) string {
	for _, a := range r.Authorities {
		if a.System == system && len(a.Issuers) > 0 {
			return a.Issuers[0]
		}
	}
	for _, o := range r.Others {
		if o.System == system && len(o.Issuers) > 0 {
			return o.Issuers[0]
		}
	}
	return ""
}

func containsFold(list []string, upperKey string) bool {
	if upperKey == "" {
		return false
	}
	for _, s := range list {
		if strings.ToUpper(strings.TrimSpace(s)) == upperKey {
			return true
		}
	}
	return false
}

// apply runs one step: the new value and what was done, or why the value is refused.
func (s Step) apply(v string) (next, what, refused string) {
	switch {
	case len(s.StripPrefixes) > 0:
		for _, p := range s.StripPrefixes {
			if p != "" && len(v) > len(p) && strings.EqualFold(v[:len(p)], p) {
				if rest := strings.TrimSpace(v[len(p):]); rest != "" {
					return rest, "prefix " + p + " removed", ""
				}
			}
		}
	case len(s.StripSuffixes) > 0:
		for _, p := range s.StripSuffixes {
			if p != "" && len(v) > len(p) && strings.EqualFold(v[len(v)-len(p):], p) {
				if rest := strings.TrimSpace(v[:len(v)-len(p)]); rest != "" {
					return rest, "suffix " + p + " removed", ""
				}
			}
		}
	case s.DropLeadingZeros:
		if t := strings.TrimLeft(v, "0"); t != v && t != "" {
			return t, "leading zeros dropped", ""
		}
	case s.Case == "upper":
		return strings.ToUpper(v), "upper-cased", ""
	case s.Case == "lower":
		return strings.ToLower(v), "lower-cased", ""
	case s.Remove != "":
		t := strings.Map(func(r rune) rune {
			if strings.ContainsRune(s.Remove, r) {
				return -1
			}
			return r
		}, v)
		return t, "separators " + strconv.Quote(s.Remove) + " removed", ""
	case s.CheckDigit != nil:
		c := s.CheckDigit
		i := strings.LastIndex(v, c.Separator)
		if i < 0 {
			return v, "", ""
		}
		number, digit := v[:i], v[i+len(c.Separator):]
		want, ok := checkDigit(c.Scheme, number)
		if !ok || len(digit) != 1 || digit[0] != want {
			return "", "", "check digit " + digit + " of " + c.Scheme + " does not check: a mistyped number"
		}
		if c.Keep {
			return number + digit, "check digit " + digit + " checked", ""
		}
		return number, "check digit " + digit + " checked and dropped", ""
	}
	return v, "", ""
}

// checkDigit computes the check digit of number's digits under scheme; ok is false when number
// holds anything but digits (or, for mod11, when the remainder calls for a digit of 10, which
// such numbers never carry).
func checkDigit(scheme, number string) (byte, bool) {
	if number == "" {
		return 0, false
	}
	for _, r := range number {
		if r < '0' || r > '9' {
			return 0, false
		}
	}
	switch scheme {
	case "luhn":
		sum, double := 0, true
		for i := len(number) - 1; i >= 0; i-- {
			d := int(number[i] - '0')
			if double {
				if d *= 2; d > 9 {
					d -= 9
				}
			}
			sum, double = sum+d, !double
		}
		return byte('0' + (10-sum%10)%10), true
	case "mod11":
		sum, weight := 0, 2
		for i := len(number) - 1; i >= 0; i-- {
			sum += int(number[i]-'0') * weight
			if weight++; weight > 7 {
				weight = 2
			}
		}
		d := (11 - sum%11) % 11
		if d == 10 {
			return 0, false
		}
		return byte('0' + d), true
	}
	return 0, false
}

// Explain says in one line what was read, for a decision's evidence. It holds the identifier's
// value, so it belongs in stored decisions shown to authorised people, never in logs.
func (rd Reading) Explain() string {
	switch {
	case !rd.Known && rd.Issuer == "":
		return fmt.Sprintf("PatientID %s sent without an issuer, and no authority is the default", rd.Sent)
	case !rd.Known:
		return fmt.Sprintf("PatientID %s of issuer %s, which no rule names", rd.Sent, rd.Issuer)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "PatientID %s", rd.Sent)
	if rd.Refused != "" {
		fmt.Fprintf(&b, " refused under %s", rd.Name)
	} else {
		fmt.Fprintf(&b, " read as %s under %s", rd.Value, rd.Name)
	}
	for i, a := range rd.Applied {
		sep := ", "
		if i == 0 {
			sep = " "
		}
		fmt.Fprintf(&b, "%srule %d (%s)", sep, a.Rule, a.What)
	}
	if rd.Other {
		b.WriteString(": another system's number for the same person")
	}
	return b.String()
}

// Same reports whether two readings name one identifier: both usable, of one system, one value.
func Same(a, b Reading) bool {
	return a.Known && b.Known && a.Refused == "" && b.Refused == "" && a.System == b.System && a.Value != "" && a.Value == b.Value
}

// Run checks the tests beside the rules and returns one line per failure.
func (r *Rules) Run() []string {
	var fails []string
	for i, t := range r.Tests {
		rd := r.Read(t.Issuer, t.Value)
		name := fmt.Sprintf("test %d (%s %q)", i+1, t.Issuer, t.Value)
		switch {
		case t.Unknown:
			if rd.Known {
				fails = append(fails, fmt.Sprintf("%s: want no rule; %s", name, rd.Explain()))
			}
		case t.Refused:
			if rd.Refused == "" {
				fails = append(fails, fmt.Sprintf("%s: want refused; %s", name, rd.Explain()))
			}
		case !rd.Known || rd.Refused != "" || rd.Value != t.Want || (t.System != "" && rd.System != t.System):
			fails = append(fails, fmt.Sprintf("%s: want %s|%s; %s", name, t.System, t.Want, rd.Explain()))
		}
	}
	return fails
}
