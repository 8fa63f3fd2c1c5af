package render

import (
	"fmt"
	"image"
	"strconv"
	"strings"

	"github.com/ferryhealth/ferry/dicom"
)

// Tags of the Modality LUT and VOI LUT modules (PS3.3 C.11.1, C.11.2) FrameOf reads.
const (
	tagWindowCenter            dicom.Tag = 0x00281050
	tagWindowWidth             dicom.Tag = 0x00281051
	tagRescaleIntercept        dicom.Tag = 0x00281052
	tagRescaleSlope            dicom.Tag = 0x00281053
	tagWindowCenterExplanation dicom.Tag = 0x00281055
	tagVOILUTFunction          dicom.Tag = 0x00281056
)

// maxWindows bounds the header windows FrameOf keeps (a header may list many).
const maxWindows = 16

// FrameOf describes the frames of an image data set (its Image Pixel, Modality LUT and VOI
// LUT attributes), without their Data. Values that do not parse are left at their zero value,
// which Image then refuses or takes as absent.
func FrameOf(ds *dicom.DataSet) Frame {
	us := func(t dicom.Tag) int {
		v, _ := ds.Uint16(t)
		return int(v)
	}
	f := Frame{
		Rows: us(dicom.TagRows), Columns: us(dicom.TagColumns), SamplesPerPixel: us(dicom.TagSamplesPerPixel),
		BitsAllocated: us(dicom.TagBitsAllocated), BitsStored: us(dicom.TagBitsStored), HighBit: us(dicom.TagHighBit),
		PixelRepresentation: us(dicom.TagPixelRepresentation), PlanarConfiguration: us(dicom.TagPlanarConfiguration),
		Photometric:      strings.ToUpper(ds.String(dicom.TagPhotometricInterpretation)),
		RescaleSlope:     decimal(ds.String(tagRescaleSlope)),
		RescaleIntercept: decimal(ds.String(tagRescaleIntercept)),
		VOIFunction:      ds.String(tagVOILUTFunction),
	}
	if f.SamplesPerPixel == 0 {
		f.SamplesPerPixel = 1
	}
	centers, widths := values(ds, tagWindowCenter), values(ds, tagWindowWidth)
	names := values(ds, tagWindowCenterExplanation)
	for i := 0; i < len(centers) && i < len(widths) && i < maxWindows; i++ {
		w := Window{Center: decimal(centers[i]), Width: decimal(widths[i])}
		if i < len(names) {
			w.Name = names[i]
		}
		if w.Width >= 1 {
			f.Windows = append(f.Windows, w)
		}
	}
	return f
}

func values(ds *dicom.DataSet, t dicom.Tag) []string {
	if e := ds.Get(t); e != nil {
		return e.Strings()
	}
	return nil
}

// decimal reads a DS value; 0 when it does not parse.
func decimal(s string) float64 {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return 0
	}
	return v
}

// Decode renders a frame's stored bytes in transfer syntax ts: native little endian pixel data
// through Image, JPEG baseline through JPEG. Any other syntax is an error wrapping
// ErrUnsupported that names it.
func Decode(ts string, f *Frame, data []byte, w *Window) (image.Image, error) {
	switch {
	case ts == dicom.JPEGBaseline:
		return JPEG(data, f, w)
	case dicom.IsNative(ts):
		g := *f
		g.Data, g.BigEndian = data, ts == dicom.ExplicitVRBigEndian
		return Image(&g, w)
	}
	return nil, fmt.Errorf("%w: transfer syntax %s", ErrUnsupported, dicom.TransferSyntaxName(ts))
}
