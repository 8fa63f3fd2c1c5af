package mappings

import (
	"crypto/sha256"
	"fmt"
	"math/big"
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

// path reads a path argument ("PID-3") and applies the bindings of the enclosing each:.
func (st *state) path(a any) (hl7.Path, error) {
	s, ok := a.(string)
	if !ok {
		return hl7.Path{}, fmt.Errorf("want a field path in quotes, like \"PID-3\"")
	}
	p, err := parsePathCached(s)
	if err != nil {
		return hl7.Path{}, err
	}
	return st.resolve(p), nil
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
	n := st.msg.Count(pathText(p))
	out := make([]hl7.Path, 0, n)
	for r := 1; r <= n; r++ {
		q := p
		q.Repetition = r
		out = append(out, q)
	}
	return out
}

// comp reads component c (and subcomponent s when > 0) of the repetition at p.
func (st *state) comp(p hl7.Path, c, s int) string {
	p.Component, p.Subcomponent = c, s
	v := st.msg.GetPath(p)
	st.remember(p, v)
	return v
}

func fnLookup(st *state, args []any) (any, error) {
	name := str(args[0])
	t, ok := st.table[name]
	if !ok {
		return nil, fmt.Errorf("lookup: no code table %q", name)
	}
	key := str(args[1])
	row, found := t.Rows[key]
	if !found && key != "" {
		row, found = t.Rows[strings.ToUpper(key)]
	}
	if !found {
		switch {
		case key == "":
			return nil, nil
		case t.Missing == MissingError:
			e := &Error{Code: hl7.CodeTableValueNotFound,
				Text: fmt.Sprintf("code not found in table %s", t.Name)}
			if st.read {
				e.Path = st.last
			}
			return nil, e
		case t.Default != nil:
			row = t.Default
		default:
			return nil, nil
		}
	}
	if len(args) == 3 {
		return row[str(args[2])], nil
	}
	out := make(map[string]any, len(row))
	for k, v := range row {
		out[k] = v
	}
	return out, nil
}

func fnHas(st *state, args []any) (any, error) {
	t, ok := st.table[str(args[0])]
	if !ok {
		return nil, fmt.Errorf("has: no code table %q", str(args[0]))
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
