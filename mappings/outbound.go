package mappings

// Outbound mappings: the other direction. An outbound mapping is a template shaped like the
// HL7 v2 message it builds — a list of segments, each a map of field numbers to values — from
// FHIR resources (the radiologist's report, its patient, order, encounter and interpreter). It
// is loaded, layered per facility, reloaded, linted and tested like an inbound mapping; it lives
// in outbound/NAME.yaml and may use the same code tables and partials. docs/mappings.md
// ("Outbound mappings") is the analyst's guide.

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/types"
	"github.com/goccy/go-yaml"
	yamlast "github.com/goccy/go-yaml/ast"

	"github.com/ferryhealth/ferry/hl7"
)

// Outbound is one loaded and validated outbound mapping, ready to render. Safe for concurrent
// use.
type Outbound struct {
	Name        string // "oru_r01"
	Description string
	File        string // where it was loaded from, for errors

	version  string
	lets     []letBinding
	segments []*outSegment
	tables   map[string]*Table
	// authorities maps an identifier system to the keys of the authorities table that give it
	// (sorted): the namespaces a hospital knows the system by.
	authorities map[string][]string
	// standard holds "system|code" of every coding a code table adds (its system and code
	// columns): ce() and cwe() tell the hospital's own codings from them.
	standard map[string]bool
	// systemNames maps a coding system URI to its coding_systems table key, when that table
	// exists (first key in order).
	systemNames map[string]string
}

// Version identifies exactly what rendered a message: the mapping's declared version and a
// digest of its file, the code tables and the partials, e.g. "oru_r01@1+3fa2c9d1". Record it
// with each delivery.
func (o *Outbound) Version() string { return o.version }

// OutboundInput is what an outbound mapping renders: the resources and the message's envelope.
type OutboundInput struct {
	// Resources are decoded FHIR JSON (map[string]any, as encoding/json decodes it) by role:
	// "report" (DiagnosticReport), "patient", "order" (ServiceRequest), and, when known,
	// "encounter", "interpreter" (the Practitioner of resultsInterpreter) and "requester"
	// (the ordering Practitioner). A role that is absent or nil reads as nil in the template.
	Resources map[string]any
	Message   OutboundMessage
}

// OutboundMessage is the envelope of a rendered message, chosen by the caller: the template
// reads it as `message` and writes it into MSH.
type OutboundMessage struct {
	// ControlID is MSH-10: one per delivery, the same for every retry, so that the receiver
	// can drop a repeat. Required, at most 20 characters (ST, HL7 v2.5.1 §2.15.9.10).
	ControlID string
	// Time is MSH-7, the time of the message. Required.
	Time time.Time
	// Version is MSH-12: "2.5.1" (default), "2.5", "2.4", "2.3.1" or "2.3".
	Version string
	// MSH-3 to MSH-6.
	SendingApplication, SendingFacility, ReceivingApplication, ReceivingFacility string
	// ProcessingID is MSH-11; default "P".
	ProcessingID string
	// Zone is the time zone HL7 times are written in (the hospital's); nil means UTC.
	Zone *time.Location
}

// outboundRoles are the resource roles a template may read.
var outboundRoles = []string{"report", "patient", "order", "encounter", "interpreter", "requester"}

// outboundVersions are the HL7 versions an outbound message may declare (MSH-12).
var outboundVersions = []string{"2.3", "2.3.1", "2.4", "2.5", "2.5.1"}

// maxControlID is the length of MSH-10 (ST 20 in v2.3.1 and v2.5.1).
const maxControlID = 20

