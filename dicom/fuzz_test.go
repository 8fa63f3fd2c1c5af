package dicom

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

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
	f.Add(le(TagScheduledProcedureStepSequence, "SQ", uint16(0), uint32(UndefinedLength), TagItem, uint32(UndefinedLength),
		TagPatientID, "LO", uint16(2), "P1", TagItemDelimitation, uint32(0), TagSequenceDelimitation, uint32(0)), true)
	f.Add(le(TagPixelData, "OB", uint16(0), uint32(UndefinedLength), TagItem, uint32(0), TagItem, uint32(2), "ab",
		TagSequenceDelimitation, uint32(0)), true)
	// Sequences as worklist identifiers carry them: in explicit VR a defined-length sequence
	// holding an empty item and an item of undefined length with a nested undefined-length code
	// sequence; in implicit VR an undefined-length sequence the dictionary knows, and one it
	// does not (read as SQ by its undefined length).
	const codeValue, scheduledProtocolCodeSequence Tag = 0x00080100, 0x00400008
	code := le(TagItem, uint32(10), codeValue, "SH", uint16(2), "P1")
	nested := le(scheduledProtocolCodeSequence, "SQ", uint16(0), uint32(UndefinedLength), code, TagSequenceDelimitation, uint32(0))
	items := le(TagItem, uint32(0), TagItem, uint32(UndefinedLength), TagModality, "CS", uint16(2), "CT", nested, TagItemDelimitation, uint32(0))
	f.Add(le(TagAccessionNumber, "SH", uint16(0), TagScheduledProcedureStepSequence, "SQ", uint16(0), uint32(len(items)), items), true)
	f.Add(le(TagScheduledProcedureStepSequence, uint32(UndefinedLength), TagItem, uint32(UndefinedLength), TagModality, uint32(2), "CT",
		TagItemDelimitation, uint32(0), TagSequenceDelimitation, uint32(0)), false)
	f.Add(le(NewTag(0x0041, 0x1010), uint32(UndefinedLength), TagItem, uint32(10), TagPatientID, uint32(2), "P1",
		TagSequenceDelimitation, uint32(0)), false)
	for _, s := range corpusSeeds() {
		f.Add(s.data, s.explicit)
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
// minimizes every new interesting input, slowly for large ones), or nothing when the corpus is
// absent.
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
