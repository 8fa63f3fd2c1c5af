package mappings

import (
	"crypto/sha256"
	"fmt"
	"iter"
	"maps"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/expr-lang/expr"

	"github.com/ferryhealth/ferry/hl7"
)

// function is one mapping function. Every function receives the evaluation state first (the
// rewrite inserts it), then the analyst's arguments.
type function struct {
	fn  func(st *state, args []any) (any, error)
	sig string // for docs and errors
	min int    // minimum number of analyst arguments
	max int    // maximum, -1 for any
}

// functions are the mapping language's functions; docs/mappings.md lists them.
var functions = map[string]function{
	"v":            {fnValue, "v(i)", 1, 1}, // what a field path is rewritten into
	"first":        {fnFirst, "first(a, b, …)", 1, -1},
	"date":         {fnDate, "date(TS)", 1, 1},
	"datetime":     {fnDateTime, "datetime(TS)", 1, 1},
	"da":           {fnDA, "da(TS)", 1, 1},
	"tm":           {fnTM, "tm(TS)", 1, 1},
	"lookup":       {fnLookup, `lookup("table", key[, "column"])`, 2, 3},
	"lookups":      {fnLookups, `lookups("table", "field"[, "column"])`, 2, 3},
	"has":          {fnHas, `has("table", key)`, 2, 2},
	"system":       {fnSystem, "system(codingSystem)", 1, 1},
	"gender":       {fnGender, "gender(code)", 1, 1},
	"identifier":   {fnIdentifier, `identifier("CX field"[, "type"])`, 1, 2},
	"identifiers":  {fnIdentifiers, `identifiers("CX field")`, 1, 1},
	"name":         {fnName, `name("XPN field")`, 1, 1},
	"names":        {fnNames, `names("XPN field")`, 1, 1},
	"address":      {fnAddresses, `address("XAD field")`, 1, 1},
	"telecom":      {fnTelecoms, `telecom("XTN field")`, 1, 1},
	"codeable":     {fnCodeable, `codeable("CWE field"[, "table"])`, 1, 2},
	"codeables":    {fnCodeables, `codeables("CWE field"[, "table"])`, 1, 2},
	"ei":           {fnEI, `ei("EI field", "type")`, 1, 2},
	"coding":       {fnCoding, `coding(code, system, display)`, 1, 3},
	"practitioner": {fnPractitioner, `practitioner("XCN field")`, 1, 1},
	"pn":           {fnPN, `pn("XPN or XCN field")`, 1, 1},
	"uid":          {fnUID, "uid(part, …)", 1, -1},
	"count":        {fnCount, `count("segment or field")`, 1, 1},
	"text":         {fnText, `text("field"[, "type field", ["type", …]])`, 1, 3},
}

// pathArgs are the arguments (counted after ctx) by which the functions take a field in quotes
// ("PID-3"). A direct form (direct.go) passes such an argument parsed, as an hl7.Path, so that it
// is parsed once when the mapping loads rather than at every call; pathArg takes either.
var pathArgs = map[string][]int{
	"identifier": {0}, "identifiers": {0}, "name": {0}, "names": {0}, "address": {0},
	"telecom": {0}, "codeable": {0}, "codeables": {0}, "ei": {0}, "practitioner": {0},
	"pn": {0}, "count": {0}, "text": {0, 1}, "lookups": {1},
}

// compileOptions compile an inbound mapping's expressions; outboundOptions (with the
// environment of the scope) an outbound mapping's.
var compileOptions, outboundOptions []expr.Option

func init() {
	compileOptions = append([]expr.Option{expr.Env(map[string]any{"ctx": (*state)(nil)})}, exprFunctions(functions)...)
	outboundOptions = append(exprFunctions(outboundFunctions), expr.Patch(optionalMembers{}))
}

// exprFunctions declares the mapping functions to expr: each receives the evaluation state
// first (the rewrite adds it), and its number of arguments is checked.
func exprFunctions(fns map[string]function) []expr.Option {
	var out []expr.Option
	for name, f := range fns {
		out = append(out, expr.Function(name, func(params ...any) (any, error) {
			st := params[0].(*state)
			args := params[1:]
			if len(args) < f.min || (f.max >= 0 && len(args) > f.max) {
				return nil, fmt.Errorf("%s: want %s", name, f.sig)
			}
			return f.fn(st, args)
		}))
	}
	return out
}

