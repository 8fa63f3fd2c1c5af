package dicom

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Tag is a data element tag: group number in the high 16 bits, element number in the low 16.
type Tag uint32

// NewTag returns the tag (group,element).
func NewTag(group, element uint16) Tag { return Tag(uint32(group)<<16 | uint32(element)) }

// Group returns the tag's group number.
func (t Tag) Group() uint16 { return uint16(t >> 16) }

// Element returns the tag's element number.
func (t Tag) Element() uint16 { return uint16(t) }

// String formats the tag as (gggg,eeee) in hexadecimal, the standard's notation.
func (t Tag) String() string { return fmt.Sprintf("(%04X,%04X)", t.Group(), t.Element()) }

// Item and delimiter tags of the encoding of sequences and encapsulated data (PS3.5 7.5).
const (
	TagItem                 Tag = 0xFFFEE000
	TagItemDelimitation     Tag = 0xFFFEE00D
	TagSequenceDelimitation Tag = 0xFFFEE0DD
)

const (
	UndefinedLength = 0xFFFFFFFF
	maxNesting      = 32 // sequences in items in sequences…; deeper input is refused
)

// VR is a value representation, the two letters of PS3.5 6.2.
type VR string

// The value representations of PS3.5 table 6.2-1.
const (
	VRAE VR = "AE"
	VRAS VR = "AS"
	VRAT VR = "AT"
	VRCS VR = "CS"
	VRDA VR = "DA"
	VRDS VR = "DS"
	VRDT VR = "DT"
	VRFD VR = "FD"
	VRFL VR = "FL"
	VRIS VR = "IS"
	VRLO VR = "LO"
	VRLT VR = "LT"
	VROB VR = "OB"
	VROD VR = "OD"
	VROF VR = "OF"
	VROL VR = "OL"
	VROV VR = "OV"
	VROW VR = "OW"
	VRPN VR = "PN"
	VRSH VR = "SH"
	VRSL VR = "SL"
	VRSQ VR = "SQ"
	VRSS VR = "SS"
	VRST VR = "ST"
	VRSV VR = "SV"
	VRTM VR = "TM"
	VRUC VR = "UC"
	VRUI VR = "UI"
	VRUL VR = "UL"
	VRUN VR = "UN"
	VRUR VR = "UR"
	VRUS VR = "US"
	VRUT VR = "UT"
	VRUV VR = "UV"
)

// shortLength reports whether the VR has a 16-bit length field in explicit VR encodings
// (PS3.5 7.1.2); the others, and VRs unknown to this package, have a 32-bit one.
func (vr VR) shortLength() bool {
	switch vr {
	case VRAE, VRAS, VRAT, VRCS, VRDA, VRDS, VRDT, VRFD, VRFL, VRIS, VRLO, VRLT, VRPN, VRSH, VRSL,
		VRSS, VRST, VRTM, VRUI, VRUL, VRUS:
		return true
	}
	return false
}

// IsText reports whether the VR holds characters (padded with a space), as opposed to binary values.
func (vr VR) IsText() bool {
	switch vr {
	case VRAE, VRAS, VRCS, VRDA, VRDS, VRDT, VRIS, VRLO, VRLT, VRPN, VRSH, VRST, VRTM, VRUC, VRUI, VRUR, VRUT:
		return true
	}
	return false
}

// multiValued reports whether a text VR may hold several values separated by a backslash.
func (vr VR) multiValued() bool {
	switch vr {
	case VRLT, VRST, VRUT, VRUR:
		return false
	}
	return vr.IsText()
}

// Element is one data element. Values are kept as encoded (little endian, padding included);
// the accessors decode them.
type Element struct {
	Tag Tag
	// VR is the value representation: as read in an explicit VR encoding; in an implicit one, as
	// this package's dictionary says (UN for a tag it does not know).
	VR VR
	// Value is the value field of a non-sequence element. After Decode it shares the decoded
	// buffer's memory.
	Value []byte
	// Items are the items of a sequence (VR SQ).
	Items []*DataSet
	// Fragments hold encapsulated pixel data (PS3.5 A.4): an undefined-length OB or OW element
	// whose items are the basic offset table and then the compressed fragments. nil otherwise.
	Fragments [][]byte
}

// DataSet is an ordered list of data elements: a C-FIND identifier, a sequence item, a stored
// instance's header. Elements are kept in the order read; Set keeps ascending tag order.
type DataSet struct {
	Elements []*Element
}

