// Package render turns a frame of DICOM pixel data into an image a browser shows: the pipeline of
// PS3.3 C.11 (stored value → modality rescale → VOI window → presentation) for uncompressed
// grayscale (MONOCHROME1 and MONOCHROME2, 8 to 16 bits, signed or unsigned) and colour (RGB,
// YBR_FULL; interleaved or planar) frames, and for JPEG baseline frames, which the standard
// library decodes. It serves WADO-RS /rendered and /thumbnail and the report page's viewer.
//
// The bytes come from outside (a modality, a STOW-RS client), so a frame is checked before it is
// read: its stated size must match its data exactly and stay within MaxPixels, and nothing here
// allocates more than the image it returns (plus a lookup table of at most 65,536 bytes).
package render

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"strings"
)

// MaxPixels bounds the rows × columns of a frame render accepts (a 16k × 16k whole-slide tile
// would be 268 M): 64 M pixels, beyond any radiograph or mammogram.
const MaxPixels = 64 << 20

// Frame is one frame of pixel data with the attributes of the Image Pixel module that say how to
// read it (PS3.3 C.7.6.3) and those of the Modality LUT and VOI LUT modules that say how to show it.
type Frame struct {
	Rows, Columns       int
	SamplesPerPixel     int    // 1 (grayscale) or 3 (colour)
	BitsAllocated       int    // 8 or 16
	BitsStored          int    // ≤ BitsAllocated; 0 means BitsAllocated
	HighBit             int    // BitsStored-1 in practice; other values are refused
	PixelRepresentation int    // 0 unsigned, 1 two's complement
	Photometric         string // MONOCHROME1, MONOCHROME2, RGB, YBR_FULL
	PlanarConfiguration int    // colour: 0 interleaved (R1G1B1R2…), 1 planes (R…G…B…)
	BigEndian           bool   // Explicit VR Big Endian (retired) data
	// RescaleSlope and RescaleIntercept map stored values to modality values (Hounsfield units
	// for CT). A zero slope means absent: 1.
	RescaleSlope, RescaleIntercept float64
	// Windows are the header's VOI windows (Window Center/Width, in modality units), the first
	// being the default. VOIFunction is the header's VOI LUT Function (LINEAR when empty).
	Windows     []Window
	VOIFunction string
	Data        []byte // exactly Rows × Columns × SamplesPerPixel × BitsAllocated/8 bytes
}

// Window is a VOI window in modality units (C.11.2.1.2).
type Window struct {
	Center, Width float64
	Name          string // the header's Window Center & Width Explanation, or a preset's name
}

// Presets are the usual CT windows (Hounsfield units), by the name a viewer shows. The values are
// the common radiology defaults (lung W1500/L-600, mediastinum/soft tissue W400/L40, bone
// W1800/L400, brain W80/L40).
var Presets = map[string]Window{
	"lung":        {Center: -600, Width: 1500, Name: "Lung"},
	"soft-tissue": {Center: 40, Width: 400, Name: "Soft tissue"},
	"bone":        {Center: 400, Width: 1800, Name: "Bone"},
	"brain":       {Center: 40, Width: 80, Name: "Brain"},
}

// ErrUnsupported is wrapped by every error about a frame render cannot show (as opposed to one
// that is malformed): the caller offers the download instead.
var ErrUnsupported = errors.New("render: unsupported pixel data")

