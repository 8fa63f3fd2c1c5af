package hl7

import (
	"strings"
	"sync"
	"unsafe"

	"github.com/ferryhealth/ferry/internal/workcount"
)

// Reading by number — OBX[n], PID-3[n], a component c — must not scan from the start each time,
// or reading every repetition of a field in turn is quadratic in its length (a PID-3 of 40,000
// repetitions took 19 s, issue 17). Short things are scanned, which is fastest; long ones are
// indexed once, on first need, and the index is kept with the message.
const (
	// segmentScanMax: a message with at most this many segments is searched segment by segment.
	segmentScanMax = 64
	// pieceIndexMinLen: an element shorter than this is scanned for its n-th piece; scanning it
	// costs at most this many bytes.
	pieceIndexMinLen = 128
	// pieceScanMax: the first pieces of a long element are found by scanning; beyond, the index.
	pieceScanMax = 4
	// pieceStride: the piece index keeps the start of every pieceStride-th piece, so that it
	// costs at most 4 bytes per pieceStride separators, and finding a piece scans at most
	// pieceStride of them.
	pieceStride = 16
)

// lazyIndex is what a Message indexes on first need. Safe for concurrent use (a Message is safe
// for concurrent reads).
type lazyIndex struct {
	mu    sync.Mutex
	occ   map[uint32][]int32       // segment indexes by segment key, in message order
	split map[pieceKey]*pieceIndex // long elements by place and separator
}

// pieceKey names an element split at a separator: where it starts in the message text and its
// length tell a field from its first repetition (they start at the same offset but split at
// different separators) and from anything else.
type pieceKey struct {
	off, len int32
	sep      byte
}

// pieceIndex locates the pieces of one element split at one separator.
type pieceIndex struct {
	count int32   // number of pieces
	start []int32 // start[j] is where piece j*pieceStride+1 starts, relative to the element
}

// lazyIndex returns m's lazy index, creating it empty when m has none.
func (m *Message) lazyIndex() *lazyIndex {
	if x := m.lazy.Load(); x != nil {
		return x
	}
	m.lazy.CompareAndSwap(nil, new(lazyIndex))
	return m.lazy.Load()
}

// occurrences returns the indexes of m's segments with this key, in order.
func (x *lazyIndex) occurrences(m *Message, key uint32) []int32 {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.occ == nil {
		x.occ = make(map[uint32][]int32)
		for i := range m.segs {
			k := m.segs[i].key
			x.occ[k] = append(x.occ[k], int32(i))
		}
		workcount.Add(len(m.segs))
	}
	return x.occ[key]
}

// pieces returns the piece index of e split at sep, building it on first need: one pass over e.
func (x *lazyIndex) pieces(e element, sep byte) *pieceIndex {
	k := pieceKey{off: offsetIn(e.m.text, e.raw), len: int32(len(e.raw)), sep: sep}
	x.mu.Lock()
	defer x.mu.Unlock()
	if p := x.split[k]; p != nil {
		return p
	}
	p := &pieceIndex{count: 1, start: []int32{0}}
	for i := 0; ; {
		j := strings.IndexByte(e.raw[i:], sep)
		if j < 0 {
			break
		}
		i += j + 1
		if p.count%pieceStride == 0 {
			p.start = append(p.start, int32(i))
		}
		p.count++
	}
	workcount.Add(len(e.raw))
	if x.split == nil {
		x.split = make(map[pieceKey]*pieceIndex)
	}
	x.split[k] = p
	return p
}

// child returns the n-th piece of e, which p indexes, scanning from the nearest indexed piece.
func (p *pieceIndex) child(e element, sep byte, n int) element {
	if n < 1 || n > int(p.count) {
		return element{m: e.m}
	}
	j := (n - 1) / pieceStride
	from := int(p.start[j])
	a, b, _ := piece(e.raw[from:], sep, n-j*pieceStride)
	return element{m: e.m, raw: e.raw[from+a : from+b], esc: e.esc}
}

// offsetIn returns where sub, a non-empty substring of text, starts in it. Every element's raw
// text is a substring of its message's text, which does not change while the index lives.
func offsetIn(text, sub string) int32 {
	return int32(uintptr(unsafe.Pointer(unsafe.StringData(sub))) - uintptr(unsafe.Pointer(unsafe.StringData(text))))
}
