package dicom_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"slices"
	"testing"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/dicom/dicomtest"
	"github.com/ferryhealth/ferry/internal/workcount"
)

// encapsulated returns the Pixel Data element of encapsulated frames: a Basic Offset Table
// (offsets of the frames' first items, when bot) and the fragments.
func encapsulated(bot bool, frames ...[][]byte) []byte {
	le := binary.LittleEndian
	var items, table []byte
	for _, frags := range frames {
		table = le.AppendUint32(table, uint32(len(items)))
		for _, f := range frags {
			items = append(items, dicomtest.ImplicitHeader(dicom.TagItem, uint32(len(f)))...)
			items = append(items, f...)
		}
	}
	if !bot {
		table = nil
	}
	out := dicomtest.ExplicitHeader(le, dicom.TagPixelData, "OB", dicom.UndefinedLength)
	out = append(out, dicomtest.ImplicitHeader(dicom.TagItem, uint32(len(table)))...)
	out = append(out, table...)
	out = append(out, items...)
	return append(out, dicomtest.ImplicitHeader(dicom.TagSequenceDelimitation, 0)...)
}

// TestStoredFrames: native frames by size, encapsulated ones by the Basic Offset Table, one
// fragment per frame without it, every fragment for one frame; frame numbers past the count
// refused.
func TestStoredFrames(t *testing.T) {
	t.Parallel()
	header := func(frames string, rows uint16) []byte {
		ds := dicomtest.Instance(dicomtest.CTImageStorage, "1.2.3.4", 0)
		ds.Set(dicom.NewUint16(dicom.TagRows, rows))
		ds.Set(dicom.NewUint16(dicom.TagColumns, 2))
		ds.Set(dicom.NewUint16(dicom.TagBitsAllocated, 8))
		ds.Set(dicom.NewString(dicom.TagNumberOfFrames, dicom.VRIS, frames))
		return dicomtest.Encode(t, ds, dicom.ExplicitVRLittleEndian)
	}
	native := append(header("3", 1), dicomtest.ExplicitHeader(binary.LittleEndian, dicom.TagPixelData, "OB", 6)...)
	native = append(native, "aabbcc"...)
	a, b1, b2, c := []byte("AAAA"), []byte("BB"), []byte("bb"), []byte("CCCCCC")
	for _, tc := range []struct {
		name, ts string
		body     []byte
		want     []string // frames 1…
	}{
		{"native", dicom.ExplicitVRLittleEndian, native, []string{"aa", "bb", "cc"}},
		{"basic offset table", dicom.JPEGBaseline, append(header("3", 1), encapsulated(true, [][]byte{a}, [][]byte{b1, b2}, [][]byte{c})...), []string{"AAAA", "BBbb", "CCCCCC"}},
		{"a fragment a frame", dicom.JPEGBaseline, append(header("3", 1), encapsulated(false, [][]byte{a}, [][]byte{b1}, [][]byte{c})...), []string{"AAAA", "BB", "CCCCCC"}},
		{"one frame in fragments", dicom.JPEGBaseline, append(header("1", 1), encapsulated(false, [][]byte{a, b1, c})...), []string{"AAAABBCCCCCC"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := dicomtest.Part10(t, tc.ts, dicomtest.CTImageStorage, "1.2.3.4", tc.body)
			st, err := dicom.ReadStored(bytes.NewReader(file), int64(len(file)), 0)
			if err != nil {
				t.Fatal(err)
			}
			if st.DataSet.String(dicom.TagSOPInstanceUID) != "1.2.3.4" || st.Pixels == nil {
				t.Fatalf("data set or pixel data not read")
			}
			for i, want := range tc.want {
				spans, err := st.Frame(i + 1)
				if err != nil {
					t.Fatalf("frame %d: %v", i+1, err)
				}
				r, n := st.FrameReader(spans)
				got, _ := io.ReadAll(r)
				if string(got) != want || n != int64(len(want)) {
					t.Errorf("frame %d: %q (%d bytes), want %q", i+1, got, n, want)
				}
			}
			if _, err := st.Frame(len(tc.want) + 1); !errors.Is(err, dicom.ErrNoFrame) {
				t.Errorf("frame %d of %d: %v", len(tc.want)+1, len(tc.want), err)
			}
		})
	}
}

// TestReadStoredDeclaredLengths: the retrieval read refuses or bounds every forged length,
// allocating none of them.
func TestReadStoredDeclaredLengths(t *testing.T) {
	// Not parallel: TotalAlloc counts every goroutine's allocations.
	forged := dicomtest.Forged(t)
	files := make([][]byte, len(forged))
	for i, f := range forged {
		files[i] = dicomtest.Part10(t, f.TransferSyntax, dicomtest.CTImageStorage, "1.2.3.4", f.Body)
	}
	n := workcount.Allocated(func() {
		for _, file := range files {
			if st, err := dicom.ReadStored(bytes.NewReader(file), int64(len(file)), 1<<20); err == nil && st.Pixels != nil {
				st.Frame(1)
			}
		}
	})
	if n > allocBudget {
		t.Errorf("reading %d forged instances allocated %d MiB, want < %d MiB", len(files), n>>20, allocBudget>>20)
	}
}

// FuzzReadStored feeds arbitrary data sets as stored files to ReadStored and reads the frames
// of what it accepts. It must never panic nor allocate more than its budget allows.
func FuzzReadStored(f *testing.F) {
	syntaxes := []string{dicom.ExplicitVRLittleEndian, dicom.ImplicitVRLittleEndian, dicom.DeflatedExplicitVRLittleEndian, dicom.JPEGBaseline}
	for _, ts := range syntaxes[:2] {
		f.Add(dicomtest.Encode(f, dicomtest.Instance(dicomtest.CTImageStorage, "1.2.3.4", 64), ts), uint8(slices.Index(syntaxes, ts)))
	}
	f.Add(encapsulated(true, [][]byte{[]byte("AAAA")}, [][]byte{[]byte("BB")}), uint8(3))
	for _, fd := range dicomtest.Forged(f) {
		if len(fd.Body) < 4<<10 {
			f.Add(fd.Body, uint8(max(0, slices.Index(syntaxes, fd.TransferSyntax))))
		}
	}
	const budget = 1 << 20
	f.Fuzz(func(t *testing.T, data []byte, tsIndex uint8) {
		ts := syntaxes[int(tsIndex)%len(syntaxes)]
		file := dicomtest.Part10(t, ts, dicomtest.CTImageStorage, "1.2.3.4", data)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		st, err := dicom.ReadStored(bytes.NewReader(file), int64(len(file)), budget)
		if err == nil && st.Pixels != nil {
			for n := 1; n <= min(st.NumberOfFrames(), 4); n++ {
				if spans, err := st.Frame(n); err == nil {
					r, _ := st.FrameReader(spans)
					io.Copy(io.Discard, r)
				}
			}
		}
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 {
			t.Fatalf("reading a %d-byte instance allocated %d MiB", len(data), n>>20)
		}
	})
}
