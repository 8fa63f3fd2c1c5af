package mappings

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"

	"github.com/ferryhealth/ferry/hl7"
)

// node is one compiled part of a template. eval returns the part's value, or nil when it is
// empty (and so dropped from its parent).
type node interface {
	eval(st *state) (any, error)
}

// literal is a constant from the YAML: a string not starting with "=", a number or a boolean.
type literal struct{ v any }

func (l literal) eval(*state) (any, error) { return l.v, nil }

// expression is an expr-lang program; where says where it is written (for errors). direct is
// its direct form (direct.go), when it has one.
type expression struct {
	prog   *vm.Program
	direct node
	where  string
}

func (e *expression) eval(st *state) (any, error) {
	if e.direct != nil {
		if out, err, ok := e.evalDirect(st); ok {
			if err != nil {
				return nil, st.fail(err, e.where)
			}
			return out, nil
		}
	}
	if st.env == nil { // an inbound mapping's: made when the first expression needs the VM
		st.env = map[string]any{"ctx": st}
	}
	out, err := st.vm.Run(e.prog, st.env)
	if err != nil {
		return nil, st.fail(err, e.where)
	}
	return out, nil
}

// object is a YAML mapping: its keys in order, each with its value's node. With each it repeats
// (and evaluates to a list); with cond it is kept only when the condition holds.
type object struct {
	keys    []string
	vals    []node
	cond    *expression   // if:
	each    *hl7.Path     // each: a segment ("DG1") or a field ("PID-3")
	group   []string      // group: segments bound to the occurrence each: walks
	require []requirement // require: fields that must not be empty
}

type requirement struct {
	path  hl7.Path
	text  string // the path as written
	where string
}

func (o *object) eval(st *state) (any, error) {
	if o.each == nil {
		return o.once(st)
	}
	n := st.count(*o.each)
	var list []any
	for i := 1; i <= n; i++ {
		mark := st.enter(*o.each, i, o.group)
		v, err := o.once(st)
		st.leave(*o.each, mark)
		if err != nil {
			return nil, err
		}
		if v != nil {
			list = append(list, v)
		}
	}
	if len(list) == 0 {
		return nil, nil
	}
	return list, nil
}

func (o *object) once(st *state) (any, error) {
	if o.cond != nil {
		ok, err := o.cond.eval(st)
		if err != nil {
			return nil, err
		}
		if b, _ := ok.(bool); !b {
			return nil, nil
		}
	}
	for _, r := range o.require {
		p := st.resolve(r.path)
		if st.msg.GetPath(p) == "" {
			return nil, &Error{Code: hl7.CodeRequiredFieldMissing, Path: p,
				Text: "required field " + pathText(p) + " is empty", Where: r.where}
		}
	}
	var out map[string]any
	for i, k := range o.keys {
		v, err := o.vals[i].eval(st)
		if err != nil {
			return nil, err
		}
		if v = prune(v); v == nil {
			continue
		}
		if out == nil {
			out = make(map[string]any, len(o.keys))
		}
		out[k] = v
	}
	if out == nil {
		return nil, nil
	}
	return out, nil
}

// list is a YAML sequence. An item that is itself a list (from each:, or a function returning
// several values) is spliced in, so `identifier: [=identifiers("PID-3"), {...}]` is one flat list.
type list struct{ items []node }