// check reports what is wrong with f before any pixel is read.
func (f *Frame) check() error {
	if f.Rows <= 0 || f.Columns <= 0 {
		return fmt.Errorf("render: %d×%d pixels", f.Rows, f.Columns)
	}
	if f.Rows > MaxPixels/f.Columns {
		return fmt.Errorf("render: %d×%d pixels is more than %d", f.Rows, f.Columns, MaxPixels)
	}
	stored := f.stored()
	switch {
	case f.BitsAllocated != 8 && f.BitsAllocated != 16:
		return fmt.Errorf("%w: %d bits allocated (8 or 16 are shown)", ErrUnsupported, f.BitsAllocated)
	case stored < 1 || stored > f.BitsAllocated:
		return fmt.Errorf("render: %d bits stored of %d allocated", stored, f.BitsAllocated)
	case f.HighBit != 0 && f.HighBit != stored-1:
		return fmt.Errorf("%w: high bit %d with %d bits stored", ErrUnsupported, f.HighBit, stored)
	case f.PixelRepresentation != 0 && f.PixelRepresentation != 1:
		return fmt.Errorf("render: pixel representation %d", f.PixelRepresentation)
	}
	switch f.Photometric {
	case "MONOCHROME1", "MONOCHROME2":
		if f.SamplesPerPixel != 1 {
			return fmt.Errorf("render: %s with %d samples per pixel", f.Photometric, f.SamplesPerPixel)
		}
	case "RGB", "YBR_FULL":
		if f.SamplesPerPixel != 3 || f.BitsAllocated != 8 {
			return fmt.Errorf("%w: %s with %d samples of %d bits (3 of 8 are shown)", ErrUnsupported, f.Photometric, f.SamplesPerPixel, f.BitsAllocated)
		}
	default:
		return fmt.Errorf("%w: photometric interpretation %q", ErrUnsupported, f.Photometric)
	}
	want := f.Rows * f.Columns * f.SamplesPerPixel * (f.BitsAllocated / 8)
	if len(f.Data) != want {
		return fmt.Errorf("render: %d bytes of pixel data for %d×%d×%d samples of %d bits (want %d)",
			len(f.Data), f.Rows, f.Columns, f.SamplesPerPixel, f.BitsAllocated, want)
	}
	return nil
}

func (f *Frame) stored() int {
	if f.BitsStored == 0 {
		return f.BitsAllocated
	}
	return f.BitsStored
}

func (f *Frame) rescale() (slope, intercept float64) {
	if f.RescaleSlope == 0 {
		return 1, f.RescaleIntercept
	}
	return f.RescaleSlope, f.RescaleIntercept
}

// Image renders f. A nil w shows the header's first window, or when the header has none the
// frame's full range of values (min–max); a non-nil w overrides the header (a request's
// ?window= or a preset). Grayscale frames give an *image.Gray, colour frames an *image.RGBA.
func Image(f *Frame, w *Window) (image.Image, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	if f.SamplesPerPixel == 3 {
		return colourImage(f), nil
	}
	lut, err := grayLUT(f, w)
	if err != nil {
		return nil, err
	}
	img := image.NewGray(image.Rect(0, 0, f.Columns, f.Rows))
	mask := uint32(1)<<f.stored() - 1
	if f.BitsAllocated == 8 {
		for i, b := range f.Data {
			img.Pix[i] = lut[uint32(b)&mask]
		}
		return img, nil
	}
	for i := range img.Pix {
		v := uint32(f.Data[2*i]) | uint32(f.Data[2*i+1])<<8
		if f.BigEndian {
			v = uint32(f.Data[2*i])<<8 | uint32(f.Data[2*i+1])
		}
		img.Pix[i] = lut[v&mask]
	}
	return img, nil
}

// grayLUT maps every stored value (masked to BitsStored) to its displayed 8-bit gray level: the
// whole pipeline, computed once per possible value rather than once per pixel.
func grayLUT(f *Frame, w *Window) ([]uint8, error) {
	stored := f.stored()
	n := 1 << stored
	slope, intercept := f.rescale()
	value := func(raw int) float64 {
		if f.PixelRepresentation == 1 && raw >= n/2 {
			raw -= n // two's complement within BitsStored
		}
		return float64(raw)*slope + intercept
	}
	win, fn := Window{}, strings.ToUpper(strings.TrimSpace(f.VOIFunction))
	switch {
	case w != nil:
		win = *w
	case len(f.Windows) > 0:
		win = f.Windows[0]
	default:
		lo, hi := valueRange(f, value)
		win = Window{Center: (lo + hi + 1) / 2, Width: hi - lo + 1} // C.11.2.1.2.1 note 4
		fn = "LINEAR"
	}
	if win.Width < 1 || math.IsNaN(win.Width) || math.IsNaN(win.Center) || math.IsInf(win.Center, 0) || math.IsInf(win.Width, 0) {
		return nil, fmt.Errorf("render: window width %g (at least 1)", win.Width)
	}
	voi, err := voiFunction(fn, win)
	if err != nil {
		return nil, err
	}
	invert := f.Photometric == "MONOCHROME1"
	lut := make([]uint8, n)
	for raw := range lut {
		y := voi(value(raw))
		if invert {
			y = 255 - y
		}
		lut[raw] = uint8(math.Round(y))
	}
	return lut, nil
}

