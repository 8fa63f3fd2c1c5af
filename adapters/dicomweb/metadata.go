package dicomweb

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/engine"
)

// Retrieve Metadata (PS3.18 10.4.1.1.2): each instance's data set in the DICOM JSON Model
// (PS3.18 F.2), text decoded from its Specific Character Set to UTF-8 (and so named ISO_IR 192),
// binary values of up to inlineBinaryMax bytes inline (base64), larger ones and Pixel Data as a
// BulkDataURI that the bulkdata route answers. The file meta information is not part of it.

// inlineBinaryMax is the largest binary value metadata carries inline.
const inlineBinaryMax = 1024

// stored reads an instance's stored file for retrieval.
func (s *STOW) stored(inst *engine.Instance) (*dicom.Stored, func(), error) {
	f, err := s.open(inst)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("WADO-RS: instance %s: %w", inst.SOPInstanceUID, err)
	}
	st, err := dicom.ReadStored(f, fi.Size(), s.cfg.MaxHeaderSize)
	if err != nil {
		f.Close()
		if errors.Is(err, dicom.ErrUnsupportedTransferSyntax) {
			return nil, nil, echo.NewHTTPError(http.StatusNotAcceptable, fmt.Sprintf(
				"instance %s is stored in %s, which Ferry serves only as stored: retrieve the instance", inst.SOPInstanceUID, dicom.TransferSyntaxName(inst.TransferSyntaxUID)))
		}
		return nil, nil, fmt.Errorf("WADO-RS: reading instance %s: %w", inst.SOPInstanceUID, err)
	}
	return st, func() { f.Close() }, nil
}

// metadata answers Retrieve Metadata at study, series or instance level: a JSON array with
// one data set per instance, written as each is read.
func (s *STOW) metadata(c echo.Context) error {
	if !acceptsJSON(acceptable(c)) {
		return echo.NewHTTPError(http.StatusNotAcceptable, "metadata is answered as application/dicom+json")
	}
	_, insts, err := s.found(c)
	if err != nil {
		return err
	}
	base := baseURL(c)
	w := c.Response()
	for i, inst := range insts {
		st, done, err := s.stored(inst)
		if err != nil {
			if i == 0 {
				return err
			}
			return s.abort(err, inst)
		}
		ds := jsonDataSet(st.DataSet, st.CharacterSet, base+instancePath(inst)+"/bulkdata/", "")
		done()
		if st.Pixels != nil {
			ds[tagKey(dicom.TagPixelData)] = attribute{VR: string(st.Pixels.VR), BulkDataURI: base + instancePath(inst) + "/bulkdata/" + tagKey(dicom.TagPixelData)}
		}
		ds[tagSpecificCharacterSet] = text("CS", "ISO_IR 192")
		b := encode(ds)
		if i == 0 {
			w.Header().Set(echo.HeaderContentType, MediaTypeDICOMJSON)
			w.WriteHeader(http.StatusOK)
			b = append([]byte{'['}, b...)
		} else {
			b = append([]byte{','}, b...)
		}
		if _, err := w.Write(b); err != nil {
			return s.abort(err, inst)
		}
	}
	_, err = w.Write([]byte{']'})
	return err
}

func acceptsJSON(ranges []acceptRange) bool {
	for _, r := range ranges {
		switch r.mediaType {
		case "*/*", "application/*", MediaTypeDICOMJSON, "application/json":
			return true
		}
	}
	return false
}

func tagKey(t dicom.Tag) string { return fmt.Sprintf("%08X", uint32(t)) }

// jsonDataSet converts a data set to the DICOM JSON Model. bulk is the URI prefix of the
// instance's bulk data; path is the location of ds within the instance ("" at the top, else
// "SEQTAG/ITEM/").
func jsonDataSet(ds *dicom.DataSet, cs *dicom.CharacterSet, bulk, path string) dataset {
	out := dataset{}
	for _, e := range ds.Elements {
		if e.Tag.Element() == 0 || e.Tag.Group() == 0x0002 || e.Tag.Group() == 0xFFFE {
			continue // group lengths (retired), file meta information, delimiters
		}
		out[tagKey(e.Tag)] = attributeOf(e, cs, bulk, path)
	}
	return out
}

