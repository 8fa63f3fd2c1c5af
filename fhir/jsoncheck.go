package fhir

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// checkJSON finds what FHIR JSON forbids and google/fhir accepts: empty strings, empty arrays,
// empty objects and duplicate property names. It makes one pass over the bytes without
// decoding values, and returns the top-level resourceType too. It reports nothing when data is
// not a well-formed JSON object (google/fhir reports that) or nests deeper than maxJSONDepth.
func checkJSON(data []byte) (issues []Issue, resourceType string) {
	c := jsonChecker{data: data}
	c.skipSpace()
	if c.pos >= len(c.data) || c.data[c.pos] != '{' {
		return nil, ""
	}
	if !c.value(0) {
		return nil, ""
	}
	if c.skipSpace(); c.pos != len(c.data) {
		return nil, ""
	}
	return c.finish(), c.text(c.root)
}

// maxJSONDepth bounds the nesting Validate follows (google/fhir counts elements, checkJSON
// objects and arrays); real resources stay far below it.
const maxJSONDepth = 100

type span struct{ start, end int } // a JSON string's contents, between its quotes

// pathSeg is one step of the path to the value being read: a property name or an array index.
type pathSeg struct {
	key   span
	index int // -1 for a property
}

type pendingIssue struct {
	path  []pathSeg
	code  IssueType
	msg   string
	extra span // a property name for the detail, when end > 0
}

type jsonChecker struct {
	data    []byte
	pos     int
	path    []pathSeg
	keys    []span // property names of the objects being read, innermost last
	root    span   // the top-level resourceType
	pending []pendingIssue
}

func (c *jsonChecker) report(code IssueType, msg string, extra span) {
	c.pending = append(c.pending, pendingIssue{path: append([]pathSeg(nil), c.path...), code: code, msg: msg, extra: extra})
}

func (c *jsonChecker) skipSpace() {
	for c.pos < len(c.data) {
		switch c.data[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

// value reads one JSON value at c.pos; false means the input is not well-formed.
func (c *jsonChecker) value(depth int) bool {
	if depth > maxJSONDepth || c.pos >= len(c.data) {
		return false
	}
	switch c.data[c.pos] {
	case '{':
		return c.object(depth)
	case '[':
		return c.array(depth)
	case '"':
		s, ok := c.str()
		if ok && s.start == s.end {
			c.report(IssueValue, "empty string: omit the element instead (FHIR JSON has no empty values)", span{})
		}
		return ok
	default:
		// A number or a literal: google/fhir checks it; only find where it ends.
		start := c.pos
		for c.pos < len(c.data) {
			switch c.data[c.pos] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return c.pos > start
			}
			c.pos++
		}
		return c.pos > start
	}
}

func (c *jsonChecker) object(depth int) bool {
	c.pos++ // {
	c.skipSpace()
	if c.pos < len(c.data) && c.data[c.pos] == '}' {
		c.pos++
		c.report(IssueInvariant, "ele-1: empty object: an element needs a value or children", span{})
		return true
	}
	mark := len(c.keys)
	defer func() { c.keys = c.keys[:mark] }()
	var seen map[string]struct{} // for objects too big to search linearly
	for {
		c.skipSpace()
		if c.pos >= len(c.data) || c.data[c.pos] != '"' {
			return false
		}
		key, ok := c.str()
		if !ok {
			return false
		}
		name := c.data[key.start:key.end]
		dup := false
		if seen == nil && len(c.keys)-mark < 32 {
			for _, k := range c.keys[mark:] {
				if bytes.Equal(c.data[k.start:k.end], name) {
					dup = true
					break
				}
			}
		} else {
			if seen == nil {
				seen = make(map[string]struct{}, 64)
				for _, k := range c.keys[mark:] {
					seen[string(c.data[k.start:k.end])] = struct{}{}
				}
			}
			_, dup = seen[string(name)]
			seen[string(name)] = struct{}{}
		}
		if dup {
			c.report(IssueStructure, "duplicate property in one object", key)
		}
		c.keys = append(c.keys, key)
		c.skipSpace()
		if c.pos >= len(c.data) || c.data[c.pos] != ':' {
			return false
		}
		c.pos++
		c.skipSpace()
		c.path = append(c.path, pathSeg{key: key, index: -1})
		valueStart := c.pos
		if !c.value(depth + 1) {
			return false
		}
		c.path = c.path[:len(c.path)-1]
		if depth == 0 && string(name) == "resourceType" && c.data[valueStart] == '"' {
			c.root = span{valueStart + 1, c.pos - 1}
		}
		c.skipSpace()
		if c.pos >= len(c.data) {
			return false
		}
		switch c.data[c.pos] {
		case ',':
			c.pos++
		case '}':
			c.pos++
			return true
		default:
			return false
		}
	}
}

func (c *jsonChecker) array(depth int) bool {
	c.pos++ // [
	c.skipSpace()
	if c.pos < len(c.data) && c.data[c.pos] == ']' {
		c.pos++
		c.report(IssueStructure, "empty array: omit the element instead (FHIR JSON has no empty arrays)", span{})
		return true
	}
	for i := 0; ; i++ {
		c.skipSpace()
		c.path = append(c.path, pathSeg{index: i})
		if !c.value(depth + 1) {
			return false
		}
		c.path = c.path[:len(c.path)-1]
		c.skipSpace()
		if c.pos >= len(c.data) {
			return false
		}
		switch c.data[c.pos] {
		case ',':
			c.pos++
		case ']':
			c.pos++
			return true
		default:
			return false
		}
	}
}

// str reads a JSON string at c.pos and returns the span of its contents (still escaped).
func (c *jsonChecker) str() (span, bool) {
	c.pos++ // opening quote
	start := c.pos
	for c.pos < len(c.data) {
		switch c.data[c.pos] {
		case '\\':
			c.pos += 2
		case '"':
			c.pos++
			return span{start, c.pos - 1}, true
		default:
			if c.data[c.pos] < 0x20 {
				// RFC 8259 §7: control characters must be escaped in a string. google/fhir's
				// JSON reader lets them through; encoding/json (and every peer) does not.
				c.report(IssueStructure, "a control character is not escaped in a JSON string", span{})
			}
			c.pos++
		}
	}
	return span{}, false
}

// text is the decoded contents of s.
func (c *jsonChecker) text(s span) string {
	raw := c.data[s.start:s.end]
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw)
	}
	var out string
	if json.Unmarshal(c.data[s.start-1:s.end+1], &out) != nil {
		return string(raw)
	}
	return out
}

// finish turns the pending issues into Issues with their expressions, now that the root
// resourceType is known.
func (c *jsonChecker) finish() []Issue {
	if len(c.pending) == 0 {
		return nil
	}
	root := c.text(c.root)
	out := make([]Issue, 0, len(c.pending))
	for _, p := range c.pending {
		var b strings.Builder
		b.WriteString(root)
		for _, seg := range p.path {
			if seg.index >= 0 {
				b.WriteByte('[')
				b.WriteString(strconv.Itoa(seg.index))
				b.WriteByte(']')
				continue
			}
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(c.text(seg.key))
		}
		is := Issue{Expression: b.String(), Code: p.code, Message: p.msg}
		if p.extra.end > 0 {
			is.Detail = c.text(p.extra)
		}
		out = append(out, is)
	}
	return out
}
