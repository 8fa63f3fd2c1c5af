package dicom

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Reading a stored instance for retrieval (WADO-RS): its data set decoded up to the pixel data,
// and where the pixel data's value — or each of its fragments — lies in the file, so that one
// frame is read without the others and a 2 GiB multi-frame instance never sits in memory. Only
// the data set before the pixel data is held (at most maxHeaderSize bytes of it); the pixel
// data's lengths are each checked against the bytes the file has.

// MaxFragments bounds the items of encapsulated pixel data ReadStored indexes (a frame or more
// each, 16 bytes of index apiece): beyond any real cine loop.
const MaxFragments = 1 << 18

// Tags of the Image Pixel module ReadStored and its users read (PS3.3 C.7.6.3).
const (
	TagSamplesPerPixel           Tag = 0x00280002
	TagPhotometricInterpretation Tag = 0x00280004
	TagPlanarConfiguration       Tag = 0x00280006
	TagNumberOfFrames            Tag = 0x00280008
	TagRows                      Tag = 0x00280010
	TagColumns                   Tag = 0x00280011
	TagBitsAllocated             Tag = 0x00280100
	TagBitsStored                Tag = 0x00280101
	TagHighBit                   Tag = 0x00280102
	TagPixelRepresentation       Tag = 0x00280103
)

// Span is a range of bytes of a stored file (or of its inflated data set).
type Span struct{ Offset, Length int64 }

// Stored is a stored instance read for retrieval.
type Stored struct {
	Meta              *DataSet // the file meta information (group 0002)
	TransferSyntaxUID string
	// DataSet holds every element before Pixel Data (7FE0,0010), decoded; Pixel Data itself is
	// not in it. Elements after Pixel Data (trailing padding, signatures) are not read.
	DataSet *DataSet
	// Pixels is where the pixel data is; nil when the instance has none.
	Pixels *PixelData
	// CharacterSet is the data set's Specific Character Set (0008,0005).
	CharacterSet *CharacterSet
	src          io.ReaderAt
}

// PixelData says where Pixel Data's value is.
type PixelData struct {
	VR VR // OB or OW
	// Value is a native (uncompressed) value's bytes; zero Length for encapsulated pixel data.
	Value Span
	// Fragments are the items of encapsulated pixel data (PS3.5 A.4), the Basic Offset Table
	// first; nil for native pixel data.
	Fragments []Span
}

// Encapsulated reports whether the pixel data is compressed in fragments.
func (p *PixelData) Encapsulated() bool { return p.Fragments != nil }

// ReadStored reads the stored Part 10 file r (size bytes). It reads the uncompressed transfer
// syntaxes in little endian, deflated explicit VR little endian (inflating at most
// 4×maxHeaderSize bytes, pixel data included) and every encapsulated one; a big endian
// instance is refused with ErrUnsupportedTransferSyntax. maxHeaderSize (0:
// DefaultMaxHeaderSize) caps the bytes of the data set before the pixel data.
func ReadStored(r io.ReaderAt, size, maxHeaderSize int64) (*Stored, error) {
	if maxHeaderSize <= 0 {
		maxHeaderSize = DefaultMaxHeaderSize
	}
	// Read a prefix, doubling it until the data set before Pixel Data fits.
	for n := min(size, 64<<10); ; n = min(size, 2*n) {
		prefix := make([]byte, n)
		if _, err := r.ReadAt(prefix, 0); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("reading the instance file: %w", err)
		}
		st, err := readStored(r, prefix, size, maxHeaderSize)
		if err == nil || !errors.Is(err, errShortPrefix) {
			return st, err
		}
		if n >= size || n > maxHeaderSize {
			if n >= size {
				return nil, &DataSetError{Offset: int(n), Msg: "the data set runs past the end of the file"}
			}
			return nil, &DataSetError{Offset: int(n), Msg: fmt.Sprintf("data set before the pixel data larger than %d bytes", maxHeaderSize)}
		}
	}
}

var errShortPrefix = errors.New("prefix too short")