func attributeOf(e *dicom.Element, cs *dicom.CharacterSet, bulk, path string) attribute {
	vr := e.VR
	a := attribute{VR: string(vr)}
	switch {
	case e.Items != nil || vr == dicom.VRSQ:
		a.VR = "SQ"
		for i, item := range e.Items {
			a.Value = append(a.Value, jsonDataSet(item, cs, bulk, fmt.Sprintf("%s%s/%d/", path, tagKey(e.Tag), i)))
		}
		return a
	case e.Fragments != nil:
		a.BulkDataURI = bulk + path + tagKey(e.Tag)
		return a
	case len(e.Value) == 0:
		return a
	}
	switch vr {
	case dicom.VRPN:
		for _, v := range textValues(e, cs) {
			if v == "" {
				a.Value = append(a.Value, nil)
				continue
			}
			a.Value = append(a.Value, personName(v).Value[0])
		}
	case dicom.VRIS, dicom.VRDS:
		for _, v := range textValues(e, cs) {
			n, err := strconv.ParseFloat(v, 64)
			switch {
			case v == "" || err != nil || math.IsNaN(n) || math.IsInf(n, 0):
				a.Value = append(a.Value, nil)
			case vr == dicom.VRIS && n == math.Trunc(n):
				a.Value = append(a.Value, int64(n))
			default:
				a.Value = append(a.Value, n)
			}
		}
	case dicom.VRUS, dicom.VRSS, dicom.VRUL, dicom.VRSL, dicom.VRFL, dicom.VRFD, dicom.VRSV, dicom.VRUV, dicom.VRAT:
		a.Value = binaryNumbers(vr, e.Value)
	case dicom.VROB, dicom.VROD, dicom.VROF, dicom.VROL, dicom.VROV, dicom.VROW, dicom.VRUN:
		if len(e.Value) > inlineBinaryMax {
			a.BulkDataURI = bulk + path + tagKey(e.Tag)
		} else {
			a.InlineBinary = base64.StdEncoding.EncodeToString(e.Value)
		}
	default:
		if !vr.IsText() { // a VR this model does not know: its bytes, as UN would carry them
			a.VR, a.InlineBinary = "UN", base64.StdEncoding.EncodeToString(e.Value)
			return a
		}
		for _, v := range textValues(e, cs) {
			if v == "" {
				a.Value = append(a.Value, nil)
			} else {
				a.Value = append(a.Value, v)
			}
		}
	}
	if allNil(a.Value) {
		a.Value = nil
	}
	return a
}

func allNil(vs []any) bool {
	for _, v := range vs {
		if v != nil {
			return false
		}
	}
	return true
}

