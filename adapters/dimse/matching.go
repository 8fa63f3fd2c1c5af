package dimse

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ferryhealth/ferry/dicom"
)

// Attribute matching of C-FIND keys (PS3.4 C.2.2.2), applied to one attribute value at a time.
// Values are UTF-8 text without padding (Element.Strings after character set decoding).

// valueMatcher reports whether a stored attribute value matches a key.
type valueMatcher func(stored string) bool

// keyError reports a key value that no matching rule accepts (a malformed date range, say). Its
// text quotes no value: it is safe to log and to send as an Error Comment.
type keyError struct {
	Tag dicom.Tag
	Msg string
}

func (e *keyError) Error() string { return fmt.Sprintf("key %s: %s", e.Tag, e.Msg) }

// wildcardVR reports whether keys of the VR may use wild card matching (PS3.4 C.2.2.2.4): the
// character string VRs other than dates, times, numbers and UIDs.
func wildcardVR(vr dicom.VR) bool {
	switch vr {
	case dicom.VRAE, dicom.VRCS, dicom.VRLO, dicom.VRLT, dicom.VRPN, dicom.VRSH, dicom.VRST, dicom.VRUC, dicom.VRUR, dicom.VRUT:
		return true
	}
	return false
}

// compileKey returns the matcher for a key's values, or nil when the key matches everything
// (universal matching, PS3.4 C.2.2.2.3: no value, or only "*"). Several values (backslash
// separated) match when any of them does: List of UID Matching for UI (C.2.2.2.2); for the
// other VRs the same rule, as dcm4chee and Orthanc apply it. Person names (PN) match case
// insensitively, and trailing empty name components are not significant.
func compileKey(tag dicom.Tag, vr dicom.VR, values []string) (valueMatcher, error) {
	values = slices.DeleteFunc(slices.Clone(values), func(v string) bool { return v == "" })
	if len(values) == 0 {
		return nil, nil
	}
	if wildcardVR(vr) && slices.Contains(values, "*") {
		return nil, nil
	}
	matchers := make([]valueMatcher, 0, len(values))
	for _, v := range values {
		m, err := compileValue(tag, vr, v)
		if err != nil {
			return nil, err
		}
		matchers = append(matchers, m)
	}
	if vr == dicom.VRUI {
		return func(s string) bool { return slices.Contains(values, s) }, nil
	}
	if len(matchers) == 1 {
		return matchers[0], nil
	}
	return func(s string) bool {
		for _, m := range matchers {
			if m(s) {
				return true
			}
		}
		return false
	}, nil
}

// compileValue returns the matcher for one non-empty key value.
func compileValue(tag dicom.Tag, vr dicom.VR, v string) (valueMatcher, error) {
	switch vr {
	case dicom.VRDA:
		lo, hi, err := parseRange(v, normDate, normDate)
		if err != nil {
			return nil, &keyError{tag, "date " + err.Error()}
		}
		return rangeMatcher(lo, hi, normDate), nil
	case dicom.VRTM:
		lo, hi, err := parseRange(v, normTimeFloor, normTimeCeil)
		if err != nil {
			return nil, &keyError{tag, "time " + err.Error()}
		}
		if !strings.Contains(v, "-") {
			// Single value matching of a time by meaning: "2230" matches "223000" (PS3.4
			// C.2.2.2.1), not 22:30:59.
			hi = lo
		}
		return rangeMatcher(lo, hi, normTimeFloor), nil
	case dicom.VRPN:
		key := strings.ToLower(normPN(v))
		if strings.ContainsAny(v, "*?") {
			pattern := []rune(key)
			return func(s string) bool { return wildcardMatch(pattern, normPN(s), true) }, nil
		}
		return func(s string) bool { return strings.EqualFold(normPN(s), key) }, nil
	}
	if wildcardVR(vr) && strings.ContainsAny(v, "*?") {
		pattern := []rune(v)
		return func(s string) bool { return wildcardMatch(pattern, s, false) }, nil
	}
	return func(s string) bool { return s == v }, nil
}

// rangeMatcher matches the stored values whose normalized form lies in [lo, hi]; "" leaves that
// end open. A stored value that does not parse matches nothing.
func rangeMatcher(lo, hi string, norm func(string) (string, bool)) valueMatcher {
	return func(s string) bool {
		n, ok := norm(s)
		return ok && (lo == "" || n >= lo) && (hi == "" || n <= hi)
	}
}

// parseRange reads a date or time key: a single value (both ends that value), or a range
// "A-B", "A-" or "-B" (PS3.4 C.2.2.2.5). The ends are normalized so that text order is time
// order; the upper end of a partial time is its last instant ("-10" ends at 10:59:59.999999).
func parseRange(v string, floor, ceil func(string) (string, bool)) (lo, hi string, err error) {
	a, b, isRange := strings.Cut(v, "-")
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	if !isRange {
		n, ok := floor(a)
		if !ok {
			return "", "", errors.New("value is not valid")
		}
		return n, n, nil
	}
	if a == "" && b == "" {
		return "", "", errors.New(`range "-" has no end`)
	}
	if a != "" {
		if lo, isRange = floor(a); !isRange {
			return "", "", errors.New("range start is not valid")
		}
	}
	if b != "" {
		if hi, isRange = ceil(b); !isRange {
			return "", "", errors.New("range end is not valid")
		}
	}
	if lo != "" && hi != "" && lo > hi {
		return "", "", errors.New("range ends before it starts")
	}
	return lo, hi, nil
}