// Render builds the message for in: HL7 v2 (ER7) bytes, segments ended by CR, delimiters
// |^~\&, every value escaped. The result is parsed back with hl7.Parse and its MSH-10 checked
// before it is returned. The bytes are UTF-8 unless the template writes another character set
// in MSH-18 (then a character that set cannot hold is an error). An error is an *Error saying
// where in the mapping it failed; its text holds no patient data.
func (o *Outbound) Render(in OutboundInput) ([]byte, error) {
	msg, err := in.Message.checked()
	if err != nil {
		return nil, &Error{Code: hl7.CodeApplicationInternalError, Text: err.Error(), Where: o.File}
	}
	st := &state{loc: msg.Zone, table: o.tables, ob: o}
	st.env = map[string]any{"ctx": st, "seq": 0, "message": msg.env()}
	for _, r := range outboundRoles {
		st.env[r] = nil
	}
	for _, role := range sortedKeys(in.Resources) {
		if !slices.Contains(outboundRoles, role) {
			return nil, &Error{Code: hl7.CodeApplicationInternalError, Where: o.File,
				Text: fmt.Sprintf("unknown resource role %q (roles: %s)", role, strings.Join(outboundRoles, ", "))}
		}
		switch r := in.Resources[role].(type) {
		case nil:
		case map[string]any:
			if r != nil {
				st.env[role] = r
			}
		default:
			return nil, &Error{Code: hl7.CodeApplicationInternalError, Where: o.File,
				Text: fmt.Sprintf("resource %q: want decoded JSON (map[string]any), got %T", role, r)}
		}
	}
	for _, l := range o.lets {
		v, err := l.value.eval(st)
		if err != nil {
			return nil, err
		}
		st.env[l.name] = v
	}
	b := make([]byte, 0, 1024)
	counts := map[string]int{}
	for _, sg := range o.segments {
		if b, err = sg.render(st, b, counts); err != nil {
			return nil, err
		}
	}
	return o.check(b, msg, counts)
}

