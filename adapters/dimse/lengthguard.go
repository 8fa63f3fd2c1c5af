package dimse

// The declared-length guard in front of github.com/suyashkumar/dicom. That library allocates an
// element's declared length before it reads the value (make([]byte, vl); upstream issue #349),
// so a 300-byte file declaring a 2 GiB element makes it allocate 2 GiB. Ferry keeps the
// library for what it does well (every transfer syntax, character sets) and never hands it a
// file it has not walked first: scanInstanceHeader reads every element header the library
// would read, in the same order and by the same rules (the library's own dictionary and
// GetVRKind), and refuses the file when a declared length reaches past the bytes that are
// there, when a structure is irregular, or when what the library would hold in memory exceeds
// a budget. A file that passes is parsed by the library exactly as it was walked, so what it
// allocates is bounded by the budget.

import (
	"bufio"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	dicomtag "github.com/suyashkumar/dicom/pkg/tag"
	dicomuid "github.com/suyashkumar/dicom/pkg/uid"
)

// File meta information tags the guard reads (PS3.10 7.1).
const (
	tagFileMetaInformationGroupLength Tag = 0x00020000
	tagTransferSyntaxUID              Tag = 0x00020010
)

// DefaultMaxHeaderSize caps what reading an instance's header may hold in memory: the elements
// up to the end of group 0020 (the attributes Ferry reads), at four bytes of memory per byte
// of numeric values and two per byte of text. Headers are kilobytes; 16 MiB leaves room for
// long sequences.
const DefaultMaxHeaderSize = 16 << 20

// lastHeaderGroup is the last group whose attributes Ferry reads from an instance (engine.
// Instance: groups 0008, 0010, 0020); reading stops at the first element after it.
const lastHeaderGroup = 0x0020

// headerScan is what scanInstanceHeader learnt: where the library must stop and how to read.
type headerScan struct {
	transferSyntax string
	deflated       bool
	// end is the file offset of the first top-level element after lastHeaderGroup (the file's
	// size when there is none); for a deflated data set, the file's size.
	end int64
}

// lengthError is a refusal by the guard; it names the tag, never a value.
type lengthError struct {
	tag    Tag
	reason string
}

func (e *lengthError) Error() string { return fmt.Sprintf("%s: %s", e.tag, e.reason) }

// scanInstanceHeader walks the Part 10 file f (size bytes) as suyashkumar/dicom will read it.
func scanInstanceHeader(f *os.File, size, budget int64) (*headerScan, error) {
	src := &fileSource{f: f, size: size, off: 128 + 4}
	w := &walker{src: src, budget: budget, bo: binary.LittleEndian}
	// File meta information: explicit VR little endian, opened by its group length (the
	// library requires it).
	t, vr, vl, err := w.header()
	if errors.Is(err, io.EOF) {
		return nil, &lengthError{tagFileMetaInformationGroupLength, "no file meta information"}
	} else if err != nil {
		return nil, err
	}
	if t != tagFileMetaInformationGroupLength || vr != "UL" || vl != 4 {
		return nil, &lengthError{t, "file meta information does not start with its group length"}
	}
	var b [4]byte
	if err := src.read(b[:]); err != nil {
		return nil, &lengthError{t, "truncated"}
	}
	metaEnd := src.off + int64(binary.LittleEndian.Uint32(b[:]))
	if metaEnd > size {
		return nil, &lengthError{t, "file meta information group length exceeds the file"}
	}
	var ts string
	for src.off < metaEnd {
		t, vr, vl, err := w.header()
		if errors.Is(err, io.EOF) {
			return nil, &lengthError{tagFileMetaInformationGroupLength, "file meta information truncated"}
		} else if err != nil {
			return nil, err
		}
		if t == tagTransferSyntaxUID {
			if vl > 64 || src.off+int64(vl) > metaEnd {
				return nil, &lengthError{t, "Transfer Syntax UID longer than 64 bytes"}
			}
			v := make([]byte, vl)
			if err := src.read(v); err != nil {
				return nil, &lengthError{t, "truncated"}
			}
			ts = strings.Trim(string(v), " \x00")
			continue
		}
		if err := w.value(t, vr, vl, metaEnd, 0); err != nil {
			return nil, err
		}
	}
	if src.off != metaEnd {
		return nil, &lengthError{tagFileMetaInformationGroupLength, "an element crosses the end of the file meta information"}
	}
	bo, implicit, err := dicomuid.ParseTransferSyntaxUID(ts)
	if err != nil {
		return nil, &lengthError{tagTransferSyntaxUID, "missing or unknown transfer syntax"}
	}
	scan := &headerScan{transferSyntax: ts, deflated: ts == deflatedExplicitVRLittleEndian, end: size}
	w.bo, w.implicit = bo, implicit
	limit := size
	if scan.deflated {
		// The library inflates the rest of the file; the walk reads what it inflates, so a
		// declared length is checked against bytes that exist, and counts every byte inflated
		// against the budget, so a deflate bomb costs no more than the budget.
		if _, err := f.Seek(metaEnd, io.SeekStart); err != nil {
			return nil, err
		}
		w.src = &streamSource{r: bufio.NewReader(flate.NewReader(io.LimitReader(f, size-metaEnd))), budget: 4 * budget}
		limit = -1
	}
	for {
		start := w.src.offset()
		t, vr, vl, err := w.header()
		if errors.Is(err, io.EOF) {
			return scan, nil // the data set ends within the header groups
		}
		if err != nil {
			return nil, err
		}
		if t.Group() > lastHeaderGroup {
			if err := w.fits(t, int64(vl), limit); vl != undefinedLength && err != nil {
				return nil, err
			}
			if !scan.deflated {
				scan.end = start // the library is given the file up to here
				// The rest is not parsed, but stored: walk its structure (headers only, by
				// offset) so that an instance truncated or forged after its header is refused
				// as before.
				w.budget = -1
				return scan, w.rest(t, vr, vl)
			}
			// Deflated: the library reads this element whole before Ferry sees its tag.
			return scan, w.value(t, vr, vl, limit, 0)
		}
		if err := w.value(t, vr, vl, limit, 0); err != nil {
			return nil, err
		}
	}
}

