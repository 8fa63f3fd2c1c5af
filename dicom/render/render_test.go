package render

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"
)

// le16 packs stored values as 16-bit little-endian pixel data.
func le16(vals ...int) []byte {
	out := make([]byte, 2*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint16(out[2*i:], uint16(v))
	}
	return out
}

func TestGrayPipeline(t *testing.T) {
	ct := func(data []byte, w ...Window) *Frame {
		return &Frame{Rows: 1, Columns: len(data) / 2, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 12,
			HighBit: 11, Photometric: "MONOCHROME2", RescaleSlope: 1, RescaleIntercept: -1024, Windows: w, Data: data}
	}
	soft := Presets["soft-tissue"] // C40 W400: HU ≤ -160 black, > 239 white
	tests := []struct {
		name  string
		frame *Frame
		win   *Window
		want  []uint8
	}{
		{"CT soft tissue: air, edges, centre, bone", ct(le16(0, 1024-160, 1024+40, 1024+239, 1024+240, 3000)), &soft,
			[]uint8{0, 0, 128, 255, 255, 255}},
		{"the header's window when none is asked", ct(le16(1024-600, 1024+40), Window{Center: 40, Width: 80}), nil,
			[]uint8{0, 129}},
		{"a request's window beats the header's", ct(le16(1024-600), Window{Center: 40, Width: 80}), &Window{Center: -600, Width: 1500},
			[]uint8{128}},
		{"no window: the frame's range", ct(le16(1000, 1100, 1200)), nil, []uint8{0, 128, 255}},
		{"stored bits only: bits above BitsStored are overlay, ignored", ct(le16(0xF000|1064), Window{Center: 40, Width: 1}), nil,
			[]uint8{255}},
		{"signed 16-bit", &Frame{Rows: 1, Columns: 3, SamplesPerPixel: 1, BitsAllocated: 16, PixelRepresentation: 1,
			Photometric: "MONOCHROME2", Data: le16(-1000&0xFFFF, 0, 1000)}, &Window{Center: 0.5, Width: 2000}, []uint8{0, 128, 255}},
		{"signed 12 of 16 bits: sign bit is bit 11", &Frame{Rows: 1, Columns: 2, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 12,
			HighBit: 11, PixelRepresentation: 1, Photometric: "MONOCHROME2", Data: le16(0xFFF, 0x7FF)}, &Window{Center: 0.5, Width: 4096}, []uint8{127, 255}},
		{"MONOCHROME1 is inverted", &Frame{Rows: 1, Columns: 2, SamplesPerPixel: 1, BitsAllocated: 8, Photometric: "MONOCHROME1",
			Data: []byte{10, 200}}, nil, []uint8{255, 0}},
		{"big endian", &Frame{Rows: 1, Columns: 2, SamplesPerPixel: 1, BitsAllocated: 16, Photometric: "MONOCHROME2", BigEndian: true,
			Data: []byte{0x01, 0x00, 0x00, 0x01}}, &Window{Center: 128.5, Width: 256}, []uint8{255, 0}},
		{"LINEAR_EXACT", &Frame{Rows: 1, Columns: 3, SamplesPerPixel: 1, BitsAllocated: 8, Photometric: "MONOCHROME2",
			VOIFunction: "LINEAR_EXACT", Data: []byte{50, 100, 151}}, &Window{Center: 100, Width: 100}, []uint8{0, 128, 255}},
		{"SIGMOID", &Frame{Rows: 1, Columns: 1, SamplesPerPixel: 1, BitsAllocated: 8, Photometric: "MONOCHROME2",
			VOIFunction: "SIGMOID", Data: []byte{100}}, &Window{Center: 100, Width: 100}, []uint8{128}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img, err := Image(tc.frame, tc.win)
			if err != nil {
				t.Fatal(err)
			}
			if got := img.(*image.Gray).Pix; !bytes.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestColour(t *testing.T) {
	for _, tc := range []struct {
		name  string
		f     Frame
		want0 color.RGBA
	}{
		{"RGB interleaved", Frame{Photometric: "RGB", Data: []byte{255, 0, 0, 0, 0, 255}}, color.RGBA{255, 0, 0, 255}},
		{"RGB planar", Frame{Photometric: "RGB", PlanarConfiguration: 1, Data: []byte{255, 0, 0, 0, 0, 255}}, color.RGBA{255, 0, 0, 255}},
		{"YBR_FULL", Frame{Photometric: "YBR_FULL", Data: []byte{76, 85, 255, 29, 255, 107}}, color.RGBA{254, 0, 0, 255}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.f
			f.Rows, f.Columns, f.SamplesPerPixel, f.BitsAllocated = 1, 2, 3, 8
			img, err := Image(&f, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := img.At(0, 0).(color.RGBA); got != tc.want0 {
				t.Errorf("first pixel %v, want %v", got, tc.want0)
			}
		})
	}
}

// TestRefused: a frame that is malformed or asks more than it is worth is refused before any
// pixel is read; one Ferry cannot show says so with ErrUnsupported (the page offers the download).
func TestRefused(t *testing.T) {
	ok := Frame{Rows: 2, Columns: 2, SamplesPerPixel: 1, BitsAllocated: 8, Photometric: "MONOCHROME2", Data: make([]byte, 4)}
	for _, tc := range []struct {
		name        string
		edit        func(*Frame)
		unsupported bool
	}{
		{"short data", func(f *Frame) { f.Data = f.Data[:3] }, false},
		{"long data", func(f *Frame) { f.Data = append(f.Data, 0) }, false},
		{"huge claim", func(f *Frame) { f.Rows, f.Columns = 1<<20, 1<<20 }, false},
		{"zero rows", func(f *Frame) { f.Rows = 0 }, false},
		{"bits stored above allocated", func(f *Frame) { f.BitsStored = 12 }, false},
		{"32 bits", func(f *Frame) { f.BitsAllocated = 32; f.Data = make([]byte, 16) }, true},
		{"palette colour", func(f *Frame) { f.Photometric = "PALETTE COLOR" }, true},
		{"odd high bit", func(f *Frame) { f.BitsStored, f.HighBit = 7, 3 }, true},
		{"grayscale with 3 samples", func(f *Frame) { f.SamplesPerPixel = 3; f.Data = make([]byte, 12) }, false},
		{"16-bit RGB", func(f *Frame) {
			f.Photometric, f.SamplesPerPixel, f.BitsAllocated = "RGB", 3, 16
			f.Data = make([]byte, 24)
		}, true},
		{"unknown VOI function", func(f *Frame) { f.VOIFunction = "CUBIC"; f.Windows = []Window{{Center: 1, Width: 2}} }, true},
		{"zero-width window", func(f *Frame) { f.Windows = []Window{{Center: 1, Width: 0}} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := ok
			f.Data = append([]byte(nil), ok.Data...)
			tc.edit(&f)
			_, err := Image(&f, nil)
			if err == nil {
				t.Fatal("rendered")
			}
			if errors.Is(err, ErrUnsupported) != tc.unsupported {
				t.Errorf("%v: unsupported=%v, want %v", err, errors.Is(err, ErrUnsupported), tc.unsupported)
			}
		})
	}
}

func TestJPEGBaseline(t *testing.T) {
	src := image.NewGray(image.Rect(0, 0, 16, 8))
	for i := range src.Pix {
		src.Pix[i] = uint8(i * 2)
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, src, &jpeg.Options{Quality: 100}); err != nil {
		t.Fatal(err)
	}
	img, err := JPEG(buf.Bytes(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 16 || b.Dy() != 8 {
		t.Fatalf("bounds %v", b)
	}
	// Windowed: a narrow window around the middle makes the first pixels black, the last white.
	win, err := JPEG(buf.Bytes(), &Frame{Photometric: "MONOCHROME2"}, &Window{Center: 128, Width: 20})
	if err != nil {
		t.Fatal(err)
	}
	g := win.(*image.Gray)
	if g.Pix[0] != 0 || g.Pix[len(g.Pix)-1] != 255 {
		t.Errorf("windowed JPEG: first %d, last %d", g.Pix[0], g.Pix[len(g.Pix)-1])
	}
	// A header claiming 65535×65535 is refused before the decoder allocates for it.
	huge := bytes.Clone(buf.Bytes())
	if i := bytes.Index(huge, []byte{0xFF, 0xC0}); i < 0 {
		t.Fatal("no SOF0")
	} else {
		copy(huge[i+5:], []byte{0xFF, 0xFF, 0xFF, 0xFF})
	}
	if _, err := JPEG(huge, nil, nil); err == nil {
		t.Error("a 65535×65535 JPEG was decoded")
	}
	if _, err := JPEG([]byte("not a jpeg"), nil, nil); !errors.Is(err, ErrUnsupported) {
		t.Errorf("garbage: %v", err)
	}
}

func TestThumbnailAndEncode(t *testing.T) {
	src := image.NewGray(image.Rect(0, 0, 512, 256))
	for i := range src.Pix {
		src.Pix[i] = 200
	}
	th := Thumbnail(src, 128)
	if b := th.Bounds(); b.Dx() != 128 || b.Dy() != 64 {
		t.Fatalf("thumbnail %v", b)
	}
	if r, _, _, _ := th.At(10, 10).RGBA(); r>>8 != 200 {
		t.Errorf("thumbnail gray %d, want 200", r>>8)
	}
	if Thumbnail(src, 1024) != image.Image(src) {
		t.Error("a small image was scaled up")
	}
	for _, mt := range []string{"image/jpeg", "image/png"} {
		var buf bytes.Buffer
		if err := Encode(&buf, th, mt, 0); err != nil {
			t.Fatal(err)
		}
		var err error
		if mt == "image/png" {
			_, err = png.Decode(&buf)
		} else {
			_, err = jpeg.Decode(&buf)
		}
		if err != nil {
			t.Errorf("%s does not decode: %v", mt, err)
		}
	}
	if err := Encode(&bytes.Buffer{}, th, "image/gif", 0); err == nil {
		t.Error("gif accepted")
	}
}

// FuzzImage: whatever a header claims and whatever bytes follow, Image returns an image of the
// claimed size or an error, never panics, and never reads past the data.
func FuzzImage(f *testing.F) {
	f.Add(uint16(2), uint16(2), uint8(1), uint8(8), uint8(8), uint8(0), uint8(0), false, []byte{1, 2, 3, 4})
	f.Add(uint16(1), uint16(2), uint8(1), uint8(16), uint8(12), uint8(1), uint8(1), true, le16(0xFFF, 0x7FF))
	f.Add(uint16(1), uint16(1), uint8(3), uint8(8), uint8(8), uint8(0), uint8(2), false, []byte{1, 2, 3})
	photometric := []string{"MONOCHROME2", "MONOCHROME1", "RGB", "YBR_FULL", "PALETTE COLOR"}
	f.Fuzz(func(t *testing.T, rows, cols uint16, spp, alloc, stored, signed, pi uint8, big bool, data []byte) {
		fr := &Frame{Rows: int(rows), Columns: int(cols), SamplesPerPixel: int(spp), BitsAllocated: int(alloc),
			BitsStored: int(stored), PixelRepresentation: int(signed), Photometric: photometric[int(pi)%len(photometric)],
			BigEndian: big, RescaleSlope: 1, Data: data}
		img, err := Image(fr, nil)
		if err != nil {
			return
		}
		if b := img.Bounds(); b.Dx() != int(cols) || b.Dy() != int(rows) {
			t.Fatalf("image %v for %d×%d", b, rows, cols)
		}
	})
}

func BenchmarkImage(b *testing.B) {
	ct := &Frame{Rows: 512, Columns: 512, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 12, HighBit: 11,
		Photometric: "MONOCHROME2", RescaleSlope: 1, RescaleIntercept: -1024, Windows: []Window{Presets["soft-tissue"]},
		Data: make([]byte, 512*512*2)}
	for i := range 512 * 512 {
		binary.LittleEndian.PutUint16(ct.Data[2*i:], uint16(i%4096))
	}
	b.Run("CT512", func(b *testing.B) {
		b.SetBytes(int64(len(ct.Data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Image(ct, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	img, _ := Image(ct, nil)
	b.Run("Thumbnail128", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Thumbnail(img, 128)
		}
	})
	b.Run("EncodeJPEG", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := Encode(&bytes.Buffer{}, img, "image/jpeg", 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}