func readStored(r io.ReaderAt, prefix []byte, size, maxHeaderSize int64) (*Stored, error) {
	meta, body, ts, err := SplitFile(prefix)
	if err != nil {
		if len(prefix) < int(size) {
			return nil, errShortPrefix
		}
		return nil, err
	}
	enc, err := encodingOf(ts)
	if err != nil || enc.byteOrder != binary.LittleEndian {
		return nil, fmt.Errorf("%w: %s", ErrUnsupportedTransferSyntax, ts)
	}
	bodyStart := int64(len(prefix) - len(body))
	st := &Stored{Meta: meta, TransferSyntaxUID: ts, src: r}
	end := size
	if enc.deflated {
		// The whole inflated data set is held, bounded: a deflate bomb costs the bound.
		limit := 4 * maxHeaderSize
		zr := flate.NewReader(io.NewSectionReader(r, bodyStart, size-bodyStart))
		inflated, err := io.ReadAll(io.LimitReader(zr, limit+1))
		if err != nil {
			return nil, &DataSetError{Offset: int(bodyStart), Msg: "deflated data set does not inflate"}
		}
		if int64(len(inflated)) > limit {
			return nil, &DataSetError{Offset: int(bodyStart), Msg: fmt.Sprintf("deflated data set inflates past %d bytes", limit)}
		}
		body, bodyStart, end, st.src = inflated, 0, int64(len(inflated)), bytes.NewReader(inflated)
	}
	complete := bodyStart+int64(len(body)) >= end
	d := &dataSetDecoder{b: body, stopAt: TagPixelData}
	ds, off, err := d.dataSet(0, len(body), false, enc.explicit, 0)
	if err != nil {
		if !complete {
			return nil, errShortPrefix
		}
		return nil, err
	}
	st.DataSet = ds
	st.CharacterSet = ParseCharacterSetOf(ds)
	if off == len(body) && !complete {
		return nil, errShortPrefix // stopped at the prefix's end, not the data set's
	}
	if off == len(body) {
		return st, nil
	}
	// The element at off is the first at or after Pixel Data.
	hdr := 8
	if enc.explicit {
		hdr = 12
	}
	if len(body)-off < hdr {
		if !complete {
			return nil, errShortPrefix
		}
		return nil, &DataSetError{Offset: off, Tag: TagPixelData, Msg: "truncated element header"}
	}
	if tag := NewTag(binary.LittleEndian.Uint16(body[off:]), binary.LittleEndian.Uint16(body[off+2:])); tag != TagPixelData {
		return st, nil
	}
	p := &PixelData{VR: VROW}
	var length uint32
	if enc.explicit {
		p.VR = VR(body[off+4 : off+6])
		if p.VR != VROB && p.VR != VROW && p.VR != VRUN {
			return nil, &DataSetError{Offset: off, Tag: TagPixelData, Msg: fmt.Sprintf("VR %s (OB or OW expected)", p.VR)}
		}
		length = binary.LittleEndian.Uint32(body[off+8:])
	} else {
		length = binary.LittleEndian.Uint32(body[off+4:])
	}
	valueAt := bodyStart + int64(off+hdr)
	if length != UndefinedLength {
		if valueAt+int64(length) > end {
			return nil, &DataSetError{Offset: off, Tag: TagPixelData, Msg: fmt.Sprintf("value length %d runs past the end of the file", length)}
		}
		p.Value = Span{valueAt, int64(length)}
		st.Pixels = p
		return st, nil
	}
	if p.VR == VROW && enc.explicit {
		p.VR = VROB
	}
	if p.Fragments, err = fragmentSpans(st.src, valueAt, end); err != nil {
		return nil, err
	}
	st.Pixels = p
	return st, nil
}

// fragmentSpans indexes the items of encapsulated pixel data from off to the sequence
// delimitation item, reading their headers only.
func fragmentSpans(r io.ReaderAt, off, end int64) ([]Span, error) {
	br := bufio.NewReaderSize(io.NewSectionReader(r, off, end-off), 8<<10)
	frags := []Span{}
	var h [8]byte
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return nil, &DataSetError{Offset: int(off), Tag: TagPixelData, Msg: "truncated encapsulated pixel data"}
		}
		t := NewTag(binary.LittleEndian.Uint16(h[:]), binary.LittleEndian.Uint16(h[2:]))
		length := int64(binary.LittleEndian.Uint32(h[4:]))
		switch {
		case t == TagSequenceDelimitation:
			if len(frags) == 0 {
				return nil, &DataSetError{Offset: int(off), Tag: TagPixelData, Msg: "encapsulated pixel data without a basic offset table item"}
			}
			return frags, nil
		case t != TagItem:
			return nil, &DataSetError{Offset: int(off), Tag: TagPixelData, Msg: fmt.Sprintf("%s where a fragment item was expected", t)}
		case off+8+length > end:
			return nil, &DataSetError{Offset: int(off), Tag: TagPixelData, Msg: fmt.Sprintf("fragment length %d runs past the end", length)}
		case len(frags) >= MaxFragments:
			return nil, &DataSetError{Offset: int(off), Tag: TagPixelData, Msg: fmt.Sprintf("more than %d fragments", MaxFragments)}
		}
		frags = append(frags, Span{off + 8, length})
		if _, err := br.Discard(int(length)); err != nil {
			return nil, &DataSetError{Offset: int(off), Tag: TagPixelData, Msg: "truncated fragment"}
		}
		off += 8 + length
	}
}

