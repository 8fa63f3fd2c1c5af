package mappings

// The HL7 v2-to-FHIR IG's datatype maps (https://build.fhir.org/ig/HL7/v2-to-fhir/datatype_maps.html):
// CX → Identifier, XPN → HumanName, XAD → Address, XTN → ContactPoint, CWE/CE → CodeableConcept,
// XCN → Practitioner, DTM/TS → dateTime. Every function here returns nil for an empty field.

import (
	"strings"
	"time"

	"github.com/ferryhealth/ferry/hl7"
)

// fnDate converts an HL7 DT/DTM/TS (YYYY[MM[DD[…]]]) to a FHIR date, keeping its precision.
func fnDate(st *state, args []any) (any, error) {
	s := str(args[0])
	if s == "" {
		return nil, nil
	}
	t, err := parseTS(s)
	if err != nil {
		return nil, st.dataTypeError(s, "not an HL7 date: %v", err)
	}
	switch {
	case t.digits >= 8:
		return s[:4] + "-" + s[4:6] + "-" + s[6:8], nil
	case t.digits >= 6:
		return s[:4] + "-" + s[4:6], nil
	default:
		return s[:4], nil
	}
}

// fnDateTime converts an HL7 DTM/TS to a FHIR dateTime. FHIR needs a time zone whenever a time
// is given: the offset written in the value, else the facility's time zone (config), else UTC.
func fnDateTime(st *state, args []any) (any, error) {
	s := str(args[0])
	if s == "" {
		return nil, nil
	}
	t, err := parseTS(s)
	if err != nil {
		return nil, st.dataTypeError(s, "not an HL7 date/time: %v", err)
	}
	if t.digits <= 8 {
		return fnDate(st, args)
	}
	tm := t.time(st.loc)
	layout := "2006-01-02T15:04:05"
	if t.frac > 0 {
		layout += "." + strings.Repeat("0", t.frac)
	}
	return tm.Format(layout + "Z07:00"), nil
}

// fnDA and fnTM give the DICOM DA (YYYYMMDD) and TM (HHMMSS) of an HL7 TS, for the worklist.
func fnDA(st *state, args []any) (any, error) {
	s := str(args[0])
	if s == "" {
		return nil, nil
	}
	if _, err := parseTS(s); err != nil {
		return nil, st.dataTypeError(s, "not an HL7 date: %v", err)
	}
	if len(s) < 8 {
		return nil, nil
	}
	return s[:8], nil
}

func fnTM(st *state, args []any) (any, error) {
	s := str(args[0])
	if s == "" {
		return nil, nil
	}
	t, err := parseTS(s)
	if err != nil {
		return nil, st.dataTypeError(s, "not an HL7 time: %v", err)
	}
	if t.digits < 10 {
		return nil, nil
	}
	return s[8:min(t.digits, 14)], nil
}

// ts is a parsed HL7 TS/DTM: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ].
type ts struct {
	digits int // leading digits: 4, 6, 8, 10, 12 or 14
	frac   int // fraction digits
	fields [6]int
	nanos  int
	offset *int // seconds east of UTC, when written
}

func parseTS(s string) (ts, error) {
	var t ts
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	t.digits = i
	switch i {
	case 4, 6, 8, 10, 12, 14:
	default:
		return t, errBadTS
	}
	widths := []int{4, 2, 2, 2, 2, 2}
	pos := 0
	for k, w := range widths {
		if pos >= i {
			break
		}
		n := 0
		for _, c := range s[pos : pos+w] {
			n = n*10 + int(c-'0')
		}
		t.fields[k] = n
		pos += w
	}
	if i < len(s) && s[i] == '.' && i == 14 {
		j := i + 1
		for j < len(s) && isDigit(s[j]) && j-i <= 4 {
			j++
		}
		t.frac = j - i - 1
		if t.frac == 0 {
			return t, errBadTS
		}
		n := 0
		for _, c := range s[i+1 : j] {
			n = n*10 + int(c-'0')
		}
		for k := t.frac; k < 9; k++ {
			n *= 10
		}
		t.nanos = n
		i = j
	}
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		if len(s)-i != 5 || !allDigits(s[i+1:]) {
			return t, errBadTS
		}
		h := int(s[i+1]-'0')*10 + int(s[i+2]-'0')
		m := int(s[i+3]-'0')*10 + int(s[i+4]-'0')
		off := (h*60 + m) * 60
		if s[i] == '-' {
			off = -off
		}
		t.offset = &off
		i = len(s)
	}
	if i != len(s) {
		return t, errBadTS
	}
	// month 1-12, day 1-31, hour 0-23, minute and second 0-59, when present.
	if (t.digits >= 6 && (t.fields[1] < 1 || t.fields[1] > 12)) ||
		(t.digits >= 8 && (t.fields[2] < 1 || t.fields[2] > daysIn(t.fields[0], t.fields[1]))) ||
		(t.digits >= 10 && t.fields[3] > 23) || (t.digits >= 12 && t.fields[4] > 59) ||
		(t.digits >= 14 && t.fields[5] > 59) {
		return t, errBadTS
	}
	return t, nil
}

