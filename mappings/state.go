package mappings

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/expr-lang/expr/vm"

	"github.com/ferryhealth/ferry/hl7"
)

// state is one application of a mapping: an inbound mapping to one message (Apply), or an
// outbound mapping to one set of resources (Render). It travels through expr as the ctx
// argument the rewrite adds to every mapping function (so it implements context.Context, which
// expr passes along untouched). It is not safe for concurrent use; each Apply or Render makes
// its own.
type state struct {
	context.Context
	m     *Mapping
	msg   *hl7.Message
	env   map[string]any
	vm    vm.VM               // reused for every expression of one Apply: its stack outlives each run
	loc   *time.Location      // for HL7 times without an offset
	last  hl7.Path            // the field most recently read, where a failing function points
	read  bool                // last is set
	reads [maxReads]fieldRead // the latest reads (a ring), to find where a bad value came from
	nread int                 // reads so far; the latest is reads[(nread-1)%maxReads]
	occ   []binding           // segment occurrences bound by each:/group:
	reps  []binding           // field repetitions bound by each:
	table map[string]*Table
	ob    *Outbound // the outbound mapping rendering, when it is one (m and msg are nil then)
}

type fieldRead struct {
	path  hl7.Path
	value string
}

// maxReads bounds the reads remembered for locating errors; an expression reads a few fields.
const maxReads = 32

func (st *state) remember(p hl7.Path, v string) {
	st.last, st.read = p, true
	if v == "" {
		return
	}
	st.reads[st.nread%maxReads] = fieldRead{p, v}
	st.nread++
}

type binding struct {
	seg   string
	field int
	n     int
}

func (st *state) fail(err error, where string) error {
	var me *Error
	if errors.As(err, &me) {
		if me.Where == "" {
			me.Where = where
		}
		return me
	}
	e := &Error{Code: hl7.CodeApplicationInternalError, Text: "mapping failed: " + firstLine(err.Error()), Where: where}
	if st.read {
		e.Path = st.last
	}
	return e
}

// resolve applies the bindings of the enclosing each:/group: to p: inside `each: DG1`, DG1-3
// means the current DG1's field 3; inside `each: PID-3`, PID-3.1 means the current repetition's.
// An explicit occurrence or repetition in p wins.
func (st *state) resolve(p hl7.Path) hl7.Path {
	if p.SegmentIndex == 0 {
		for i := len(st.occ) - 1; i >= 0; i-- {
			if st.occ[i].seg == p.Segment {
				p.SegmentIndex = st.occ[i].n
				break
			}
		}
	}
	if p.Field > 0 && p.Repetition == 0 {
		for i := len(st.reps) - 1; i >= 0; i-- {
			if st.reps[i].seg == p.Segment && st.reps[i].field == p.Field {
				p.Repetition = st.reps[i].n
				break
			}
		}
	}
	return p
}

// count is how often each: over p repeats: segments for a segment path, repetitions for a field.
func (st *state) count(p hl7.Path) int {
	if p.Field == 0 {
		return st.msg.Count(p.Segment)
	}
	return st.msg.Count(pathText(st.resolve(p)))
}

// enter binds occurrence (or repetition) i of p, and the group's segments to the same
// occurrence; the returned function undoes it.
func (st *state) enter(p hl7.Path, i int, group []string) func() {
	if p.Field > 0 {
		st.reps = append(st.reps, binding{seg: p.Segment, field: p.Field, n: i})
		return func() { st.reps = st.reps[:len(st.reps)-1] }
	}
	n := len(st.occ)
	st.occ = append(st.occ, binding{seg: p.Segment, n: i})
	for _, g := range group {
		st.occ = append(st.occ, binding{seg: g, n: i})
	}
	return func() { st.occ = st.occ[:n] }
}

// get reads the decoded value at p (bindings applied) and remembers where it read.
func (st *state) get(p hl7.Path) string {
	p = st.resolve(p)
	v := st.msg.GetPath(p)
	st.remember(p, v)
	return v
}

// pathText is the text form of a path, as docs/hl7-paths.md writes it.
func pathText(p hl7.Path) string {
	s := p.Segment
	if p.SegmentIndex > 1 {
		s += "[" + strconv.Itoa(p.SegmentIndex) + "]"
	}
	if p.Field == 0 {
		return s
	}
	s += "-" + strconv.Itoa(p.Field)
	if p.Repetition > 1 {
		s += "[" + strconv.Itoa(p.Repetition) + "]"
	}
	if p.Component > 0 {
		s += "." + strconv.Itoa(p.Component)
		if p.Subcomponent > 0 {
			s += "." + strconv.Itoa(p.Subcomponent)
		}
	}
	return s
}

// Error is a message the mapping could not turn into resources: what failed and where, in the
// terms of an HL7 ERR segment. Text never holds message content (it is logged and stored).
type Error struct {
	Code  hl7.ErrorCode // 101 required field missing, 102 data type error, 103 table value not found, 207 other
	Path  hl7.Path      // the field, when known
	Text  string
	Where string // the mapping file, line and template path that failed
}

func (e *Error) Error() string {
	loc := ""
	if e.Path.Segment != "" {
		loc = pathText(e.Path) + ": "
	}
	return fmt.Sprintf("%s%s (ERR %d, mapping %s)", loc, e.Text, e.Code, e.Where)
}

// Detail is the ERR segment content for this error.
func (e *Error) Detail() hl7.ErrorDetail {
	return hl7.ErrorDetail{
		Segment:   e.Path.Segment,
		Sequence:  max(e.Path.SegmentIndex, 1),
		Field:     e.Path.Field,
		Component: e.Path.Component,
		Code:      e.Code,
		Severity:  "E",
		Text:      e.Text,
	}
}

// dataTypeError reports that value does not fit its data type, at the field it was read from
// (the latest read that gave exactly this value), else at the field read last.
func (st *state) dataTypeError(value, format string, args ...any) error {
	e := &Error{Code: hl7.CodeDataType, Text: fmt.Sprintf(format, args...)}
	if st.read {
		e.Path = st.last
	}
	for i := st.nread - 1; i >= 0 && i >= st.nread-maxReads; i-- {
		if r := st.reads[i%maxReads]; r.value == value {
			e.Path = r.path
			break
		}
	}
	return e
}