// normDate returns a DA value as YYYYMMDD; the ACR-NEMA form YYYY.MM.DD is accepted too
// (PS3.5 table 6.2-1 asks queries to accept it).
func normDate(s string) (string, bool) {
	if len(s) == 10 && s[4] == '.' && s[7] == '.' {
		s = s[:4] + s[5:7] + s[8:]
	}
	if len(s) != 8 || !allDigits(s) {
		return "", false
	}
	if m, d := atoi2(s[4:6]), atoi2(s[6:8]); m < 1 || m > 12 || d < 1 || d > 31 {
		return "", false
	}
	return s, true
}

// normTimeFloor returns a TM value (HH, HHMM, HHMMSS, HHMMSS.F… up to 6 fraction digits; the
// ACR-NEMA form HH:MM:SS accepted) as the 12 digits HHMMSSFFFFFF, missing parts 0.
func normTimeFloor(s string) (string, bool) { return normTime(s, false) }

// normTimeCeil is normTimeFloor with missing parts at their largest: the end of the period
// the value names.
func normTimeCeil(s string) (string, bool) { return normTime(s, true) }

func normTime(s string, ceil bool) (string, bool) {
	if strings.Contains(s, ":") {
		s = strings.ReplaceAll(s, ":", "")
	}
	hms, frac, hasFrac := strings.Cut(s, ".")
	if len(hms) < 2 || len(hms) > 6 || len(hms)%2 == 1 || !allDigits(hms) || len(frac) > 6 || !allDigits(frac) ||
		(hasFrac && len(hms) != 6) {
		return "", false
	}
	if atoi2(hms[0:2]) > 23 || (len(hms) >= 4 && atoi2(hms[2:4]) > 59) || (len(hms) == 6 && atoi2(hms[4:6]) > 60) {
		return "", false
	}
	var b [12]byte
	copy(b[:], hms)
	copy(b[6:], frac)
	fill := "000000000000"
	if ceil {
		fill = "995959999999" // positions 2..11: minutes 59, seconds 59, fraction 999999
	}
	for i := len(hms); i < 6; i++ {
		b[i] = fill[i]
	}
	for i := 6 + len(frac); i < 12; i++ {
		b[i] = fill[i]
	}
	return string(b[:]), true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func atoi2(s string) int { return int(s[0]-'0')*10 + int(s[1]-'0') }

// normPN removes the trailing empty components and component groups of a person name, which are
// not significant: "DOE^JOHN^^^" is "DOE^JOHN" (PS3.5 6.2.1).
func normPN(s string) string {
	if !strings.HasSuffix(s, "^") && !strings.HasSuffix(s, "=") && !strings.Contains(s, "^=") {
		return s
	}
	groups := strings.Split(s, "=")
	for i, g := range groups {
		groups[i] = strings.TrimRight(g, "^ ")
	}
	for len(groups) > 1 && groups[len(groups)-1] == "" {
		groups = groups[:len(groups)-1]
	}
	return strings.Join(groups, "=")
}

// wildcardMatch reports whether s matches pattern, where * matches any run of characters (none
// included) and ? exactly one character (PS3.4 C.2.2.2.4). Characters, not bytes: "?" matches
// "Ü". With fold, the pattern must be lower case already and s is compared case-insensitively.
func wildcardMatch(pattern []rune, s string, fold bool) bool {
	px, sx := 0, 0
	starPx, starSx := -1, 0
	for sx < len(s) {
		r, size := utf8.DecodeRuneInString(s[sx:])
		if fold {
			r = unicode.ToLower(r)
		}
		if px < len(pattern) {
			switch p := pattern[px]; {
			case p == '*':
				starPx, starSx = px, sx
				px++
				continue
			case p == '?' || p == r:
				px++
				sx += size
				continue
			}
		}
		if starPx < 0 {
			return false
		}
		// Let the last * absorb one more character and retry from there.
		_, skip := utf8.DecodeRuneInString(s[starSx:])
		starSx += skip
		px, sx = starPx+1, starSx
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}

// dateTimeRange is the combined range of a date key and a time key (PS3.4 C.2.2.2.5): as
// 20-character DA+TM strings, lo from the start date at the start time and hi to the end date
// at the end time; "" leaves an end open.
type dateTimeRange struct{ lo, hi string }

// compileDateTimeRange combines a single-valued date key and a time range key into one range:
// "20240105-20240106" with "2200-0600" matches from 5 January 22:00 to 6 January 06:00, not two
// evenings and two mornings.
func compileDateTimeRange(dateTag, timeTag dicom.Tag, date, tm string) (*dateTimeRange, error) {
	dlo, dhi, err := parseRange(date, normDate, normDate)
	if err != nil {
		return nil, &keyError{dateTag, "date " + err.Error()}
	}
	a, b, _ := strings.Cut(tm, "-")
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	tlo, thi := "000000000000", "235959999999"
	if a != "" {
		if tlo, _ = normTimeFloor(a); tlo == "" {
			return nil, &keyError{timeTag, "time range start is not valid"}
		}
	}
	if b != "" {
		if thi, _ = normTimeCeil(b); thi == "" {
			return nil, &keyError{timeTag, "time range end is not valid"}
		}
	}
	r := &dateTimeRange{}
	if dlo != "" {
		r.lo = dlo + tlo
	}
	if dhi != "" {
		r.hi = dhi + thi
	}
	if r.lo != "" && r.hi != "" && r.lo > r.hi {
		return nil, &keyError{timeTag, "date and time range ends before it starts"}
	}
	return r, nil
}

// match reports whether a stored date and time fall in the range; a stored entity with a date
// but no time is taken at the start of its day.
func (r *dateTimeRange) match(date, tm string) bool {
	d, ok := normDate(date)
	if !ok {
		return false
	}
	t := "000000000000"
	if tm != "" {
		if t, ok = normTimeFloor(tm); !ok {
			return false
		}
	}
	dt := d + t
	return (r.lo == "" || dt >= r.lo) && (r.hi == "" || dt <= r.hi)
}
