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

// JPEGBaseline is JPEG Baseline (Process 1), the one compressed transfer syntax whose frames the
// standard library decodes (PS3.5 A.4.1).
const JPEGBaseline = "1.2.840.10008.1.2.4.50"

// transferSyntaxNames name the transfer syntaxes an answer may have to name (PS3.6 annex A).
var transferSyntaxNames = map[string]string{
	ImplicitVRLittleEndian:         "Implicit VR Little Endian",
	ExplicitVRLittleEndian:         "Explicit VR Little Endian",
	DeflatedExplicitVRLittleEndian: "Deflated Explicit VR Little Endian",
	ExplicitVRBigEndian:            "Explicit VR Big Endian (retired)",
	JPEGBaseline:                   "JPEG Baseline (Process 1)",
	"1.2.840.10008.1.2.4.51":       "JPEG Extended (Process 2 & 4)",
	"1.2.840.10008.1.2.4.57":       "JPEG Lossless, Non-Hierarchical (Process 14)",
	"1.2.840.10008.1.2.4.70":       "JPEG Lossless, First-Order Prediction",
	"1.2.840.10008.1.2.4.80":       "JPEG-LS Lossless",
	"1.2.840.10008.1.2.4.81":       "JPEG-LS Near-Lossless",
	"1.2.840.10008.1.2.4.90":       "JPEG 2000 Lossless Only",
	"1.2.840.10008.1.2.4.91":       "JPEG 2000",
	"1.2.840.10008.1.2.4.201":      "High-Throughput JPEG 2000 Lossless Only",
	"1.2.840.10008.1.2.4.203":      "High-Throughput JPEG 2000",
	"1.2.840.10008.1.2.5":          "RLE Lossless",
	"1.2.840.10008.1.2.4.100":      "MPEG2 Main Profile / Main Level",
	"1.2.840.10008.1.2.4.102":      "MPEG-4 AVC/H.264 High Profile / Level 4.1",
	"1.2.840.10008.1.2.4.107":      "HEVC/H.265 Main Profile / Level 5.1",
}

// TransferSyntaxName returns "NAME (UID)" for a transfer syntax, or the UID alone when this
// package does not know its name: what an answer that refuses it says.
func TransferSyntaxName(uid string) string {
	if n, ok := transferSyntaxNames[uid]; ok {
		return n + " (" + uid + ")"
	}
	return uid
}

// IsNative reports whether a transfer syntax holds pixel data uncompressed (not encapsulated).
func IsNative(ts string) bool {
	switch ts {
	case ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian:
		return true
	}
	return false
}
