package mappings

import (
	"errors"

	exprast "github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm/runtime"

	"github.com/ferryhealth/ferry/hl7"
)

// Most expressions of an inbound mapping are mapping functions applied to fields and quoted
// text, joined by ==, !=, &&, || and ?: — `first(ORC-2.1, OBR-2.1)`,
// `ORC-2.1 != "" ? ei("ORC-2", "PLAC") : ei("OBR-2", "PLAC")`. Running them in the expr VM costs
// more than the functions themselves (a stack, an argument buffer and a recover per run, the ctx
// variable looked up by name for every call), so such an expression is also compiled into a
// small tree of nodes that calls the functions directly: its direct form. It computes what the
// VM computes, with the same operators of expr's runtime package, in the same order, evaluating
// the same arguments; anything outside that subset (builtins like trim or matches, arrays,
// member access) has no direct form and runs in the VM.
//
// An error that is not the mapping's own (*Error) — a condition that is not a boolean, text
// added to nil, a function given the wrong number of arguments — is not reported from the direct
// form: the expression then runs again in the VM, so that the message the analyst sees is the
// VM's, with its position in the expression. The mapping functions have no effect besides the
// reads they remember, so running one again changes nothing but that.

// errNotDirect is what a direct form returns when the VM must decide (see above).
var errNotDirect = errors.New("evaluate in the VM")

// directForm returns the direct form of a compiled inbound expression (the optimized expr
// syntax tree of its rewritten code), or nil when it has none.
func (c *compiler) directForm(n exprast.Node) node {
	switch n := n.(type) {
	case *exprast.NilNode:
		return literal{nil}
	case *exprast.StringNode:
		return literal{n.Value}
	case *exprast.BoolNode:
		return literal{n.Value}
	case *exprast.IntegerNode:
		return literal{n.Value}
	case *exprast.FloatNode:
		return literal{n.Value}
	case *exprast.ConstantNode:
		return literal{n.Value} // folded by expr's optimizer, e.g. the set of `x in ["M", "F"]`
	case *exprast.CallNode:
		return c.directCall(n)
	case *exprast.ConditionalNode:
		cond, yes, no := c.directForm(n.Cond), c.directForm(n.Exp1), c.directForm(n.Exp2)
		if cond == nil || yes == nil || no == nil {
			return nil
		}
		return &conditional{cond: cond, yes: yes, no: no}
	case *exprast.UnaryNode:
		x := c.directForm(n.Node)
		if x == nil || (n.Operator != "!" && n.Operator != "not") {
			return nil
		}
		return &not{x: x}
	case *exprast.BinaryNode:
		l, r := c.directForm(n.Left), c.directForm(n.Right)
		if l == nil || r == nil {
			return nil
		}
		switch n.Operator {
		case "==":
			return &binary{l: l, r: r, op: equal}
		case "!=":
			return &not{x: &binary{l: l, r: r, op: equal}}
		case "&&", "and":
			return &and{l: l, r: r}
		case "||", "or":
			return &or{l: l, r: r}
		case "+":
			return &binary{l: l, r: r, op: runtime.Add}
		case "in":
			return &binary{l: l, r: r, op: func(a, b any) any { return runtime.In(a, b) }}
		}
	}
	return nil
}

