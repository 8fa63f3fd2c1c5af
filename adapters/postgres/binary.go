package postgres

import (
	"encoding/binary"
	"sync"
	"time"
)

// binaryParams encodes a batch's columns as one-dimensional arrays in PostgreSQL's binary format
// (array_recv), for the ingest pool, where lib/pq sends a []byte parameter as binary
// (binary_parameters). Compared with pq's text arrays this copies bytes instead of hex-encoding
// and quoting them, and the server copies them back instead of parsing array text.
//
// The element types must be the ones the statement declares ($n::text[], …): array_recv rejects
// another. Text must be valid UTF-8 without NULs (storableText), as for a text parameter.
type binaryParams struct {
	buf []byte // all the arrays of a batch, one after another
}

// paramBuffers keeps the buffers of earlier batches: a batch's arrays are about as big as its raw
// messages, and lib/pq copies them into its own buffer, so reusing them halves what a commit
// allocates.
var paramBuffers = sync.Pool{New: func() any { return new(binaryParams) }}

// newBinaryParams returns a binaryParams from paramBuffers with room for arrays arrays of n
// elements holding data bytes in all. Call release once the statement has been sent.
func newBinaryParams(arrays, n, data int) *binaryParams {
	p := paramBuffers.Get().(*binaryParams)
	if size := arrays*20 + arrays*n*4 + data; cap(p.buf) < size {
		p.buf = make([]byte, 0, size)
	}
	return p
}

// maxPooledParams bounds the buffers kept for reuse: a batch of big messages should not pin
// megabytes.
const maxPooledParams = 1 << 20

// release returns p to paramBuffers; the arrays it returned must no longer be used.
func (p *binaryParams) release() {
	if cap(p.buf) > maxPooledParams {
		return
	}
	p.buf = p.buf[:0]
	paramBuffers.Put(p)
}

// PostgreSQL type OIDs (pg_type.dat) of the array elements.
const (
	oidBool        = 16
	oidBytea       = 17
	oidInt8        = 20
	oidText        = 25
	oidTimestamptz = 1184
)

// pgEpochUnix is 2000-01-01 00:00:00 UTC, the zero of PostgreSQL's binary timestamps, as Unix
// seconds.
const pgEpochUnix = 946684800

// array starts an array of n elements of type oid in p.buf and returns where it begins.
func (p *binaryParams) array(oid uint32, n, dataSize int) int {
	size := 20 + 4*n + dataSize
	if cap(p.buf)-len(p.buf) < size {
		// Not in the hint: a new buffer. The arrays already returned keep the old one.
		p.buf = make([]byte, 0, max(2*size, 2*cap(p.buf)))
	}
	start := len(p.buf)
	p.buf = binary.BigEndian.AppendUint32(p.buf, 1)   // dimensions
	p.buf = binary.BigEndian.AppendUint32(p.buf, 0)   // flags: no NULLs
	p.buf = binary.BigEndian.AppendUint32(p.buf, oid) // element type
	p.buf = binary.BigEndian.AppendUint32(p.buf, uint32(n))
	p.buf = binary.BigEndian.AppendUint32(p.buf, 1) // lower bound
	return start
}

// done returns the array begun at start. Its bytes stay valid: later arrays only append, and a
// buffer that has to grow is a new one.
func (p *binaryParams) done(start int) []byte { return p.buf[start:len(p.buf):len(p.buf)] }

func (p *binaryParams) texts(vs []string) []byte {
	size := 0
	for _, v := range vs {
		size += len(v)
	}
	start := p.array(oidText, len(vs), size)
	for _, v := range vs {
		p.buf = binary.BigEndian.AppendUint32(p.buf, uint32(len(v)))
		p.buf = append(p.buf, v...)
	}
	return p.done(start)
}

func (p *binaryParams) byteas(vs [][]byte) []byte {
	size := 0
	for _, v := range vs {
		size += len(v)
	}
	start := p.array(oidBytea, len(vs), size)
	for _, v := range vs {
		p.buf = binary.BigEndian.AppendUint32(p.buf, uint32(len(v)))
		p.buf = append(p.buf, v...)
	}
	return p.done(start)
}

func (p *binaryParams) int64s(vs []int64) []byte {
	start := p.array(oidInt8, len(vs), 8*len(vs))
	for _, v := range vs {
		p.buf = binary.BigEndian.AppendUint32(p.buf, 8)
		p.buf = binary.BigEndian.AppendUint64(p.buf, uint64(v))
	}
	return p.done(start)
}

func (p *binaryParams) bools(vs []bool) []byte {
	start := p.array(oidBool, len(vs), len(vs))
	for _, v := range vs {
		p.buf = binary.BigEndian.AppendUint32(p.buf, 1)
		if v {
			p.buf = append(p.buf, 1)
		} else {
			p.buf = append(p.buf, 0)
		}
	}
	return p.done(start)
}

// timestamps encodes times as timestamptz: microseconds since 2000-01-01 UTC, truncated as the
// text form (timestampLayout) truncates them.
func (p *binaryParams) timestamps(vs []time.Time) []byte {
	start := p.array(oidTimestamptz, len(vs), 8*len(vs))
	for _, t := range vs {
		us := (t.Unix()-pgEpochUnix)*1_000_000 + int64(t.Nanosecond()/1000)
		p.buf = binary.BigEndian.AppendUint32(p.buf, 8)
		p.buf = binary.BigEndian.AppendUint64(p.buf, uint64(us))
	}
	return p.done(start)
}
