package dicom

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// sampleDataSet is a worklist-like identifier with the structures the codec must handle:
// strings of odd length (padded), an empty value, an empty sequence, a sequence with items and a
// nested sequence, binary values, an unknown tag and a private creator.
func sampleDataSet() *DataSet {
	code := &DataSet{}
	code.Set(NewString(NewTag(0x0008, 0x0100), VRSH, "CT123"))
	code.Set(NewString(NewTag(0x0008, 0x0102), VRSH, "L"))
	sps := &DataSet{}
	sps.Set(NewString(NewTag(0x0040, 0x0001), VRAE, "CT01"))
	sps.Set(NewString(NewTag(0x0040, 0x0002), VRDA, "20240101-20240131"))
	sps.Set(NewSequence(NewTag(0x0040, 0x0008), code))
	sps.Set(NewString(TagModality, VRCS, "CT"))
	ds := &DataSet{}
	ds.Set(NewString(TagSpecificCharacterSet, VRCS, "ISO_IR 100"))
	ds.Set(NewString(TagAccessionNumber, VRSH, "ACC1"))
	ds.Set(NewString(TagPatientName, VRPN, "DOE^JOHN"))
	ds.Set(NewString(TagPatientID, VRLO, "")) // a return key: empty
	ds.Set(NewString(TagStudyInstanceUID, VRUI, "1.2.3"))
	ds.Set(NewSequence(TagScheduledProcedureStepSequence, sps, &DataSet{}))
	ds.Set(NewSequence(NewTag(0x0040, 0x0026))) // empty sequence
	ds.Set(NewUint16(NewTag(0x0010, 0x21C0), 4))
	ds.Set(NewString(NewTag(0x0029, 0x0010), VRLO, "ACME 1.1"))
	ds.Set(&Element{Tag: NewTag(0x0029, 0x1001), VR: VRUN, Value: []byte{1, 2, 3, 4}})
	return ds
}

func TestDataSetRoundTrip(t *testing.T) {
	t.Parallel()
	for _, ts := range []string{ImplicitVRLittleEndian, ExplicitVRLittleEndian, "1.2.840.10008.1.2.4.50"} {
		t.Run(ts, func(t *testing.T) {
			b, err := EncodeDataSet(sampleDataSet(), ts)
			if err != nil {
				t.Fatal(err)
			}
			ds, err := DecodeDataSet(b, ts, DecodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := ds.String(TagAccessionNumber); got != "ACC1" {
				t.Errorf("accession %q", got)
			}
			if e := ds.Get(TagStudyInstanceUID); string(e.Value) != "1.2.3\x00" || ds.String(TagStudyInstanceUID) != "1.2.3" {
				t.Errorf("UI padding: %q", e.Value)
			}
			if e := ds.Get(TagAccessionNumber); string(e.Value) != "ACC1" {
				t.Errorf("even value changed: %q", e.Value)
			}
			if e := ds.Get(NewTag(0x0029, 0x0010)); e.VR != VRLO || ds.String(e.Tag) != "ACME 1.1" {
				t.Errorf("private creator: %s %q", e.VR, e.Value)
			}
			if v, ok := ds.Uint16(NewTag(0x0010, 0x21C0)); !ok || v != 4 {
				t.Errorf("US value %d %v", v, ok)
			}
			seq := ds.Get(TagScheduledProcedureStepSequence)
			if seq.VR != VRSQ || len(seq.Items) != 2 || len(seq.Items[1].Elements) != 0 {
				t.Fatalf("sequence: %s with %d items", seq.VR, len(seq.Items))
			}
			sps := seq.Items[0]
			if sps.String(TagModality) != "CT" || sps.Get(NewTag(0x0040, 0x0008)).Items[0].String(NewTag(0x0008, 0x0100)) != "CT123" {
				t.Errorf("nested values lost")
			}
			if e := ds.Get(NewTag(0x0040, 0x0026)); e.VR != VRSQ || e.Items == nil || len(e.Items) != 0 {
				t.Errorf("empty sequence: %+v", e)
			}
			if e := ds.Get(NewTag(0x0029, 0x1001)); e.VR != VRUN || !bytes.Equal(e.Value, []byte{1, 2, 3, 4}) {
				t.Errorf("unknown element: %+v", e)
			}
			b2, err := EncodeDataSet(ds, ts)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, b2) {
				t.Error("second encoding differs from the first")
			}
		})
	}
}

