package dicom

import (
	"bufio"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Reading a stored instance's header (PS3.10 7.1: a 128-byte preamble, "DICM", the file meta
// information in explicit VR little endian, then the data set in its transfer syntax). One walk
// over the file reads every element header, checks every declared length against the bytes
// that are there before it moves past it, keeps the values of the attributes in Header alone,
// and never allocates a declared length: what a file can make the reader hold is the budget
// (maxHeaderSize), whatever it declares. The walk reads every transfer syntax Ferry accepts:
// implicit and explicit VR little endian, explicit VR big endian, deflated, and the
// encapsulated (compressed) ones. Issue 17, item 4: a 300-byte file declaring a 2 GiB element
// must cost what 300 bytes cost.

// DefaultMaxHeaderSize caps what reading an instance's header may hold in memory and, for a
// deflated data set, four times it caps the bytes inflated. Headers are kilobytes; 16 MiB
// leaves room for long sequences.
const DefaultMaxHeaderSize = 16 << 20

// lastHeaderGroup is the last group whose attributes Header holds (groups 0008, 0010, 0020);
// values are read up to the first top-level element after it, the rest is walked.
const lastHeaderGroup = 0x0020

// Header is what Ferry reads from a stored instance: the attributes the intake indexes and
// links by, as UTF-8 text (decoded from the instance's Specific Character Set), values of a
// multi-valued attribute joined with a backslash.
type Header struct {
	SOPInstanceUID    string // (0008,0018)
	SOPClassUID       string // (0008,0016)
	SeriesInstanceUID string // (0020,000E)
	StudyInstanceUID  string // (0020,000D)
	TransferSyntaxUID string // (0002,0010), from the file meta information

	Modality          string // (0008,0060)
	SeriesNumber      string // (0020,0011) IS
	SeriesDescription string // (0008,103E)
	InstanceNumber    string // (0020,0013) IS

	PatientID              string // (0010,0020)
	IssuerOfPatientID      string // (0010,0021)
	PatientName            string // (0010,0010) PN
	PatientBirthDate       string // (0010,0030) DA
	PatientSex             string // (0010,0040)
	AccessionNumber        string // (0008,0050)
	StudyDate              string // (0008,0020) DA
	StudyTime              string // (0008,0030) TM
	StudyDescription       string // (0008,1030)
	StudyID                string // (0020,0010)
	ReferringPhysicianName string // (0008,0090) PN

	Size int64 // bytes of the file
}

// headerAttributes are the attributes Header holds; text marks those whose values are in the
// Specific Character Set (PS3.5 6.1.2.3), the others are in the default repertoire.
var headerAttributes = map[Tag]struct {
	field func(*Header) *string
	text  bool
}{
	TagSOPClassUID:          {func(h *Header) *string { return &h.SOPClassUID }, false},
	TagSOPInstanceUID:       {func(h *Header) *string { return &h.SOPInstanceUID }, false},
	TagSeriesInstanceUID:    {func(h *Header) *string { return &h.SeriesInstanceUID }, false},
	TagStudyInstanceUID:     {func(h *Header) *string { return &h.StudyInstanceUID }, false},
	TagModality:             {func(h *Header) *string { return &h.Modality }, false},
	0x00200011:              {func(h *Header) *string { return &h.SeriesNumber }, false},
	0x0008103E:              {func(h *Header) *string { return &h.SeriesDescription }, true},
	0x00200013:              {func(h *Header) *string { return &h.InstanceNumber }, false},
	TagPatientID:            {func(h *Header) *string { return &h.PatientID }, true},
	0x00100021:              {func(h *Header) *string { return &h.IssuerOfPatientID }, true},
	TagPatientName:          {func(h *Header) *string { return &h.PatientName }, true},
	0x00100030:              {func(h *Header) *string { return &h.PatientBirthDate }, false},
	0x00100040:              {func(h *Header) *string { return &h.PatientSex }, false},
	TagAccessionNumber:      {func(h *Header) *string { return &h.AccessionNumber }, true},
	0x00080020:              {func(h *Header) *string { return &h.StudyDate }, false},
	0x00080030:              {func(h *Header) *string { return &h.StudyTime }, false},
	0x00081030:              {func(h *Header) *string { return &h.StudyDescription }, true},
	0x00200010:              {func(h *Header) *string { return &h.StudyID }, true},
	0x00080090:              {func(h *Header) *string { return &h.ReferringPhysicianName }, true},
	TagSpecificCharacterSet: {nil, false},
}

// requiredUIDs name the instance's file and rows: each must be present and a valid UID.
var requiredUIDs = []Tag{TagSOPClassUID, TagSOPInstanceUID, TagStudyInstanceUID, TagSeriesInstanceUID}

// File meta information tags the reader uses (PS3.10 7.1).
const (
	tagFileMetaInformationGroupLength Tag = 0x00020000
	tagTransferSyntaxUID              Tag = 0x00020010
)

// ReadInstance reads the header of the instance in the DICOM Part 10 file at path, as both
// receivers do before they hand a file to the intake. maxHeaderSize caps the memory the read
// may use (0: DefaultMaxHeaderSize). The SOP Class, SOP Instance, Study and Series Instance
// UIDs must be present and valid UIDs: they name the instance's file and rows.
//
// Its error is an *InstanceError saying which status applies: C000 for a file that is not Part
// 10 (no "DICM" after the preamble), a data set that does not parse (a declared length past the
// bytes in the file, an irregular structure, a header over the cap) or text that does not
// decode; A900 for a missing or malformed UID; A700 when the file cannot be read.
func ReadInstance(path string, maxHeaderSize int64) (*Header, error) {
	if maxHeaderSize <= 0 {
		maxHeaderSize = DefaultMaxHeaderSize
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, &InstanceError{Status: StatusOutOfResources, Reason: "cannot read the instance file", Err: err}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, &InstanceError{Status: StatusOutOfResources, Reason: "cannot read the instance file", Err: err}
	}
	var prefix [132]byte
	if _, err := f.ReadAt(prefix[:], 0); errors.Is(err, io.EOF) || err == nil && string(prefix[128:]) != "DICM" {
		return nil, &InstanceError{Status: StatusCannotUnderstand, Reason: "not a DICOM Part 10 file (no DICM prefix)"}
	} else if err != nil {
		return nil, &InstanceError{Status: StatusOutOfResources, Reason: "cannot read the instance file", Err: err}
	}
	h, err := readHeader(f, fi.Size(), maxHeaderSize)
	if err != nil {
		var he *headerError
		if errors.As(err, &he) {
			return nil, &InstanceError{Status: StatusCannotUnderstand, Tag: he.tag, Reason: he.reason, Err: he.err}
		}
		return nil, &InstanceError{Status: StatusOutOfResources, Reason: "cannot read the instance file", Err: err}
	}
	for _, t := range requiredUIDs {
		_, kw, _ := LookupTag(t)
		switch v := *headerAttributes[t].field(h); {
		case v == "":
			return nil, &InstanceError{Status: StatusDataSetMismatch, Tag: t, Reason: kw + " missing"}
		case !ValidUID(v):
			// Refused here rather than failing in the store, where it would look like a
			// passing fault.
			return nil, &InstanceError{Status: StatusDataSetMismatch, Tag: t, Reason: kw + " is not a valid UID"}
		}
	}
	h.Size = fi.Size()
	return h, nil
}

// headerError is a data set the reader refuses (C000); it names the tag, never a value.
type headerError struct {
	tag    Tag
	reason string
	err    error // the decoding error of text, for the log
}

func (e *headerError) Error() string { return fmt.Sprintf("%s: %s", e.tag, e.reason) }

func parseFailure(t Tag, reason string) *headerError {
	return &headerError{tag: t, reason: "data set does not parse: " + reason}
}

var errTruncated = errors.New("declared length exceeds the data")

// readHeader walks the Part 10 file f (size bytes) from its file meta information on.
func readHeader(f *os.File, size, budget int64) (*Header, error) {
	src := &fileSource{f: f, size: size, off: 128 + 4}
	w := &walker{src: src, budget: budget, bo: binary.LittleEndian}
	// File meta information: explicit VR little endian, opened by its group length.
	t, vr, vl, err := w.header()
	if errors.Is(err, io.EOF) {
		return nil, parseFailure(tagFileMetaInformationGroupLength, "no file meta information")
	} else if err != nil {
		return nil, err
	}
	if t != tagFileMetaInformationGroupLength || vr != VRUL || vl != 4 {
		return nil, parseFailure(t, "file meta information does not start with its group length")
	}
	var b [4]byte
	if err := src.read(b[:]); err != nil {
		return nil, parseFailure(t, "truncated")
	}
	metaEnd := src.off + int64(binary.LittleEndian.Uint32(b[:]))
	if metaEnd > size {
		return nil, parseFailure(t, "file meta information group length exceeds the file")
	}
	h := &Header{}
	for src.off < metaEnd {
		t, vr, vl, err := w.header()
		if errors.Is(err, io.EOF) {
			return nil, parseFailure(tagFileMetaInformationGroupLength, "file meta information truncated")
		} else if err != nil {
			return nil, err
		}
		if t == tagTransferSyntaxUID {
			if vl > 64 || src.off+int64(vl) > metaEnd {
				return nil, parseFailure(t, "Transfer Syntax UID longer than 64 bytes")
			}
			v := make([]byte, vl)
			if err := src.read(v); err != nil {
				return nil, parseFailure(t, "truncated")
			}
			h.TransferSyntaxUID = strings.Trim(string(v), " \x00")
			continue
		}
		if err := w.value(t, vr, vl, metaEnd, 0); err != nil {
			return nil, err
		}
	}
	if src.off != metaEnd {
		return nil, parseFailure(tagFileMetaInformationGroupLength, "an element crosses the end of the file meta information")
	}
	enc, err := encodingOf(h.TransferSyntaxUID)
	if err != nil {
		return nil, parseFailure(tagTransferSyntaxUID, "missing or unknown transfer syntax")
	}
	w.bo, w.implicit = enc.byteOrder, !enc.explicit
	limit := size
	if enc.deflated {
		// The walk reads what it inflates, so a declared length is checked against bytes that
		// exist, and counts every byte inflated against the budget, so a deflate bomb costs no
		// more than the budget.
		if _, err := f.Seek(metaEnd, io.SeekStart); err != nil {
			return nil, err
		}
		w.src = &streamSource{r: bufio.NewReader(flate.NewReader(io.LimitReader(f, size-metaEnd))), budget: 4 * budget}
		limit = -1
	}
	values := make(map[Tag]element, 24)
	for {
		t, vr, vl, err := w.header()
		if errors.Is(err, io.EOF) {
			break // the data set ends within the header groups
		}
		if err != nil {
			return nil, err
		}
		if t.Group() > lastHeaderGroup {
			if enc.deflated {
				// What follows is walked no further: inflating it all would cost what the
				// budget is there to prevent. This element's header is checked.
				if err := w.fits(t, int64(vl), limit); vl != UndefinedLength && err != nil {
					return nil, err
				}
				break
			}
			// The rest is not read, but stored: walk its structure (headers only, by offset)
			// so that an instance truncated or forged after its header is refused.
			if err := w.rest(t, vr, vl); err != nil {
				return nil, err
			}
			break
		}
		if a, ok := headerAttributes[t]; ok && vl != UndefinedLength && vr != VRSQ {
			if err := w.fits(t, int64(vl), limit); err != nil {
				return nil, err
			}
			if w.held += int64(vl); w.held > w.budget {
				return nil, parseFailure(t, fmt.Sprintf("header larger than %d bytes", w.budget))
			}
			v := make([]byte, vl)
			if err := w.src.read(v); err != nil && vl > 0 {
				return nil, parseFailure(t, errTruncated.Error())
			}
			values[t] = element{vr, v, a.text}
			continue
		}
		if err := w.value(t, vr, vl, limit, 0); err != nil {
			return nil, err
		}
	}
	if err := h.set(values); err != nil {
		return nil, err
	}
	return h, nil
}

// element is a header attribute's value as read, before decoding.
type element struct {
	vr    VR
	value []byte
	text  bool
}

// set decodes the values read into h: text in the Specific Character Set, the rest in the
// default repertoire; padding removed; several values joined with a backslash.
func (h *Header) set(values map[Tag]element) error {
	cs := DefaultCharacterSet
	if e, ok := values[TagSpecificCharacterSet]; ok {
		cs = ParseCharacterSet((&Element{Tag: TagSpecificCharacterSet, VR: VRCS, Value: e.value}).Strings())
	}
	for t, e := range values {
		a := headerAttributes[t]
		if a.field == nil {
			continue
		}
		var s string
		if a.text {
			var err error
			if s, err = cs.Decode(e.value); err != nil {
				return &headerError{tag: TagSpecificCharacterSet, reason: "text not decodable in its Specific Character Set", err: err}
			}
		} else {
			s = strings.ToValidUTF8(string(e.value), "\uFFFD")
		}
		*a.field(h) = trimValues(s, e.vr)
	}
	return nil
}

// trimValues removes the padding of each value (trailing spaces and NULs, leading spaces) of a
// text value; the values stay joined with a backslash (for the VRs that allow several).
func trimValues(s string, vr VR) string {
	if !vr.multiValued() || !strings.Contains(s, `\`) {
		return strings.Trim(s, " \x00")
	}
	parts := strings.Split(s, `\`)
	for i, p := range parts {
		parts[i] = strings.Trim(p, " \x00")
	}
	return strings.Join(parts, `\`)
}

// rest walks the top-level elements from t on, to the end of the file.
func (w *walker) rest(t Tag, vr VR, vl uint32) error {
	w.budget = -1
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

// walker reads element headers and walks values.
type walker struct {
	src      source
	bo       binary.ByteOrder
	implicit bool
	held     int64 // bytes of values held
	budget   int64 // cap on held; -1: values are not held (walking what is not read)
}

// source is the bytes being walked: the file (offsets known, values skipped by seeking) or
// the inflated data set (values read through).
type source interface {
	read(p []byte) error // io.ReadFull; io.EOF only when nothing was read
	skip(n int64) error  // errTruncated when fewer than n bytes are there
	offset() int64
	available(n int64) bool // whether n more bytes can be there (always true for a stream)
}

// header reads one element header: tag, VR (explicit, or from the dictionary for implicit VR
// and items) and value length.
func (w *walker) header() (Tag, VR, uint32, error) {
	var b [4]byte
	if err := w.src.read(b[:]); errors.Is(err, io.EOF) {
		return 0, "", 0, io.EOF // between elements: the data set ends here
	} else if err != nil {
		return 0, "", 0, parseFailure(0, "data set ends or is corrupt inside an element header")
	}
	t := NewTag(w.bo.Uint16(b[:2]), w.bo.Uint16(b[2:]))
	if w.implicit || t.Group() == 0xFFFE {
		if err := w.src.read(b[:]); err != nil {
			return t, "", 0, parseFailure(t, "truncated element header")
		}
		return t, impliedVR(t), w.bo.Uint32(b[:]), nil
	}
	if err := w.src.read(b[:]); err != nil {
		return t, "", 0, parseFailure(t, "truncated element header")
	}
	if b[0] < 'A' || b[0] > 'Z' || b[1] < 'A' || b[1] > 'Z' {
		return t, "", 0, parseFailure(t, "not a value representation")
	}
	vr := VR(b[:2])
	if !vr.shortLength() {
		if err := w.src.read(b[:]); err != nil {
			return t, "", 0, parseFailure(t, "truncated element header")
		}
		return t, vr, w.bo.Uint32(b[:]), nil
	}
	vl := uint32(w.bo.Uint16(b[2:]))
	if vl == 0xFFFF {
		vl = UndefinedLength // a 16-bit length cannot be undefined: refused below
	}
	return t, vr, vl, nil
}

// value walks one element's value; limit is the offset where the enclosing defined-length item
// or sequence ends (-1: none known).
func (w *walker) value(t Tag, vr VR, vl uint32, limit int64, depth int) error {
	if depth > maxNesting {
		return parseFailure(t, "sequences nested too deep")
	}
	undefined := vl == UndefinedLength
	switch {
	case t == TagItem:
		return w.sequence(t, vl, limit, depth, TagItemDelimitation)
	case vr == VRSQ || vr == VRUN && undefined:
		// PS3.5 6.2.2: UN of undefined length is a sequence in implicit VR little endian.
		return w.sequence(t, vl, limit, depth, TagSequenceDelimitation)
	case undefined && (vr == VROB || vr == VROW):
		return w.fragments(t, limit)
	case undefined:
		return parseFailure(t, "undefined length on an element that cannot have one")
	}
	if err := w.fits(t, int64(vl), limit); err != nil {
		return err
	}
	if err := w.src.skip(int64(vl)); err != nil {
		return parseFailure(t, errTruncated.Error())
	}
	return nil
}

// fits checks that a value of n bytes lies within the enclosing limit and the data.
func (w *walker) fits(t Tag, n int64, limit int64) error {
	if limit >= 0 && w.src.offset()+n > limit || !w.src.available(n) {
		return parseFailure(t, errTruncated.Error())
	}
	return nil
}

// sequence walks a sequence (its items) or an item (its elements): of defined length, exactly
// vl bytes of elements; of undefined length, elements up to the delimiter.
func (w *walker) sequence(t Tag, vl uint32, limit int64, depth int, delimiter Tag) error {
	end := limit
	if vl != UndefinedLength {
		if err := w.fits(t, int64(vl), limit); err != nil {
			return err
		}
		end = w.src.offset() + int64(vl)
	}
	for vl == UndefinedLength || w.src.offset() < end {
		et, evr, evl, err := w.header()
		if errors.Is(err, io.EOF) {
			return parseFailure(t, "sequence not delimited")
		}
		if err != nil {
			return err
		}
		if vl == UndefinedLength && et == delimiter {
			if evl != 0 {
				return parseFailure(et, "delimiter with a value")
			}
			return nil
		}
		if delimiter == TagSequenceDelimitation && et != TagItem {
			return parseFailure(t, "sequence holds an element that is not an item")
		}
		if err := w.value(et, evr, evl, end, depth+1); err != nil {
			return err
		}
	}
	if w.src.offset() != end {
		return parseFailure(t, "an element crosses the end of its sequence or item")
	}
	return nil
}

// fragments walks an encapsulated value: items of defined length up to the sequence
// delimiter (PS3.5 A.4).
func (w *walker) fragments(t Tag, limit int64) error {
	var b [8]byte
	for {
		if err := w.src.read(b[:]); err != nil {
			return parseFailure(t, "encapsulated value not delimited")
		}
		it := NewTag(w.bo.Uint16(b[:2]), w.bo.Uint16(b[2:4]))
		vl := w.bo.Uint32(b[4:])
		switch {
		case it == TagSequenceDelimitation:
			return nil
		case it != TagItem || vl == UndefinedLength:
			return parseFailure(t, "encapsulated value holds something other than items of defined length")
		}
		if err := w.fits(t, int64(vl), limit); err != nil {
			return err
		}
		if err := w.src.skip(int64(vl)); err != nil {
			return parseFailure(t, errTruncated.Error())
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
	if s.off > s.budget {
		return errTruncated
	}
	return nil
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

func (s *streamSource) offset() int64          { return s.off }
func (s *streamSource) available(n int64) bool { return s.off+n <= s.budget }
