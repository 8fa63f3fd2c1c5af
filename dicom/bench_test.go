package dicom

import "testing"

// BenchmarkDecodeIdentifier decodes a worklist-like C-FIND identifier in explicit VR.
func BenchmarkDecodeIdentifier(b *testing.B) {
	id, err := EncodeDataSet(sampleDataSet(), ExplicitVRLittleEndian)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(id)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeDataSet(id, ExplicitVRLittleEndian, DecodeOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