func fnValue(st *state, args []any) (any, error) {
	return st.get(st.m.paths[args[0].(int)]), nil
}

// str converts an argument to text: strings as they are, nil as "", numbers in decimal.
func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	case int:
		return strconv.Itoa(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	default:
		return fmt.Sprint(x)
	}
}

func fnFirst(_ *state, args []any) (any, error) {
	for _, a := range args {
		if prune(a) != nil {
			return a, nil
		}
	}
	return "", nil
}

func fnCount(st *state, args []any) (any, error) {
	p, err := st.path(args[0])
	if err != nil {
		return nil, err
	}
	return st.count(p), nil
}

// fnText is the text of a field in every segment that has it (an ORU's report is the OBX-5 of
// its TX, FT and ST OBX): each repetition a line, as the sender wrote it with escape sequences
// decoded (\.br\ a line break, components not split: text after a ^ is kept), the lines joined
// with "\n" in message order. An empty or absent field is an empty line. With a type field of the
// same segment and a list of values ("OBX-2", ["TX", "FT", "ST"]), only the segments whose type
// field is one of them count.
func fnText(st *state, args []any) (any, error) {
	p, err := st.path(args[0])
	if err != nil {
		return nil, fmt.Errorf("text: %w", err)
	}
	if p.Field == 0 {
		return nil, fmt.Errorf("text: %s names no field", pathText(p))
	}
	var typ hl7.Path
	var types []string
	if len(args) > 1 {
		if typ, types, err = textFilter(p, args[1:]); err != nil {
			return nil, err
		}
	}
	var b strings.Builder
	lines := 0
	line := func(s string) {
		if lines > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(s)
		lines++
	}
	for _, seg := range st.occurrences(p) {
		if types != nil && !slices.Contains(types, partValue(seg.Field(typ.Field).Repetition(max(typ.Repetition, 1)), typ)) {
			continue
		}
		f := seg.Field(p.Field)
		if f.NumRepetitions() == 0 {
			line("") // absent: an empty line, as an empty field
			continue
		}
		for r, rep := range f.Repetitions() {
			if p.Repetition == 0 || r == p.Repetition {
				line(partValue(rep, p))
			}
		}
	}
	return b.String(), nil
}

// textFilter reads text()'s type field and values: a field of p's segment and a list of text
// (or one text).
func textFilter(p hl7.Path, args []any) (hl7.Path, []string, error) {
	if len(args) != 2 {
		return hl7.Path{}, nil, fmt.Errorf("text: the type field comes with its values: text(\"OBX-5\", \"OBX-2\", [\"TX\", \"FT\"])")
	}
	typ, err := pathArg(args[0])
	if err != nil {
		return typ, nil, fmt.Errorf("text: %w", err)
	}
	if typ.Segment != p.Segment || typ.SegmentIndex != 0 || typ.Field == 0 {
		return typ, nil, fmt.Errorf("text: the type field %s is not a field of %s's segment", pathText(typ), pathText(p))
	}
	var types []string
	switch v := args[1].(type) {
	case []any:
		types = make([]string, 0, len(v))
		for _, x := range v {
			types = append(types, str(x))
		}
	case string:
		types = []string{v}
	default:
		return typ, nil, fmt.Errorf("text: want the types as a list, like [\"TX\", \"FT\"]")
	}
	return typ, types, nil
}