// textValues decodes a text element (from the character set, for the VRs it applies to) and
// splits it into its values, padding removed. A value that does not decode is left out.
func textValues(e *dicom.Element, cs *dicom.CharacterSet) []string {
	s := strings.ToValidUTF8(string(e.Value), "\uFFFD")
	if e.VR.AffectedBySCS() {
		d, err := cs.Decode(e.Value)
		if err != nil {
			return nil
		}
		s = d
	}
	var parts []string
	switch e.VR {
	case dicom.VRLT, dicom.VRST, dicom.VRUT, dicom.VRUR:
		return []string{strings.TrimRight(s, " \x00")}
	default:
		parts = strings.Split(s, `\`)
	}
	for i, p := range parts {
		parts[i] = strings.Trim(p, " \x00")
	}
	return parts
}

// binaryNumbers decodes the little endian values of a binary numeric VR (AT as "GGGGEEEE");
// a trailing partial value is ignored. Values a JSON number cannot hold exactly are strings
// (PS3.18 F.2.3.1).
func binaryNumbers(vr dicom.VR, b []byte) []any {
	size := map[dicom.VR]int{dicom.VRUS: 2, dicom.VRSS: 2, dicom.VRUL: 4, dicom.VRSL: 4, dicom.VRFL: 4,
		dicom.VRFD: 8, dicom.VRSV: 8, dicom.VRUV: 8, dicom.VRAT: 4}[vr]
	var out []any
	const exact = 1 << 53
	for i := 0; i+size <= len(b); i += size {
		v := b[i : i+size]
		switch vr {
		case dicom.VRUS:
			out = append(out, binary.LittleEndian.Uint16(v))
		case dicom.VRSS:
			out = append(out, int16(binary.LittleEndian.Uint16(v)))
		case dicom.VRUL:
			out = append(out, binary.LittleEndian.Uint32(v))
		case dicom.VRSL:
			out = append(out, int32(binary.LittleEndian.Uint32(v)))
		case dicom.VRAT:
			out = append(out, fmt.Sprintf("%04X%04X", binary.LittleEndian.Uint16(v), binary.LittleEndian.Uint16(v[2:])))
		case dicom.VRFL, dicom.VRFD:
			f := float64(math.Float32frombits(binary.LittleEndian.Uint32(v)))
			if vr == dicom.VRFD {
				f = math.Float64frombits(binary.LittleEndian.Uint64(v))
			}
			if math.IsNaN(f) || math.IsInf(f, 0) {
				out = append(out, nil)
			} else {
				out = append(out, f)
			}
		case dicom.VRSV:
			n := int64(binary.LittleEndian.Uint64(v))
			if n > exact || n < -exact {
				out = append(out, strconv.FormatInt(n, 10))
			} else {
				out = append(out, n)
			}
		case dicom.VRUV:
			n := binary.LittleEndian.Uint64(v)
			if n > exact {
				out = append(out, strconv.FormatUint(n, 10))
			} else {
				out = append(out, n)
			}
		}
	}
	return out
}

// bulkdata answers a BulkDataURI of the metadata: the value of the element at the path
// (SEQTAG/ITEM/…/TAG) as one part of multipart/related; type="application/octet-stream", or
// for encapsulated Pixel Data each frame as a part of its own.
func (s *STOW) bulkdata(c echo.Context) error {
	inst, st, done, err := s.oneInstance(c)
	if err != nil {
		return err
	}
	defer done()
	steps := strings.Split(strings.Trim(c.Param("*"), "/"), "/")
	if len(steps)%2 != 1 || len(steps) > 2*8+1 {
		return echo.NewHTTPError(http.StatusNotFound, "no such bulk data")
	}
	ds := st.DataSet
	for i := 0; i+1 < len(steps); i += 2 {
		seq := elementAt(ds, steps[i])
		n, err := strconv.Atoi(steps[i+1])
		if seq == nil || err != nil || n < 0 || n >= len(seq.Items) {
			return echo.NewHTTPError(http.StatusNotFound, "no such bulk data")
		}
		ds = seq.Items[n]
	}
	last := steps[len(steps)-1]
	if len(steps) == 1 && strings.EqualFold(last, tagKey(dicom.TagPixelData)) && st.Pixels != nil {
		if st.Pixels.Encapsulated() {
			frames := make([]int, st.NumberOfFrames())
			for i := range frames {
				frames[i] = i + 1
			}
			return s.writeFrames(c, inst, st, frames, frameMediaType(inst.TransferSyntaxUID))
		}
		r, n := st.FrameReader([]dicom.Span{st.Pixels.Value})
		return writeParts(c, mediaTypeOctetStream, func(mw *multipart.Writer) error {
			part, err := mw.CreatePart(textproto.MIMEHeader{echo.HeaderContentType: {mediaTypeOctetStream}, echo.HeaderContentLength: {strconv.FormatInt(n, 10)}})
			if err != nil {
				return err
			}
			_, err = copyN(part, r, n)
			return err
		})
	}
	e := elementAt(ds, last)
	if e == nil || e.Items != nil || len(e.Value) == 0 {
		return echo.NewHTTPError(http.StatusNotFound, "no such bulk data")
	}
	return writeParts(c, mediaTypeOctetStream, func(mw *multipart.Writer) error {
		part, err := mw.CreatePart(textproto.MIMEHeader{echo.HeaderContentType: {mediaTypeOctetStream}})
		if err != nil {
			return err
		}
		_, err = part.Write(e.Value)
		return err
	})
}

// elementAt returns the element whose tag is hex (8 digits), or nil.
func elementAt(ds *dicom.DataSet, hex string) *dicom.Element {
	v, err := strconv.ParseUint(hex, 16, 32)
	if err != nil || len(hex) != 8 {
		return nil
	}
	return ds.Get(dicom.Tag(v))
}

// writeParts answers 200 with a multipart/related body of the given type, whose parts write adds.
func writeParts(c echo.Context, typ string, write func(*multipart.Writer) error) error {
	w := c.Response()
	mw := multipart.NewWriter(w)
	w.Header().Set(echo.HeaderContentType, fmt.Sprintf(`multipart/related; type=%q; boundary=%s`, typ, mw.Boundary()))
	w.WriteHeader(http.StatusOK)
	if err := write(mw); err != nil {
		return err
	}
	return mw.Close()
}
