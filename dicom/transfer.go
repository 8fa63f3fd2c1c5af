package dicom

import (
	"encoding/binary"
	"errors"
	"strings"
)

// Transfer syntaxes (PS3.5 A.1–A.4, PS3.6 annex A): how a data set is encoded. Data sets in the
// compressed (encapsulated) transfer syntaxes are explicit VR little endian; only their pixel
// data is compressed, in fragments.
const (
	ImplicitVRLittleEndian         = "1.2.840.10008.1.2"
	ExplicitVRLittleEndian         = "1.2.840.10008.1.2.1"
	DeflatedExplicitVRLittleEndian = "1.2.840.10008.1.2.1.99"
	ExplicitVRBigEndian            = "1.2.840.10008.1.2.2" // retired, still sent by old equipment
	transferSyntaxFamily           = "1.2.840.10008.1.2."
)

// dataSetEncoding is how a transfer syntax encodes a data set.
type dataSetEncoding struct {
	byteOrder binary.ByteOrder
	explicit  bool // explicit VR
	deflated  bool // the data set is a deflate stream (PS3.5 A.5)
}

var errUnknownTransferSyntax = errors.New("not a DICOM transfer syntax")

// encodingOf returns the encoding of transfer syntax ts: the four uncompressed ones, and every
// other of the DICOM family (1.2.840.10008.1.2.…) as explicit VR little endian, as the
// compressed ones are.
func encodingOf(ts string) (dataSetEncoding, error) {
	switch ts {
	case ImplicitVRLittleEndian:
		return dataSetEncoding{byteOrder: binary.LittleEndian}, nil
	case ExplicitVRLittleEndian:
		return dataSetEncoding{byteOrder: binary.LittleEndian, explicit: true}, nil
	case DeflatedExplicitVRLittleEndian:
		return dataSetEncoding{byteOrder: binary.LittleEndian, explicit: true, deflated: true}, nil
	case ExplicitVRBigEndian:
		return dataSetEncoding{byteOrder: binary.BigEndian, explicit: true}, nil
	}
	if rest, ok := strings.CutPrefix(ts, transferSyntaxFamily); ok && ValidUID(ts) && rest != "" {
		return dataSetEncoding{byteOrder: binary.LittleEndian, explicit: true}, nil
	}
	return dataSetEncoding{}, errUnknownTransferSyntax
}