// fnLookups looks up the value of a field in every segment that has it, every repetition
// (OBX-8 abnormal flags of all OBX): the rows, or one column of them, of the values the table
// has; a value the table lacks follows its missing: rule, ERR 103 pointing at that value's field.
// The list is empty, not nil, when nothing is found: `"yes" in lookups(…)` is then false, not an error.
func fnLookups(st *state, args []any) (any, error) {
	t, err := st.codeTable("lookups", args[0])
	if err != nil {
		return nil, err
	}
	p, err := st.path(args[1])
	if err != nil {
		return nil, fmt.Errorf("lookups: %w", err)
	}
	if p.Field == 0 {
		return nil, fmt.Errorf("lookups: %s names no field", pathText(p))
	}
	out := []any{}
	for n, seg := range st.occurrences(p) {
		for r, rep := range seg.Field(p.Field).Repetitions() {
			if p.Repetition > 0 && r != p.Repetition {
				continue
			}
			v := partValue(rep, p)
			if v == "" {
				continue
			}
			at := p
			at.SegmentIndex, at.Repetition = n, r
			st.remember(at, v)
			row, err := st.lookupRow(t, v)
			if err != nil {
				return nil, err
			}
			switch {
			case row == nil:
			case len(args) == 3:
				if c := cell(row, str(args[2])); c != "" {
					out = append(out, c)
				}
			default:
				out = append(out, maps.Clone(row))
			}
		}
	}
	return out, nil
}

// occurrences are the segments p reads from, with their occurrence number (the n of OBX[n]): the
// occurrence p names (or the enclosing each: binds), else every segment with p's ID, in order.
// Each is found through the message's segment index, so that a function called once per
// iteration of each: OBX does not walk the whole message each time (issue 17).
func (st *state) occurrences(p hl7.Path) iter.Seq2[int, hl7.Segment] {
	return func(yield func(int, hl7.Segment) bool) {
		if p.SegmentIndex > 0 {
			if seg, ok := st.msg.FindSegment(p.Segment, p.SegmentIndex); ok {
				yield(p.SegmentIndex, seg)
			}
			return
		}
		for n, count := 1, st.msg.Count(p.Segment); n <= count; n++ {
			seg, _ := st.msg.FindSegment(p.Segment, n)
			if !yield(n, seg) {
				return
			}
		}
	}
}

// partValue is the decoded value of the component (and subcomponent) p names in a repetition,
// or of the whole repetition when p names none.
func partValue(r hl7.Repetition, p hl7.Path) string {
	if p.Component == 0 {
		return r.Value()
	}
	c := r.Component(p.Component)
	if p.Subcomponent == 0 {
		return c.Value()
	}
	return c.Subcomponent(p.Subcomponent).Value()
}

// path reads a path argument ("PID-3") and applies the bindings of the enclosing each:.
func (st *state) path(a any) (hl7.Path, error) {
	p, err := pathArg(a)
	if err != nil {
		return hl7.Path{}, err
	}
	return st.resolve(p), nil
}

// pathArg reads a path argument as written, without the bindings.
func pathArg(a any) (hl7.Path, error) {
	switch a := a.(type) {
	case hl7.Path: // parsed when the mapping was loaded (see pathArgs)
		return a, nil
	case string:
		return parsePathCached(a)
	}
	return hl7.Path{}, fmt.Errorf("want a field path in quotes, like \"PID-3\"")
}

var pathCache sync.Map // string → hl7.Path

func parsePathCached(s string) (hl7.Path, error) {
	if p, ok := pathCache.Load(s); ok {
		return p.(hl7.Path), nil
	}
	p, err := hl7.ParsePath(s)
	if err != nil {
		return p, err
	}
	pathCache.Store(s, p)
	return p, nil
}

// repetitions returns the repetitions a datatype function reads: the one the path names when it
// names one (or each: bound it), else all of them.
func (st *state) repetitions(p hl7.Path, all bool) []hl7.Path {
	if p.Repetition > 0 || !all {
		return []hl7.Path{p}
	}
	n := st.repetitionCount(p)
	out := make([]hl7.Path, 0, n)
	for r := 1; r <= n; r++ {
		q := p
		q.Repetition = r
		out = append(out, q)
	}
	return out
}

// comp reads component c (and subcomponent s when > 0) of the repetition at p: what
// st.msg.GetPath gives for that path.
func (st *state) comp(p hl7.Path, c, s int) string {
	p.Component, p.Subcomponent = c, s
	v := partValue(st.repetition(p), p)
	st.remember(p, v)
	return v
}