// check parses the rendered text back and writes it in the character set MSH-18 names.
func (o *Outbound) check(text []byte, msg OutboundMessage, counts map[string]int) ([]byte, error) {
	fail := func(format string, args ...any) error {
		return &Error{Code: hl7.CodeApplicationInternalError, Text: fmt.Sprintf(format, args...), Where: o.File}
	}
	m, err := hl7.Parse(text)
	if err != nil {
		// Escaping makes this impossible; say so loudly if it ever happens.
		return nil, fail("the rendered message does not parse: %v", err)
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	if m.NumSegments() != total {
		return nil, fail("the rendered message has %d segments, the mapping wrote %d", m.NumSegments(), total)
	}
	h := m.Header()
	if h.ControlID != msg.ControlID {
		return nil, fail("MSH-10 must be message.control_id, the delivery's control ID (the same on every retry)")
	}
	label := strings.ToUpper(strings.TrimSpace(h.Charset))
	switch label {
	case "", "UNICODE UTF-8", "UTF-8", "UTF8", "UNICODE":
		return text, nil
	case "ASCII":
		for _, c := range text {
			if c >= utf8.RuneSelf {
				return nil, fail("MSH-18 says ASCII but the message has other characters: write UNICODE UTF-8 or 8859/1 there")
			}
		}
		return text, nil
	}
	// Another character set: setting MSH-18 again makes the message write itself in it.
	if err := m.Set("MSH-18", h.Charset); err != nil {
		return nil, fail("MSH-18: %v", err)
	}
	if m.Encoding() == "UTF-8" {
		return nil, fail("MSH-18 %q is not a character set Ferry can write (HL7 table 0211)", h.Charset)
	}
	out := m.Bytes()
	back, err := hl7.Parse(out)
	if err != nil || back.String() != m.String() {
		return nil, fail("the message has characters that MSH-18 %q (%s) cannot represent", h.Charset, m.Encoding())
	}
	return out, nil
}

// checked validates the envelope and fills its defaults.
func (m OutboundMessage) checked() (OutboundMessage, error) {
	switch {
	case m.ControlID == "":
		return m, errors.New("message: the control ID (MSH-10) is required")
	case len(m.ControlID) > maxControlID:
		return m, fmt.Errorf("message: the control ID (MSH-10) has %d characters, at most %d are allowed", len(m.ControlID), maxControlID)
	case m.Time.IsZero():
		return m, errors.New("message: the time (MSH-7) is required")
	}
	if m.Version == "" {
		m.Version = "2.5.1"
	}
	if !slices.Contains(outboundVersions, m.Version) {
		return m, fmt.Errorf("message: version %q is not one of %s", m.Version, strings.Join(outboundVersions, ", "))
	}
	if m.ProcessingID == "" {
		m.ProcessingID = "P"
	}
	if m.Zone == nil {
		m.Zone = time.UTC
	}
	return m, nil
}

// env is the envelope as the template reads it: message.control_id …
func (m OutboundMessage) env() map[string]any {
	return map[string]any{
		"control_id":            m.ControlID,
		"time":                  m.Time.In(m.Zone).Format(time.RFC3339Nano),
		"version":               m.Version,
		"sending_application":   m.SendingApplication,
		"sending_facility":      m.SendingFacility,
		"receiving_application": m.ReceivingApplication,
		"receiving_facility":    m.ReceivingFacility,
		"processing_id":         m.ProcessingID,
	}
}

// outboundFile is an outbound mapping's YAML as written.
type outboundFile struct {
	Outbound    string       `yaml:"outbound"`
	Version     int          `yaml:"version"`
	Description string       `yaml:"description"`
	Let         yamlast.Node `yaml:"let"`
	Segments    yamlast.Node `yaml:"segments"`
}

// letBinding is one name of let: with its expression, evaluated once per render in order.
type letBinding struct {
	name  string
	value *expression
}

// outSegment is one entry of segments: a segment ID and its fields by number; with each: one
// segment per item, with if: only when the condition holds.
type outSegment struct {
	id     string
	fields []outPart // sorted by number
	cond   *expression
	each   *expression
	as     string
	where  string
}

// outPart is a numbered part of a segment (a field), a repetition (a component) or a
// component (a subcomponent).
type outPart struct {
	n     int
	v     node
	where string
}

// outComposite is a YAML mapping inside a segment: a repetition's components (in a field) or a
// component's subcomponents (sub: inside a component), by number. With value: it starts from a
// whole value whose numbered parts the keys beside it replace; with each: it is one repetition
// per item; with if: it is kept only when the condition holds.
type outComposite struct {
	sub   bool
	parts []outPart
	base  node
	cond  *expression
	each  *expression
	as    string
	where string
}

// outList is a YAML sequence as a field's value: its repetitions, in order. An item that is
// itself a list (each:, or a function returning several values) is spliced in.
type outList struct{ items []node }

// composite is a value with components (CX, XPN, CWE …): component i+1 at index i, each a
// string, a subcomposite or nil.
type composite []any

// subcomposite is a component's subcomponents (CNN, or an HD inside a CX): subcomponent i+1 at
// index i.
type subcomposite []string

// outboundScope is what an expression of an outbound mapping may name: the resources, message,
// seq, and the let: and as: names in scope.
type outboundScope struct {
	names []string
}

func (sc *outboundScope) options() []expr.Option {
	env := types.Map{"ctx": types.TypeOf((*state)(nil)), "message": types.Any, "seq": types.Any}
	for _, r := range outboundRoles {
		env[r] = types.Any
	}
	for _, n := range sc.names {
		env[n] = types.Any
	}
	return append([]expr.Option{expr.Env(env)}, outboundOptions...)
}

func (sc *outboundScope) has(name string) bool {
	return slices.Contains(sc.names, name) || slices.Contains(outboundRoles, name) ||
		name == "message" || name == "seq" || name == "ctx"
}

// optionalMembers makes every member access nil-safe, as if written with ?.: a resource or an
// element that is absent reads as nil (`encounter.class.code` is nil without an encounter),
// like an absent HL7 field reads as "" in an inbound mapping.
type optionalMembers struct{}

func (optionalMembers) Visit(n *ast.Node) {
	if m, ok := (*n).(*ast.MemberNode); ok && !m.Method && !m.Optional {
		m.Optional = true
		ast.Patch(n, &ast.ChainNode{Node: m})
	}
}

var nameRE = regexp.MustCompile(`^[a-z_][A-Za-z0-9_]*$`)

// compileOutbound parses and compiles one outbound mapping file.
func compileOutbound(file string, data []byte, tables map[string]*Table, partials map[string]file) (*Outbound, Problems) {
	var of outboundFile
	if err := yaml.UnmarshalWithOptions(data, &of, yaml.Strict()); err != nil {
		return nil, Problems{yamlProblem(file, err)}
	}
	c := &compiler{file: file, tables: tables, partials: partials, out: &outboundScope{}}
	top := func(format string, args ...any) {
		c.problems = append(c.problems, Problem{File: file, Message: fmt.Sprintf(format, args...)})
	}
	if of.Outbound == "" {
		top("outbound: a name is required (e.g. outbound: oru_r01)")
	} else if want := strings.TrimSuffix(path.Base(file), path.Ext(file)); want != of.Outbound {
		top("outbound: the name %q differs from the file name %q", of.Outbound, want)
	}
	if of.Version < 1 {
		top("version: a positive number is required; raise it with each change")
	}
	o := &Outbound{Name: of.Outbound, Description: of.Description, File: file, tables: tables}
	o.lets = c.lets(of.Let)
	if seq, ok := unwrap(of.Segments).(*yamlast.SequenceNode); !ok || len(seq.Values) == 0 {
		top("segments: the template is required: a list of segments, MSH first")
	} else {
		for i, item := range seq.Values {
			if sg := c.segment(item, fmt.Sprintf("segments[%d]", i)); sg != nil {
				o.segments = append(o.segments, sg)
			}
		}
		if len(o.segments) > 0 && (o.segments[0].id != "MSH" || o.segments[0].each != nil || o.segments[0].cond != nil) {
			c.problem(seq.Values[0], "segments[0]", "the first segment must be MSH, once, without each: or if:")
		}
		c.checkTables(data)
	}
	if len(c.problems) > 0 {
		return nil, c.problems
	}
	o.version = versionOf(of.Outbound, of.Version, data, tables, partials)
	o.authorities = map[string][]string{}
	if t := tables["authorities"]; t != nil {
		for _, k := range sortedKeys(t.Rows) {
			if sys := t.Rows[k]["system"]; sys != "" {
				o.authorities[sys] = append(o.authorities[sys], k)
			}
		}
	}
	o.standard = map[string]bool{}
	for _, t := range tables {
		for _, row := range t.Rows {
			if row["system"] != "" && row["code"] != "" {
				o.standard[row["system"]+"|"+row["code"]] = true
			}
		}
	}
	if t := tables["coding_systems"]; t != nil {
		o.systemNames = map[string]string{}
		for _, k := range sortedKeys(t.Rows) {
			if sys := t.Rows[k]["system"]; sys != "" && o.systemNames[sys] == "" {
				o.systemNames[sys] = k
			}
		}
	}
	return o, nil
}

// lets compiles let:, a mapping of names to expressions; each name is in scope after it.
func (c *compiler) lets(n yamlast.Node) []letBinding {
	var out []letBinding
	switch m := unwrap(n).(type) {
	case nil:
		return nil
	case *yamlast.MappingNode:
		for _, mv := range m.Values {
			out = c.let(out, mv)
		}
	case *yamlast.MappingValueNode:
		out = c.let(out, m)
	default:
		c.problem(n, "let", "want names with their expressions, e.g. status: lookup(\"result_status\", report.status, \"obr25\")")
	}
	return out
}

func (c *compiler) let(out []letBinding, mv *yamlast.MappingValueNode) []letBinding {
	name := scalarText(mv.Key)
	where := "let." + name
	if !c.bindable(mv.Key, where, name) {
		return out
	}
	e := c.expr(mv.Value, strings.TrimPrefix(scalarText(mv.Value), "="), where)
	c.out.names = append(c.out.names, name)
	if e == nil {
		return out
	}
	return append(out, letBinding{name: name, value: e})
}

// bindable reports whether name may be bound by let: or as:, reporting why not.
func (c *compiler) bindable(n yamlast.Node, where, name string) bool {
	switch {
	case !nameRE.MatchString(name):
		c.problem(n, where, "%q is not a name: use lower-case letters, digits and _", name)
	case c.out.has(name):
		c.problem(n, where, "%q is already a name here (resources, message, seq, or a let:/as: name)", name)
	case c.isFunction(name) || slices.Contains(builtin.Names, name):
		c.problem(n, where, "%q is a function's name", name)
	default:
		return true
	}
	return false
}

// segment compiles one entry of segments: `- PID: {3: …, 5: …}`.
func (c *compiler) segment(item yamlast.Node, where string) *outSegment {
	var mv *yamlast.MappingValueNode
	switch m := unwrap(item).(type) {
	case *yamlast.MappingNode:
		if len(m.Values) == 1 {
			mv = m.Values[0]
		}
	case *yamlast.MappingValueNode:
		mv = m
	}
	if mv == nil {
		c.problem(item, where, "want one segment, like `- PID: {3: =cx(…)}`")
		return nil
	}
	id := scalarText(mv.Key)
	if p, err := hl7.ParsePath(id); err != nil || p.Field != 0 || len(id) != 3 {
		c.problem(mv.Key, where, "%q is not a segment ID (three capital letters or digits)", id)
		return nil
	}
	sg := &outSegment{id: id, where: c.where(mv.Key, where+"."+id)}
	var values []*yamlast.MappingValueNode
	switch v := unwrap(mv.Value).(type) {
	case nil, *yamlast.NullNode:
	case *yamlast.MappingNode:
		values = v.Values
	case *yamlast.MappingValueNode:
		values = []*yamlast.MappingValueNode{v}
	default:
		c.problem(mv.Value, where+"."+id, "want the segment's fields by number, like {1: \"1\", 3: =cx(…)}")
		return nil
	}
	first := 1
	if id == "MSH" {
		first = 3 // MSH-1 and MSH-2 are the delimiters
	}
	pop := c.directives(values, where+"."+id, true, &sg.each, &sg.as, nil, &sg.cond)
	defer pop()
	sg.fields = c.parts(values, where+"."+id, id+"-", first, 999, c.fieldValue)
	return sg
}

// directives compiles each:, as:, value: and if: of a mapping (those it is given room for),
// in that order so that as: is in scope for the others; it returns the function that takes
// as: out of scope again.
func (c *compiler) directives(values []*yamlast.MappingValueNode, where string, repeat bool, each **expression, as *string, base *node, cond **expression) func() {
	find := func(key string) *yamlast.MappingValueNode {
		for _, mv := range values {
			if scalarText(mv.Key) == key {
				return mv
			}
		}
		return nil
	}
	eachNode, asNode := find("each"), find("as")
	pop := func() {}
	switch {
	case eachNode != nil && !repeat:
		c.problem(eachNode.Key, where, "each: repeats segments and field repetitions, not components")
	case eachNode != nil && asNode == nil:
		c.problem(eachNode.Key, where+".each", "each: needs as: with the name each item is bound to")
	case eachNode == nil && asNode != nil:
		c.problem(asNode.Key, where+".as", "as: goes with each:")
	case eachNode != nil:
		*each = c.expr(eachNode.Value, strings.TrimPrefix(scalarText(eachNode.Value), "="), where+".each")
		name := scalarText(asNode.Value)
		if c.bindable(asNode.Value, where+".as", name) {
			*as = name
			c.out.names = append(c.out.names, name)
			pop = func() { c.out.names = c.out.names[:len(c.out.names)-1] }
		}
	}
	if mv := find("value"); mv != nil {
		if base == nil {
			c.problem(mv.Key, where, "value: belongs in a field, a repetition or a component")
		} else {
			*base = c.outScalar(mv.Value, where+".value")
		}
	}
	if mv := find("if"); mv != nil {
		*cond = c.expr(mv.Value, strings.TrimPrefix(scalarText(mv.Value), "="), where+".if")
	}
	return pop
}

// parts compiles the numbered keys of a mapping (fields, components or subcomponents) and its
// use: partials; other keys than the directives are problems. Keys written beside use: replace
// the partial's.
func (c *compiler) parts(values []*yamlast.MappingValueNode, where, prefix string, first, last int, value func(n yamlast.Node, where string) node) []outPart {
	var out []outPart
	set := func(p outPart) {
		if i := slices.IndexFunc(out, func(q outPart) bool { return q.n == p.n }); i >= 0 {
			out[i] = p
			return
		}
		out = append(out, p)
	}
	var own []outPart
	for _, mv := range values {
		key := scalarText(mv.Key)
		switch key {
		case "each", "as", "value", "if":
			continue
		case "use":
			c.partial(mv.Value, where+".use", func(tmpl yamlast.Node) {
				var vs []*yamlast.MappingValueNode
				switch t := unwrap(tmpl).(type) {
				case *yamlast.MappingNode:
					vs = t.Values
				case *yamlast.MappingValueNode:
					vs = []*yamlast.MappingValueNode{t}
				default:
					c.problem(tmpl, "template", "an outbound partial's template is a mapping of numbered parts")
					return
				}
				for _, d := range []string{"each", "as", "if", "value"} {
					if slices.ContainsFunc(vs, func(mv *yamlast.MappingValueNode) bool { return scalarText(mv.Key) == d }) {
						c.problem(tmpl, "template", "%s: belongs where the partial is used, not in it", d)
					}
				}
				for _, p := range c.parts(vs, "template", prefix, first, last, value) {
					set(p)
				}
			})
			continue
		}
		n, err := strconv.Atoi(key)
		if err != nil {
			c.problem(mv.Key, where, "%q: want a number (%s1, %s2 …) or each:, as:, if:, value:, use:", key, prefix, prefix)
			continue
		}
		if n < first || n > last {
			if prefix == "MSH-" && n >= 1 && n < first {
				c.problem(mv.Key, where, "MSH-1 and MSH-2 are the delimiters |^~\\& that Ferry writes")
			} else {
				c.problem(mv.Key, where, "%s%d: want a number from %d to %d", prefix, n, first, last)
			}
			continue
		}
		sub := where + "-" + key
		if !strings.HasSuffix(prefix, "-") {
			sub = where + "." + key
		}
		own = append(own, outPart{n: n, v: value(mv.Value, sub), where: c.where(mv.Value, sub)})
	}
	for _, p := range own {
		set(p)
	}
	slices.SortFunc(out, func(a, b outPart) int { return a.n - b.n })
	return out
}

// fieldValue compiles a field: a value, a list of repetitions, or a mapping of components.
func (c *compiler) fieldValue(n yamlast.Node, where string) node {
	switch v := unwrap(n).(type) {
	case *yamlast.SequenceNode:
		l := &outList{}
		for i, item := range v.Values {
			l.items = append(l.items, c.repetitionValue(item, fmt.Sprintf("%s[%d]", where, i)))
		}
		return l
	case *yamlast.MappingNode, *yamlast.MappingValueNode:
		return c.composite(n, where, false)
	}
	return c.outScalar(n, where)
}

// repetitionValue compiles one item of a field's list: a value or a mapping of components.
func (c *compiler) repetitionValue(n yamlast.Node, where string) node {
	switch unwrap(n).(type) {
	case *yamlast.SequenceNode:
		c.problem(n, where, "a list inside a list: a field's repetitions are one list")
		return literal{nil}
	case *yamlast.MappingNode, *yamlast.MappingValueNode:
		return c.composite(n, where, false)
	}
	return c.outScalar(n, where)
}

// componentValue compiles a component: a value or a mapping of subcomponents.
func (c *compiler) componentValue(n yamlast.Node, where string) node {
	switch unwrap(n).(type) {
	case *yamlast.SequenceNode:
		c.problem(n, where, "a component does not repeat: write its subcomponents as {1: …, 2: …}")
		return literal{nil}
	case *yamlast.MappingNode, *yamlast.MappingValueNode:
		return c.composite(n, where, true)
	}
	return c.outScalar(n, where)
}

// subcomponentValue compiles a subcomponent: a value.
func (c *compiler) subcomponentValue(n yamlast.Node, where string) node {
	switch unwrap(n).(type) {
	case *yamlast.SequenceNode, *yamlast.MappingNode, *yamlast.MappingValueNode:
		c.problem(n, where, "a subcomponent is one value")
		return literal{nil}
	}
	return c.outScalar(n, where)
}

// composite compiles a mapping of numbered parts: components (sub false) or subcomponents.
func (c *compiler) composite(n yamlast.Node, where string, sub bool) node {
	var values []*yamlast.MappingValueNode
	switch v := unwrap(n).(type) {
	case *yamlast.MappingNode:
		values = v.Values
	case *yamlast.MappingValueNode:
		values = []*yamlast.MappingValueNode{v}
	}
	m := &outComposite{sub: sub, where: c.where(n, where)}
	pop := c.directives(values, where, !sub, &m.each, &m.as, &m.base, &m.cond)
	defer pop()
	if sub {
		m.parts = c.parts(values, where, "", 1, 99, c.subcomponentValue)
	} else {
		m.parts = c.parts(values, where, "", 1, 99, c.componentValue)
	}
	return m
}

// outScalar compiles a scalar: text as written, or an expression when it starts with "=".
func (c *compiler) outScalar(n yamlast.Node, where string) node {
	switch v := unwrap(n).(type) {
	case nil, *yamlast.NullNode:
		return literal{nil}
	case *yamlast.StringNode:
		return c.scalar(v, v.Value, where)
	case *yamlast.LiteralNode:
		return c.scalar(v, v.Value.Value, where)
	case *yamlast.IntegerNode, *yamlast.FloatNode, *yamlast.BoolNode:
		return literal{v.GetToken().Value} // as written: 1.50 stays "1.50"
	default:
		c.problem(n, where, "want text or an =expression here")
		return literal{nil}
	}
}

// render appends the segment (each of its repetitions) to dst.
func (sg *outSegment) render(st *state, dst []byte, counts map[string]int) ([]byte, error) {
	items := []any{nil}
	if sg.each != nil {
		v, err := sg.each.eval(st)
		if err != nil {
			return dst, err
		}
		items = eachItems(v)
	}
	for _, item := range items {
		if sg.as != "" {
			st.env[sg.as] = item
		}
		var err error
		dst, err = sg.once(st, dst, counts)
		if sg.as != "" {
			delete(st.env, sg.as)
		}
		if err != nil {
			return dst, err
		}
	}
	return dst, nil
}

func (sg *outSegment) once(st *state, dst []byte, counts map[string]int) ([]byte, error) {
	st.env["seq"] = counts[sg.id] + 1
	if sg.cond != nil {
		ok, err := sg.cond.eval(st)
		if err != nil {
			return dst, err
		}
		if b, _ := ok.(bool); !b {
			return dst, nil
		}
	}
	dst = append(dst, sg.id...)
	at := 0 // the field the text has reached
	if sg.id == "MSH" {
		dst = append(dst, hl7.DefaultDelimiters.String()...)
		at = 2
	}
	for _, f := range sg.fields {
		v, err := f.v.eval(st)
		if err != nil {
			return dst, err
		}
		text, err := encodeField(v)
		if err != nil {
			return dst, &Error{Code: hl7.CodeApplicationInternalError, Text: err.Error(), Where: f.where}
		}
		if text == "" {
			continue
		}
		for ; at < f.n; at++ {
			dst = append(dst, hl7.DefaultDelimiters.Field)
		}
		dst = append(dst, text...)
	}
	counts[sg.id]++
	return append(dst, '\r'), nil
}

// eachItems is what each: repeats over: a list's items, one value once, nil never.
func eachItems(v any) []any {
	switch x := v.(type) {
	case nil:
		return nil
	case []any:
		return x
	case []string:
		out := make([]any, len(x))
		for i, s := range x {
			out[i] = s
		}
		return out
	case []map[string]any:
		out := make([]any, len(x))
		for i, m := range x {
			out[i] = m
		}
		return out
	}
	return []any{v}
}

func (l *outList) eval(st *state) (any, error) {
	var out []any
	for _, it := range l.items {
		v, err := it.eval(st)
		if err != nil {
			return nil, err
		}
		switch x := v.(type) {
		case nil:
		case []any:
			out = append(out, x...)
		default:
			out = append(out, x)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func (m *outComposite) eval(st *state) (any, error) {
	if m.each == nil {
		return m.once(st)
	}
	v, err := m.each.eval(st)
	if err != nil {
		return nil, err
	}
	var out []any
	for _, item := range eachItems(v) {
		st.env[m.as] = item
		r, err := m.once(st)
		delete(st.env, m.as)
		if err != nil {
			return nil, err
		}
		if r != nil {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func (m *outComposite) once(st *state) (any, error) {
	if m.cond != nil {
		ok, err := m.cond.eval(st)
		if err != nil {
			return nil, err
		}
		if b, _ := ok.(bool); !b {
			return nil, nil
		}
	}
	var parts []any
	if m.base != nil {
		v, err := m.base.eval(st)
		if err != nil {
			return nil, err
		}
		if len(m.parts) == 0 {
			return v, nil
		}
		switch x := v.(type) {
		case nil:
		case composite:
			parts = slices.Clone([]any(x))
		case subcomposite:
			for _, s := range x {
				parts = append(parts, s)
			}
		case []any, []string, map[string]any:
			return nil, &Error{Code: hl7.CodeApplicationInternalError, Where: m.where,
				Text: fmt.Sprintf("value: gives %s, so numbered parts cannot be set beside it", describe(v))}
		default:
			parts = []any{v}
		}
	}
	for _, p := range m.parts {
		v, err := p.v.eval(st)
		if err != nil {
			return nil, err
		}
		for len(parts) < p.n {
			parts = append(parts, nil)
		}
		parts[p.n-1] = v
	}
	if m.sub {
		out := make(subcomposite, len(parts))
		for i, p := range parts {
			s, err := leaf(p)
			if err != nil {
				return nil, &Error{Code: hl7.CodeApplicationInternalError, Text: err.Error(), Where: m.where}
			}
			out[i] = s
		}
		return trimSubs(out), nil
	}
	return trimComposite(composite(parts)), nil
}

// trimComposite drops trailing empty components; nil when none is left.
func trimComposite(c composite) any {
	n := len(c)
	for n > 0 && isEmptyPart(c[n-1]) {
		n--
	}
	if n == 0 {
		return nil
	}
	return c[:n]
}

// trimSubs drops trailing empty subcomponents; nil when none is left.
func trimSubs(s subcomposite) any {
	n := len(s)
	for n > 0 && s[n-1] == "" {
		n--
	}
	if n == 0 {
		return nil
	}
	return s[:n]
}

func isEmptyPart(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case subcomposite:
		return trimSubs(x) == nil
	case composite:
		return trimComposite(x) == nil
	case []any:
		return len(x) == 0
	}
	return false
}

// encodeField writes a field's value as ER7: a list is its repetitions; each value escaped.
func encodeField(v any) (string, error) {
	var reps []string
	var add func(v any) error
	add = func(v any) error {
		switch x := v.(type) {
		case []any:
			for _, it := range x {
				if err := add(it); err != nil {
					return err
				}
			}
			return nil
		case []string:
			for _, it := range x {
				reps = append(reps, hl7.Escape(hl7.DefaultDelimiters, it))
			}
			return nil
		}
		r, err := encodeRepetition(v)
		reps = append(reps, r)
		return err
	}
	if err := add(v); err != nil {
		return "", err
	}
	return joinTrimmed(reps, hl7.DefaultDelimiters.Repetition), nil
}

func encodeRepetition(v any) (string, error) {
	switch x := v.(type) {
	case composite:
		comps := make([]string, len(x))
		for i, c := range x {
			s, err := encodeComponent(c)
			if err != nil {
				return "", fmt.Errorf("component %d: %w", i+1, err)
			}
			comps[i] = s
		}
		return joinTrimmed(comps, hl7.DefaultDelimiters.Component), nil
	case subcomposite:
		return "", errors.New("subcomponents (from cnn()) where a field is expected: put them in a component, e.g. {1: =cnn(interpreter)}")
	}
	s, err := leaf(v)
	return hl7.Escape(hl7.DefaultDelimiters, s), err
}

func encodeComponent(v any) (string, error) {
	var subs []string
	switch x := v.(type) {
	case subcomposite:
		subs = x
	case []string:
		subs = x
	case []any:
		for _, it := range x {
			s, err := leaf(it)
			if err != nil {
				return "", err
			}
			subs = append(subs, s)
		}
	case composite:
		return "", errors.New("a composite value (from cx(), xpn() …) where one component is expected")
	default:
		s, err := leaf(v)
		return hl7.Escape(hl7.DefaultDelimiters, s), err
	}
	out := make([]string, len(subs))
	for i, s := range subs {
		out[i] = hl7.Escape(hl7.DefaultDelimiters, s)
	}
	return joinTrimmed(out, hl7.DefaultDelimiters.Subcomponent), nil
}

// joinTrimmed joins parts with sep, without the trailing empty ones.
func joinTrimmed(parts []string, sep byte) string {
	n := len(parts)
	for n > 0 && parts[n-1] == "" {
		n--
	}
	return strings.Join(parts[:n], string(sep))
}

// leaf is a single value's text: text as it is, numbers in decimal.
func leaf(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case int:
		return strconv.Itoa(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	case json.Number:
		return x.String(), nil
	}
	return "", fmt.Errorf("%s where text is expected", describe(v))
}

// describe names the kind of a value for an error, never its content (it may be patient data).
func describe(v any) string {
	switch v.(type) {
	case bool:
		return "true/false (write e.g. =x ? \"Y\" : \"N\")"
	case map[string]any:
		return "a FHIR element (pick a part of it, like .value, or use a function like cx())"
	case []any, []string:
		return "a list"
	case composite:
		return "a composite value"
	case subcomposite:
		return "subcomponents"
	}
	return fmt.Sprintf("a %T", v)
}