// Get returns the element with the tag, or nil.
func (ds *DataSet) Get(tag Tag) *Element {
	if ds == nil {
		return nil
	}
	for _, e := range ds.Elements {
		if e.Tag == tag {
			return e
		}
	}
	return nil
}

// Set adds e, replacing an element with the same tag, at its place in ascending tag order.
func (ds *DataSet) Set(e *Element) {
	i, found := slices.BinarySearchFunc(ds.Elements, e.Tag, func(x *Element, t Tag) int {
		switch {
		case x.Tag < t:
			return -1
		case x.Tag > t:
			return 1
		}
		return 0
	})
	if found {
		ds.Elements[i] = e
		return
	}
	ds.Elements = slices.Insert(ds.Elements, i, e)
}

// Remove deletes the elements with the tag.
func (ds *DataSet) Remove(tag Tag) {
	ds.Elements = slices.DeleteFunc(ds.Elements, func(e *Element) bool { return e.Tag == tag })
}

// String returns the first value of the text element with the tag, without padding; "" when
// absent or empty. The bytes are not converted from the data set's Specific Character Set.
func (ds *DataSet) String(tag Tag) string {
	if e := ds.Get(tag); e != nil {
		if v := e.Strings(); len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// Uint16 returns the first value of the US element with the tag; ok is false when it is absent
// or holds fewer than 2 bytes.
func (ds *DataSet) Uint16(tag Tag) (v uint16, ok bool) {
	e := ds.Get(tag)
	if e == nil || len(e.Value) < 2 {
		return 0, false
	}
	return binary.LittleEndian.Uint16(e.Value), true
}

// Strings returns the values of a text element, split at backslashes (for the VRs that allow
// several values), with padding removed: trailing spaces and NULs, and leading spaces where
// PS3.5 says they are not significant.
func (e *Element) Strings() []string {
	if len(e.Value) == 0 {
		return nil
	}
	s := string(e.Value)
	var parts []string
	if e.VR.multiValued() || e.VR == VRUN || e.VR == "" {
		parts = strings.Split(s, `\`)
	} else {
		parts = []string{s}
	}
	for i, p := range parts {
		p = strings.TrimRight(p, " \x00")
		switch e.VR {
		case VRAE, VRCS, VRDS, VRIS, VRDA, VRTM, VRDT, VRAS, VRUI:
			p = strings.TrimLeft(p, " ")
		}
		parts[i] = p
	}
	return parts
}

// Keyword returns the element's keyword from this package's dictionary ("" when unknown).
func (e *Element) Keyword() string {
	_, kw, _ := LookupTag(e.Tag)
	return kw
}

// NewString returns a text element holding the values, joined with backslashes.
func NewString(tag Tag, vr VR, values ...string) *Element {
	return &Element{Tag: tag, VR: vr, Value: []byte(strings.Join(values, `\`))}
}

// NewUint16 returns a US element.
func NewUint16(tag Tag, values ...uint16) *Element {
	b := make([]byte, 0, 2*len(values))
	for _, v := range values {
		b = binary.LittleEndian.AppendUint16(b, v)
	}
	return &Element{Tag: tag, VR: VRUS, Value: b}
}

// NewUint32 returns a UL element.
func NewUint32(tag Tag, values ...uint32) *Element {
	b := make([]byte, 0, 4*len(values))
	for _, v := range values {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return &Element{Tag: tag, VR: VRUL, Value: b}
}

// NewSequence returns an SQ element with the items (none: an empty sequence, which in a C-FIND
// identifier asks for the sequence to be returned).
func NewSequence(tag Tag, items ...*DataSet) *Element {
	return &Element{Tag: tag, VR: VRSQ, Items: items}
}

// DataSetError reports a data set that cannot be decoded: where, in which element, and what was
// wrong. It never quotes values, so it is safe to log.
type DataSetError struct {
	Offset int // byte offset in the input
	Tag    Tag // the element being read; 0 if none
	Msg    string
}

func (e *DataSetError) Error() string {
	if e.Tag == 0 {
		return fmt.Sprintf("dimse: invalid data set at byte %d: %s", e.Offset, e.Msg)
	}
	return fmt.Sprintf("dimse: invalid data set at byte %d, element %s: %s", e.Offset, e.Tag, e.Msg)
}

// ErrUnsupportedTransferSyntax is returned for a transfer syntax whose data set encoding this
// package does not implement (explicit VR big endian, deflated).
var ErrUnsupportedTransferSyntax = errors.New("dimse: unsupported transfer syntax for data set encoding")

// explicitVR tells how DecodeDataSet and EncodeDataSet encode data sets in a transfer syntax:
// implicit VR little endian for the default one; explicit VR little endian for the others of
// the DICOM family, the compressed ones included (their data sets are explicit VR little
// endian, only pixel data is encapsulated); big endian and deflate are not supported (the
// header reader, ReadInstance, reads them).
func explicitVR(ts string) (bool, error) {
	enc, err := encodingOf(ts)
	if err != nil || enc.deflated || enc.byteOrder != binary.LittleEndian {
		return false, fmt.Errorf("%w: %s", ErrUnsupportedTransferSyntax, ts)
	}
	return enc.explicit, nil
}

// DecodeOptions tune DecodeDataSet.
type DecodeOptions struct {
	// StopAt, when not 0, ends decoding at the first top-level element whose tag is at or after
	// it: a header read stops before PixelData (7FE0,0010) and input after it may be truncated.
	StopAt Tag
}

// DecodeDataSet decodes a data set encoded in the transfer syntax ts (see ExplicitVRLittleEndian
// and ImplicitVRLittleEndian; compressed transfer syntaxes decode as explicit VR little endian).
// Sequences and items of defined and undefined length are read, to a nesting depth of 32. The
// returned elements share b's memory. Errors are *DataSetError or ErrUnsupportedTransferSyntax.
func DecodeDataSet(b []byte, ts string, opts DecodeOptions) (*DataSet, error) {
	explicit, err := explicitVR(ts)
	if err != nil {
		return nil, err
	}
	d := &dataSetDecoder{b: b, stopAt: opts.StopAt}
	ds, _, err := d.dataSet(0, len(b), false, explicit, 0)
	return ds, err
}

type dataSetDecoder struct {
	b      []byte
	stopAt Tag
}

func (d *dataSetDecoder) fail(off int, tag Tag, format string, args ...any) error {
	return &DataSetError{Offset: off, Tag: tag, Msg: fmt.Sprintf(format, args...)}
}

// dataSet reads elements from off up to end; in an undefined-length item (delimited) it stops
// after the item delimitation item. It returns the offset after what it read.
func (d *dataSetDecoder) dataSet(off, end int, delimited, explicit bool, depth int) (*DataSet, int, error) {
	ds := &DataSet{}
	for off < end {
		if end-off < 8 {
			return nil, off, d.fail(off, 0, "%d bytes left, too few for an element header", end-off)
		}
		tag := NewTag(binary.LittleEndian.Uint16(d.b[off:]), binary.LittleEndian.Uint16(d.b[off+2:]))
		if depth == 0 && d.stopAt != 0 && tag >= d.stopAt {
			return ds, off, nil
		}
		if tag.Group() == 0xFFFE {
			if tag == TagItemDelimitation && delimited {
				return ds, off + 8, nil // its length (0 by the standard) is not tested
			}
			return nil, off, d.fail(off, tag, "unexpected item or delimiter tag in a data set")
		}
		e, next, err := d.element(off, end, explicit, depth)
		if err != nil {
			return nil, off, err
		}
		ds.Elements = append(ds.Elements, e)
		off = next
	}
	if delimited {
		return nil, off, d.fail(off, 0, "item of undefined length has no item delimitation item")
	}
	return ds, off, nil
}

// element reads the element whose header starts at off.
func (d *dataSetDecoder) element(off, end int, explicit bool, depth int) (*Element, int, error) {
	start := off
	tag := NewTag(binary.LittleEndian.Uint16(d.b[off:]), binary.LittleEndian.Uint16(d.b[off+2:]))
	var (
		vr     VR
		length uint32
	)
	if explicit {
		v0, v1 := d.b[off+4], d.b[off+5]
		if v0 < 'A' || v0 > 'Z' || v1 < 'A' || v1 > 'Z' {
			return nil, off, d.fail(off, tag, "VR bytes 0x%02X%02X are not a VR", v0, v1)
		}
		vr = VR([]byte{v0, v1})
		if vr.shortLength() {
			length = uint32(binary.LittleEndian.Uint16(d.b[off+6:]))
			off += 8
		} else {
			if end-off < 12 {
				return nil, off, d.fail(off, tag, "truncated element header")
			}
			length = binary.LittleEndian.Uint32(d.b[off+8:])
			off += 12
		}
	} else {
		vr = impliedVR(tag)
		length = binary.LittleEndian.Uint32(d.b[off+4:])
		off += 8
	}
	e := &Element{Tag: tag, VR: vr}

	if length == UndefinedLength {
		switch {
		case vr == VRSQ:
			items, next, err := d.items(off, end, true, explicit, depth+1, tag)
			e.Items = items
			return e, next, err
		case vr == VRUN:
			// An undefined-length UN is a sequence whose content is implicit VR little endian
			// (PS3.5 6.2.2 note 4).
			items, next, err := d.items(off, end, true, false, depth+1, tag)
			e.VR, e.Items = VRSQ, items
			return e, next, err
		case vr == VROB || vr == VROW || tag == TagPixelData:
			frags, next, err := d.fragments(off, end, tag)
			e.Fragments = frags
			if e.VR == VRUN || !explicit {
				e.VR = VROB
			}
			return e, next, err
		case !explicit:
			// Implicit VR: an undefined length marks a sequence the dictionary does not know.
			items, next, err := d.items(off, end, true, explicit, depth+1, tag)
			e.VR, e.Items = VRSQ, items
			return e, next, err
		}
		return nil, start, d.fail(start, tag, "undefined length on VR %s", vr)
	}
	if uint64(length) > uint64(end-off) {
		return nil, start, d.fail(start, tag, "value length %d runs past the end (%d bytes left)", length, end-off)
	}
	vend := off + int(length)
	switch {
	case vr == VRSQ:
		items, _, err := d.items(off, vend, false, explicit, depth+1, tag)
		if err != nil {
			return nil, start, err
		}
		e.Items = items
	case vr == VRUN && length >= 8 && NewTag(binary.LittleEndian.Uint16(d.b[off:]), binary.LittleEndian.Uint16(d.b[off+2:])) == TagItem:
		// A UN value that starts with an item tag: most likely a sequence of an unknown or
		// private tag, whose content is implicit VR little endian. If it does not read as one,
		// it stays an opaque value.
		if items, _, err := d.items(off, vend, false, false, depth+1, tag); err == nil {
			e.VR, e.Items = VRSQ, items
		} else {
			e.Value = d.b[off:vend:vend]
		}
	default:
		e.Value = d.b[off:vend:vend]
	}
	return e, vend, nil
}

// items reads the items of a sequence: up to end (defined length) or up to the sequence
// delimitation item (undefined length).
func (d *dataSetDecoder) items(off, end int, delimited, explicit bool, depth int, seq Tag) ([]*DataSet, int, error) {
	if depth > maxNesting {
		return nil, off, d.fail(off, seq, "sequences nested deeper than %d", maxNesting)
	}
	items := []*DataSet{}
	for {
		if !delimited && off == end {
			return items, off, nil
		}
		if end-off < 8 {
			return nil, off, d.fail(off, seq, "truncated sequence")
		}
		tag := NewTag(binary.LittleEndian.Uint16(d.b[off:]), binary.LittleEndian.Uint16(d.b[off+2:]))
		length := binary.LittleEndian.Uint32(d.b[off+4:])
		switch {
		case tag == TagSequenceDelimitation && delimited:
			return items, off + 8, nil
		case tag != TagItem:
			return nil, off, d.fail(off, seq, "%s where an item was expected", tag)
		case length == UndefinedLength:
			item, next, err := d.dataSet(off+8, end, true, explicit, depth)
			if err != nil {
				return nil, off, err
			}
			items = append(items, item)
			off = next
		default:
			if uint64(length) > uint64(end-off-8) {
				return nil, off, d.fail(off, seq, "item length %d runs past the sequence", length)
			}
			item, _, err := d.dataSet(off+8, off+8+int(length), false, explicit, depth)
			if err != nil {
				return nil, off, err
			}
			items = append(items, item)
			off += 8 + int(length)
		}
	}
}

// fragments reads the items of encapsulated pixel data, up to the sequence delimitation item.
func (d *dataSetDecoder) fragments(off, end int, tag Tag) ([][]byte, int, error) {
	frags := [][]byte{}
	for {
		if end-off < 8 {
			return nil, off, d.fail(off, tag, "truncated encapsulated pixel data")
		}
		t := NewTag(binary.LittleEndian.Uint16(d.b[off:]), binary.LittleEndian.Uint16(d.b[off+2:]))
		length := binary.LittleEndian.Uint32(d.b[off+4:])
		switch {
		case t == TagSequenceDelimitation:
			return frags, off + 8, nil
		case t != TagItem:
			return nil, off, d.fail(off, tag, "%s where a fragment item was expected", t)
		case uint64(length) > uint64(end-off-8):
			return nil, off, d.fail(off, tag, "fragment length %d runs past the end", length)
		}
		frags = append(frags, d.b[off+8:off+8+int(length):off+8+int(length)])
		off += 8 + int(length)
	}
}

// impliedVR is the VR of a tag in an implicit VR encoding.
func impliedVR(tag Tag) VR {
	if vr, _, ok := LookupTag(tag); ok {
		return vr
	}
	switch el := tag.Element(); {
	case el == 0x0000:
		return VRUL // group length
	case tag.Group()%2 == 1 && el >= 0x0010 && el <= 0x00FF:
		return VRLO // private creator (PS3.5 7.8.1)
	}
	return VRUN
}

// AppendDataSet appends ds encoded in transfer syntax ts to dst (EncodeDataSet without the
// allocation, for a caller that writes a header in front).
func AppendDataSet(dst []byte, ds *DataSet, ts string) ([]byte, error) {
	explicit, err := explicitVR(ts)
	if err != nil {
		return nil, err
	}
	return appendDataSet(dst, ds, explicit, 0)
}

// EncodeDataSet encodes ds in the transfer syntax ts. Sequences and items are written with
// defined lengths; encapsulated pixel data with undefined length, as PS3.5 A.4 requires. Values
// of odd length are padded (a space for text, NUL for UI and binary VRs). In explicit VR, a
// value too long for its VR's 16-bit length field is written as UN (PS3.5 6.2.2).
func EncodeDataSet(ds *DataSet, ts string) ([]byte, error) {
	explicit, err := explicitVR(ts)
	if err != nil {
		return nil, err
	}
	return appendDataSet(nil, ds, explicit, 0)
}

func appendDataSet(dst []byte, ds *DataSet, explicit bool, depth int) ([]byte, error) {
	if depth > maxNesting {
		return nil, fmt.Errorf("dimse: encoding data set: sequences nested deeper than %d", maxNesting)
	}
	if ds == nil {
		return dst, nil
	}
	var err error
	for _, e := range ds.Elements {
		if dst, err = appendElement(dst, e, explicit, depth); err != nil {
			return nil, err
		}
	}
	return dst, nil
}

func appendElement(dst []byte, e *Element, explicit bool, depth int) ([]byte, error) {
	if e.Tag.Group() == 0xFFFE {
		return nil, fmt.Errorf("dimse: encoding data set: element %s is an item or delimiter tag", e.Tag)
	}
	vr := e.VR
	if vr == "" {
		vr = impliedVR(e.Tag)
	}
	if len(vr) != 2 || vr[0] < 'A' || vr[0] > 'Z' || vr[1] < 'A' || vr[1] > 'Z' {
		return nil, fmt.Errorf("dimse: encoding data set: element %s has VR %q", e.Tag, string(vr))
	}
	var value []byte
	undefined := false
	switch {
	case e.Items != nil || vr == VRSQ:
		vr = VRSQ
		for _, it := range e.Items {
			body, err := appendDataSet(nil, it, explicit, depth+1)
			if err != nil {
				return nil, err
			}
			if uint64(len(body)) >= UndefinedLength {
				return nil, fmt.Errorf("dimse: encoding data set: item of %s too long", e.Tag)
			}
			value = appendTagLength(value, TagItem, uint32(len(body)))
			value = append(value, body...)
		}
	case e.Fragments != nil:
		undefined = true
		if vr != VROW {
			vr = VROB
		}
		for _, f := range e.Fragments {
			value = appendTagLength(value, TagItem, uint32(len(f)+len(f)%2))
			value = append(value, f...)
			if len(f)%2 == 1 {
				value = append(value, 0)
			}
		}
		value = appendTagLength(value, TagSequenceDelimitation, 0)
	default:
		value = e.Value
		if len(value)%2 == 1 {
			pad := byte(0)
			if vr.IsText() && vr != VRUI {
				pad = ' '
			}
			value = append(value[:len(value):len(value)], pad)
		}
	}
	if uint64(len(value)) >= UndefinedLength {
		return nil, fmt.Errorf("dimse: encoding data set: value of %s too long", e.Tag)
	}
	length := uint32(len(value))
	if undefined {
		length = UndefinedLength
	}
	dst = binary.LittleEndian.AppendUint16(dst, e.Tag.Group())
	dst = binary.LittleEndian.AppendUint16(dst, e.Tag.Element())
	switch {
	case !explicit:
		dst = binary.LittleEndian.AppendUint32(dst, length)
	case vr.shortLength() && len(value) <= 0xFFFE:
		dst = append(dst, vr[0], vr[1])
		dst = binary.LittleEndian.AppendUint16(dst, uint16(length))
	default:
		if vr.shortLength() {
			vr = VRUN
		}
		dst = append(dst, vr[0], vr[1], 0, 0)
		dst = binary.LittleEndian.AppendUint32(dst, length)
	}
	return append(dst, value...), nil
}

func appendTagLength(dst []byte, tag Tag, length uint32) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, tag.Group())
	dst = binary.LittleEndian.AppendUint16(dst, tag.Element())
	return binary.LittleEndian.AppendUint32(dst, length)
}

// Part 10 files (PS3.10 7.1): a 128-byte preamble, "DICM", then the file meta information
// (group 0002, always explicit VR little endian), then the data set in the transfer syntax
// named by (0002,0010).

const (
	// ImplementationClassUID identifies Ferry's DICOM implementation in A-ASSOCIATE-AC and -RQ
	// (PS3.7 D.3.3.2). It is a UUID-derived UID (PS3.5 B.2): Ferry has no registered root.
	ImplementationClassUID = "2.25.273894841634300639130324624142464356857"
	// ImplementationVersionName goes with ImplementationClassUID (at most 16 characters).
	ImplementationVersionName = "FERRY"
)

// FileMeta is the part of a DICOM file's meta information that identifies its content.
type FileMeta struct {
	MediaStorageSOPClassUID    string
	MediaStorageSOPInstanceUID string
	TransferSyntaxUID          string
	// SourceAETitle is the AE title of the peer that sent the instance (0002,0016); optional.
	SourceAETitle string
}

// AppendFileHeader appends a Part 10 file's preamble, "DICM" and file meta information to dst.
// Write it, then the data set bytes exactly as received in TransferSyntaxUID, and the file is
// complete: how a C-STORE handler stores an instance without decoding it.
func AppendFileHeader(dst []byte, m FileMeta) ([]byte, error) {
	meta := &DataSet{}
	meta.Set(&Element{Tag: NewTag(0x0002, 0x0001), VR: VROB, Value: []byte{0, 1}})
	meta.Set(NewString(NewTag(0x0002, 0x0002), VRUI, m.MediaStorageSOPClassUID))
	meta.Set(NewString(NewTag(0x0002, 0x0003), VRUI, m.MediaStorageSOPInstanceUID))
	meta.Set(NewString(NewTag(0x0002, 0x0010), VRUI, m.TransferSyntaxUID))
	meta.Set(NewString(NewTag(0x0002, 0x0012), VRUI, ImplementationClassUID))
	meta.Set(NewString(NewTag(0x0002, 0x0013), VRSH, ImplementationVersionName))
	if m.SourceAETitle != "" {
		meta.Set(NewString(NewTag(0x0002, 0x0016), VRAE, m.SourceAETitle))
	}
	body, err := appendDataSet(nil, meta, true, 0)
	if err != nil {
		return nil, fmt.Errorf("encoding file meta information: %w", err)
	}
	dst = append(dst, make([]byte, 128)...)
	dst = append(dst, "DICM"...)
	dst, err = appendElement(dst, NewUint32(NewTag(0x0002, 0x0000), uint32(len(body))), true, 0)
	if err != nil {
		return nil, err
	}
	return append(dst, body...), nil
}

// SplitFile splits the bytes of a Part 10 file into its file meta information and its data set
// bytes, and returns the transfer syntax of the data set. Elements of group 0002 are read
// while they last (the group length is not trusted).
func SplitFile(b []byte) (meta *DataSet, dataSet []byte, ts string, err error) {
	if len(b) < 132 || !bytes.Equal(b[128:132], []byte("DICM")) {
		return nil, nil, "", &DataSetError{Offset: 128, Msg: `no "DICM" after the 128-byte preamble`}
	}
	d := &dataSetDecoder{b: b}
	meta = &DataSet{}
	off := 132
	for len(b)-off >= 8 && binary.LittleEndian.Uint16(b[off:]) == 0x0002 {
		e, next, err := d.element(off, len(b), true, 0)
		if err != nil {
			return nil, nil, "", err
		}
		meta.Elements = append(meta.Elements, e)
		off = next
	}
	ts = meta.String(NewTag(0x0002, 0x0010))
	if ts == "" {
		return nil, nil, "", &DataSetError{Offset: off, Msg: "file meta information has no transfer syntax (0002,0010)"}
	}
	return meta, b[off:], ts, nil
}
