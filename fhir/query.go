package fhir

import (
	"fmt"
	"strings"
	"time"
)

// DateCondition is a date search value ("ge2026-11-27") turned into one comparison with indexed
// date values (see IndexEntry): Op is "prefix", "ge", "gt", "le" or "lt" (the names of
// engine.SearchOp), Value the text to compare with.
type DateCondition struct {
	Op    string
	Value string
}

// ParseDateQuery translates a FHIR date search value, with its optional prefix (eq, gt, ge, lt,
// le; ne, sa, eb and ap are not supported), into a DateCondition that lexical comparison answers
// right. The value is normalised as the index is (times to UTC, milliseconds) and kept at its
// own precision, which sets the period it stands for: "1980" is all of 1980, "2026-11-27T08:00Z"
// the whole minute. Then:
//
//	eq X  →  prefix X          (the stored value lies within X)
//	ge X  →  ge X              (at or after the start of X)
//	lt X  →  lt X              (before the start of X)
//	gt X  →  ge next(X)        (at or after the end of X: "gt1980" is ge "1981")
//	le X  →  lt next(X)        (before the end of X: "le2026-11-27" is lt "2026-11-28")
//
// A time without a zone is taken as UTC. Dates without a time are compared as written, not
// shifted to UTC, as the index keeps them.
func ParseDateQuery(v string) (DateCondition, error) {
	prefix := "eq"
	if len(v) >= 2 && v[0] >= 'a' && v[0] <= 'z' {
		prefix, v = v[:2], v[2:]
	}
	switch prefix {
	case "eq", "ge", "gt", "le", "lt":
	case "ne", "sa", "eb", "ap":
		return DateCondition{}, fmt.Errorf("date prefix %q is not supported (use eq, gt, ge, lt or le)", prefix)
	default:
		return DateCondition{}, fmt.Errorf("unknown date prefix %q (use eq, gt, ge, lt or le)", prefix)
	}
	lo, next, err := datePeriod(v)
	if err != nil {
		return DateCondition{}, err
	}
	switch prefix {
	case "ge":
		return DateCondition{Op: "ge", Value: lo}, nil
	case "lt":
		return DateCondition{Op: "lt", Value: lo}, nil
	case "gt":
		return DateCondition{Op: "ge", Value: next}, nil
	case "le":
		return DateCondition{Op: "lt", Value: next}, nil
	}
	return DateCondition{Op: "prefix", Value: lo}, nil
}

// datePeriod returns the start of the period v stands for, in the indexed form truncated to v's
// precision, and the start of the period after it at the same precision.
func datePeriod(v string) (start, next string, err error) {
	bad := fmt.Errorf("date %q: want YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.fff]][Z|±hh:mm]", v)
	if !strings.Contains(v, "T") {
		var layout string
		var step func(time.Time) time.Time
		switch len(v) {
		case 4:
			layout, step = "2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }
		case 7:
			layout, step = "2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }
		case 10:
			layout, step = "2006-01-02", func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }
		default:
			return "", "", bad
		}
		t, err := time.Parse(layout, v)
		if err != nil {
			return "", "", bad
		}
		return v, step(t).Format(layout), nil
	}
	// With a time: find the precision from the part before any zone designator.
	clock := v[strings.IndexByte(v, 'T')+1:]
	zoned := false
	if i := strings.IndexAny(clock, "Z+-"); i >= 0 {
		clock, zoned = clock[:i], true
	}
	layout := "2006-01-02T15:04"
	out, step := "2006-01-02T15:04", time.Minute
	switch {
	case len(clock) == 5:
	case len(clock) == 8:
		layout, out, step = "2006-01-02T15:04:05", "2006-01-02T15:04:05", time.Second
	case len(clock) > 9 && clock[8] == '.':
		layout, out, step = "2006-01-02T15:04:05.999999999", instantLayout, time.Millisecond
	default:
		return "", "", bad
	}
	if zoned {
		layout += "Z07:00"
	}
	t, err := time.Parse(layout, v)
	if err != nil {
		return "", "", bad
	}
	t = t.UTC().Truncate(step)
	return t.Format(out), t.Add(step).Format(out), nil
}
