package hl7

import (
	"strconv"
	"strings"

	"github.com/ferryhealth/ferry/internal/workcount"
)

// Limits bounds the shape of a message a receiver accepts, so that no message can make the work
// done on it grow faster than its size allows (issue 17: a PID-3 of 200,000 repetitions). The
// standard sets no such bounds for repeating fields; these are the receiver's.
type Limits struct {
	// MaxSegments caps the segments of one message, MSH included; 0 means no limit.
	MaxSegments int
	// MaxRepetitions caps the repetitions of any one field; 0 means no limit.
	MaxRepetitions int
}

// CheckLimits reports the first place where m goes beyond l: the first segment past
// MaxSegments, else the first field with more than MaxRepetitions repetitions. The error is a
// *ParseError naming that segment and field, code 207 (application internal error: the message
// is refused for a limit of this receiver, not for breaking the standard — as a message over
// the size limit is), safe to log; nil when m is within l. It reads the message once: its cost
// is linear in the message's size, and when the whole message holds fewer repetition separators
// than MaxRepetitions it is one vectorised count.
func (m *Message) CheckLimits(l Limits) error {
	if l.MaxSegments > 0 && len(m.segs) > l.MaxSegments {
		return m.limitError(l.MaxSegments, 0,
			"the message has more than "+strconv.Itoa(l.MaxSegments)+" segments, the most this receiver accepts")
	}
	rep := m.delims.Repetition
	if l.MaxRepetitions <= 0 || rep == 0 {
		return nil
	}
	workcount.Add(len(m.text))
	if strings.Count(m.text, string(rep)) < l.MaxRepetitions {
		return nil // no field can have more than MaxRepetitions repetitions
	}
	for si := range m.segs {
		g := &m.segs[si]
		for f, n := 1, g.numFields(); f <= n; f++ {
			e := m.field(g, f)
			if e.literal || len(e.raw) < l.MaxRepetitions {
				continue // MSH-2 holds the separator itself; a shorter field cannot hold enough
			}
			workcount.Add(len(e.raw))
			if strings.Count(e.raw, string(rep)) >= l.MaxRepetitions {
				return m.limitError(si, f,
					"more than "+strconv.Itoa(l.MaxRepetitions)+" repetitions, the most this receiver accepts in one field")
			}
		}
	}
	return nil
}

// limitError is the ParseError for segment si (and field f, when not 0) beyond a limit.
func (m *Message) limitError(si, f int, reason string) *ParseError {
	g := &m.segs[si]
	seq := 0
	for i := 0; i <= si; i++ {
		if m.segs[i].key == g.key {
			seq++
		}
	}
	workcount.Add(si + 1)
	return &ParseError{Segment: m.text[g.start : g.start+3], Sequence: seq, Field: f, Position: si + 1,
		Code: CodeApplicationInternalError, Reason: reason}
}
