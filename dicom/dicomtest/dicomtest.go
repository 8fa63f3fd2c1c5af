// Package dicomtest builds the DICOM data Ferry's tests need, so that they run in a fresh
// clone without the shared corpus: instances of any size and transfer syntax, Part 10 files as
// a receiver writes them, and forged data sets that declare lengths they do not hold (issue
// 17, item 4). Everything here is written for Ferry; nothing is copied from elsewhere.
package dicomtest

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferryhealth/ferry/dicom"
)

// CTImageStorage is the SOP class of the instances built here.
const CTImageStorage = "1.2.840.10008.5.1.4.1.1.2"

// Tags of the instance built by Instance that the dicom package names no constant for.
const (
	TagStudyDate              dicom.Tag = 0x00080020
	TagStudyTime              dicom.Tag = 0x00080030
	TagReferringPhysicianName dicom.Tag = 0x00080090
	TagStudyDescription       dicom.Tag = 0x00081030
	TagSeriesDescription      dicom.Tag = 0x0008103E
	TagIssuerOfPatientID      dicom.Tag = 0x00100021
	TagPatientBirthDate       dicom.Tag = 0x00100030
	TagPatientSex             dicom.Tag = 0x00100040
	TagStudyID                dicom.Tag = 0x00200010
	TagSeriesNumber           dicom.Tag = 0x00200011
	TagInstanceNumber         dicom.Tag = 0x00200013
)

// Instance returns a CT data set with the given UIDs, the header attributes Ferry reads (the
// names in ISO_IR 100: "Müller^Hans", referring "Smïth^Ann") and, when pixelBytes > 0, a
// 16-bit MONOCHROME2 image of at least pixelBytes bytes of pixel data.
func Instance(sopClass, sopInstance string, pixelBytes int) *dicom.DataSet {
	ds := &dicom.DataSet{}
	ds.Set(dicom.NewString(dicom.TagSpecificCharacterSet, dicom.VRCS, "ISO_IR 100"))
	ds.Set(dicom.NewString(dicom.TagSOPClassUID, dicom.VRUI, sopClass))
	ds.Set(dicom.NewString(dicom.TagSOPInstanceUID, dicom.VRUI, sopInstance))
	ds.Set(dicom.NewString(TagStudyDate, dicom.VRDA, "20240105"))
	ds.Set(dicom.NewString(TagStudyTime, dicom.VRTM, "101500"))
	ds.Set(dicom.NewString(dicom.TagAccessionNumber, dicom.VRSH, "ACC42"))
	ds.Set(dicom.NewString(dicom.TagModality, dicom.VRCS, "CT"))
	ds.Set(dicom.NewString(TagReferringPhysicianName, dicom.VRPN, "Sm\xefth^Ann"))
	ds.Set(dicom.NewString(TagStudyDescription, dicom.VRLO, "CT HEAD"))
	ds.Set(dicom.NewString(TagSeriesDescription, dicom.VRLO, "AXIAL 5mm"))
	ds.Set(dicom.NewString(dicom.TagPatientName, dicom.VRPN, "M\xfcller^Hans"))
	ds.Set(dicom.NewString(dicom.TagPatientID, dicom.VRLO, "P42"))
	ds.Set(dicom.NewString(TagIssuerOfPatientID, dicom.VRLO, "STMARYS"))
	ds.Set(dicom.NewString(TagPatientBirthDate, dicom.VRDA, "19600101"))
	ds.Set(dicom.NewString(TagPatientSex, dicom.VRCS, "M"))
	ds.Set(dicom.NewString(dicom.TagStudyInstanceUID, dicom.VRUI, "1.2.826.0.1.3680043.8.498.1"))
	ds.Set(dicom.NewString(dicom.TagSeriesInstanceUID, dicom.VRUI, "1.2.826.0.1.3680043.8.498.1.1"))
	ds.Set(dicom.NewString(TagStudyID, dicom.VRSH, "S1"))
	ds.Set(dicom.NewString(TagSeriesNumber, dicom.VRIS, "3"))
	ds.Set(dicom.NewString(TagInstanceNumber, dicom.VRIS, "17"))
	if pixelBytes > 0 {
		side := uint16(1)
		for int(side)*int(side)*2 < pixelBytes {
			side++
		}
		ds.Set(dicom.NewUint16(dicom.NewTag(0x0028, 0x0002), 1))
		ds.Set(dicom.NewString(dicom.NewTag(0x0028, 0x0004), dicom.VRCS, "MONOCHROME2"))
		ds.Set(dicom.NewUint16(dicom.NewTag(0x0028, 0x0010), side))
		ds.Set(dicom.NewUint16(dicom.NewTag(0x0028, 0x0011), side))
		ds.Set(dicom.NewUint16(dicom.NewTag(0x0028, 0x0100), 16))
		ds.Set(dicom.NewUint16(dicom.NewTag(0x0028, 0x0101), 12))
		ds.Set(dicom.NewUint16(dicom.NewTag(0x0028, 0x0102), 11))
		ds.Set(dicom.NewUint16(dicom.NewTag(0x0028, 0x0103), 0))
		pixels := make([]byte, int(side)*int(side)*2)
		for i := range pixels {
			pixels[i] = byte(i * 7)
			if i%2 == 1 {
				pixels[i] &= 0x0F // the high byte: values within Bits Stored (12)
			}
		}
		ds.Set(&dicom.Element{Tag: dicom.TagPixelData, VR: dicom.VROW, Value: pixels})
	}
	return ds
}

