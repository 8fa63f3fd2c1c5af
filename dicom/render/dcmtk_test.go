package render

import (
	"bytes"
	"fmt"
	"image"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ferryhealth/ferry/internal/peers"
)

// TestAgreesWithDcmtk renders frames both ways — here, and with dcmtk's dcmj2pnm on the same
// pixels written as a DICOM file by dcmtk's dump2dcm — and requires every pixel to agree within
// one gray level (the two round differently at exact halves).
func TestAgreesWithDcmtk(t *testing.T) {
	dump2dcm := peers.Program(t, "dump2dcm", "dcmtk")
	dcmj2pnm := peers.Program(t, "dcmj2pnm", "dcmtk")

	// A CT-like 12-bit frame spanning air to dense bone, stored unsigned with intercept -1024.
	const side = 64
	ctVals := make([]int, side*side)
	for i := range ctVals {
		ctVals[i] = (i * 4095) / (len(ctVals) - 1)
	}
	signedVals := make([]int, side*side)
	for i := range signedVals {
		signedVals[i] = (-2048 + (i*4095)/(len(signedVals)-1)) & 0xFFF
	}
	mono1 := make([]byte, side*side)
	for i := range mono1 {
		mono1[i] = byte(40 + i%150)
	}
	rgb := make([]byte, side*side*3)
	for i := range rgb {
		rgb[i] = byte(i * 7)
	}
	ct := func(vals []int, signed int, intercept float64) Frame {
		return Frame{Rows: side, Columns: side, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 12, HighBit: 11,
			PixelRepresentation: signed, Photometric: "MONOCHROME2", RescaleSlope: 1, RescaleIntercept: intercept, Data: le16(vals...)}
	}
	soft, lung, bone, brain := Presets["soft-tissue"], Presets["lung"], Presets["bone"], Presets["brain"]
	for _, tc := range []struct {
		name  string
		frame Frame
		win   *Window
		args  []string // dcmj2pnm's VOI options for the same rendering
	}{
		{"CT soft tissue", ct(ctVals, 0, -1024), &soft, []string{"+Ww", "40", "400"}},
		{"CT lung", ct(ctVals, 0, -1024), &lung, []string{"+Ww", "-600", "1500"}},
		{"CT bone", ct(ctVals, 0, -1024), &bone, []string{"+Ww", "400", "1800"}},
		{"CT brain", ct(ctVals, 0, -1024), &brain, []string{"+Ww", "40", "80"}},
		{"signed CT brain", ct(signedVals, 1, 0), &brain, []string{"+Ww", "40", "80"}},
		{"the header's window", func() Frame { f := ct(ctVals, 0, -1024); f.Windows = []Window{{Center: 300, Width: 1200}}; return f }(),
			nil, []string{"+Wi", "1"}},
		{"MONOCHROME1 min-max", Frame{Rows: side, Columns: side, SamplesPerPixel: 1, BitsAllocated: 8,
			Photometric: "MONOCHROME1", Data: mono1}, nil, []string{"+Wm"}},
		{"RGB", Frame{Rows: side, Columns: side, SamplesPerPixel: 3, BitsAllocated: 8, Photometric: "RGB", Data: rgb}, nil, nil},
		{"RGB planar", Frame{Rows: side, Columns: side, SamplesPerPixel: 3, BitsAllocated: 8, Photometric: "RGB",
			PlanarConfiguration: 1, Data: rgb}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			dcm := writeDICOM(t, dump2dcm, dir, &tc.frame)
			out := filepath.Join(dir, "out.pnm")
			cmd := exec.Command(dcmj2pnm, append(append([]string{}, tc.args...), "+op", dcm, out)...)
			if res, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("dcmj2pnm: %v\n%s", err, res)
			}
			want := readPNM(t, out)
			img, err := Image(&tc.frame, tc.win)
			if err != nil {
				t.Fatal(err)
			}
			var got []byte
			switch im := img.(type) {
			case *image.Gray:
				got = im.Pix
			case *image.RGBA:
				for i := 0; i < len(im.Pix); i += 4 {
					got = append(got, im.Pix[i:i+3]...)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("%d samples, dcmtk %d", len(got), len(want))
			}
			worst := 0
			for i := range got {
				if d := max(int(got[i])-int(want[i]), int(want[i])-int(got[i])); d > worst {
					worst = d
					if d > 1 {
						t.Fatalf("sample %d: %d, dcmtk %d", i, got[i], want[i])
					}
				}
			}
			t.Logf("largest difference from dcmj2pnm: %d", worst)
		})
	}
}