func (l *list) eval(st *state) (any, error) {
	var out []any
	for _, it := range l.items {
		v, err := it.eval(st)
		if err != nil {
			return nil, err
		}
		v = prune(v)
		if v != nil && out == nil {
			out = make([]any, 0, len(l.items)) // room for one value per item, the usual case
		}
		switch v := v.(type) {
		case nil:
		case []any:
			out = append(out, v...)
		case []map[string]any:
			for _, m := range v {
				out = append(out, m)
			}
		default:
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// prune returns nil for the empty values FHIR forbids: "", empty lists and objects.
func prune(v any) any {
	switch x := v.(type) {
	case string:
		if x == "" {
			return nil
		}
	case []any:
		if len(x) == 0 {
			return nil
		}
	case []map[string]any:
		if len(x) == 0 {
			return nil
		}
	case map[string]any:
		if len(x) == 0 {
			return nil
		}
	case []string:
		if len(x) == 0 {
			return nil
		}
		out := make([]any, 0, len(x))
		for _, s := range x {
			if s != "" {
				out = append(out, s)
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	return v
}

// compiler turns YAML nodes into template nodes, collecting every problem instead of stopping at
// the first.
type compiler struct {
	file     string
	tables   map[string]*Table
	partials map[string]file // partials/*.yaml by name, for use:
	using    []string        // partials being compiled, to refuse a cycle
	problems []Problem
	paths    []hl7.Path // the path table v(ctx, i) reads from
	pathIdx  map[string]int
	readers  []int          // by index in paths: how many fieldValue nodes read the path
	out      *outboundScope // set while compiling an outbound mapping
}

// isFunction reports whether name is a mapping function of the kind being compiled, which the
// rewrite passes the evaluation state to.
func (c *compiler) isFunction(name string) bool {
	if c.out != nil {
		_, ok := outboundFunctions[name]
		return ok
	}
	_, ok := functions[name]
	return ok
}

func (c *compiler) problem(n ast.Node, path, format string, args ...any) {
	line := 0
	if n != nil && n.GetToken() != nil {
		line = n.GetToken().Position.Line
	}
	c.problems = append(c.problems, Problem{File: c.file, Line: line, Path: path, Message: fmt.Sprintf(format, args...)})
}

// reserved keys of an object, which are directives rather than output.

func (c *compiler) compile(n ast.Node, path string) node {
	switch n := unwrap(n).(type) {
	case nil:
		return literal{nil}
	case *ast.MappingNode:
		return c.object(n.Values, n, path)
	case *ast.MappingValueNode:
		return c.object([]*ast.MappingValueNode{n}, n, path)
	case *ast.SequenceNode:
		l := &list{}
		for i, v := range n.Values {
			l.items = append(l.items, c.compile(v, path+"["+strconv.Itoa(i)+"]"))
		}
		return l
	case *ast.StringNode:
		return c.scalar(n, n.Value, path)
	case *ast.LiteralNode:
		return c.scalar(n, n.Value.Value, path)
	case *ast.IntegerNode:
		return literal{n.Value}
	case *ast.FloatNode:
		return literal{n.Value}
	case *ast.BoolNode:
		return literal{n.Value}
	case *ast.NullNode:
		return literal{nil}
	default:
		c.problem(n, path, "unsupported YAML here (%s): use a mapping, a list or a scalar", n.Type())
		return literal{nil}
	}
}

func unwrap(n ast.Node) ast.Node {
	for {
		switch x := n.(type) {
		case *ast.TagNode:
			n = x.Value
		case *ast.AnchorNode:
			n = x.Value
		case *ast.CommentGroupNode:
			return nil
		default:
			return n
		}
	}
}

func (c *compiler) object(values []*ast.MappingValueNode, at ast.Node, path string) node {
	o := &object{}
	for _, mv := range values {
		key := mv.Key.String()
		if k, ok := unwrap(mv.Key).(*ast.StringNode); ok {
			key = k.Value
		}
		sub := joinPath(path, key)
		switch key {
		case "if":
			o.cond = c.expr(mv.Value, scalarText(mv.Value), sub)
		case "each":
			p, err := hl7.ParsePath(scalarText(mv.Value))
			if err != nil || p.Component > 0 || p.Repetition > 0 || p.SegmentIndex > 0 {
				c.problem(mv.Value, sub, "each: want a segment (DG1) or a field (PID-3) to repeat over, got %q", scalarText(mv.Value))
				continue
			}
			o.each = &p
		case "group":
			for _, s := range stringsOf(mv.Value) {
				if p, err := hl7.ParsePath(s); err != nil || p.Field != 0 || p.SegmentIndex != 0 {
					c.problem(mv.Value, sub, "group: want segment IDs like OBR, got %q", s)
					continue
				}
				o.group = append(o.group, s)
			}
		case "use":
			c.use(o, mv.Value, sub)
		case "require":
			for _, s := range stringsOf(mv.Value) {
				p, err := hl7.ParsePath(s)
				if err != nil || p.Field == 0 {
					c.problem(mv.Value, sub, "require: want field paths like PID-3, got %q", s)
					continue
				}
				o.require = append(o.require, requirement{path: p, text: s, where: c.where(mv.Value, sub)})
			}
		default:
			o.set(key, c.compile(mv.Value, sub))
		}
	}
	if o.group != nil && (o.each == nil || o.each.Field != 0) {
		c.problem(at, path, "group: only goes with each: over a segment")
	}
	return o
}

func (c *compiler) where(n ast.Node, path string) string {
	line := 0
	if n != nil && n.GetToken() != nil {
		line = n.GetToken().Position.Line
	}
	return fmt.Sprintf("%s:%d %s", c.file, line, path)
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func scalarText(n ast.Node) string {
	switch n := unwrap(n).(type) {
	case *ast.StringNode:
		return n.Value
	case *ast.LiteralNode:
		return n.Value.Value
	case nil:
		return ""
	default:
		return n.String()
	}
}

func stringsOf(n ast.Node) []string {
	if s, ok := unwrap(n).(*ast.SequenceNode); ok {
		out := make([]string, 0, len(s.Values))
		for _, v := range s.Values {
			out = append(out, scalarText(v))
		}
		return out
	}
	return []string{scalarText(n)}
}

func (c *compiler) scalar(n ast.Node, s, path string) node {
	if !strings.HasPrefix(s, "=") {
		c.checkWorklistLength(n, s, path, nil)
		return literal{s}
	}
	if c.out == nil {
		if f := c.fieldRead(strings.TrimSpace(s[1:])); f != nil {
			return f
		}
	}
	if e := c.expr(n, s[1:], path); e != nil {
		c.checkWorklistLength(n, s, path, e)
		return e
	}
	return literal{nil}
}

// fieldValue is an expression that is only a field path (`=PID-3.1`), the commonest kind, or
// a path inside a direct form: it reads the field without starting the expression VM.
type fieldValue struct {
	p     hl7.Path
	index int // of p in the mapping's path table (Mapping.paths)
}

func (f fieldValue) eval(st *state) (any, error) { return st.getField(f), nil }

// pathRead returns the node reading p, the path at index in the path table, and counts it: a
// path that several nodes read is kept once read (Mapping.shared).
func (c *compiler) pathRead(p hl7.Path, index int) fieldValue {
	for len(c.readers) <= index {
		c.readers = append(c.readers, 0)
	}
	c.readers[index]++
	return fieldValue{p, index}
}

// sharedReads gives each path that more than one fieldValue node reads a slot in state.kept
// (Mapping.shared, -1 for the others), and says how many slots there are.
func (c *compiler) sharedReads() (slots []int, n int) {
	slots = make([]int, len(c.paths))
	for i := range slots {
		slots[i] = -1
		if i < len(c.readers) && c.readers[i] > 1 {
			slots[i] = n
			n++
		}
	}
	return slots, n
}

// fieldRead returns a fieldValue when src is exactly one field path, else nil.
func (c *compiler) fieldRead(src string) node {
	if pathEnd(src, 0) != len(src) {
		return nil
	}
	p, err := hl7.ParsePath(src)
	if err != nil || p.Field == 0 {
		return nil // the expression compiler reports it
	}
	return c.pathRead(p, c.pathIndex(src, p))
}

// expr compiles an expression after rewriting it: HL7 paths become reads of the message, and
// the mapping functions get the evaluation state as their first argument.
func (c *compiler) expr(n ast.Node, src, path string) *expression {
	code, err := c.rewrite(src)
	if err != nil {
		c.problem(n, path, "%v", err)
		return nil
	}
	opts := compileOptions
	if c.out != nil {
		opts = c.out.options()
	}
	prog, err := expr.Compile(code, opts...)
	if err != nil {
		c.problem(n, path, "expression %q: %s", strings.TrimSpace(src), firstLine(err.Error()))
		return nil
	}
	e := &expression{prog: prog, where: c.where(n, path)}
	if c.out == nil {
		e.direct = c.directForm(prog.Node())
	}
	return e
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// rewrite turns the analyst's expression into expr code: PID-5.1 → v(ctx, 3) and
// date(x) → date(ctx, x). String literals are left alone, so "PID-5" in quotes stays a string
// (the datatype functions take paths that way). Paths are checked here, so lint reports a bad
// path with its line.
func (c *compiler) rewrite(src string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(src); {
		ch := src[i]
		switch {
		case ch == '"' || ch == '\'' || ch == '`':
			j := i + 1
			for j < len(src) && src[j] != ch {
				if src[j] == '\\' && ch != '`' {
					j++
				}
				j++
			}
			if j >= len(src) {
				return "", fmt.Errorf("expression %q: unterminated string", src)
			}
			if err := c.checkPathLiteral(src, i, j); err != nil {
				return "", err
			}
			b.WriteString(src[i : j+1])
			i = j + 1
		case isIdentStart(ch) && (i == 0 || !isIdentChar(src[i-1])):
			j := i
			for j < len(src) && isIdentChar(src[j]) {
				j++
			}
			word := src[i:j]
			if k := pathEnd(src, i); k > i {
				if c.out != nil {
					return "", fmt.Errorf("expression %q: %s is an HL7 path, which reads an inbound message; an outbound mapping reads the resources (report, patient, order …)", src, src[i:k])
				}
				p, err := hl7.ParsePath(src[i:k])
				if err == nil && k < len(src) && (src[k] == '.' || src[k] == '[' || src[k] == '-') {
					err = fmt.Errorf("%q is not a path: after the field come [repetition], .component and .subcomponent, as numbers", src[i:min(k+2, len(src))])
				}
				if err != nil {
					return "", fmt.Errorf("expression %q: %v", src, err)
				}
				b.WriteString("v(ctx, " + strconv.Itoa(c.pathIndex(src[i:k], p)) + ")")
				i = k
				continue
			}
			b.WriteString(word)
			i = j
			if c.isFunction(word) {
				k := i
				for k < len(src) && src[k] == ' ' {
					k++
				}
				if k < len(src) && src[k] == '(' {
					b.WriteString(src[i : k+1])
					b.WriteString("ctx")
					i = k + 1
					m := i
					for m < len(src) && src[m] == ' ' {
						m++
					}
					if m < len(src) && src[m] != ')' {
						b.WriteString(", ")
					}
				}
			}
		default:
			b.WriteByte(ch)
			i++
		}
	}
	return b.String(), nil
}

// checkPathLiteral validates a quoted argument that looks like an HL7 path (the datatype
// functions take their field as "PID-3"), so that lint catches "PID-3.x" early.
func (c *compiler) checkPathLiteral(src string, i, j int) error {
	s := src[i+1 : j]
	if len(s) >= 5 && pathEnd(s, 0) == len(s) {
		if _, err := hl7.ParsePath(s); err != nil {
			return fmt.Errorf("expression %q: %v", src, err)
		}
	}
	return nil
}

func (c *compiler) pathIndex(text string, p hl7.Path) int {
	if i, ok := c.pathIdx[text]; ok {
		return i
	}
	if c.pathIdx == nil {
		c.pathIdx = map[string]int{}
	}
	c.paths = append(c.paths, p)
	c.pathIdx[text] = len(c.paths) - 1
	return len(c.paths) - 1
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

// pathEnd returns the end of an HL7 path starting at i (SEG[n]-f[r].c.s), or i when there is none.
func pathEnd(s string, i int) int {
	if i+4 > len(s) {
		return i
	}
	for k := 0; k < 3; k++ {
		c := s[i+k]
		if !(c >= 'A' && c <= 'Z') && !(k > 0 && c >= '0' && c <= '9') {
			return i
		}
	}
	j := i + 3
	j = bracket(s, j)
	if j >= len(s) || s[j] != '-' || j+1 >= len(s) || !isDigit(s[j+1]) {
		return i
	}
	j++
	for j < len(s) && isDigit(s[j]) {
		j++
	}
	j = bracket(s, j)
	for n := 0; n < 2 && j+1 < len(s) && s[j] == '.' && isDigit(s[j+1]); n++ {
		j++
		for j < len(s) && isDigit(s[j]) {
			j++
		}
	}
	if j < len(s) && isIdentChar(s[j]) {
		return i
	}
	return j
}

func bracket(s string, j int) int {
	if j < len(s) && s[j] == '[' {
		k := j + 1
		for k < len(s) && isDigit(s[k]) {
			k++
		}
		if k < len(s) && s[k] == ']' && k > j+1 {
			return k + 1
		}
	}
	return j
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// set adds key to the object, replacing the value a partial gave it.
func (o *object) set(key string, n node) {
	if i := slices.Index(o.keys, key); i >= 0 {
		o.vals[i] = n
		return
	}
	o.keys = append(o.keys, key)
	o.vals = append(o.vals, n)
}

// use merges the partial named by n (partials/NAME.yaml, an object template) into o: its keys
// come first, and keys written beside use: replace them.
func (c *compiler) use(o *object, n ast.Node, path string) {
	name := scalarText(n)
	var part node
	if !c.partial(n, path, func(tmpl ast.Node) { part = c.compile(tmpl, "template") }) {
		return
	}
	p, ok := part.(*object)
	if !ok {
		c.problem(n, path, "partial %q: template must be a mapping", name)
		return
	}
	if p.cond != nil || p.each != nil {
		c.problem(n, path, "partial %q: if: and each: belong where it is used, not in the partial", name)
	}
	for i, k := range p.keys {
		o.set(k, p.vals[i])
	}
	o.require = append(o.require, p.require...)
}

// partial reads the partial named by n and calls compile with its template, problems in it
// reported against the partial's file. It reports false when there is no such partial, it
// does not parse, or it would use itself.
func (c *compiler) partial(n ast.Node, path string, compile func(template ast.Node)) bool {
	name := scalarText(n)
	f, ok := c.partials[name]
	if !ok {
		c.problem(n, path, "no partial named %q (partials: %s)", name, strings.Join(sortedKeys(c.partials), ", "))
		return false
	}
	if slices.Contains(c.using, name) {
		c.problem(n, path, "partial %q uses itself (%s)", name, strings.Join(append(c.using, name), " → "))
		return false
	}
	var doc struct {
		Template ast.Node `yaml:"template"`
	}
	if err := yaml.UnmarshalWithOptions(f.data, &doc, yaml.Strict()); err != nil {
		c.problems = append(c.problems, yamlProblem(f.name, err))
		return false
	}
	outer := c.file
	c.file = f.name
	c.using = append(c.using, name)
	compile(doc.Template)
	c.using = c.using[:len(c.using)-1]
	c.file = outer
	return true
}
