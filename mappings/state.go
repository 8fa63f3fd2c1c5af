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
	env   map[string]any // the VM's environment: ctx, this state (made when first needed)
	vm    vm.VM          // reused for every expression of one Apply: its stack outlives each run
	args  []any          // the arguments of the direct forms' calls in progress (direct.go)
	loc   *time.Location // for HL7 times without an offset
	table map[string]*Table
	ob    *Outbound // the outbound mapping rendering, when it is one (m and msg are nil then)

	last  readAt           // the field most recently read, where a failing function points
	read  bool             // last is set
	reads [maxReads]readAt // the latest reads of a value (a ring), to find where a bad value came from
	nread int              // reads so far; the latest is reads[(nread-1)%maxReads]

	occ     []binding  // segment occurrences bound by each:/group:
	reps    []binding  // field repetitions bound by each:
	rebinds uint32     // counts the changes to occ and reps: a read kept under another count is stale
	kept    []keptRead // the reads getField keeps, by Mapping.shared

	repAt    hl7.Path       // the repetition a datatype function reads (repetition),
	rep      hl7.Repetition // and what it holds
	repFound bool           // repAt and rep are set
}

// maxReads bounds the reads remembered for locating errors; an expression reads a few fields.
const maxReads = 32

// remember notes that p was read and gave v. Only where is kept: the message does not change
// while a mapping applies, so reading p again gives v again.
func (st *state) remember(p hl7.Path, v string) {
	st.last.set(p)
	st.noteLast(v != "")
}

// noteLast records st.last as read, and in the ring when the value read is not empty.
func (st *state) noteLast(valued bool) {
	st.read = true
	if valued {
		st.reads[st.nread%maxReads] = st.last
		st.nread++
	}
}

// readAt is a remembered read: an hl7.Path with its segment ID held in place, so that it holds
// no pointer. Reads are what a mapping does most; a record without a pointer is stored into the
// state (which lives on the heap) without a GC write barrier.
type readAt struct {
	segment [3]byte
	// int32 keeps the ring small: paths number at most 1,000,000 (hl7.ParsePath), and an
	// occurrence or repetition bound by each: at most what one message holds.
	segmentIndex, field, repetition, component, subcomponent int32
}

func readAtOf(p hl7.Path) readAt {
	var r readAt
	r.set(p)
	return r
}

// set makes r the read at p, writing r in place rather than building a readAt to copy into it:
// remember calls it for every read.
func (r *readAt) set(p hl7.Path) {
	r.segment = [3]byte{}
	if len(p.Segment) == 3 { // always (hl7.ParsePath)
		r.segment = [3]byte{p.Segment[0], p.Segment[1], p.Segment[2]}
	}
	r.segmentIndex, r.field, r.repetition = int32(p.SegmentIndex), int32(p.Field), int32(p.Repetition)
	r.component, r.subcomponent = int32(p.Component), int32(p.Subcomponent)
}

func (r readAt) path() hl7.Path {
	return hl7.Path{Segment: string(r.segment[:]), SegmentIndex: int(r.segmentIndex), Field: int(r.field),
		Repetition: int(r.repetition), Component: int(r.component), Subcomponent: int(r.subcomponent)}
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
		e.Path = st.last.path()
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
// occurrence; leave(p, mark) with the mark it returns undoes it.
func (st *state) enter(p hl7.Path, i int, group []string) (mark int) {
	st.rebinds++
	if p.Field > 0 {
		st.reps = append(st.reps, binding{seg: p.Segment, field: p.Field, n: i})
		return len(st.reps) - 1
	}
	mark = len(st.occ)
	st.occ = append(st.occ, binding{seg: p.Segment, n: i})
	for _, g := range group {
		st.occ = append(st.occ, binding{seg: g, n: i})
	}
	return mark
}

func (st *state) leave(p hl7.Path, mark int) {
	st.rebinds++
	if p.Field > 0 {
		st.reps = st.reps[:mark]
	} else {
		st.occ = st.occ[:mark]
	}
}

// getField is get for a fieldValue node. A path that several nodes read (orm_o01 reads OBR-4.1
// nineteen times: the procedure's every column is a lookup by it) is read once while the
// bindings of each: stay as they are: its value, boxed, and where it was read are kept, and each
// later read remembers that read again, as reading it again would.
func (st *state) getField(f fieldValue) any {
	slot := st.m.shared[f.index]
	if slot < 0 {
		return st.get(f.p)
	}
	if st.kept == nil {
		st.kept = make([]keptRead, st.m.nkept)
	}
	k := &st.kept[slot]
	if k.rebinds != st.rebinds {
		p := st.resolve(f.p)
		k.rebinds, k.at, k.value = st.rebinds, readAtOf(p), st.msg.GetPath(p)
	}
	st.last = k.at
	st.noteLast(k.value != "")
	return k.value
}

// keptRead is a read getField keeps: where, the value, and under which bindings (state.rebinds).
type keptRead struct {
	rebinds uint32
	at      readAt
	value   any
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
		e.Path = st.last.path()
	}
	for i := st.nread - 1; i >= 0 && i >= st.nread-maxReads; i-- {
		if p := st.reads[i%maxReads].path(); st.msg.GetPath(p) == value {
			e.Path = p
			break
		}
	}
	return e
}
