package dicom_test

import (
	"testing"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/dicom/dicomtest"
)

// BenchmarkReadInstance reads the header of a stored 512×512 16-bit CT image (about 520 KB),
// as both receivers do for every instance: meta information, header attributes, the pixel
// data's length walked.
func BenchmarkReadInstance(b *testing.B) {
	ds := dicomtest.Instance(dicomtest.CTImageStorage, "1.2.3.4", 512*512*2)
	path := dicomtest.WriteFile(b, b.TempDir(), "ct.dcm", dicom.ExplicitVRLittleEndian, dicomtest.Encode(b, ds, dicom.ExplicitVRLittleEndian))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dicom.ReadInstance(path, 0); err != nil {
			b.Fatal(err)
		}
	}
}
