package mappings

// The functions of outbound mappings: FHIR datatypes back into HL7 v2 ones, the reverse of the
// v2-to-FHIR IG's datatype maps that datatypes.go follows (Identifier → CX/EI, HumanName → XPN,
// Practitioner → XCN/CNN, CodeableConcept → CE/CWE, dateTime → TS), and the report's
// attachments. Every function returns nil for an absent value, so an absent element leaves its
// field empty.

import (
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// outboundFunctions are the outbound mapping language's functions; docs/mappings.md lists them.
var outboundFunctions = map[string]function{
	"first":      {fnFirst, "first(a, b, …)", 1, -1},
	"lookup":     {fnLookup, `lookup("table", key[, "column"])`, 2, 3},
	"has":        {fnHas, `has("table", key)`, 2, 2},
	"ts":         {fnTS, "ts(date, dateTime or instant)", 1, 1},
	"identifier": {fnIdentifierOfType, `identifier(identifiers, "type")`, 2, 2},
	"authority":  {fnAuthority, "authority(identifier)", 1, 1},
	"cx":         {fnCX, "cx(identifier or identifiers)", 1, 1},
	"ei":         {fnEIOut, "ei(identifier)", 1, 1},
	"xpn":        {fnXPN, "xpn(name or names)", 1, 1},
	"xcn":        {fnXCN, "xcn(practitioner, reference, or a list of them)", 1, 1},
	"cnn":        {fnCNN, "cnn(practitioner or reference)", 1, 1},
	"ce":         {fnCE, "ce(codeableConcept or coding[, preferOriginal])", 1, 2},
	"cwe":        {fnCWE, "cwe(codeableConcept or coding[, preferOriginal])", 1, 2},
	"sex":        {fnSex, "sex(gender)", 1, 1},
	"lines":      {fnLines, "lines(text)", 1, 1},
	"attachment": {fnAttachment, `attachment(resource, "text/plain")`, 2, 2},
	"pdf":        {fnPDF, "pdf(resource)", 1, 1},
	"extension":  {fnExtension, `extension(resource, "url")`, 2, 2},
}

// asMap and asList read decoded JSON leniently: a wrong shape reads as absent.
func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func asList(v any) []any {
	switch x := v.(type) {
	case []any:
		return x
	case map[string]any:
		return []any{x}
	}
	return nil
}

func textOf(v any) string {
	s, _ := v.(string)
	return s
}

func textsOf(v any) []string {
	var out []string
	for _, x := range asList(v) {
		if s := textOf(x); s != "" {
			out = append(out, s)
		}
	}
	if s := textOf(v); s != "" {
		out = append(out, s)
	}
	return out
}

func nth(l []string, i int) string {
	if i < len(l) {
		return l[i]
	}
	return ""
}

var fhirDateRE = regexp.MustCompile(`^\d{4}(-\d{2}(-\d{2})?)?$`)

// fnTS writes a FHIR date, dateTime or instant as an HL7 TS/DTM: a date keeps its precision
// (1980-01-02 → 19800102; a date has no zone); a time is written in the message's zone with its
// offset, to the second (2026-11-27T15:30:00Z → 20261127103000-0500 in New York).
func fnTS(st *state, args []any) (any, error) {
	var t time.Time
	switch x := args[0].(type) {
	case nil:
		return nil, nil
	case time.Time:
		t = x
	case string:
		if x == "" {
			return nil, nil
		}
		if fhirDateRE.MatchString(x) {
			layout := "2006-01-02"[:len(x)]
			if _, err := time.Parse(layout, x); err != nil {
				return nil, errors.New("ts: not a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)")
			}
			return strings.ReplaceAll(x, "-", ""), nil
		}
		var err error
		if t, err = time.Parse(time.RFC3339Nano, x); err != nil {
			return nil, errors.New("ts: not a FHIR date or dateTime (YYYY-MM-DDThh:mm:ss+zz:zz)")
		}
	default:
		return nil, fmt.Errorf("ts: want a FHIR date or dateTime, got %s", describe(x))
	}
	loc := st.loc
	if loc == nil {
		loc = time.UTC
	}
	return t.In(loc).Format("20060102150405-0700"), nil
}

// identifierType is the v2-0203 type code of an Identifier (MR, PLAC, FILL, ACSN, VN …): the
// code of its v2-0203 coding, else of its first coding.
func identifierType(id map[string]any) string {
	codings := asList(asMap(id["type"])["coding"])
	for _, c := range codings {
		if cm := asMap(c); cm["system"] == "http://terminology.hl7.org/CodeSystem/v2-0203" && textOf(cm["code"]) != "" {
			return textOf(cm["code"])
		}
	}
	for _, c := range codings {
		if code := textOf(asMap(c)["code"]); code != "" {
			return code
		}
	}
	return ""
}

// fnIdentifierOfType picks, from a list of Identifiers, the first of a v2-0203 type:
// identifier(order.identifier, "PLAC") is the placer order number.
func fnIdentifierOfType(_ *state, args []any) (any, error) {
	want := str(args[1])
	for _, x := range asList(args[0]) {
		if id := asMap(x); id != nil && strings.EqualFold(identifierType(id), want) {
			return id, nil
		}
	}
	return nil, nil
}

var oidRE = regexp.MustCompile(`^[0-2](\.(0|[1-9][0-9]*))+$`)

// hd is the assigning authority (HD: namespace, universal ID, its type) a hospital knows an
// identifier by — the reverse of authority() inbound. The namespace is the one the
// authorities table gives the identifier's system (its assigner.display when that is one of
// them, as the hospital sent it), else the assigner's display; without a namespace, an OID
// (an authorities key, or a urn:oid: system) or a UUID is the universal ID.
func (st *state) hd(id map[string]any) (ns, uid, typ string) {
	system := textOf(id["system"])
	assigner := textOf(asMap(id["assigner"])["display"])
	keys := st.ob.authorities[system]
	if system == "" {
		keys = nil
	}
	switch {
	case assigner != "" && slices.Contains(keys, assigner):
		return assigner, "", ""
	default:
		for _, k := range keys {
			if !oidRE.MatchString(k) {
				return k, "", ""
			}
		}
	}
	if assigner != "" {
		return assigner, "", ""
	}
	if len(keys) > 0 { // only OIDs: the table maps the universal ID
		return "", keys[0], "ISO"
	}
	switch {
	case strings.HasPrefix(system, "urn:oid:"):
		return "", system[len("urn:oid:"):], "ISO"
	case strings.HasPrefix(system, "urn:uuid:"):
		return "", system[len("urn:uuid:"):], "UUID"
	}
	return "", "", ""
}

// hdParts is an HD as subcomponents (inside a CX or XCN component), nil when empty.
func hdParts(ns, uid, typ string) any {
	return trimSubs(subcomposite{ns, uid, typ})
}

// fnAuthority is the namespace (or universal ID) a hospital knows an identifier's system by,
// "" when there is none: the test for "an identifier the hospital issued".
func fnAuthority(st *state, args []any) (any, error) {
	ns, uid, _ := st.hd(asMap(args[0]))
	return first3(ns, uid, ""), nil
}

// fnCX writes an Identifier as a CX (value, assigning authority, type code); a list of them as
// repetitions.
func fnCX(st *state, args []any) (any, error) {
	if l, ok := args[0].([]any); ok {
		var out []any
		for _, x := range l {
			if c := st.cx(asMap(x)); c != nil {
				out = append(out, c)
			}
		}
		return nilIfEmpty(out), nil
	}
	return st.cx(asMap(args[0])), nil
}

func (st *state) cx(id map[string]any) any {
	value := textOf(id["value"])
	if value == "" {
		return nil
	}
	return trimComposite(composite{value, nil, nil, hdParts(st.hd(id)), identifierType(id)})
}

// fnEIOut writes an Identifier as an EI: value, namespace, universal ID, its type (ORC-2/3,
// OBR-2/3). Given a list, its first item.
func fnEIOut(st *state, args []any) (any, error) {
	id := asMap(args[0])
	if l := asList(args[0]); id == nil && len(l) > 0 {
		id = asMap(l[0])
	}
	value := textOf(id["value"])
	if value == "" {
		return nil, nil
	}
	ns, uid, typ := st.hd(id)
	return trimComposite(composite{value, ns, uid, typ}), nil
}

// nameType maps FHIR name-use to HL7 table 0200 (the reverse of nameUse).
var nameType = map[string]string{"official": "L", "usual": "D", "maiden": "M", "nickname": "N"}

// generational are the name suffixes that are not degrees (XPN.4/XCN.5 rather than XPN.6/XCN.7).
var generational = map[string]bool{"JR": true, "SR": true, "II": true, "III": true, "IV": true, "V": true}

// personName is a HumanName's parts as HL7 writes them: family, given, further given names
// (space-separated), suffix, prefix, degree, name type. FHIR keeps the suffix and the degree in
// one list (inbound maps XPN.4 and XPN.6 there): JR, SR, II … are the suffix, anything else
// (MD, PhD …) the degree. A name with only text has it as the family name.
func personName(n map[string]any) (family, given, middle, suffix, prefix, degree, typ string) {
	family = textOf(n["family"])
	g := textsOf(n["given"])
	if family == "" && len(g) == 0 {
		family = textOf(n["text"])
	}
	for _, s := range textsOf(n["suffix"]) {
		switch k := strings.ToUpper(strings.TrimSuffix(s, ".")); {
		case generational[k] && suffix == "":
			suffix = s
		case degree == "":
			degree = s
		}
	}
	return family, nth(g, 0), strings.Join(g[min(1, len(g)):], " "), suffix, nth(textsOf(n["prefix"]), 0), degree, nameType[textOf(n["use"])]
}

// fnXPN writes a HumanName as an XPN; a list of them as repetitions (order kept: put the legal
// name first).
func fnXPN(_ *state, args []any) (any, error) {
	one := func(n map[string]any) any {
		family, given, middle, suffix, prefix, degree, typ := personName(n)
		if family == "" && given == "" {
			return nil
		}
		return trimComposite(composite{family, given, middle, suffix, prefix, degree, typ})
	}
	if l, ok := args[0].([]any); ok {
		var out []any
		for _, x := range l {
			if c := one(asMap(x)); c != nil {
				out = append(out, c)
			}
		}
		return nilIfEmpty(out), nil
	}
	return one(asMap(args[0])), nil
}

// person reads a Practitioner (identifier list, name list) or a Reference (identifier, display):
// its first identifier and its name parts.
func person(p map[string]any) (id map[string]any, family, given, middle, suffix, prefix, degree string) {
	id = asMap(p["identifier"])
	if l := asList(p["identifier"]); id == nil && len(l) > 0 {
		id = asMap(l[0])
	}
	if names := asList(p["name"]); len(names) > 0 {
		family, given, middle, suffix, prefix, degree, _ = personName(asMap(names[0]))
	} else {
		family = textOf(p["display"])
	}
	return
}

// fnXCN writes a Practitioner (or a Reference to one) as an XCN: ID, name, assigning authority
// (XCN.9), identifier type (XCN.13); a list of them as repetitions.
func fnXCN(st *state, args []any) (any, error) {
	one := func(p map[string]any) any {
		id, family, given, middle, suffix, prefix, degree := person(p)
		value := textOf(id["value"])
		if value == "" && family == "" && given == "" {
			return nil
		}
		var auth any
		if value != "" {
			auth = hdParts(st.hd(id))
		}
		return trimComposite(composite{value, family, given, middle, suffix, prefix, degree, nil, auth, nil, nil, nil, identifierType(id)})
	}
	if l, ok := args[0].([]any); ok {
		var out []any
		for _, x := range l {
			if c := one(asMap(x)); c != nil {
				out = append(out, c)
			}
		}
		return nilIfEmpty(out), nil
	}
	return one(asMap(args[0])), nil
}

// fnCNN writes a Practitioner (or a Reference) as the subcomponents of a CNN (v2.5.1) or CN
// (v2.3.1), for a component such as OBR-32.1: ID & family & given & middle & suffix & prefix &
// degree & source table & assigning authority namespace & universal ID & its type.
func fnCNN(st *state, args []any) (any, error) {
	id, family, given, middle, suffix, prefix, degree := person(asMap(args[0]))
	value := textOf(id["value"])
	if value == "" && family == "" && given == "" {
		return nil, nil
	}
	var ns, uid, typ string
	if value != "" {
		ns, uid, typ = st.hd(id)
	}
	return trimSubs(subcomposite{value, family, given, middle, suffix, prefix, degree, "", ns, uid, typ}), nil
}

// codingSystemNames maps the system URIs of codingSystems back to the HL7 table 0396 name a
// CE/CWE carries (where codingSystems has two names for one system, the one table 0396 lists).
var codingSystemNames = map[string]string{
	"http://loinc.org":                             "LN",
	"http://snomed.info/sct":                       "SCT",
	"http://hl7.org/fhir/sid/icd-10":               "I10",
	"http://hl7.org/fhir/sid/icd-10-cm":            "I10C",
	"http://hl7.org/fhir/sid/icd-9-cm":             "I9C",
	"http://www.ama-assn.org/go/cpt":               "C4",
	"http://www.radlex.org":                        "RADLEX",
	"http://dicom.nema.org/resources/ontology/DCM": "DCM",
	"http://unitsofmeasure.org":                    "UCUM",
}

// systemName is the HL7 coding system name of a system URI: the coding_systems table's key for
// it, else the standard name, else "" (a local code keeps no name).
func (st *state) systemName(uri string) string {
	if uri == "" {
		return ""
	}
	if n := st.ob.systemNames[uri]; n != "" {
		return n
	}
	if n := codingSystemNames[uri]; n != "" {
		return n
	}
	if v, ok := strings.CutPrefix(uri, "http://terminology.hl7.org/CodeSystem/v2-"); ok && len(v) == 4 && allDigits(v) {
		return "HL7" + v
	}
	return ""
}

// coded writes a CodeableConcept (or a Coding) as a CE (6 components) or CWE (9): the first
// coding's triplet and the second's as the alternate; CWE.7/8 their versions, CWE.9 the text
// when it says more than the displays. With preferOriginal, the hospital's own codings come
// first and the standard ones a code table added (codeable("OBR-4", "procedures") inbound puts
// them first) are left out — the code as the hospital sent it; when every coding is a
// standard one, they are used.
func (st *state) coded(v any, preferOriginal bool, width int) any {
	cc := asMap(v)
	if cc == nil {
		return nil
	}
	var codings []map[string]any
	if _, ok := cc["code"]; ok {
		codings = []map[string]any{cc}
	} else {
		for _, x := range asList(cc["coding"]) {
			if c := asMap(x); textOf(c["code"]) != "" {
				codings = append(codings, c)
			}
		}
	}
	if preferOriginal {
		var own []map[string]any
		for _, c := range codings {
			if !st.ob.standard[textOf(c["system"])+"|"+textOf(c["code"])] {
				own = append(own, c)
			}
		}
		if len(own) > 0 {
			codings = own
		}
	}
	out := make(composite, width)
	for i, c := range codings[:min(2, len(codings))] {
		out[3*i] = textOf(c["code"])
		out[3*i+1] = textOf(c["display"])
		out[3*i+2] = st.systemName(textOf(c["system"]))
		if width > 6 {
			out[6+i] = textOf(c["version"])
		}
	}
	t := textOf(cc["text"])
	switch {
	case len(codings) == 0:
		out[1] = t
	case width > 8 && t != out[1] && t != out[4]:
		out[8] = t
	}
	return trimComposite(out)
}

func fnCE(st *state, args []any) (any, error) {
	return st.coded(args[0], len(args) > 1 && args[1] == true, 6), nil
}

func fnCWE(st *state, args []any) (any, error) {
	return st.coded(args[0], len(args) > 1 && args[1] == true, 9), nil
}

// fnSex maps FHIR administrative-gender to HL7 table 0001 (the reverse of gender()).
func fnSex(_ *state, args []any) (any, error) {
	switch str(args[0]) {
	case "male":
		return "M", nil
	case "female":
		return "F", nil
	case "other":
		return "O", nil
	case "unknown":
		return "U", nil
	}
	return nil, nil
}

// fnLines splits text into its lines (CRLF, LF or CR end a line), trailing empty lines dropped:
// one TX OBX per line.
func fnLines(_ *state, args []any) (any, error) {
	var s string
	switch x := args[0].(type) {
	case nil:
		return nil, nil
	case string:
		s = x
	default:
		return nil, fmt.Errorf("lines: want text, got %s", describe(x))
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, "\n")
	out := make([]any, len(parts))
	for i, p := range parts {
		out[i] = p
	}
	return out, nil
}

// attachmentData returns the decoded data of the first attachment of resource (its
// presentedForm, or resource itself when it is an Attachment) whose media type is want, and
// the attachment's charset parameter. ok is false when there is none with data.
func attachmentData(resource any, want string) (data []byte, charset string, ok bool, err error) {
	r := asMap(resource)
	forms := asList(r["presentedForm"])
	if _, isAttachment := r["contentType"]; isAttachment {
		forms = []any{r}
	}
	for _, x := range forms {
		f := asMap(x)
		ct := textOf(f["contentType"])
		media, params, perr := mime.ParseMediaType(ct)
		if perr != nil {
			media, _, _ = strings.Cut(ct, ";")
			media = strings.TrimSpace(media)
		}
		if !strings.EqualFold(media, want) || textOf(f["data"]) == "" {
			continue
		}
		b64 := strings.Map(func(r rune) rune {
			if r == ' ' || r == '\n' || r == '\r' || r == '\t' {
				return -1
			}
			return r
		}, textOf(f["data"]))
		raw, derr := base64.StdEncoding.DecodeString(b64)
		if derr != nil {
			if raw, derr = base64.RawStdEncoding.DecodeString(strings.TrimRight(b64, "=")); derr != nil {
				return nil, "", false, fmt.Errorf("the %s attachment's data is not base64", media)
			}
		}
		return raw, params["charset"], true, nil
	}
	return nil, "", false, nil
}

// fnAttachment is the text of the resource's first attachment of a media type (a
// DiagnosticReport's presentedForm "text/plain"), decoded — UTF-8, or ISO-8859-1 when the
// charset says so or the bytes are not UTF-8 — without trailing line breaks. nil when there is
// none.
func fnAttachment(_ *state, args []any) (any, error) {
	raw, charset, ok, err := attachmentData(args[0], str(args[1]))
	if err != nil || !ok {
		return nil, err
	}
	var s string
	switch strings.ToLower(charset) {
	case "iso-8859-1", "latin1", "iso8859-1", "windows-1252":
		s = latin1(raw)
	default:
		if s = string(raw); !utf8.ValidString(s) {
			s = latin1(raw)
		}
	}
	return strings.TrimRight(strings.TrimPrefix(s, "\uFEFF"), "\r\n"), nil
}

func latin1(b []byte) string {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

// fnPDF is the base64 data of the resource's first application/pdf attachment, for an ED OBX
// (OBX-5.5); nil when there is none. The data is re-encoded, so it is plain base64 whatever
// line breaks it was stored with.
func fnPDF(_ *state, args []any) (any, error) {
	raw, _, ok, err := attachmentData(args[0], "application/pdf")
	if err != nil || !ok {
		return nil, err
	}
	return base64.StdEncoding.EncodeToString(raw), nil
}

// fnExtension is the value (value[x]) of the resource's first extension with this URL, nil
// when it has none: extension(report, "…/critical-finding") is true for a critical finding.
func fnExtension(_ *state, args []any) (any, error) {
	url := str(args[1])
	for _, x := range asList(asMap(args[0])["extension"]) {
		e := asMap(x)
		if textOf(e["url"]) != url {
			continue
		}
		for k, v := range e {
			if strings.HasPrefix(k, "value") {
				return v, nil
			}
		}
	}
	return nil, nil
}