// le builds little-endian test input: strings are written as they are, uint16 and uint32 as
// little-endian, []byte as is.
func le(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch v := p.(type) {
		case string:
			b = append(b, v...)
		case []byte:
			b = append(b, v...)
		case uint16:
			b = binary.LittleEndian.AppendUint16(b, v)
		case uint32:
			b = binary.LittleEndian.AppendUint32(b, v)
		case Tag:
			b = binary.LittleEndian.AppendUint16(b, v.Group())
			b = binary.LittleEndian.AppendUint16(b, v.Element())
		default:
			panic("le: unsupported type")
		}
	}
	return b
}

func TestDecodeUndefinedLengths(t *testing.T) {
	t.Parallel()
	spsTag, aeTag := TagScheduledProcedureStepSequence, NewTag(0x0040, 0x0001)
	tests := []struct {
		name  string
		ts    string
		in    []byte
		check func(*DataSet) string
	}{
		{"explicit: SQ and item of undefined length", ExplicitVRLittleEndian, le(
			spsTag, "SQ", uint16(0), uint32(UndefinedLength),
			TagItem, uint32(UndefinedLength),
			aeTag, "AE", uint16(4), "CT01",
			TagItemDelimitation, uint32(0),
			TagSequenceDelimitation, uint32(0),
			TagPatientID, "LO", uint16(2), "P1"),
			func(ds *DataSet) string {
				if ds.Get(spsTag).Items[0].String(aeTag) != "CT01" || ds.String(TagPatientID) != "P1" {
					return "values lost"
				}
				return ""
			}},
		{"implicit: SQ of defined length, item of undefined length", ImplicitVRLittleEndian, le(
			spsTag, uint32(8+12+8),
			TagItem, uint32(UndefinedLength),
			aeTag, uint32(4), "CT02",
			TagItemDelimitation, uint32(0),
			TagPatientID, uint32(2), "P2"),
			func(ds *DataSet) string {
				if ds.Get(spsTag).Items[0].String(aeTag) != "CT02" || ds.String(TagPatientID) != "P2" {
					return "values lost"
				}
				return ""
			}},
		{"implicit: unknown tag of undefined length is a sequence", ImplicitVRLittleEndian, le(
			NewTag(0x0009, 0x1010), uint32(UndefinedLength),
			TagItem, uint32(12), aeTag, uint32(4), "CT03",
			TagSequenceDelimitation, uint32(0)),
			func(ds *DataSet) string {
				if e := ds.Get(NewTag(0x0009, 0x1010)); e.VR != VRSQ || e.Items[0].String(aeTag) != "CT03" {
					return "not read as a sequence"
				}
				return ""
			}},
		{"explicit: UN of undefined length holds implicit VR content", ExplicitVRLittleEndian, le(
			NewTag(0x0009, 0x1010), "UN", uint16(0), uint32(UndefinedLength),
			TagItem, uint32(UndefinedLength), aeTag, uint32(4), "CT04", TagItemDelimitation, uint32(0),
			TagSequenceDelimitation, uint32(0)),
			func(ds *DataSet) string {
				if e := ds.Get(NewTag(0x0009, 0x1010)); e.VR != VRSQ || e.Items[0].String(aeTag) != "CT04" {
					return "not read as a sequence"
				}
				return ""
			}},
		{"implicit: unknown tag of defined length holding items", ImplicitVRLittleEndian, le(
			NewTag(0x0009, 0x1010), uint32(20), TagItem, uint32(12), aeTag, uint32(4), "CT05"),
			func(ds *DataSet) string {
				if e := ds.Get(NewTag(0x0009, 0x1010)); e.VR != VRSQ || e.Items[0].String(aeTag) != "CT05" {
					return "not read as a sequence"
				}
				return ""
			}},
		{"implicit: unknown tag that only looks like items stays opaque", ImplicitVRLittleEndian, le(
			NewTag(0x0009, 0x1010), uint32(10), TagItem, uint32(99), uint16(1)),
			func(ds *DataSet) string {
				if e := ds.Get(NewTag(0x0009, 0x1010)); e.VR != VRUN || len(e.Value) != 10 {
					return "not kept opaque"
				}
				return ""
			}},
		{"explicit: encapsulated pixel data", "1.2.840.10008.1.2.4.50", le(
			TagPixelData, "OB", uint16(0), uint32(UndefinedLength),
			TagItem, uint32(0), // empty basic offset table
			TagItem, uint32(4), []byte{0xFF, 0xD8, 0xFF, 0xD9},
			TagSequenceDelimitation, uint32(0)),
			func(ds *DataSet) string {
				if e := ds.Get(TagPixelData); len(e.Fragments) != 2 || len(e.Fragments[1]) != 4 {
					return "fragments lost"
				}
				return ""
			}},
		{"StopAt ends before pixel data and ignores what follows", ExplicitVRLittleEndian, le(
			TagPatientID, "LO", uint16(2), "P9", TagPixelData, "OW", uint16(0), uint32(1000), "truncated"),
			func(ds *DataSet) string {
				if len(ds.Elements) != 1 || ds.String(TagPatientID) != "P9" {
					return "StopAt not honoured"
				}
				return ""
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ds, err := DecodeDataSet(tc.in, tc.ts, DecodeOptions{StopAt: stopAt(tc.name)})
			if err != nil {
				t.Fatal(err)
			}
			if msg := tc.check(ds); msg != "" {
				t.Fatal(msg)
			}
			// Re-encoded (with defined lengths), it reads back the same.
			b, err := EncodeDataSet(ds, tc.ts)
			if err != nil {
				t.Fatal(err)
			}
			ds2, err := DecodeDataSet(b, tc.ts, DecodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if msg := tc.check(ds2); msg != "" {
				t.Errorf("after re-encoding: %s", msg)
			}
		})
	}
}

func TestDecodeDataSetErrors(t *testing.T) {
	t.Parallel()
	deep := le() // 33 nested sequences of undefined length
	for range maxNesting + 1 {
		deep = append(deep, le(NewTag(0x0009, 0x1010), "SQ", uint16(0), uint32(UndefinedLength), TagItem, uint32(UndefinedLength))...)
	}
	tests := []struct {
		name   string
		ts     string
		in     []byte
		offset int
	}{
		{"header cut", ExplicitVRLittleEndian, le(TagPatientID, "LO"), 0},
		{"long header cut", ExplicitVRLittleEndian, le(TagPatientID, "OB", uint16(0), uint16(0)), 0},
		{"value past the end", ExplicitVRLittleEndian, le(TagPatientID, "LO", uint16(10), "P1"), 0},
		{"implicit value past the end", ImplicitVRLittleEndian, le(TagPatientID, uint32(0xFFFFFFF0), "P1"), 0},
		{"VR bytes not letters", ExplicitVRLittleEndian, le(TagPatientID, uint16(2), uint16(2), "P1"), 0},
		{"undefined length on a text VR", ExplicitVRLittleEndian, le(TagPatientID, "LO", uint16(0xFFFF), "xx"), 0},
		{"item tag at the top level", ExplicitVRLittleEndian, le(TagItem, uint32(0)), 0},
		{"sequence without delimiter", ExplicitVRLittleEndian, le(TagScheduledProcedureStepSequence, "SQ", uint16(0), uint32(UndefinedLength), TagItem, uint32(0)), 20},
		{"item without delimiter", ExplicitVRLittleEndian, le(TagScheduledProcedureStepSequence, "SQ", uint16(0), uint32(UndefinedLength), TagItem, uint32(UndefinedLength)), 20},
		{"not an item in a sequence", ExplicitVRLittleEndian, le(TagScheduledProcedureStepSequence, "SQ", uint16(0), uint32(8), TagPatientID, uint32(0)), 12},
		{"item longer than its sequence", ExplicitVRLittleEndian, le(TagScheduledProcedureStepSequence, "SQ", uint16(0), uint32(8), TagItem, uint32(4)), 12},
		{"fragment past the end", ExplicitVRLittleEndian, le(TagPixelData, "OB", uint16(0), uint32(UndefinedLength), TagItem, uint32(100)), 12},
		{"nested too deep", ExplicitVRLittleEndian, deep, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeDataSet(tc.in, tc.ts, DecodeOptions{})
			var de *DataSetError
			if !errors.As(err, &de) {
				t.Fatalf("error %v, want *DataSetError", err)
			}
			if tc.offset >= 0 && de.Offset != tc.offset {
				t.Errorf("offset %d, want %d (%v)", de.Offset, tc.offset, err)
			}
		})
	}
	for _, ts := range []string{"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99", "1.2.3.4"} {
		if _, err := DecodeDataSet(nil, ts, DecodeOptions{}); !errors.Is(err, ErrUnsupportedTransferSyntax) {
			t.Errorf("%s: %v, want ErrUnsupportedTransferSyntax", ts, err)
		}
	}
}