type tsError struct{}

func (tsError) Error() string {
	return "want YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+/-ZZZZ]"
}

var errBadTS error = tsError{}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

func daysIn(y, m int) int {
	return time.Date(y, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

func (t ts) time(loc *time.Location) time.Time {
	if t.offset != nil {
		loc = time.FixedZone("", *t.offset)
	} else if loc == nil {
		loc = time.UTC
	}
	month := max(t.fields[1], 1)
	day := max(t.fields[2], 1)
	return time.Date(t.fields[0], time.Month(month), day, t.fields[3], t.fields[4], t.fields[5], t.nanos, loc)
}

// fnGender maps HL7 table 0001 to FHIR administrative-gender (v2-to-FHIR ConceptMap
// table-0001-to-administrative-gender).
func fnGender(_ *state, args []any) (any, error) {
	switch strings.ToUpper(str(args[0])) {
	case "":
		return nil, nil
	case "M":
		return "male", nil
	case "F":
		return "female", nil
	case "U":
		return "unknown", nil
	default: // O other, A ambiguous, N not applicable
		return "other", nil
	}
}

// codingSystems maps HL7 table 0396 coding system names to FHIR system URIs; the analyst's
// "coding_systems" table, when present, is consulted first.
var codingSystems = map[string]string{
	"LN":      "http://loinc.org",
	"SCT":     "http://snomed.info/sct",
	"SNM":     "http://snomed.info/sct",
	"I10":     "http://hl7.org/fhir/sid/icd-10",
	"I10C":    "http://hl7.org/fhir/sid/icd-10-cm",
	"ICD10":   "http://hl7.org/fhir/sid/icd-10",
	"I9C":     "http://hl7.org/fhir/sid/icd-9-cm",
	"C4":      "http://www.ama-assn.org/go/cpt",
	"CPT":     "http://www.ama-assn.org/go/cpt",
	"RADLEX":  "http://www.radlex.org",
	"RL":      "http://www.radlex.org",
	"DCM":     "http://dicom.nema.org/resources/ontology/DCM",
	"UCUM":    "http://unitsofmeasure.org",
	"HL70203": "http://terminology.hl7.org/CodeSystem/v2-0203",
	"HL70078": "http://terminology.hl7.org/CodeSystem/v2-0078",
}

func (st *state) systemURI(name string) string {
	if name == "" {
		return ""
	}
	if t, ok := st.table["coding_systems"]; ok {
		if row, ok := t.Rows[name]; ok && row["system"] != "" {
			return row["system"]
		}
	}
	if u, ok := codingSystems[strings.ToUpper(name)]; ok {
		return u
	}
	if strings.HasPrefix(strings.ToUpper(name), "HL7") && len(name) == 7 && allDigits(name[3:]) {
		return "http://terminology.hl7.org/CodeSystem/v2-" + name[3:]
	}
	if strings.HasPrefix(strings.ToUpper(name), "99") {
		return "" // local coding system: kept as text only
	}
	return ""
}

func fnSystem(st *state, args []any) (any, error) { return st.systemURI(str(args[0])), nil }

func fnCoding(st *state, args []any) (any, error) {
	c := map[string]any{}
	put(c, "code", str(args[0]))
	if len(args) > 1 {
		put(c, "system", str(args[1]))
	}
	if len(args) > 2 {
		put(c, "display", str(args[2]))
	}
	if len(c) == 0 {
		return nil, nil
	}
	return c, nil
}

func put(m map[string]any, k, v string) {
	if v != "" {
		m[k] = v
	}
}

// authority resolves an HD (namespace^universal ID^type) to an identifier system: the
// "authorities" table first (namespace or universal ID → system), then an ISO OID as urn:oid,
// then a UUID as urn:uuid; "" when unknown.
func (st *state) authority(ns, uid, typ string) string {
	if t, ok := st.table["authorities"]; ok {
		for _, k := range []string{ns, uid} {
			if k == "" {
				continue
			}
			if row, ok := t.Rows[k]; ok && row["system"] != "" {
				return row["system"]
			}
		}
	}
	switch strings.ToUpper(typ) {
	case "ISO":
		if uid != "" {
			return "urn:oid:" + uid
		}
	case "UUID", "GUID":
		if uid != "" {
			return "urn:uuid:" + strings.ToLower(uid)
		}
	case "URI":
		return uid
	}
	return ""
}

// identifier maps one CX repetition (v2-to-FHIR CX[Identifier]): CX.1 value; CX.4 assigning
// authority → system (or assigner.display when the authority is not known); CX.5 → type.
func (st *state) identifier(p hl7.Path, typ string) map[string]any {
	value := st.comp(p, 1, 0)
	if value == "" {
		return nil
	}
	id := map[string]any{"value": value}
	ns, uid, ut := st.comp(p, 4, 1), st.comp(p, 4, 2), st.comp(p, 4, 3)
	if sys := st.authority(ns, uid, ut); sys != "" {
		id["system"] = sys
	}
	// CX.4 → assigner too (v2-to-FHIR CX[Identifier]): the namespace the hospital knows it by,
	// which the worklist's Issuer of Patient ID carries.
	if ns != "" {
		id["assigner"] = map[string]any{"display": ns}
	}
	if typ == "" {
		typ = st.comp(p, 5, 0)
	}
	if typ != "" {
		id["type"] = map[string]any{"coding": []any{map[string]any{
			"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": typ}}}
	}
	return id
}

func fnIdentifier(st *state, args []any) (any, error) {
	p, err := st.path(args[0])
	if err != nil {
		return nil, err
	}
	typ := ""
	if len(args) > 1 {
		typ = str(args[1])
	}
	if id := st.identifier(p, typ); id != nil {
		return id, nil
	}
	return nil, nil
}

func fnIdentifiers(st *state, args []any) (any, error) {
	p, err := st.path(args[0])
	if err != nil {
		return nil, err
	}
	var out []any
	for _, r := range st.repetitions(p, true) {
		if id := st.identifier(r, ""); id != nil {
			out = append(out, id)
		}
	}
	return nilIfEmpty(out), nil
}

func nilIfEmpty(l []any) any {
	if len(l) == 0 {
		return nil
	}
	return l
}

// nameUse maps HL7 table 0200 (name type) to FHIR name-use (v2-to-FHIR ConceptMap table-0200).
var nameUse = map[string]string{
	"L": "official", "D": "usual", "A": "usual", "M": "maiden", "N": "nickname",
	"B": "old", "C": "old", "BAD": "old", "T": "temp", "TEMP": "temp", "R": "official",
}

// humanName maps an XPN (first = 1) or the name part of an XCN (first = 2): family, given,
// middle (→ given), suffix, prefix, degree (→ suffix), name type.
func (st *state) humanName(p hl7.Path, first int) map[string]any {
	family := st.comp(p, first, 1)
	given := st.comp(p, first+1, 0)
	middle := st.comp(p, first+2, 0)
	if family == "" && given == "" && middle == "" {
		return nil
	}
	n := map[string]any{}
	put(n, "family", family)
	var g []any
	for _, s := range []string{given, middle} {
		if s != "" {
			g = append(g, s)
		}
	}
	if g != nil {
		n["given"] = g
	}
	var suffix []any
	if s := st.comp(p, first+3, 0); s != "" {
		suffix = append(suffix, s)
	}
	if prefix := st.comp(p, first+4, 0); prefix != "" {
		n["prefix"] = []any{prefix}
	}
	degree := first + 5
	if first == 2 {
		degree = 7 // XCN.7 degree
	}
	if s := st.comp(p, degree, 0); s != "" {
		suffix = append(suffix, s)
	}
	if suffix != nil {
		n["suffix"] = suffix
	}
	useField := 7
	if first == 2 {
		useField = 10 // XCN.10 name type code
	}
	if u := nameUse[strings.ToUpper(st.comp(p, useField, 0))]; u != "" {
		n["use"] = u
	}
	return n
}

func fnName(st *state, args []any) (any, error) {
	p, err := st.path(args[0])
	if err != nil {
		return nil, err
	}
	if n := st.humanName(p, 1); n != nil {
		return n, nil
	}
	return nil, nil
}

func fnNames(st *state, args []any) (any, error) {
	p, err := st.path(args[0])
	if err != nil {
		return nil, err
	}
	var out []any
	for _, r := range st.repetitions(p, true) {
		if n := st.humanName(r, 1); n != nil {
			out = append(out, n)
		}
	}
	return nilIfEmpty(out), nil
}

// addressUse maps HL7 table 0190 to FHIR address-use / address-type.
var addressUse = map[string]string{"H": "home", "B": "work", "O": "work", "C": "temp", "BA": "old", "M": "home"}

func fnAddresses(st *state, args []any) (any, error) {
	p, err := st.path(args[0])
	if err != nil {
		return nil, err
	}
	var out []any
	for _, r := range st.repetitions(p, true) {
		a := map[string]any{}
		var lines []any
		for _, s := range []string{st.comp(r, 1, 1), st.comp(r, 2, 0)} {
			if s != "" {
				lines = append(lines, s)
			}
		}
		if lines != nil {
			a["line"] = lines
		}
		put(a, "city", st.comp(r, 3, 0))
		put(a, "state", st.comp(r, 4, 0))
		put(a, "postalCode", st.comp(r, 5, 0))
		put(a, "country", st.comp(r, 6, 0))
		if len(a) == 0 {
			continue
		}
		if u := addressUse[strings.ToUpper(st.comp(r, 7, 0))]; u != "" {
			a["use"] = u
		}
		out = append(out, a)
	}
	return nilIfEmpty(out), nil
}

// telecomUse maps HL7 table 0201 to FHIR contact-point-use; table 0202 to contact-point-system.
var (
	telecomUse    = map[string]string{"PRN": "home", "ORN": "home", "VHN": "home", "WPN": "work", "PRS": "mobile", "EMR": "temp"}
	telecomSystem = map[string]string{"PH": "phone", "CP": "phone", "FX": "fax", "INTERNET": "email", "X.400": "email", "BP": "pager", "MD": "other", "TDD": "other", "TTY": "other"}
)

func fnTelecoms(st *state, args []any) (any, error) {
	p, err := st.path(args[0])
	if err != nil {
		return nil, err
	}
	var out []any
	for _, r := range st.repetitions(p, true) {
		equip := strings.ToUpper(st.comp(r, 3, 0))
		value := st.comp(r, 1, 0)
		if equip == "INTERNET" && st.comp(r, 4, 0) != "" {
			value = st.comp(r, 4, 0)
		}
		if value == "" {
			value = strings.TrimSpace(st.comp(r, 5, 0) + " " + st.comp(r, 6, 0) + " " + st.comp(r, 7, 0))
		}
		if value == "" {
			continue
		}
		c := map[string]any{"value": value}
		sys := telecomSystem[equip]
		if sys == "" {
			sys = "phone"
			if strings.Contains(value, "@") {
				sys = "email"
			}
		}
		c["system"] = sys
		use := telecomUse[strings.ToUpper(st.comp(r, 2, 0))]
		if equip == "CP" {
			use = "mobile"
		}
		put(c, "use", use)
		out = append(out, c)
	}
	return nilIfEmpty(out), nil
}

// fnCodeable maps a CWE/CE (v2-to-FHIR CWE[CodeableConcept]): the identifier triplet and the
// alternate triplet become codings, CWE.9 (or CWE.2) the text. With a code table, the row for
// CWE.1 adds the standard coding first (its system, code and display columns) and the original
// coding is kept after it, as the IG asks for translated codes.
func fnCodeable(st *state, args []any) (any, error) {
	p, err := st.path(args[0])
	if err != nil {
		return nil, err
	}
	code, display, sysName := st.comp(p, 1, 0), st.comp(p, 2, 0), st.comp(p, 3, 0)
	altCode, altDisplay, altSys := st.comp(p, 4, 0), st.comp(p, 5, 0), st.comp(p, 6, 0)
	text := st.comp(p, 9, 0)
	var codings []any
	if len(args) > 1 && code != "" {
		at := p
		at.Component = 1
		st.last = readAtOf(at) // a code the table lacks is ERR 103 at CWE.1
		t, err := st.codeTable("lookup", args[1])
		if err != nil {
			return nil, err
		}
		row, err := st.lookupRow(t, code)
		if err != nil {
			return nil, err
		}
		if row != nil {
			c := map[string]any{}
			put(c, "system", str(row["system"]))
			put(c, "code", str(row["code"]))
			put(c, "display", str(row["display"]))
			if c["code"] != nil {
				codings = append(codings, c)
			}
		}
	}
	for _, t := range [][3]string{{code, display, sysName}, {altCode, altDisplay, altSys}} {
		if t[0] == "" && t[1] == "" {
			continue
		}
		c := map[string]any{}
		put(c, "code", t[0])
		put(c, "display", t[1])
		put(c, "system", st.systemURI(t[2]))
		if c["code"] == nil {
			continue
		}
		codings = append(codings, c)
	}
	cc := map[string]any{}
	if codings != nil {
		cc["coding"] = codings
	}
	// CWE.9 original text, else the text of the identifier, else of the alternate identifier
	// (a feed may send only "^^^^CT ABDOMEN").
	text = first3(text, display, altDisplay)
	put(cc, "text", text)
	if len(cc) == 0 {
		return nil, nil
	}
	return cc, nil
}

// fnPractitioner maps an XCN (v2-to-FHIR XCN[Practitioner]) to a Practitioner's content:
// XCN.1 → identifier (XCN.9 assigning authority → system), XCN.2–7 → name.
func fnPractitioner(st *state, args []any) (any, error) {
	p, err := st.path(args[0])
	if err != nil {
		return nil, err
	}
	pr := map[string]any{}
	if id := st.comp(p, 1, 0); id != "" {
		ident := map[string]any{"value": id}
		ns, uid, ut := st.comp(p, 9, 1), st.comp(p, 9, 2), st.comp(p, 9, 3)
		if sys := st.authority(ns, uid, ut); sys != "" {
			ident["system"] = sys
		} else if ns != "" {
			ident["assigner"] = map[string]any{"display": ns}
		}
		pr["identifier"] = []any{ident}
	}
	if n := st.humanName(p, 2); n != nil {
		pr["name"] = []any{n}
	}
	if len(pr) == 0 {
		return nil, nil
	}
	return pr, nil
}

// fnPN renders a person name as DICOM PN (family^given^middle^prefix^suffix), from an XPN or,
// when the field is an XCN (its first component an ID and a name after it), from XCN.2–6.
func fnPN(st *state, args []any) (any, error) {
	p, err := st.path(args[0])
	if err != nil {
		return nil, err
	}
	first := 1
	if xcnFields[fieldID{p.Segment, p.Field}] {
		first = 2
	}
	parts := []string{st.comp(p, first, 1), st.comp(p, first+1, 0), st.comp(p, first+2, 0), st.comp(p, first+4, 0), st.comp(p, first+3, 0)}
	end := len(parts)
	for end > 0 && parts[end-1] == "" {
		end--
	}
	if end == 0 {
		return nil, nil
	}
	return strings.Join(parts[:end], "^"), nil
}

// xcnFields are the person fields of type XCN (an ID first, then the name) in the messages
// Ferry maps; pn() reads the name from XCN.2 for them.
var xcnFields = map[fieldID]bool{
	{"ORC", 10}: true, {"ORC", 11}: true, {"ORC", 12}: true, {"ORC", 19}: true,
	{"OBR", 10}: true, {"OBR", 16}: true, {"OBR", 28}: true,
	{"PV1", 7}: true, {"PV1", 8}: true, {"PV1", 9}: true, {"PV1", 17}: true, {"PD1", 4}: true,
}

// fieldID names a field of a segment, e.g. {"ORC", 12} for ORC-12.
type fieldID struct {
	segment string
	field   int
}

func itoa(n int) string {
	const digits = "0123456789"
	if n < 10 {
		return digits[n : n+1]
	}
	return itoa(n/10) + digits[n%10:n%10+1]
}

// fnEI maps an EI (v2-to-FHIR EI[Identifier]): EI.1 value; EI.2–4 (namespace, universal ID and
// its type) → system; the type code (PLAC placer, FILL filler, ACSN accession) from table 0203.
func fnEI(st *state, args []any) (any, error) {
	p, err := st.path(args[0])
	if err != nil {
		return nil, err
	}
	value := st.comp(p, 1, 0)
	if value == "" {
		return nil, nil
	}
	id := map[string]any{"value": value}
	ns, uid, ut := st.comp(p, 2, 0), st.comp(p, 3, 0), st.comp(p, 4, 0)
	if sys := st.authority(ns, uid, ut); sys != "" {
		id["system"] = sys
	} else if ns != "" {
		id["assigner"] = map[string]any{"display": ns}
	}
	if len(args) > 1 && str(args[1]) != "" {
		id["type"] = map[string]any{"coding": []any{map[string]any{
			"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": str(args[1])}}}
	}
	return id, nil
}

// fnCodeables maps every repetition of a CWE field (see fnCodeable).
func fnCodeables(st *state, args []any) (any, error) {
	p, err := st.path(args[0])
	if err != nil {
		return nil, err
	}
	var out []any
	for _, r := range st.repetitions(p, true) {
		rest := append([]any{pathText(r)}, args[1:]...)
		c, err := fnCodeable(st, rest)
		if err != nil {
			return nil, err
		}
		if c != nil {
			out = append(out, c)
		}
	}
	return nilIfEmpty(out), nil
}

func first3(a, b, c string) string {
	switch {
	case a != "":
		return a
	case b != "":
		return b
	}
	return c
}