// directCall is the direct form of a mapping function's call: fn(ctx, args…), where v(ctx, i)
// (what the rewrite makes of a field path) becomes the read of that path itself.
func (c *compiler) directCall(n *exprast.CallNode) node {
	callee, ok := n.Callee.(*exprast.IdentifierNode)
	if !ok || len(n.Arguments) == 0 {
		return nil
	}
	f, ok := functions[callee.Value]
	if !ok {
		return nil
	}
	if ctx, ok := n.Arguments[0].(*exprast.IdentifierNode); !ok || ctx.Value != "ctx" {
		return nil
	}
	args := n.Arguments[1:]
	if len(args) < f.min || (f.max >= 0 && len(args) > f.max) {
		return nil // the VM reports it
	}
	if callee.Value == "v" {
		if i, ok := args[0].(*exprast.IntegerNode); ok && i.Value >= 0 && i.Value < len(c.paths) {
			return c.pathRead(c.paths[i.Value], i.Value)
		}
		return nil
	}
	call := &call{fn: f.fn, args: make([]node, len(args))}
	for i, a := range args {
		if call.args[i] = c.directForm(a); call.args[i] == nil {
			return nil
		}
	}
	for _, i := range pathArgs[callee.Value] {
		if i >= len(args) {
			break
		}
		if s, ok := args[i].(*exprast.StringNode); ok {
			if p, err := hl7.ParsePath(s.Value); err == nil {
				call.args[i] = literal{p}
			}
		}
	}
	return call
}

// call applies a mapping function to its arguments, evaluated in order. The argument values are
// kept on the state's argument stack rather than in a slice of their own for each call; a
// function may read its args but not keep them.
type call struct {
	fn   func(st *state, args []any) (any, error)
	args []node
}

func (c *call) eval(st *state) (any, error) {
	base := len(st.args)
	for _, a := range c.args {
		v, err := a.eval(st)
		if err != nil {
			return nil, err // the expression fails: evalDirect empties the stack for the next
		}
		st.args = append(st.args, v)
	}
	top := len(st.args)
	out, err := c.fn(st, st.args[base:top:top])
	st.args = st.args[:base]
	return out, err
}

// conditional is c ? yes : no; like the VM, it wants a boolean c.
type conditional struct{ cond, yes, no node }

func (n *conditional) eval(st *state) (any, error) {
	c, err := boolOf(n.cond, st)
	if err != nil {
		return nil, err
	}
	if c {
		return n.yes.eval(st)
	}
	return n.no.eval(st)
}

// and is l && r: false when l is, else r's value (expr does not check r: it is its result).
type and struct{ l, r node }

func (n *and) eval(st *state) (any, error) {
	l, err := boolOf(n.l, st)
	if err != nil || !l {
		return false, err
	}
	return n.r.eval(st)
}

// or is l || r: true when l is, else r's value.
type or struct{ l, r node }

func (n *or) eval(st *state) (any, error) {
	l, err := boolOf(n.l, st)
	if err != nil || l {
		return true, err
	}
	return n.r.eval(st)
}

type not struct{ x node }

func (n *not) eval(st *state) (any, error) {
	b, err := boolOf(n.x, st)
	return !b, err
}

// equal is l == r as expr compares values of unknown type.
func equal(l, r any) any { return runtime.Equal(l, r) }

// binary is an operator of expr's runtime (==, +, in); + and in panic on operands they do not
// take.
type binary struct {
	l, r node
	op   func(a, b any) any
}

func (n *binary) eval(st *state) (any, error) {
	l, err := n.l.eval(st)
	if err != nil {
		return nil, err
	}
	r, err := n.r.eval(st)
	if err != nil {
		return nil, err
	}
	return n.op(l, r), nil
}

// boolOf evaluates a condition; one that is not a boolean is for the VM to report.
func boolOf(n node, st *state) (bool, error) {
	v, err := n.eval(st)
	if err != nil {
		return false, err
	}
	b, ok := v.(bool)
	if !ok {
		return false, errNotDirect
	}
	return b, nil
}

// evalDirect runs e's direct form. ok is false when the VM must run e instead: the direct form
// failed with an error that is not the mapping's own, or an operator of expr's runtime panicked.
func (e *expression) evalDirect(st *state) (out any, err error, ok bool) {
	defer func() {
		if recover() != nil {
			out, err, ok = nil, nil, false
		}
	}()
	st.args = st.args[:0]
	out, err = e.direct.eval(st)
	if err != nil {
		if _, mine := errors.AsType[*Error](err); !mine {
			return nil, nil, false
		}
	}
	return out, err, true
}