// writeDICOM writes f as a CT (grayscale) or secondary-capture (colour) DICOM file with dump2dcm.
func writeDICOM(t *testing.T, dump2dcm, dir string, f *Frame) string {
	t.Helper()
	raw := filepath.Join(dir, "pixels.raw")
	if err := os.WriteFile(raw, f.Data, 0o600); err != nil {
		t.Fatal(err)
	}
	var d strings.Builder
	sop := "CTImageStorage"
	if f.SamplesPerPixel == 3 {
		sop = "SecondaryCaptureImageStorage"
	}
	fmt.Fprintf(&d, "(0002,0010) UI =LittleEndianExplicit\n(0008,0016) UI =%s\n", sop)
	fmt.Fprintf(&d, "(0008,0018) UI [1.2.826.0.1.3680043.10.1081.9.1]\n(0020,000d) UI [1.2.826.0.1.3680043.10.1081.9.2]\n")
	fmt.Fprintf(&d, "(0020,000e) UI [1.2.826.0.1.3680043.10.1081.9.3]\n")
	fmt.Fprintf(&d, "(0028,0002) US %d\n(0028,0004) CS [%s]\n", f.SamplesPerPixel, f.Photometric)
	if f.SamplesPerPixel == 3 {
		fmt.Fprintf(&d, "(0028,0006) US %d\n", f.PlanarConfiguration)
	}
	stored := f.stored()
	fmt.Fprintf(&d, "(0028,0010) US %d\n(0028,0011) US %d\n", f.Rows, f.Columns)
	fmt.Fprintf(&d, "(0028,0100) US %d\n(0028,0101) US %d\n(0028,0102) US %d\n(0028,0103) US %d\n",
		f.BitsAllocated, stored, stored-1, f.PixelRepresentation)
	if f.RescaleSlope != 0 {
		fmt.Fprintf(&d, "(0028,1052) DS [%s]\n(0028,1053) DS [%s]\n",
			strconv.FormatFloat(f.RescaleIntercept, 'f', -1, 64), strconv.FormatFloat(f.RescaleSlope, 'f', -1, 64))
	}
	if len(f.Windows) > 0 {
		w := f.Windows[0]
		fmt.Fprintf(&d, "(0028,1050) DS [%g]\n(0028,1051) DS [%g]\n", w.Center, w.Width)
	}
	vr := "OB"
	if f.BitsAllocated == 16 {
		vr = "OW"
	}
	fmt.Fprintf(&d, "(7fe0,0010) %s =%s\n", vr, raw)
	dump := filepath.Join(dir, "frame.dump")
	if err := os.WriteFile(dump, []byte(d.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	dcm := filepath.Join(dir, "frame.dcm")
	if res, err := exec.Command(dump2dcm, dump, dcm).CombinedOutput(); err != nil {
		t.Fatalf("dump2dcm: %v\n%s\n%s", err, res, d.String())
	}
	return dcm
}

// readPNM reads a binary PGM (P5) or PPM (P6) with maxval 255 and returns its samples.
func readPNM(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	fields, rest := [4]string{}, b
	for i := range fields {
		rest = bytes.TrimLeft(rest, " \t\r\n")
		end := bytes.IndexAny(rest, " \t\r\n")
		if end < 0 {
			t.Fatalf("%s: short header", name)
		}
		fields[i], rest = string(rest[:end]), rest[end:]
	}
	if (fields[0] != "P5" && fields[0] != "P6") || fields[3] != "255" {
		t.Fatalf("%s: header %q", name, fields)
	}
	return rest[1:]
}