// valueRange is the smallest and largest modality value in f (for a frame without a window).
func valueRange(f *Frame, value func(int) float64) (lo, hi float64) {
	mask := 1<<f.stored() - 1
	seen := make([]bool, mask+1)
	if f.BitsAllocated == 8 {
		for _, b := range f.Data {
			seen[int(b)&mask] = true
		}
	} else {
		for i := 0; i+1 < len(f.Data); i += 2 {
			v := int(f.Data[i]) | int(f.Data[i+1])<<8
			if f.BigEndian {
				v = int(f.Data[i])<<8 | int(f.Data[i+1])
			}
			seen[v&mask] = true
		}
	}
	lo, hi = math.Inf(1), math.Inf(-1)
	for raw, ok := range seen {
		if ok {
			v := value(raw)
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	return lo, hi
}

// voiFunction is the VOI LUT Function of C.11.2.1.2 (output 0–255).
func voiFunction(name string, w Window) (func(float64) float64, error) {
	const ymin, ymax = 0.0, 255.0
	c, width := w.Center, w.Width
	switch name {
	case "", "LINEAR":
		return func(x float64) float64 {
			switch {
			case x <= c-0.5-(width-1)/2:
				return ymin
			case x > c-0.5+(width-1)/2:
				return ymax
			case width == 1:
				return ymax
			}
			return ((x-(c-0.5))/(width-1)+0.5)*(ymax-ymin) + ymin
		}, nil
	case "LINEAR_EXACT":
		return func(x float64) float64 {
			switch {
			case x <= c-width/2:
				return ymin
			case x > c+width/2:
				return ymax
			}
			return ((x-c)/width+0.5)*(ymax-ymin) + ymin
		}, nil
	case "SIGMOID":
		return func(x float64) float64 {
			return (ymax-ymin)/(1+math.Exp(-4*(x-c)/width)) + ymin
		}, nil
	}
	return nil, fmt.Errorf("%w: VOI LUT function %q", ErrUnsupported, name)
}

// colourImage converts an 8-bit RGB or YBR_FULL frame, interleaved or planar.
func colourImage(f *Frame) image.Image {
	img := image.NewRGBA(image.Rect(0, 0, f.Columns, f.Rows))
	n := f.Rows * f.Columns
	for i := range n {
		var a, b, c uint8
		if f.PlanarConfiguration == 1 {
			a, b, c = f.Data[i], f.Data[n+i], f.Data[2*n+i]
		} else {
			a, b, c = f.Data[3*i], f.Data[3*i+1], f.Data[3*i+2]
		}
		if f.Photometric == "YBR_FULL" {
			a, b, c = color.YCbCrToRGB(a, b, c)
		}
		img.Pix[4*i], img.Pix[4*i+1], img.Pix[4*i+2], img.Pix[4*i+3] = a, b, c, 255
	}
	return img
}

// JPEG decodes a JPEG baseline frame (transfer syntax 1.2.840.10008.1.2.4.50) after checking its
// stated size against MaxPixels, so a small file claiming a huge image is refused before the
// decoder allocates for it. A non-nil w windows a grayscale frame (its 8-bit values taken as
// modality values through f's rescale); colour frames are returned as decoded.
func JPEG(data []byte, f *Frame, w *Window) (image.Image, error) {
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: JPEG frame: %v", ErrUnsupported, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Height > MaxPixels/cfg.Width {
		return nil, fmt.Errorf("render: JPEG frame of %d×%d pixels", cfg.Width, cfg.Height)
	}
	img, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("render: JPEG frame: %v", err)
	}
	gray, ok := img.(*image.Gray)
	if !ok || gray.Stride != gray.Rect.Dx() || (w == nil && (f == nil || (len(f.Windows) == 0 && f.Photometric != "MONOCHROME1"))) {
		return img, nil
	}
	g := Frame{Rows: gray.Rect.Dy(), Columns: gray.Rect.Dx(), SamplesPerPixel: 1, BitsAllocated: 8,
		Photometric: "MONOCHROME2", Data: gray.Pix}
	if f != nil {
		g.Photometric, g.RescaleSlope, g.RescaleIntercept, g.Windows, g.VOIFunction = f.Photometric, f.RescaleSlope, f.RescaleIntercept, f.Windows, f.VOIFunction
	}
	return Image(&g, w)
}