// ParseCharacterSetOf returns the Specific Character Set a data set names.
func ParseCharacterSetOf(ds *DataSet) *CharacterSet {
	if e := ds.Get(TagSpecificCharacterSet); e != nil {
		return ParseCharacterSet(e.Strings())
	}
	return DefaultCharacterSet
}

// Source returns what the spans of s index: the file, or the inflated data set.
func (s *Stored) Source() io.ReaderAt { return s.src }

// NumberOfFrames is Number of Frames (0028,0008), 1 when absent or not a positive number.
func (s *Stored) NumberOfFrames() int {
	n, err := strconv.Atoi(strings.TrimSpace(s.DataSet.String(TagNumberOfFrames)))
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// ErrNoFrame is wrapped by Frame's errors about a frame the instance does not have.
var ErrNoFrame = errors.New("no such frame")

// Frame returns the spans holding frame n (1-based) of the pixel data: one span of native
// pixel data (Rows × Columns × Samples × Bits Allocated / 8 bytes, the whole frame within the
// value), or the fragments of an encapsulated frame (PS3.5 A.4: found by the Basic Offset
// Table, else one fragment per frame, else every fragment for a single frame).
func (s *Stored) Frame(n int) ([]Span, error) {
	p := s.Pixels
	if p == nil {
		return nil, fmt.Errorf("%w: the instance has no pixel data", ErrNoFrame)
	}
	frames := s.NumberOfFrames()
	if n < 1 || n > frames {
		return nil, fmt.Errorf("%w: frame %d of %d", ErrNoFrame, n, frames)
	}
	if !p.Encapsulated() {
		size, err := s.FrameSize()
		if err != nil {
			return nil, err
		}
		at := int64(n-1) * size
		if at+size > p.Value.Length {
			return nil, fmt.Errorf("%w: frame %d of %d bytes lies past the %d bytes of pixel data", ErrNoFrame, n, size, p.Value.Length)
		}
		return []Span{{p.Value.Offset + at, size}}, nil
	}
	items := p.Fragments[1:]
	bot := p.Fragments[0]
	switch {
	case frames == 1:
		return items, nil
	case bot.Length >= 4*int64(frames) && bot.Length <= 4*MaxFragments:
		table := make([]byte, bot.Length)
		if _, err := s.src.ReadAt(table, bot.Offset); err != nil {
			return nil, fmt.Errorf("reading the basic offset table: %w", err)
		}
		// Offsets count from the first fragment item's tag; each item is 8 bytes of header
		// and its value.
		start := int64(binary.LittleEndian.Uint32(table[4*(n-1):]))
		stop := int64(-1)
		if n < frames {
			stop = int64(binary.LittleEndian.Uint32(table[4*n:]))
		}
		var out []Span
		pos := int64(0)
		for _, it := range items {
			if pos >= start && (stop < 0 || pos < stop) {
				out = append(out, it)
			}
			pos += 8 + it.Length
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("%w: the basic offset table points frame %d at no fragment", ErrNoFrame, n)
		}
		return out, nil
	case len(items) == frames:
		return items[n-1 : n], nil
	}
	return nil, fmt.Errorf("%w: %d fragments for %d frames and no basic offset table", ErrNoFrame, len(items), frames)
}

// FrameSize is the bytes of one native frame, checked: every factor positive and the product
// within MaxFrameBytes.
func (s *Stored) FrameSize() (int64, error) {
	get := func(t Tag) int64 {
		v, _ := s.DataSet.Uint16(t)
		return int64(v)
	}
	rows, cols, spp, bits := get(TagRows), get(TagColumns), get(TagSamplesPerPixel), get(TagBitsAllocated)
	if spp == 0 {
		spp = 1
	}
	if rows == 0 || cols == 0 || bits == 0 || bits%8 != 0 {
		return 0, fmt.Errorf("%w: %d×%d pixels of %d bits allocated", ErrNoFrame, rows, cols, bits)
	}
	return rows * cols * spp * bits / 8, nil // each factor below 2^16: no overflow
}

// FrameReader returns a reader of the bytes of spans, in order, and their total length.
func (s *Stored) FrameReader(spans []Span) (io.Reader, int64) {
	readers := make([]io.Reader, len(spans))
	var total int64
	for i, sp := range spans {
		readers[i] = io.NewSectionReader(s.src, sp.Offset, sp.Length)
		total += sp.Length
	}
	return io.MultiReader(readers...), total
}
