package dimse

import (
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
)

// FuzzReadPDU feeds arbitrary bytes to ReadPDU, the first code to touch bytes from a peer. It
// must never panic; what it accepts must encode, read back, and encode to the same bytes.
func FuzzReadPDU(f *testing.F) {
	for _, p := range samplePDUs() {
		b, err := EncodePDU(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add(mustEncodePDU(f, verificationRQ()))
	f.Add(mustEncodePDU(f, &PDataTF{Items: []PDV{{ContextID: 1, Command: true, Last: true, Data: mustEncode(f, &Command{Field: CEchoRQ, MessageID: 1, AffectedSOPClassUID: VerificationSOPClass})}}}))
	f.Add([]byte{0x09, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ReadPDU(bytes.NewReader(data), 1<<16)
		if err != nil {
			var pduErr *PDUError
			var tooLarge *PDUTooLargeError
			if !errors.As(err, &pduErr) && !errors.As(err, &tooLarge) && err != io.EOF && err != io.ErrUnexpectedEOF {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			return
		}
		if rq, ok := p.(*AssociateRQ); ok {
			_ = rq.PresentationContexts[0].TransferSyntaxes[0] // the decoder guarantees one of each
		}
		e1, err := EncodePDU(p)
		if err != nil {
			if strings.Contains(err.Error(), "exceed 65535") {
				return // the maximum length sub-item, always written, can push a full item over
			}
			t.Fatalf("encoding an accepted PDU: %v", err)
		}
		p2, err := ReadPDU(bytes.NewReader(e1), 1<<20)
		if err != nil {
			t.Fatalf("reading back an encoded PDU: %v", err)
		}
		e2, err := EncodePDU(p2)
		if err != nil || !bytes.Equal(e1, e2) {
			t.Fatalf("encoding is not stable (%v):\n%x\n%x", err, e1, e2)
		}
	})
}

// FuzzDataSet feeds arbitrary bytes to DecodeDataSet in both encodings. It must never panic;
// what it accepts must encode, and the encoding must decode and re-encode to the same bytes.
// Seeds: this package's own data sets and, when present, the data sets of the shared corpus.
func FuzzDataSet(f *testing.F) {
	for _, ts := range []string{ImplicitVRLittleEndian, ExplicitVRLittleEndian} {
		b, err := EncodeDataSet(sampleDataSet(), ts)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, ts == ExplicitVRLittleEndian)
	}
	f.Add(le(TagScheduledProcedureStepSequence, "SQ", uint16(0), uint32(undefinedLength), TagItem, uint32(undefinedLength),
		TagPatientID, "LO", uint16(2), "P1", TagItemDelimitation, uint32(0), TagSequenceDelimitation, uint32(0)), true)
	f.Add(le(tagPixelData, "OB", uint16(0), uint32(undefinedLength), TagItem, uint32(0), TagItem, uint32(2), "ab",
		TagSequenceDelimitation, uint32(0)), true)
	// Sequences as worklist identifiers carry them: a modality's query in both encodings; in
	// explicit VR a defined-length sequence holding an empty item and an item of undefined
	// length with a nested undefined-length code sequence; in implicit VR an undefined-length
	// sequence the dictionary knows, and one it does not (read as SQ by its undefined length).
	for _, explicit := range []bool{false, true} {
		ts := ImplicitVRLittleEndian
		if explicit {
			ts = ExplicitVRLittleEndian
		}
		b, err := EncodeDataSet(typicalModalityQuery("20240105-20240106"), ts)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, explicit)
	}
	code := le(TagItem, uint32(10), tagCodeValue, "SH", uint16(2), "P1")
	nested := le(tagScheduledProtocolCodeSequence, "SQ", uint16(0), uint32(undefinedLength), code, TagSequenceDelimitation, uint32(0))
	items := le(TagItem, uint32(0), TagItem, uint32(undefinedLength), TagModality, "CS", uint16(2), "CT", nested, TagItemDelimitation, uint32(0))
	f.Add(le(TagAccessionNumber, "SH", uint16(0), TagScheduledProcedureStepSequence, "SQ", uint16(0), uint32(len(items)), items), true)
	f.Add(le(TagScheduledProcedureStepSequence, uint32(undefinedLength), TagItem, uint32(undefinedLength), TagModality, uint32(2), "CT",
		TagItemDelimitation, uint32(0), TagSequenceDelimitation, uint32(0)), false)
	f.Add(le(NewTag(0x0041, 0x1010), uint32(undefinedLength), TagItem, uint32(10), TagPatientID, uint32(2), "P1",
		TagSequenceDelimitation, uint32(0)), false)
	if files := corpusSeeds(); len(files) > 0 {
		for _, s := range files {
			f.Add(s.data, s.explicit)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, explicit bool) {
		ts := ImplicitVRLittleEndian
		if explicit {
			ts = ExplicitVRLittleEndian
		}
		ds, err := DecodeDataSet(data, ts, DecodeOptions{})
		if err != nil {
			var de *DataSetError
			if !errors.As(err, &de) {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			return
		}
		for _, e := range ds.Elements {
			_ = e.Strings()
			_ = e.Keyword()
		}
		e1, err := EncodeDataSet(ds, ts)
		if err != nil {
			t.Fatalf("encoding an accepted data set: %v", err)
		}
		ds2, err := DecodeDataSet(e1, ts, DecodeOptions{})
		if err != nil {
			t.Fatalf("decoding an encoded data set: %v", err)
		}
		e2, err := EncodeDataSet(ds2, ts)
		if err != nil || !bytes.Equal(e1, e2) {
			t.Fatalf("encoding is not stable (%v)", err)
		}
	})
}

type corpusSeed struct {
	data     []byte
	explicit bool
}

// corpusSeeds returns the data sets of the shared corpus's small files (up to 16 KiB: the fuzzer
// minimizes every new interesting input, slowly for large ones), or
// nothing when the corpus is absent.
func corpusSeeds() []corpusSeed {
	var seeds []corpusSeed
	for _, path := range corpusFilesOrNil() {
		st, err := os.Stat(path)
		if err != nil || st.Size() > 16<<10 {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		_, body, ts, err := SplitFile(b)
		if err != nil {
			continue
		}
		explicit, err := explicitVR(ts)
		if err != nil {
			continue
		}
		seeds = append(seeds, corpusSeed{body, explicit})
	}
	return seeds
}

// FuzzReadInstance feeds arbitrary data sets, in each transfer syntax the header read knows, to
// the declared-length guard and then to ReadInstanceWithin, as a Part 10 file. The guard must
// never panic and refuse only with its own error; whatever passes it must be read by
// suyashkumar/dicom allocating no more than the header budget allows (issue 17, item 4).
func FuzzReadInstance(f *testing.F) {
	syntaxes := []string{ExplicitVRLittleEndian, ImplicitVRLittleEndian, explicitVRBigEndian, deflatedExplicitVRLittleEndian}
	for _, ts := range syntaxes[:2] {
		b, err := EncodeDataSet(testInstance(ctImageStorage, "1.2.3.4", 64), ts)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(slices.Index(syntaxes, ts)))
	}
	for _, fd := range forgedDataSets(f) {
		if len(fd.body) < 4<<10 {
			f.Add(fd.body, uint8(max(0, slices.Index(syntaxes, fd.ts))))
		}
	}
	for _, s := range corpusSeeds() {
		f.Add(s.data, uint8(0))
	}
	dir := f.TempDir()
	const budget = 1 << 20
	f.Fuzz(func(t *testing.T, data []byte, tsIndex uint8) {
		ts := syntaxes[int(tsIndex)%len(syntaxes)]
		path := writePart10(t, dir, "fuzz.dcm", ts, data)
		file, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := file.Stat()
		scan, err := scanInstanceHeader(file, fi.Size(), budget)
		file.Close()
		if err != nil {
			var le *lengthError
			if !errors.As(err, &le) {
				t.Fatalf("the guard failed with %T: %v", err, err)
			}
			return
		}
		if scan.end > fi.Size() {
			t.Fatalf("the guard ends the header at %d, past the file's %d bytes", scan.end, fi.Size())
		}
		if n := allocated(func() { _, _ = ReadInstanceWithin(path, budget) }); n > 64<<20 {
			t.Fatalf("reading a %d-byte instance the guard passed allocated %d MiB", len(data), n>>20)
		}
	})
}
