package dicomweb

import (
	"bytes"
	"encoding/binary"
	"net/http"
	"testing"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/internal/workcount"
)

// forgedPart is a Part 10 file of a few hundred bytes whose data set declares an element of
// vl bytes (issue 17, item 4).
func forgedPart(t *testing.T, ts string, dataSet []byte) []byte {
	t.Helper()
	b, err := dicom.AppendFileHeader(nil, dicom.FileMeta{MediaStorageSOPClassUID: "1.2.840.10008.5.1.4.1.1.7",
		MediaStorageSOPInstanceUID: "1.2.3.4", TransferSyntaxUID: ts})
	if err != nil {
		t.Fatal(err)
	}
	return append(append(b, dataSet...), bytes.Repeat([]byte{'A'}, 200)...)
}

func elementHeader(group, element uint16, vr string, vl uint32) []byte {
	b := binary.LittleEndian.AppendUint16(nil, group)
	b = binary.LittleEndian.AppendUint16(b, element)
	if vr == "" { // implicit VR
		return binary.LittleEndian.AppendUint32(b, vl)
	}
	b = append(append(b, vr...), 0, 0)
	return binary.LittleEndian.AppendUint32(b, vl)
}

// TestStoreDeclaredLengths: STOW-RS parts declaring gigabytes are refused (C000) without
// allocating them, and the sound part of the same request is stored.
func TestStoreDeclaredLengths(t *testing.T) {
	// Not parallel: TotalAlloc counts every goroutine's allocations.
	s := newServer(t, Config{})
	forged := [][]byte{
		forgedPart(t, "1.2.840.10008.1.2.1", elementHeader(0x0008, 0x1030, "UT", 1<<31)),
		forgedPart(t, "1.2.840.10008.1.2.1", elementHeader(0x0009, 0x1001, "OB", 0xFFFFFFF0)),
		forgedPart(t, "1.2.840.10008.1.2.1", append(elementHeader(0x0008, 0x1115, "SQ", 0xFFFFFFFF),
			append(elementHeader(0xFFFE, 0xE000, "", 0xFFFFFFFF), elementHeader(0x0008, 0x1150, "UT", 1<<31)...)...)),
		forgedPart(t, "1.2.840.10008.1.2", elementHeader(0x0010, 0x0010, "", 1<<31)),
	}
	parts := []part{{"application/dicom", german.read(t)}}
	for _, f := range forged {
		parts = append(parts, part{"application/dicom", f})
	}
	ct, body := multipartBody(t, `"application/dicom"`, parts...)
	var code int
	var ds map[string]jsonAttribute
	n := workcount.Allocated(func() { code, ds = s.post(t, "/dicomweb/studies", ct, body) })
	if code != http.StatusAccepted {
		t.Fatalf("status %d, want 202 (one stored, the forged ones failed)", code)
	}
	failed := ds[tagFailedSOPSequence].items(t)
	if len(failed) != len(forged) {
		t.Fatalf("%d failed, want %d", len(failed), len(forged))
	}
	for i, f := range failed {
		if r := failureReason(t, f); r != FailureCannotUnderstand {
			t.Errorf("forged part %d: Failure Reason %04X, want C000", i, r)
		}
	}
	if n > 64<<20 {
		t.Errorf("the request allocated %d MiB, want < 64 MiB", n>>20)
	} else {
		t.Logf("the request allocated %.1f MiB", float64(n)/(1<<20))
	}
}