// repetition returns the repetition of the field p names (its component and subcomponent
// aside), empty when the message has none there. A datatype function reads several components
// of one repetition in a row, so the one found last is kept rather than found again each time.
func (st *state) repetition(p hl7.Path) hl7.Repetition {
	at := hl7.Path{Segment: p.Segment, SegmentIndex: max(p.SegmentIndex, 1), Field: p.Field, Repetition: max(p.Repetition, 1)}
	if st.repFound && st.repAt == at {
		return st.rep
	}
	st.repAt, st.rep, st.repFound = at, hl7.Repetition{}, true
	if seg, ok := st.segment(at.Segment, at.SegmentIndex); ok {
		st.rep = seg.Field(at.Field).Repetition(at.Repetition)
	}
	return st.rep
}

// repetitionCount is st.msg.Count(pathText(p)) for a field path p without a repetition (the
// number of repetitions; 0 when the field is empty or absent), without writing p out to parse
// it again.
func (st *state) repetitionCount(p hl7.Path) int {
	if p.Field == 0 || p.Component > 0 {
		return st.msg.Count(pathText(p)) // no single field: as Count counts it
	}
	seg, ok := st.segment(p.Segment, max(p.SegmentIndex, 1))
	if !ok {
		return 0
	}
	f := seg.Field(p.Field)
	if f.Raw() == "" {
		return 0
	}
	return f.NumRepetitions()
}

// segment returns occurrence n (from 1) of the segment with this ID.
func (st *state) segment(id string, n int) (hl7.Segment, bool) {
	return st.msg.FindSegment(id, n)
}

func fnLookup(st *state, args []any) (any, error) {
	t, err := st.codeTable("lookup", args[0])
	if err != nil {
		return nil, err
	}
	row, err := st.lookupRow(t, str(args[1]))
	if row == nil || err != nil {
		return nil, err
	}
	if len(args) == 3 {
		return cell(row, str(args[2])), nil
	}
	return maps.Clone(row), nil // the caller's to change
}

// cell is a row's value in column col: a string, "" when the table has no such column.
func cell(row map[string]any, col string) any {
	if v, ok := row[col]; ok {
		return v
	}
	return ""
}

func (st *state) codeTable(fn string, name any) (*Table, error) {
	t, ok := st.table[str(name)]
	if !ok {
		return nil, fmt.Errorf("%s: no code table %q", fn, str(name))
	}
	return t, nil
}

// lookupRow returns the row of t for key (else for key in capitals), following the table's
// missing: rule when it has neither: nil, the default row, or ERR 103 at the field read last.
// The row is the table's own: read it, do not change it.
func (st *state) lookupRow(t *Table, key string) (map[string]any, error) {
	row, found := t.rows[key]
	if !found && key != "" {
		row, found = t.rows[strings.ToUpper(key)]
	}
	switch {
	case found:
		return row, nil
	case key == "":
		return nil, nil
	case t.Missing == MissingError:
		e := &Error{Code: hl7.CodeTableValueNotFound,
			Text: fmt.Sprintf("code not found in table %s", t.Name)}
		if st.read {
			e.Path = st.last.path()
		}
		return nil, e
	default:
		return t.defaultRow, nil // nil unless missing: default
	}
}

func fnHas(st *state, args []any) (any, error) {
	t, err := st.codeTable("has", args[0])
	if err != nil {
		return nil, err
	}
	_, found := t.Rows[str(args[1])]
	return found, nil
}

// uidRoot is the UID root for UIDs Ferry derives: 2.25 is the root for UIDs made from a UUID
// (PS3.5 B.2), here a name-based one, so the same inputs always give the same Study Instance UID.
const uidRoot = "2.25."

func fnUID(_ *state, args []any) (any, error) {
	h := sha256.New()
	for _, a := range args {
		h.Write([]byte(str(a)))
		h.Write([]byte{0})
	}
	sum := h.Sum(nil)[:16]
	sum[6] = sum[6]&0x0f | 0x50 // UUID version 5 (name-based)
	sum[8] = sum[8]&0x3f | 0x80 // RFC 4122 variant
	return uidRoot + new(big.Int).SetBytes(sum).String(), nil
}
