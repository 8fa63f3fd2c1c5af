// Package textdiff finds what changed between two versions of a text — a preliminary and a final
// report, a report and its amendment — word by word, for a person to read: the physician's view
// shows it with deletions struck through and insertions marked.
//
// It is Myers' O(ND) difference algorithm over words and the spaces between them, after the
// common beginning and end are set aside. The texts come from outside, so the work is bounded:
// past MaxEdits differing words, or in a changed middle longer than MaxTokens, it is shown as one
// deletion and one insertion (still correct, only coarser).
package textdiff

import (
	"html/template"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxEdits bounds the edit distance Diff searches for (in words and spaces), and MaxTokens the
// length of the changed middle it searches in; beyond either the change is reported coarsely.
// Together they bound the work to MaxTokens·MaxEdits steps and the memory to MaxEdits² words.
const (
	MaxEdits  = 1000
	MaxTokens = 50_000
)

// Op says what a Span is.
type Op int8

const (
	Same   Op = iota // in both versions
	Delete           // only in the older
	Insert           // only in the newer
)

// Span is a run of text with one Op.
type Span struct {
	Op   Op
	Text string
}

// Diff returns the spans that turn old into new: their Same and Delete texts concatenated give
// old, their Same and Insert texts give new. Adjacent spans of one Op are merged.
func Diff(old, new string) []Span {
	a, b := tokens(old), tokens(new)
	// The common beginning and end cost nothing to find and shrink the search.
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	var out spans
	out.add(Same, a[:pre]...)
	middle(&out, a[pre:len(a)-suf], b[pre:len(b)-suf])
	out.add(Same, a[len(a)-suf:]...)
	out.flush()
	return out.done
}

// spans collects the result, merging runs of one Op (a run's tokens are joined once, when the
// next run starts or the result is read, so long runs cost linear time).
type spans struct {
	done []Span
	op   Op
	run  []string
}

func (s *spans) add(op Op, toks ...string) {
	if len(toks) == 0 {
		return
	}
	if op != s.op {
		s.flush()
		s.op = op
	}
	s.run = append(s.run, toks...)
}

func (s *spans) flush() {
	if len(s.run) > 0 {
		s.done = append(s.done, Span{s.op, strings.Join(s.run, "")})
		s.run = s.run[:0]
	}
}

// middle diffs a against b with Myers' greedy algorithm (forward, keeping each round's frontier
// so the path can be traced back), giving up on fine detail beyond MaxEdits.
func middle(out *spans, a, b []string) {
	n, m := len(a), len(b)
	if n == 0 || m == 0 || n+m > MaxTokens {
		out.add(Delete, a...)
		out.add(Insert, b...)
		return
	}
	maxD := min(n+m, MaxEdits)
	off := maxD + 1
	v := make([]int32, 2*maxD+3)
	// trace[d] is the frontier before round d, diagonals -d..d only (what backtracking reads).
	var trace [][]int32
	for d := 0; d <= maxD; d++ {
		trace = append(trace, append([]int32(nil), v[off-d:off+d+1]...))
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				x = int(v[off+k+1]) // down: an insertion
			} else {
				x = int(v[off+k-1]) + 1 // right: a deletion
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x, y = x+1, y+1
			}
			v[off+k] = int32(x)
			if x >= n && y >= m {
				backtrack(out, a, b, trace, d)
				return
			}
		}
	}
	out.add(Delete, a...) // more than MaxEdits apart: coarse, still correct
	out.add(Insert, b...)
}

// backtrack walks the recorded frontiers from (n, m) back to the start and emits the edit script
// in order.
func backtrack(out *spans, a, b []string, trace [][]int32, d int) {
	type step struct {
		op  Op
		tok string
	}
	var rev []step
	x, y := len(a), len(b)
	for ; d > 0; d-- {
		v := trace[d] // diagonals -d..d: diagonal k at v[k+d]
		k := x - y
		var prevK int
		if k == -d || (k != d && v[k-1+d] < v[k+1+d]) {
			prevK = k + 1
		} else {
			prevK = k - 1
		}
		prevX := int(v[prevK+d])
		prevY := prevX - prevK
		for x > prevX && y > prevY {
			x, y = x-1, y-1
			rev = append(rev, step{Same, a[x]})
		}
		if x == prevX {
			y--
			rev = append(rev, step{Insert, b[y]})
		} else {
			x--
			rev = append(rev, step{Delete, a[x]})
		}
	}
	for x > 0 && y > 0 {
		x, y = x-1, y-1
		rev = append(rev, step{Same, a[x]})
	}
	for i := len(rev) - 1; i >= 0; i-- {
		out.add(rev[i].op, rev[i].tok)
	}
}

// tokens splits s into words and the runs of space between them (both kept, so the spans
// rebuild the texts exactly). Punctuation is a word of its own, so "normal." and "normal" share
// "normal".
func tokens(s string) []string {
	var out []string
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		end := size
		switch {
		case unicode.IsSpace(r):
			for end < len(s) {
				r, sz := utf8.DecodeRuneInString(s[end:])
				if !unicode.IsSpace(r) {
					break
				}
				end += sz
			}
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			for end < len(s) {
				r, sz := utf8.DecodeRuneInString(s[end:])
				if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
					break
				}
				end += sz
			}
		}
		out = append(out, s[:end])
		s = s[end:]
	}
	return out
}

// HTML renders spans for a page: unchanged text escaped, deletions in <del>, insertions in <ins>
// (both announced to screen readers by their element), line breaks kept by the page's CSS
// (white-space: pre-wrap).
func HTML(ss []Span) template.HTML {
	var b strings.Builder
	for _, s := range ss {
		text := template.HTMLEscapeString(s.Text)
		switch s.Op {
		case Delete:
			b.WriteString("<del>" + text + "</del>")
		case Insert:
			b.WriteString("<ins>" + text + "</ins>")
		default:
			b.WriteString(text)
		}
	}
	return template.HTML(b.String()) //nolint:gosec // every piece of text is escaped above
}