// Thumbnail scales img down (never up) so that neither side exceeds size pixels.
func Thumbnail(img image.Image, size int) image.Image { return Fit(img, size, size) }

// Fit scales img down (never up), keeping its aspect, so that it fits in width × height pixels,
// averaging the source pixels each output pixel covers (a box filter: no aliasing on fine CT
// texture). A size of 0 or less leaves img as it is.
func Fit(img image.Image, width, height int) image.Image {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if width <= 0 || height <= 0 || (w <= width && h <= height) {
		return img
	}
	tw, th := width, h*width/w
	if th > height {
		tw, th = w*height/h, height
	}
	tw, th = max(1, tw), max(1, th)
	gray, isGray := img.(*image.Gray)
	if isGray { // the common case: one gray channel, without an interface call per pixel
		out := image.NewGray(image.Rect(0, 0, tw, th))
		for ty := range th {
			y0, y1 := b.Min.Y+ty*h/th, max(b.Min.Y+(ty+1)*h/th, b.Min.Y+ty*h/th+1)
			for tx := range tw {
				x0, x1 := b.Min.X+tx*w/tw, max(b.Min.X+(tx+1)*w/tw, b.Min.X+tx*w/tw+1)
				var sum, n uint64
				for y := y0; y < y1; y++ {
					row := gray.Pix[gray.PixOffset(x0, y):gray.PixOffset(x1, y)]
					for _, v := range row {
						sum += uint64(v)
					}
					n += uint64(len(row))
				}
				out.Pix[ty*out.Stride+tx] = uint8((sum + n/2) / n)
			}
		}
		return out
	}
	out := image.NewRGBA(image.Rect(0, 0, tw, th))
	for ty := range th {
		y0, y1 := b.Min.Y+ty*h/th, max(b.Min.Y+(ty+1)*h/th, b.Min.Y+ty*h/th+1)
		for tx := range tw {
			x0, x1 := b.Min.X+tx*w/tw, max(b.Min.X+(tx+1)*w/tw, b.Min.X+tx*w/tw+1)
			var r, g, bl, n uint64
			for y := y0; y < y1; y++ {
				for x := x0; x < x1; x++ {
					cr, cg, cb, _ := img.At(x, y).RGBA()
					r, g, bl, n = r+uint64(cr>>8), g+uint64(cg>>8), bl+uint64(cb>>8), n+1
				}
			}
			i := out.PixOffset(tx, ty)
			out.Pix[i], out.Pix[i+1], out.Pix[i+2], out.Pix[i+3] = uint8(r/n), uint8(g/n), uint8(bl/n), 255
		}
	}
	return out
}

// Encode writes img as mediaType: image/jpeg (quality 1–100; 0 means 90) or image/png.
func Encode(w io.Writer, img image.Image, mediaType string, quality int) error {
	switch mediaType {
	case "image/jpeg":
		if quality <= 0 || quality > 100 {
			quality = 90
		}
		return jpeg.Encode(w, img, &jpeg.Options{Quality: quality})
	case "image/png":
		enc := png.Encoder{CompressionLevel: png.BestSpeed}
		return enc.Encode(w, img)
	}
	return fmt.Errorf("render: media type %q (image/jpeg or image/png)", mediaType)
}