// rest walks the top-level elements from t on, to the end of the file.
func (w *walker) rest(t Tag, vr string, vl uint32) error {
	for {
		if err := w.value(t, vr, vl, -1, 0); err != nil {
			return err
		}
		var err error
		t, vr, vl, err = w.header()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// walker reads element headers and values as the library does.
type walker struct {
	src      source
	bo       binary.ByteOrder
	implicit bool
	held     int64 // bytes the library will hold for the values walked
	budget   int64 // cap on held; -1: values are not held (walking what the library skips)
}

// source is the bytes being walked: the file (offsets known, values skipped by seeking) or
// the inflated data set (values read through).
type source interface {
	read(p []byte) error // io.ReadFull; io.EOF only when nothing was read
	skip(n int64) error  // errTruncated when fewer than n bytes are there
	offset() int64
	available(n int64) bool // whether n more bytes can be there (always true for a stream)
}

var errTruncated = errors.New("declared length exceeds the data")

// header reads one element header: tag, VR (explicit, or the library's dictionary VR for
// implicit VR and items) and value length, by the library's rules (read.go readElement).
func (w *walker) header() (Tag, string, uint32, error) {
	var b [4]byte
	if err := w.src.read(b[:]); errors.Is(err, io.EOF) {
		return 0, "", 0, io.EOF // between elements: the data set ends here
	} else if err != nil {
		return 0, "", 0, &lengthError{0, "data set ends or is corrupt inside an element header"}
	}
	t := NewTag(w.bo.Uint16(b[:2]), w.bo.Uint16(b[2:]))
	lt := dicomtag.Tag{Group: t.Group(), Element: t.Element()}
	implicit := w.implicit || lt == dicomtag.Item
	var vr string
	if implicit {
		vr = dicomtag.UnknownVR
		if info, err := dicomtag.Find(lt); err == nil {
			vr = info.VRs[0]
			if lt == dicomtag.PixelData || lt == dicomtag.OverlayData {
				vr = "OW"
			}
		}
		if err := w.src.read(b[:]); err != nil {
			return t, "", 0, &lengthError{t, "truncated element header"}
		}
		return t, vr, w.bo.Uint32(b[:]), nil
	}
	if err := w.src.read(b[:]); err != nil {
		return t, "", 0, &lengthError{t, "truncated element header"}
	}
	vr = string(b[:2])
	if t.Group() != 0xFFFE && (b[0] < 'A' || b[0] > 'Z' || b[1] < 'A' || b[1] > 'Z') {
		return t, "", 0, &lengthError{t, "not a value representation"}
	}
	switch vr {
	case "NA", "OB", "OD", "OF", "OL", "OW", "SQ", "UN", "UC", "UR", "UT":
		if err := w.src.read(b[:]); err != nil {
			return t, "", 0, &lengthError{t, "truncated element header"}
		}
		return t, vr, w.bo.Uint32(b[:]), nil
	}
	vl := uint32(w.bo.Uint16(b[2:]))
	if vl == 0xFFFF {
		vl = undefinedLength // the library reads a 16-bit 0xFFFF as undefined
	}
	return t, vr, vl, nil
}

// value walks one element's value as the library's readValue would read it; limit is the
// offset where the enclosing defined-length item or sequence ends (-1: none known).
func (w *walker) value(t Tag, vr string, vl uint32, limit int64, depth int) error {
	if depth > maxNesting {
		return &lengthError{t, "sequences nested too deep"}
	}
	lt := dicomtag.Tag{Group: t.Group(), Element: t.Element()}
	kind := dicomtag.GetVRKind(lt, vr)
	undefined := vl == undefinedLength
	switch {
	case kind == dicomtag.VRSequence || kind == dicomtag.VRUnknown && undefined:
		return w.sequence(t, vl, limit, depth, dicomtag.SequenceDelimitationItem)
	case kind == dicomtag.VRItem:
		return w.sequence(t, vl, limit, depth, dicomtag.ItemDelimitationItem)
	case (kind == dicomtag.VRPixelData || kind == dicomtag.VRBytes) && undefined:
		return w.fragments(t, limit)
	case undefined:
		return &lengthError{t, "undefined length on an element that cannot have one"}
	}
	if err := w.fits(t, int64(vl), limit); err != nil {
		return err
	}
	if kind != dicomtag.VRPixelData && w.budget >= 0 { // pixel data is skipped, not held
		factor := int64(2)
		switch kind {
		case dicomtag.VRUInt16List, dicomtag.VRUInt32List, dicomtag.VRInt16List, dicomtag.VRInt32List,
			dicomtag.VRTagList, dicomtag.VRFloat32List, dicomtag.VRFloat64List:
			factor = 4 // the library keeps each value as an int or float64
		}
		if w.held += factor * int64(vl); w.held > w.budget {
			return &lengthError{t, fmt.Sprintf("header larger than %d bytes", w.budget)}
		}
	}
	if err := w.src.skip(int64(vl)); err != nil {
		return &lengthError{t, errTruncated.Error()}
	}
	return nil
}

// fits checks that a value of n bytes lies within the enclosing limit and the data.
func (w *walker) fits(t Tag, n int64, limit int64) error {
	if limit >= 0 && w.src.offset()+n > limit || !w.src.available(n) {
		return &lengthError{t, errTruncated.Error()}
	}
	return nil
}

// sequence walks a sequence (its items) or an item (its elements): of defined length, exactly
// vl bytes of elements; of undefined length, elements up to the delimiter.
func (w *walker) sequence(t Tag, vl uint32, limit int64, depth int, delimiter dicomtag.Tag) error {
	end := limit
	if vl != undefinedLength {
		if err := w.fits(t, int64(vl), limit); err != nil {
			return err
		}
		end = w.src.offset() + int64(vl)
	}
	for vl == undefinedLength || w.src.offset() < end {
		et, evr, evl, err := w.header()
		if errors.Is(err, io.EOF) {
			return &lengthError{t, "sequence not delimited"}
		}
		if err != nil {
			return err
		}
		if vl == undefinedLength && et.Group() == delimiter.Group && et.Element() == delimiter.Element {
			return w.value(et, evr, evl, end, depth+1) // its (empty) value, as the library reads it
		}
		if delimiter == dicomtag.SequenceDelimitationItem && et != TagItem {
			return &lengthError{t, "sequence holds an element that is not an item"}
		}
		if err := w.value(et, evr, evl, end, depth+1); err != nil {
			return err
		}
	}
	if w.src.offset() != end {
		return &lengthError{t, "an element crosses the end of its sequence or item"}
	}
	return nil
}

// fragments walks an encapsulated value: items of defined length up to the sequence
// delimiter (PS3.5 A.4), as the library's readRawItem reads them.
func (w *walker) fragments(t Tag, limit int64) error {
	var b [8]byte
	for {
		if err := w.src.read(b[:]); err != nil {
			return &lengthError{t, "encapsulated value not delimited"}
		}
		it := NewTag(w.bo.Uint16(b[:2]), w.bo.Uint16(b[2:4]))
		vl := w.bo.Uint32(b[4:])
		switch {
		case it == TagSequenceDelimitation:
			return nil
		case it != TagItem || vl == undefinedLength:
			return &lengthError{t, "encapsulated value holds something other than items of defined length"}
		}
		if err := w.fits(t, int64(vl), limit); err != nil {
			return err
		}
		if err := w.src.skip(int64(vl)); err != nil {
			return &lengthError{t, errTruncated.Error()}
		}
	}
}

// fileSource reads the file by offset: a value is skipped by moving the offset, after checking
// that the file holds it.
type fileSource struct {
	f         *os.File
	size, off int64
}

func (s *fileSource) read(p []byte) error {
	if s.off >= s.size {
		return io.EOF
	}
	if s.off+int64(len(p)) > s.size {
		return io.ErrUnexpectedEOF
	}
	n, err := s.f.ReadAt(p, s.off)
	s.off += int64(n)
	if n == len(p) {
		return nil
	}
	return err
}

func (s *fileSource) skip(n int64) error {
	if !s.available(n) {
		return errTruncated
	}
	s.off += n
	return nil
}

func (s *fileSource) offset() int64          { return s.off }
func (s *fileSource) available(n int64) bool { return n >= 0 && s.off+n <= s.size }

// streamSource reads an inflated data set through; budget caps the bytes it inflates.
type streamSource struct {
	r      *bufio.Reader
	off    int64
	budget int64
}

func (s *streamSource) read(p []byte) error {
	n, err := io.ReadFull(s.r, p)
	s.off += int64(n)
	if err != nil {
		return err
	}
	return s.checkBudget()
}

func (s *streamSource) skip(n int64) error {
	if s.off+n > s.budget {
		return errTruncated
	}
	m, err := s.r.Discard(int(n))
	s.off += int64(m)
	if err != nil {
		return errTruncated
	}
	return nil
}

func (s *streamSource) checkBudget() error {
	if s.off > s.budget {
		return errTruncated
	}
	return nil
}

func (s *streamSource) offset() int64          { return s.off }
func (s *streamSource) available(n int64) bool { return s.off+n <= s.budget }