// Image8 makes ds's image (from Instance) 8-bit: one byte per pixel, Bits Stored 8, as JPEG
// baseline needs.
func Image8(ds *dicom.DataSet) {
	px := ds.Get(dicom.TagPixelData)
	if px == nil {
		return
	}
	b := make([]byte, len(px.Value)/2)
	for i := range b {
		b[i] = px.Value[2*i]
	}
	ds.Set(&dicom.Element{Tag: dicom.TagPixelData, VR: dicom.VROB, Value: b})
	ds.Set(dicom.NewUint16(dicom.NewTag(0x0028, 0x0100), 8))
	ds.Set(dicom.NewUint16(dicom.NewTag(0x0028, 0x0101), 8))
	ds.Set(dicom.NewUint16(dicom.NewTag(0x0028, 0x0102), 7))
}

// WriteInstance writes ds as a Part 10 file in explicit VR little endian under dir and returns
// its path: the file a modality would send, for dcmtk's tools to send or convert.
func WriteInstance(t testing.TB, dir, name string, ds *dicom.DataSet) string {
	t.Helper()
	path := filepath.Join(dir, name)
	file := Part10(t, dicom.ExplicitVRLittleEndian, ds.String(dicom.TagSOPClassUID), ds.String(dicom.TagSOPInstanceUID),
		Encode(t, ds, dicom.ExplicitVRLittleEndian))
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Part10 returns a Part 10 file: preamble, file meta information (SOP class and instance from
// the data set when it names them), then body, the data set's bytes in transfer syntax ts.
func Part10(t testing.TB, ts, sopClass, sopInstance string, body []byte) []byte {
	t.Helper()
	b, err := dicom.AppendFileHeader(nil, dicom.FileMeta{MediaStorageSOPClassUID: sopClass,
		MediaStorageSOPInstanceUID: sopInstance, TransferSyntaxUID: ts})
	if err != nil {
		t.Fatal(err)
	}
	return append(b, body...)
}

// WriteFile writes Part10's file under dir as name and returns its path.
func WriteFile(t testing.TB, dir, name, ts string, body []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, Part10(t, ts, CTImageStorage, "1.2.3.4", body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Encode encodes ds in ts: Ferry's encoder for the little endian syntaxes, deflate over it for
// deflated explicit VR little endian. (Big endian is not written: dcmtk's dcmconv does.)
func Encode(t testing.TB, ds *dicom.DataSet, ts string) []byte {
	t.Helper()
	if ts == dicom.DeflatedExplicitVRLittleEndian {
		return Deflate(t, Encode(t, ds, dicom.ExplicitVRLittleEndian), 0)
	}
	b, err := dicom.EncodeDataSet(ds, ts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ExplicitHeader is an element header in explicit VR (the value is whatever follows).
func ExplicitHeader(bo binary.AppendByteOrder, tag dicom.Tag, vr string, vl uint32) []byte {
	b := bo.AppendUint16(nil, tag.Group())
	b = bo.AppendUint16(b, tag.Element())
	b = append(b, vr...)
	switch vr {
	case "OB", "OW", "SQ", "UN", "UT", "UC", "UR", "OD", "OF", "OL":
		b = append(b, 0, 0)
		return bo.AppendUint32(b, vl)
	}
	return bo.AppendUint16(b, uint16(vl))
}

// ImplicitHeader is an element header in implicit VR little endian (items and delimiters too).
func ImplicitHeader(tag dicom.Tag, vl uint32) []byte {
	b := binary.LittleEndian.AppendUint16(nil, tag.Group())
	b = binary.LittleEndian.AppendUint16(b, tag.Element())
	return binary.LittleEndian.AppendUint32(b, vl)
}

// ExplicitString is a text element in explicit VR, padded to even length.
func ExplicitString(bo binary.AppendByteOrder, tag dicom.Tag, vr, v string) []byte {
	if len(v)%2 == 1 {
		v += "\x00"
	}
	return append(ExplicitHeader(bo, tag, vr, uint32(len(v))), v...)
}

// Deflate compresses b followed by zeros zero bytes (a deflate bomb when zeros is large).
func Deflate(t testing.TB, b []byte, zeros int64) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := flate.NewWriter(&out, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	if _, err := io.Copy(w, io.LimitReader(zeroReader{}, zeros)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return out.Bytes()
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// ForgedDataSet is a data set of a few hundred bytes that declares an element of gigabytes.
type ForgedDataSet struct {
	Name, TransferSyntax string
	Body                 []byte
}

// forgedStart is a valid start of a data set: SOP class and instance UIDs.
func forgedStart(bo binary.AppendByteOrder) []byte {
	b := ExplicitString(bo, dicom.TagSOPClassUID, "UI", CTImageStorage)
	return append(b, ExplicitString(bo, dicom.TagSOPInstanceUID, "UI", "1.2.3.4")...)
}

// Forged returns data sets declaring gigabytes in every place a reader meets a length: text,
// bytes, numbers, sequences and items of defined and undefined length, encapsulated fragments,
// after the header groups, in each transfer syntax. Every reader of outside DICOM bytes must
// refuse each without allocating what it declares.
func Forged(t testing.TB) []ForgedDataSet {
	le, be := binary.LittleEndian, binary.BigEndian
	filler := bytes.Repeat([]byte{'A'}, 200)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	explicitLE, implicitLE := dicom.ExplicitVRLittleEndian, dicom.ImplicitVRLittleEndian
	undefined := uint32(dicom.UndefinedLength)
	return []ForgedDataSet{
		{"UT of 2 GiB", explicitLE, cat(forgedStart(le), ExplicitHeader(le, TagStudyDescription, "UT", 1<<31), filler)},
		{"OB of 0xFFFFFFF0", explicitLE, cat(forgedStart(le), ExplicitHeader(le, dicom.NewTag(0x0009, 0x1001), "OB", 0xFFFFFFF0), filler)},
		{"UN of 2 GiB", explicitLE, cat(forgedStart(le), ExplicitHeader(le, dicom.NewTag(0x0009, 0x1002), "UN", 1<<31), filler)},
		{"FD of 2 GiB", explicitLE, cat(forgedStart(le), ExplicitHeader(le, dicom.NewTag(0x0018, 0x9087), "FD", 0xFFFE), filler)},
		{"DA of undefined length (0xFFFF)", explicitLE, cat(forgedStart(le), ExplicitHeader(le, TagStudyDate, "DA", 0xFFFF), filler)},
		{"UT of 2 GiB in an item of a defined-length sequence", explicitLE, cat(forgedStart(le),
			ExplicitHeader(le, dicom.NewTag(0x0008, 0x1115), "SQ", 8+12+200), ImplicitHeader(dicom.TagItem, 12+200),
			ExplicitHeader(le, dicom.NewTag(0x0008, 0x1150), "UT", 1<<31), filler)},
		{"UT of 2 GiB in an undefined-length item and sequence", explicitLE, cat(forgedStart(le),
			ExplicitHeader(le, dicom.NewTag(0x0008, 0x1115), "SQ", undefined), ImplicitHeader(dicom.TagItem, undefined),
			ExplicitHeader(le, dicom.NewTag(0x0008, 0x1150), "UT", 1<<31), filler)},
		{"item of 2 GiB", explicitLE, cat(forgedStart(le),
			ExplicitHeader(le, dicom.NewTag(0x0008, 0x1115), "SQ", undefined), ImplicitHeader(dicom.TagItem, 1<<31), filler)},
		{"fragment of 2 GiB in encapsulated bytes", explicitLE, cat(forgedStart(le),
			ExplicitHeader(le, dicom.NewTag(0x0009, 0x1003), "OB", undefined), ImplicitHeader(dicom.TagItem, 1<<31), filler)},
		{"pixel data fragment of 2 GiB", "1.2.840.10008.1.2.4.50", cat(forgedStart(le),
			ExplicitHeader(le, dicom.TagPixelData, "OB", undefined), ImplicitHeader(dicom.TagItem, 0), ImplicitHeader(dicom.TagItem, 1<<31), filler)},
		{"Rows of 2 GiB after the header groups", explicitLE, cat(forgedStart(le), ExplicitHeader(le, dicom.NewTag(0x0028, 0x0010), "UT", 1<<31), filler)},
		{"implicit VR: Patient's Name of 2 GiB", implicitLE, cat(ImplicitHeader(dicom.TagSOPClassUID, 26), []byte(CTImageStorage+"\x00"),
			ImplicitHeader(dicom.TagPatientName, 1<<31), filler)},
		{"implicit VR: Image Position of 0xFFFFFFF0", implicitLE, cat(ImplicitHeader(dicom.NewTag(0x0020, 0x0032), 0xFFFFFFF0), filler)},
		{"implicit VR: private element of 2 GiB", implicitLE, cat(ImplicitHeader(dicom.NewTag(0x0009, 0x1010), 1<<31), filler)},
		{"big endian: UT of 2 GiB", dicom.ExplicitVRBigEndian, cat(forgedStart(be), ExplicitHeader(be, TagStudyDescription, "UT", 1<<31), filler)},
		{"deflated: UT of 2 GiB", dicom.DeflatedExplicitVRLittleEndian, Deflate(t, cat(forgedStart(le), ExplicitHeader(le, TagStudyDescription, "UT", 1<<31), filler), 0)},
		{"deflated: 64 MiB of zeros declared and present (a deflate bomb)", dicom.DeflatedExplicitVRLittleEndian,
			Deflate(t, cat(forgedStart(le), ExplicitHeader(le, TagStudyDescription, "UT", 64<<20)), 64<<20)},
	}
}