func TestEncodeLongValueAsUN(t *testing.T) {
	t.Parallel()
	ds := &DataSet{}
	ds.Set(&Element{Tag: NewTag(0x0040, 0x0400), VR: VRLT, Value: bytes.Repeat([]byte("x"), 70000)})
	b, err := EncodeDataSet(ds, ExplicitVRLittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	if string(b[4:6]) != "UN" {
		t.Errorf("VR written %q, want UN", b[4:6])
	}
}

func TestStringsPadding(t *testing.T) {
	t.Parallel()
	tests := []struct {
		e    *Element
		want []string
	}{
		{&Element{VR: VRCS, Value: []byte(" ORIGINAL\\PRIMARY ")}, []string{"ORIGINAL", "PRIMARY"}},
		{&Element{VR: VRPN, Value: []byte("DOE^JOHN ")}, []string{"DOE^JOHN"}},
		{&Element{VR: VRLT, Value: []byte(" a\\b ")}, []string{" a\\b"}},
		{&Element{VR: VRUI, Value: []byte("1.2.3\x00")}, []string{"1.2.3"}},
		{&Element{VR: VRLO, Value: nil}, nil},
	}
	for _, tc := range tests {
		if got := tc.e.Strings(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s %q: %q, want %q", tc.e.VR, tc.e.Value, got, tc.want)
		}
	}
}

func TestFileHeader(t *testing.T) {
	t.Parallel()
	hdr, err := AppendFileHeader(nil, FileMeta{MediaStorageSOPClassUID: "1.2.840.10008.5.1.4.1.1.2", MediaStorageSOPInstanceUID: "1.2.3",
		TransferSyntaxUID: ImplicitVRLittleEndian, SourceAETitle: "CT01"})
	if err != nil {
		t.Fatal(err)
	}
	body := le(TagPatientID, uint32(2), "P1")
	meta, ds, ts, err := SplitFile(append(hdr, body...))
	if err != nil {
		t.Fatal(err)
	}
	if ts != ImplicitVRLittleEndian || !bytes.Equal(ds, body) || meta.String(NewTag(0x0002, 0x0003)) != "1.2.3" {
		t.Errorf("SplitFile: ts %q, data set %x", ts, ds)
	}
	// The group length counts the meta elements after it (PS3.10 7.1).
	if gl := binary.LittleEndian.Uint32(hdr[140:]); int(gl) != len(hdr)-144 {
		t.Errorf("group length %d, want %d", gl, len(hdr)-144)
	}
	if _, _, _, err := SplitFile([]byte("not dicom")); err == nil {
		t.Error("SplitFile accepted a file without DICM")
	}
}

// corpusDICOM is the shared corpus of DICOM files beside the repository: an extra source of
// real files where it is present (CI), never required — Ferry's own tests build what they need.
const corpusDICOM = "../../shared/corpus/dicom"

// stopAt is the StopAt option of the cases whose name starts with "StopAt": pixel data.
func stopAt(name string) Tag {
	if strings.HasPrefix(name, "StopAt") {
		return TagPixelData
	}
	return 0
}

// corpusFiles returns the Part 10 files of the shared corpus, or skips.
func corpusFiles(t testing.TB) []string {
	t.Helper()
	files := corpusFilesOrNil()
	if len(files) == 0 {
		t.Skipf("shared corpus absent (%s): this test reads real files from it, an extra check run in CI; the tests beside it use Ferry's own data", corpusDICOM)
	}
	return files
}

// corpusFilesOrNil returns the .dcm and .wl files of the shared corpus.
func corpusFilesOrNil() []string {
	var files []string
	err := filepath.WalkDir(corpusDICOM, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ext := filepath.Ext(path); !d.IsDir() && (ext == ".dcm" || ext == ".wl") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil
	}
	return files
}

// TestCorpusDataSets decodes every DICOM file of the shared corpus that is a Part 10 file in a
// supported transfer syntax, and checks that re-encoding it is stable. Files known to be
// damaged (their names say so) must fail with a *DataSetError instead.
func TestCorpusDataSets(t *testing.T) {
	t.Parallel()
	decoded, worklists := 0, 0
	for _, path := range corpusFiles(t) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		_, body, ts, err := SplitFile(b)
		if err != nil {
			continue // not a Part 10 file (raw data sets, deliberately broken headers)
		}
		name := filepath.Base(path)
		ds, err := DecodeDataSet(body, ts, DecodeOptions{})
		if errors.Is(err, ErrUnsupportedTransferSyntax) {
			continue
		}
		if err != nil {
			var de *DataSetError
			if !errors.As(err, &de) {
				t.Errorf("%s: %v, want a *DataSetError", name, err)
			} else if !damaged(name) {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		decoded++
		e1, err := EncodeDataSet(ds, ts)
		if err != nil {
			t.Errorf("%s: encoding: %v", name, err)
			continue
		}
		ds2, err := DecodeDataSet(e1, ts, DecodeOptions{})
		if err != nil {
			t.Errorf("%s: decoding the re-encoding: %v", name, err)
			continue
		}
		if e2, _ := EncodeDataSet(ds2, ts); !bytes.Equal(e1, e2) {
			t.Errorf("%s: re-encoding is not stable", name)
		}
		if strings.HasSuffix(name, ".wl") && ds.Get(TagScheduledProcedureStepSequence) != nil {
			worklists++
			if seq := ds.Get(TagScheduledProcedureStepSequence); seq.VR != VRSQ {
				t.Errorf("%s: ScheduledProcedureStepSequence read as %s", name, seq.VR)
			}
		}
	}
	t.Logf("%d corpus data sets decoded, %d worklist items with a scheduled procedure step", decoded, worklists)
	if decoded < 50 || worklists < 5 {
		t.Errorf("decoded %d data sets and %d worklists; the corpus should give more", decoded, worklists)
	}
}

// corpusBroken are corpus files that are not valid, checked against dcmtk's dcmdump: the reason.
var corpusBroken = map[string]string{
	"test_files__SC_rgb_jpeg.dcm":                      "its meta information says explicit VR; the data set is implicit VR (dcmdump fails too)",
	"test_files__dicomdirtests__DICOMDIR-nooffset.dcm": "its last directory record runs 24 bytes past the sequence and the file",
}

// damaged reports whether a corpus file is known to be broken, or its name says so.
func damaged(name string) bool {
	if _, ok := corpusBroken[name]; ok {
		return true
	}
	for _, w := range []string{"truncated", "bad", "invalid", "broken", "no_meta", "corrupt", "undefined_length"} {
		if strings.Contains(strings.ToLower(name), w) {
			return true
		}
	}
	return false
}

// TestDictionaryAgainstDcmtk checks this package's dictionary against dcmtk's data dictionary,
// an independent source, when it is installed.
func TestDictionaryAgainstDcmtk(t *testing.T) {
	t.Parallel()
	paths, _ := filepath.Glob("/usr/share/libdcmtk*/dicom.dic")
	if len(paths) == 0 {
		t.Skip("dcmtk's dicom.dic not installed (Debian dcmtk)")
	}
	f, err := os.Open(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type entry struct{ vr, keyword string }
	dcmtk := map[Tag]entry{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) < 3 || len(fields[0]) != 11 || fields[0][0] != '(' {
			continue
		}
		g, err1 := hex.DecodeString(fields[0][1:5])
		e, err2 := hex.DecodeString(fields[0][6:10])
		if err1 != nil || err2 != nil {
			continue // ranges such as (60xx,3000)
		}
		dcmtk[NewTag(binary.BigEndian.Uint16(g), binary.BigEndian.Uint16(e))] = entry{fields[1], fields[2]}
	}
	for tag, want := range dictionary {
		got, ok := dcmtk[tag]
		if !ok {
			t.Errorf("%s %s: not in dcmtk's dictionary", tag, want.keyword)
			continue
		}
		vr := got.vr
		if vr == "ox" || vr == "xs" || vr == "lt" || vr == "px" {
			vr = string(want.vr) // dcmtk's "either" VRs
		}
		if VR(vr) != want.vr || got.keyword != want.keyword {
			t.Errorf("%s: %s %s here, %s %s in dcmtk", tag, want.vr, want.keyword, got.vr, got.keyword)
		}
	}
}
