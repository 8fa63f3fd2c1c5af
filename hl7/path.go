package hl7

import (
	"errors"
	"fmt"
	"strconv"
)

// Path addresses a value in a message: a segment occurrence, a field, and optionally a
// repetition, a component and a subcomponent. Its text form (see docs/hl7-paths.md) is
//
//	SEG[n]-f[r].c.s     e.g. PID-5.1, PID-3[2].4.1, OBX[3]-5, MSH-9.2
//
// Numbers are 1-based. A zero Field means the path names only a segment (useful to Count);
// a zero SegmentIndex or Repetition means the first; a zero Component means the whole
// repetition and a zero Subcomponent the whole component.
type Path struct {
	Segment      string // three-character segment ID, e.g. "PID"
	SegmentIndex int    // occurrence of the segment, 1 for the first (0 also means the first)
	Field        int    // field position; for MSH, MSH-1 is the field separator, MSH-2 the encoding characters
	Repetition   int    // repetition of the field, 1 for the first (0 also means the first)
	Component    int    // component; 0 means the whole repetition
	Subcomponent int    // subcomponent; 0 means the whole component
}

// maxPathIndex bounds every number in a path, so that Set cannot be asked to grow a message by
// gigabytes.
const maxPathIndex = 1_000_000

// ErrBadPath is wrapped by the errors ParsePath returns.
var ErrBadPath = errors.New("bad path")

// ParsePath parses the text form of a path. Parse paths once and use GetPath in hot code.
func ParsePath(s string) (Path, error) {
	var p Path
	if len(s) < 3 || !validSegmentID(s[:3]) {
		return p, fmt.Errorf("parsing path %q: want a segment ID of three capital letters or digits first: %w", s, ErrBadPath)
	}
	p.Segment = s[:3]
	rest := s[3:]
	var ok bool
	if len(rest) > 0 && rest[0] == '[' {
		if p.SegmentIndex, rest, ok = bracketed(rest); !ok {
			return Path{}, fmt.Errorf("parsing path %q: want a segment occurrence like [2]: %w", s, ErrBadPath)
		}
	}
	if rest == "" {
		return p, nil
	}
	if rest[0] != '-' {
		return Path{}, fmt.Errorf("parsing path %q: want '-' and a field number after the segment: %w", s, ErrBadPath)
	}
	if p.Field, rest, ok = number(rest[1:]); !ok {
		return Path{}, fmt.Errorf("parsing path %q: want a field number after '-': %w", s, ErrBadPath)
	}
	if len(rest) > 0 && rest[0] == '[' {
		if p.Repetition, rest, ok = bracketed(rest); !ok {
			return Path{}, fmt.Errorf("parsing path %q: want a repetition like [2]: %w", s, ErrBadPath)
		}
	}
	if len(rest) > 0 && rest[0] == '.' {
		if p.Component, rest, ok = number(rest[1:]); !ok {
			return Path{}, fmt.Errorf("parsing path %q: want a component number after '.': %w", s, ErrBadPath)
		}
		if len(rest) > 0 && rest[0] == '.' {
			if p.Subcomponent, rest, ok = number(rest[1:]); !ok {
				return Path{}, fmt.Errorf("parsing path %q: want a subcomponent number after '.': %w", s, ErrBadPath)
			}
		}
	}
	if rest != "" {
		return Path{}, fmt.Errorf("parsing path %q: unexpected %q at the end: %w", s, rest, ErrBadPath)
	}
	return p, nil
}

// MustParsePath is ParsePath for paths written in the code; it panics on a bad path.
func MustParsePath(s string) Path {
	p, err := ParsePath(s)
	if err != nil {
		panic(err)
	}
	return p
}

func validSegmentID(s string) bool {
	return len(s) == 3 && s[0] >= 'A' && s[0] <= 'Z' && segIDChar(s[1]) && segIDChar(s[2])
}

// number parses a decimal 1..maxPathIndex at the start of s.
func number(s string) (n int, rest string, ok bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		n = n*10 + int(s[i]-'0')
		i++
		if n > maxPathIndex {
			return 0, s, false
		}
	}
	if i == 0 || n == 0 {
		return 0, s, false
	}
	return n, s[i:], true
}

// bracketed parses "[n]" at the start of s.
func bracketed(s string) (n int, rest string, ok bool) {
	n, rest, ok = number(s[1:])
	if !ok || rest == "" || rest[0] != ']' {
		return 0, s, false
	}
	return n, rest[1:], true
}

// String returns the path's text form, leaving out defaults: PID-3[2].4.1, OBX[2]-5, MSH-9.1.
func (p Path) String() string {
	b := make([]byte, 0, 16)
	b = append(b, p.Segment...)
	if p.SegmentIndex > 1 {
		b = append(b, '[')
		b = strconv.AppendInt(b, int64(p.SegmentIndex), 10)
		b = append(b, ']')
	}
	if p.Field == 0 {
		return string(b)
	}
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(p.Field), 10)
	if p.Repetition > 1 {
		b = append(b, '[')
		b = strconv.AppendInt(b, int64(p.Repetition), 10)
		b = append(b, ']')
	}
	if p.Component > 0 {
		b = append(b, '.')
		b = strconv.AppendInt(b, int64(p.Component), 10)
		if p.Subcomponent > 0 {
			b = append(b, '.')
			b = strconv.AppendInt(b, int64(p.Subcomponent), 10)
		}
	}
	return string(b)
}
