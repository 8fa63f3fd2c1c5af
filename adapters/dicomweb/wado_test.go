package dicomweb

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"image/jpeg"
	_ "image/png" // the rendered PNGs
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/adapters/sqlite"
	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/dicom/dicomtest"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/internal/peers"
)

// The instances of the WADO-RS tests: study 1 holds a 16-bit CT in explicit VR little endian
// (with rescale and a header window), the same CT in implicit VR (series 1), a JPEG baseline
// instance and a JPEG-LS one made by dcmtk (series 2), and an 8-bit instance of 3 frames
// (series 3); study 2 holds one instance.
const (
	wadoStudy     = "1.2.826.0.1.3680043.10.1081.13.1"
	wadoSeries1   = wadoStudy + ".1"
	wadoSeries2   = wadoStudy + ".2"
	wadoSeries3   = wadoStudy + ".3"
	wadoCT        = wadoSeries1 + ".1"
	wadoImplicit  = wadoSeries1 + ".2"
	wadoJPEG      = wadoSeries2 + ".1"
	wadoJPEGLS    = wadoSeries2 + ".2"
	wadoFrames    = wadoSeries3 + ".1"
	wadoStudy2    = "1.2.826.0.1.3680043.10.1081.13.2"
	wadoOther     = wadoStudy2 + ".1.1"
	wadoCTSide    = 64
	wadoFrameSide = 16
)

// wadoFixture is DICOMweb over a real SQLite store and intake, the instances stored through
// STOW-RS.
type wadoFixture struct {
	url   string
	stow  *STOW
	files map[string][]byte // each instance's Part 10 file as sent, by SOP Instance UID
	paths map[string]string // the same, written in a temporary directory
}

// ctInstance is a CT data set: a ramp of 12-bit values over the frame, intercept -1024, and a
// header window.
func ctInstance(study, series, sop string) *dicom.DataSet {
	ds := dicomtest.Instance(dicomtest.CTImageStorage, sop, wadoCTSide*wadoCTSide*2)
	ds.Set(dicom.NewString(dicom.TagStudyInstanceUID, dicom.VRUI, study))
	ds.Set(dicom.NewString(dicom.TagSeriesInstanceUID, dicom.VRUI, series))
	px := make([]byte, 0, wadoCTSide*wadoCTSide*2)
	for i := range wadoCTSide * wadoCTSide {
		px = binary.LittleEndian.AppendUint16(px, uint16(i*4095/(wadoCTSide*wadoCTSide-1)))
	}
	ds.Set(&dicom.Element{Tag: dicom.TagPixelData, VR: dicom.VROW, Value: px})
	ds.Set(dicom.NewString(0x00281050, dicom.VRDS, "40", "400"))
	ds.Set(dicom.NewString(0x00281051, dicom.VRDS, "400", "1500"))
	ds.Set(dicom.NewString(0x00281052, dicom.VRDS, "-1024"))
	ds.Set(dicom.NewString(0x00281053, dicom.VRDS, "1"))
	ds.Set(dicom.NewString(0x00200032, dicom.VRDS, "-125.5", "-130", "42.25"))
	// A private value of 2,000 bytes: bulk data in the metadata.
	ds.Set(dicom.NewString(0x00090010, dicom.VRLO, "FERRY TEST"))
	ds.Set(&dicom.Element{Tag: 0x00091010, VR: dicom.VROB, Value: bytes.Repeat([]byte{0xAB}, 2000)})
	return ds
}

// sqliteStore opens a migrated SQLite store in dir, closed when tb ends.
func sqliteStore(tb testing.TB, dir string) *sqlite.Store {
	tb.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "ferry.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	return st
}

func newWADOFixture(t *testing.T, configure ...func(*Config)) *wadoFixture {
	t.Helper()
	dir := t.TempDir()
	st := sqliteStore(t, dir)
	data := filepath.Join(dir, "dicom")
	incoming := filepath.Join(data, ".incoming")
	if err := os.MkdirAll(incoming, 0o750); err != nil {
		t.Fatal(err)
	}
	intake := &engine.Intake{Store: st, Dir: data}
	cfg := Config{IncomingDir: incoming, Studies: st, Instances: st, DataDir: data}
	for _, c := range configure {
		c(&cfg)
	}
	stow, err := NewSTOW(intake, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	stow.Register(e.Group(BasePath))
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	f := &wadoFixture{url: srv.URL + BasePath, stow: stow, files: map[string][]byte{}, paths: map[string]string{}}

	src := t.TempDir()
	add := func(sop string, b []byte) {
		f.files[sop] = b
		f.paths[sop] = filepath.Join(src, sop+".dcm")
		if err := os.WriteFile(f.paths[sop], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	explicit := func(ds *dicom.DataSet) []byte {
		return dicomtest.Part10(t, dicom.ExplicitVRLittleEndian, dicomtest.CTImageStorage, ds.String(dicom.TagSOPInstanceUID),
			dicomtest.Encode(t, ds, dicom.ExplicitVRLittleEndian))
	}
	add(wadoCT, explicit(ctInstance(wadoStudy, wadoSeries1, wadoCT)))
	add(wadoImplicit, dicomtest.Part10(t, dicom.ImplicitVRLittleEndian, dicomtest.CTImageStorage, wadoImplicit,
		dicomtest.Encode(t, ctInstance(wadoStudy, wadoSeries1, wadoImplicit), dicom.ImplicitVRLittleEndian)))
	// 8-bit instances, compressed by dcmtk.
	for _, c := range []struct{ sop, tool, arg string }{{wadoJPEG, "dcmcjpeg", "+eb"}, {wadoJPEGLS, "dcmcjpls", "+el"}} {
		ds := ctInstance(wadoStudy, wadoSeries2, c.sop)
		dicomtest.Image8(ds)
		ds.Remove(0x00281052)
		ds.Remove(0x00281053)
		ds.Set(dicom.NewString(0x00281050, dicom.VRDS, "128"))
		ds.Set(dicom.NewString(0x00281051, dicom.VRDS, "200"))
		in := filepath.Join(src, c.sop+".raw.dcm")
		if err := os.WriteFile(in, explicit(ds), 0o600); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(src, c.sop+".dcm")
		if res, err := exec.Command(peers.Program(t, c.tool, "dcmtk"), c.arg, "+un", in, out).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", c.tool, err, res)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		add(c.sop, b)
	}
	// Three 8-bit frames: frame k holds the value 10*k+pixel%7.
	ds := ctInstance(wadoStudy, wadoSeries3, wadoFrames)
	ds.Set(dicom.NewUint16(dicom.TagRows, wadoFrameSide))
	ds.Set(dicom.NewUint16(dicom.TagColumns, wadoFrameSide))
	ds.Set(dicom.NewUint16(dicom.TagBitsAllocated, 8))
	ds.Set(dicom.NewUint16(dicom.TagBitsStored, 8))
	ds.Set(dicom.NewUint16(dicom.TagHighBit, 7))
	ds.Set(dicom.NewString(dicom.TagNumberOfFrames, dicom.VRIS, "3"))
	px := make([]byte, 3*wadoFrameSide*wadoFrameSide)
	for i := range px {
		px[i] = byte(10*(i/(wadoFrameSide*wadoFrameSide)+1) + i%7)
	}
	ds.Set(&dicom.Element{Tag: dicom.TagPixelData, VR: dicom.VROB, Value: px})
	add(wadoFrames, explicit(ds))
	add(wadoOther, explicit(ctInstance(wadoStudy2, wadoStudy2+".1", wadoOther)))

	for sop, b := range f.files {
		ct, body := multipartBody(t, `"application/dicom"`, part{contentType: "application/dicom", body: b})
		req, _ := http.NewRequest(http.MethodPost, f.url+"/studies", bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("STOW-RS of %s: %d", sop, resp.StatusCode)
		}
	}
	return f
}

// get sends a GET with an Accept header ("" for none) and returns the response and its body.
func (f *wadoFixture) get(t *testing.T, path, accept string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

type wadoPart struct {
	contentType string
	body        []byte
}

// parts reads a multipart/related response, failing unless its type is typ.
func parts(t *testing.T, resp *http.Response, body []byte, typ string) []wadoPart {
	t.Helper()
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/related" || params["type"] != typ {
		t.Fatalf("Content-Type %q, want multipart/related; type=%q", resp.Header.Get("Content-Type"), typ)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var out []wadoPart
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading part %d: %v", len(out), err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, wadoPart{p.Header.Get("Content-Type"), b})
	}
}

func sopOf(t *testing.T, file []byte) string {
	t.Helper()
	meta, _, _, err := dicom.SplitFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return meta.String(dicom.NewTag(0x0002, 0x0003))
}

func TestWADORetrieveIsByteIdentical(t *testing.T) {
	f := newWADOFixture(t)
	anyTS := `multipart/related; type="application/dicom"; transfer-syntax=*`
	for _, tc := range []struct {
		name, path string
		want       []string
	}{
		{"study", "/studies/" + wadoStudy, []string{wadoCT, wadoImplicit, wadoJPEG, wadoJPEGLS, wadoFrames}},
		{"series", "/studies/" + wadoStudy + "/series/" + wadoSeries2, []string{wadoJPEG, wadoJPEGLS}},
		{"instance", "/studies/" + wadoStudy + "/series/" + wadoSeries1 + "/instances/" + wadoImplicit, []string{wadoImplicit}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.get(t, tc.path, anyTS)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			got := map[string]bool{}
			for _, p := range parts(t, resp, body, "application/dicom") {
				sop := sopOf(t, p.body)
				got[sop] = true
				if !bytes.Equal(p.body, f.files[sop]) {
					t.Errorf("instance %s differs from the file stored", sop)
				}
				if _, params, _ := mime.ParseMediaType(p.contentType); params["transfer-syntax"] == "" {
					t.Errorf("part %s: Content-Type %q names no transfer syntax", sop, p.contentType)
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("instances %v, want %v", got, tc.want)
			}
			for _, w := range tc.want {
				if !got[w] {
					t.Errorf("instance %s missing", w)
				}
			}
		})
	}
	t.Run("zip", func(t *testing.T) {
		resp, body := f.get(t, "/studies/"+wadoStudy+"?accept=application/zip", "")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/zip" {
			t.Fatalf("status %d, Content-Type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
		if err != nil {
			t.Fatal(err)
		}
		if len(zr.File) != 5 {
			t.Errorf("%d files in the zip, want 5", len(zr.File))
		}
		for _, zf := range zr.File {
			rc, err := zf.Open()
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(rc)
			rc.Close()
			sop := sopOf(t, b)
			if !bytes.Equal(b, f.files[sop]) || zf.Name != wadoStudy+"/"+filepath.Base(filepath.Dir(zf.Name))+"/"+sop+".dcm" {
				t.Errorf("zip entry %s: differs from the file stored, or misnamed", zf.Name)
			}
		}
	})
}

// TestWADONegotiation: the stored syntax as is, transfer-syntax=*, Explicit VR Little Endian
// by default; a syntax Ferry cannot produce is 406 and named.
func TestWADONegotiation(t *testing.T) {
	f := newWADOFixture(t)
	ct := "/studies/" + wadoStudy + "/series/" + wadoSeries1 + "/instances/" + wadoCT
	jpegPath := "/studies/" + wadoStudy + "/series/" + wadoSeries2 + "/instances/" + wadoJPEG
	for _, tc := range []struct {
		name, path, accept string
		status             int
		says               string
	}{
		{"no Accept", ct, "", 200, ""},
		{"*/*", jpegPath, "*/*", 200, ""},
		{"default syntax, stored so", ct, `multipart/related; type="application/dicom"`, 200, ""},
		{"default syntax, stored otherwise", jpegPath, `multipart/related; type="application/dicom"`, 406, "JPEG Baseline (Process 1) (1.2.840.10008.1.2.4.50)"},
		{"the stored syntax", jpegPath, `multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50`, 200, ""},
		{"unquoted type", jpegPath, `multipart/related; type=application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50`, 200, ""},
		{"another syntax", ct, `multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90`, 406, "Explicit VR Little Endian"},
		{"one of two ranges", ct, `multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90, multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1`, 200, ""},
		{"the study, a syntax some lack", "/studies/" + wadoStudy, `multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1`, 406, "Implicit VR Little Endian"},
		{"a zip of one instance", ct, "application/zip", 406, "multipart/related"},
		{"q=0 refuses", jpegPath, `multipart/related; type="application/dicom"; transfer-syntax=*; q=0`, 406, "multipart/related"},
		{"an image", ct, "image/png", 406, ""},
		{"a study not stored", "/studies/1.2.3.4.5", "", 404, "no such study"},
		{"not a UID", "/studies/1.2.x", "", 400, "not a UID"},
		{"a series of another study", "/studies/" + wadoStudy2 + "/series/" + wadoSeries1, "", 404, "no such series"},
		{"an instance under another study", "/studies/" + wadoStudy2 + "/series/" + wadoSeries1 + "/instances/" + wadoCT, "", 404, "no such instance"},
		{"an instance under another series", "/studies/" + wadoStudy + "/series/" + wadoSeries2 + "/instances/" + wadoCT, "", 404, "no such instance"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.get(t, tc.path, tc.accept)
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.says) {
				t.Errorf("status %d, want %d saying %q: %.300s", resp.StatusCode, tc.status, tc.says, body)
			}
		})
	}
}

// readWithPydicom loads each data set of a DICOM JSON array with pydicom's Dataset.from_json and
// returns, per data set, the keywords asked for as pydicom reads them (str of the value).
func readWithPydicom(t *testing.T, body []byte, keywords ...string) []map[string]string {
	t.Helper()
	py := peers.Python(t, "pydicom", "python3-pydicom")
	in := filepath.Join(t.TempDir(), "metadata.json")
	if err := os.WriteFile(in, body, 0o600); err != nil {
		t.Fatal(err)
	}
	script := `
import json, sys, warnings
from pydicom.dataset import Dataset
warnings.simplefilter("ignore")
out = []
for d in json.load(open(sys.argv[1])):
    ds = Dataset.from_json(d)
    out.append({k: str(ds.get(k, "")) for k in sys.argv[2:]})
print(json.dumps(out))
`
	res, err := exec.Command(py, append([]string{"-c", script, in}, keywords...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("pydicom: %v\n%s", err, res)
	}
	var out []map[string]string
	if err := json.Unmarshal(res, &out); err != nil {
		t.Fatalf("pydicom's output: %v\n%s", err, res)
	}
	return out
}

// TestWADOMetadataReadsInPydicom: metadata at each level is DICOM JSON that pydicom reads back,
// with the values stored: text decoded from ISO_IR 100, numbers as numbers, Pixel Data as a
// BulkDataURI that answers the pixel data.
func TestWADOMetadataReadsInPydicom(t *testing.T) {
	f := newWADOFixture(t)
	resp, body := f.get(t, "/studies/"+wadoStudy+"/metadata", "application/dicom+json")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != MediaTypeDICOMJSON {
		t.Fatalf("status %d, Content-Type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	got := readWithPydicom(t, body, "SOPInstanceUID", "PatientName", "ReferringPhysicianName", "Rows", "WindowCenter",
		"RescaleIntercept", "ImagePositionPatient", "SeriesNumber", "SpecificCharacterSet")
	if len(got) != 5 {
		t.Fatalf("%d data sets, want 5", len(got))
	}
	for _, ds := range got {
		if ds["PatientName"] != "Müller^Hans" || ds["ReferringPhysicianName"] != "Smïth^Ann" || ds["SpecificCharacterSet"] != "ISO_IR 192" {
			t.Errorf("%s: names %q, %q, character set %q", ds["SOPInstanceUID"], ds["PatientName"], ds["ReferringPhysicianName"], ds["SpecificCharacterSet"])
		}
		if ds["SOPInstanceUID"] == wadoCT || ds["SOPInstanceUID"] == wadoImplicit {
			if ds["Rows"] != "64" || ds["WindowCenter"] != "[40.0, 400.0]" || ds["RescaleIntercept"] != "-1024.0" || ds["ImagePositionPatient"] != "[-125.5, -130.0, 42.25]" {
				t.Errorf("%s: %v", ds["SOPInstanceUID"], ds)
			}
		}
	}
	// The instance level, and the Pixel Data's BulkDataURI.
	resp, body = f.get(t, "/studies/"+wadoStudy+"/series/"+wadoSeries1+"/instances/"+wadoCT+"/metadata", "")
	var sets []map[string]attribute
	if err := json.Unmarshal(body, &sets); err != nil || resp.StatusCode != 200 || len(sets) != 1 {
		t.Fatalf("instance metadata: %d, %v: %s", resp.StatusCode, err, body)
	}
	uri := sets[0]["7FE00010"].BulkDataURI
	if !strings.HasPrefix(uri, f.url+"/studies/") {
		t.Fatalf("Pixel Data BulkDataURI %q", uri)
	}
	resp, body = f.get(t, strings.TrimPrefix(uri, f.url), "")
	ps := parts(t, resp, body, "application/octet-stream")
	_, stored, _, _ := dicom.SplitFile(f.files[wadoCT])
	if len(ps) != 1 || !bytes.HasSuffix(stored, ps[0].body) || len(ps[0].body) != wadoCTSide*wadoCTSide*2 {
		t.Errorf("the bulk data of Pixel Data is not the stored pixel data")
	}
	private := sets[0]["00091010"]
	if private.InlineBinary != "" || !strings.HasSuffix(private.BulkDataURI, "/bulkdata/00091010") {
		t.Fatalf("a 2,000-byte value: %+v, want a BulkDataURI", private)
	}
	resp, body = f.get(t, strings.TrimPrefix(private.BulkDataURI, f.url), "")
	if ps := parts(t, resp, body, "application/octet-stream"); len(ps) != 1 || !bytes.Equal(ps[0].body, bytes.Repeat([]byte{0xAB}, 2000)) {
		t.Errorf("the bulk data of (0009,1010) is not its value")
	}
	if resp, _ := f.get(t, "/studies/"+wadoStudy+"/series/"+wadoSeries1+"/instances/"+wadoCT+"/bulkdata/00091011", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("bulk data of an absent element: status %d", resp.StatusCode)
	}
}

// TestWADOFrames: frames are the stored bytes of each frame; a frame beyond the instance's count
// is 404; a compressed frame is answered as its codestream, or 406 when only uncompressed ones
// are taken.
func TestWADOFrames(t *testing.T) {
	f := newWADOFixture(t)
	frames := "/studies/" + wadoStudy + "/series/" + wadoSeries3 + "/instances/" + wadoFrames + "/frames/"
	resp, body := f.get(t, frames+"3,1", `multipart/related; type="application/octet-stream"`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	ps := parts(t, resp, body, "application/octet-stream")
	if len(ps) != 2 {
		t.Fatalf("%d parts, want 2", len(ps))
	}
	for i, frame := range []int{3, 1} {
		want := make([]byte, wadoFrameSide*wadoFrameSide)
		for j := range want {
			want[j] = byte(10*frame + ((frame-1)*len(want)+j)%7)
		}
		if !bytes.Equal(ps[i].body, want) {
			t.Errorf("frame %d differs from the stored frame", frame)
		}
	}
	jpegFrame := "/studies/" + wadoStudy + "/series/" + wadoSeries2 + "/instances/" + wadoJPEG + "/frames/1"
	for _, tc := range []struct {
		name, path, accept string
		status             int
		says               string
	}{
		{"frame 4 of 3", frames + "4", "", 404, "the instance has 3"},
		{"frame 0", frames + "0", "", 400, "frame numbers from 1"},
		{"not a number", frames + "x", "", 400, "frame numbers"},
		{"too many", frames + strings.Repeat("1,", maxFrameList) + "1", "", 400, "at most"},
		{"JPEG as image/jpeg", jpegFrame, `multipart/related; type="image/jpeg"`, 200, ""},
		{"JPEG as stored", jpegFrame, `multipart/related; type="application/octet-stream"; transfer-syntax=*`, 200, ""},
		{"JPEG uncompressed", jpegFrame, `multipart/related; type="application/octet-stream"`, 406, "JPEG Baseline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.get(t, tc.path, tc.accept)
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.says) {
				t.Fatalf("status %d, want %d saying %q: %.300s", resp.StatusCode, tc.status, tc.says, body)
			}
			if tc.status == 200 {
				ps := parts(t, resp, body, strings.Trim(strings.Split(strings.Split(tc.accept, "type=")[1], ";")[0], `"`))
				if _, err := jpeg.Decode(bytes.NewReader(ps[0].body)); err != nil {
					t.Errorf("the JPEG frame does not decode: %v", err)
				}
			}
		})
	}
}

// decodeImage decodes a PNG or JPEG to its gray levels (or RGB samples), row by row.
func decodeImage(t *testing.T, b []byte) (samples []byte, w, h int) {
	t.Helper()
	img, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("decoding the image: %v", err)
	}
	r := img.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if g, ok := img.(*image.Gray); ok {
				samples = append(samples, g.GrayAt(x, y).Y)
				continue
			}
			cr, _, _, _ := img.At(x, y).RGBA()
			samples = append(samples, uint8(cr>>8))
		}
	}
	return samples, r.Dx(), r.Dy()
}

// meanAbsDiff is the mean absolute difference of two equal-length sample slices.
func meanAbsDiff(t *testing.T, a, b []byte) float64 {
	t.Helper()
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("%d samples against %d", len(a), len(b))
	}
	var sum int
	for i := range a {
		sum += max(int(a[i])-int(b[i]), int(b[i])-int(a[i]))
	}
	return float64(sum) / float64(len(a))
}

// TestWADORenderedAgreesWithDcmtk: a frame rendered by WADO-RS against dcmtk's dcmj2pnm on the
// same stored file with the same window. Lossless PNG: mean absolute difference at most 0.5 gray
// levels (the two round exact halves differently; 1 for the sigmoid function and a JPEG baseline
// frame, which the two decode and compute in different precision); JPEG (quality 90): at most
// 2, JPEG's own loss.
func TestWADORenderedAgreesWithDcmtk(t *testing.T) {
	f := newWADOFixture(t)
	dcmj2pnm := peers.Program(t, "dcmj2pnm", "dcmtk")
	inst := func(series, sop string) string {
		return "/studies/" + wadoStudy + "/series/" + series + "/instances/" + sop
	}
	for _, tc := range []struct {
		name, path, query, accept string
		sop                       string
		dcmtk                     []string
		limit                     float64
	}{
		{"CT soft tissue, PNG", inst(wadoSeries1, wadoCT) + "/rendered", "?window=40,400", "image/png", wadoCT, []string{"+Ww", "40", "400"}, 0.5},
		{"CT lung preset, PNG", inst(wadoSeries1, wadoCT) + "/frames/1/rendered", "?preset=lung", "image/png", wadoCT, []string{"+Ww", "-600", "1500"}, 0.5},
		{"CT the header's window, PNG", inst(wadoSeries1, wadoImplicit) + "/rendered", "", "image/png", wadoImplicit, []string{"+Wi", "1"}, 0.5},
		{"CT the header's window, JPEG", inst(wadoSeries1, wadoCT) + "/rendered", "", "image/jpeg", wadoCT, []string{"+Wi", "1"}, 2},
		{"CT sigmoid, PNG", inst(wadoSeries1, wadoCT) + "/rendered", "?window=40,400,sigmoid", "image/png", wadoCT, []string{"+Ww", "40", "400", "+Wfs"}, 1},
		{"JPEG baseline, window, PNG", inst(wadoSeries2, wadoJPEG) + "/rendered", "?window=128,200", "image/png", wadoJPEG, []string{"+Ww", "128", "200"}, 1},
		{"frame 2 of 3, PNG", inst(wadoSeries3, wadoFrames) + "/frames/2/rendered", "?window=30,40", "image/png", wadoFrames, []string{"+F", "2", "+Ww", "30", "40"}, 0.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.get(t, tc.path+tc.query, tc.accept)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != tc.accept {
				t.Fatalf("status %d, Content-Type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			got, w, h := decodeImage(t, body)
			out := filepath.Join(t.TempDir(), "dcmtk.png")
			args := append(append([]string{}, tc.dcmtk...), "+on", f.paths[tc.sop], out)
			if res, err := exec.Command(dcmj2pnm, args...).CombinedOutput(); err != nil {
				t.Fatalf("dcmj2pnm %v: %v\n%s", args, err, res)
			}
			b, _ := os.ReadFile(out)
			want, ww, wh := decodeImage(t, b)
			if w != ww || h != wh {
				t.Fatalf("%d×%d, dcmtk %d×%d", w, h, ww, wh)
			}
			if d := meanAbsDiff(t, got, want); d > tc.limit {
				t.Errorf("mean absolute difference from dcmj2pnm %.3f, more than %.1f", d, tc.limit)
			} else {
				t.Logf("mean absolute difference from dcmj2pnm: %.3f gray levels", d)
			}
		})
	}
	t.Run("JPEG-LS is named", func(t *testing.T) {
		resp, body := f.get(t, inst(wadoSeries2, wadoJPEGLS)+"/rendered", "")
		if resp.StatusCode != http.StatusNotAcceptable || !strings.Contains(string(body), "JPEG-LS Lossless (1.2.840.10008.1.2.4.80)") {
			t.Errorf("status %d: %s", resp.StatusCode, body)
		}
	})
	for _, tc := range []struct{ name, query, accept, says string }{
		{"viewport too large", "?viewport=5000,5000", "", "viewport"},
		{"cropping", "?viewport=10,10,0,0,5,5", "", "cropping"},
		{"window width 0", "?window=40,0", "", "width at least 1"},
		{"window function", "?window=40,400,cubic", "", "linear"},
		{"preset", "?preset=liver", "", "preset"},
		{"quality", "?quality=0", "", "quality"},
		{"GIF", "", "image/gif", "image/jpeg or image/png"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.get(t, inst(wadoSeries1, wadoCT)+"/rendered"+tc.query, tc.accept)
			if resp.StatusCode/100 != 4 || !strings.Contains(string(body), tc.says) {
				t.Errorf("status %d: %s", resp.StatusCode, body)
			}
		})
	}
}

// TestWADOThumbnails: thumbnails fit their viewport (128 by default), come from the cache the
// second time, and a study's or series' is one of its instances'.
func TestWADOThumbnails(t *testing.T) {
	f := newWADOFixture(t)
	instance := "/studies/" + wadoStudy + "/series/" + wadoSeries1 + "/instances/" + wadoCT + "/thumbnail"
	for _, tc := range []struct {
		name, path string
		w, h       int
	}{
		{"instance", instance + "?viewport=32,32", 32, 32},
		{"instance, default size", instance, 64, 64},
		{"frame", "/studies/" + wadoStudy + "/series/" + wadoSeries3 + "/instances/" + wadoFrames + "/frames/2/thumbnail?viewport=8,4", 4, 4},
		{"series", "/studies/" + wadoStudy + "/series/" + wadoSeries1 + "/thumbnail", 64, 64},
		{"study", "/studies/" + wadoStudy + "/thumbnail?viewport=20,10", 10, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.get(t, tc.path, "")
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/jpeg" {
				t.Fatalf("status %d, Content-Type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			if _, w, h := decodeImage(t, body); w != tc.w || h != tc.h {
				t.Errorf("%d×%d, want %d×%d", w, h, tc.w, tc.h)
			}
		})
	}
	hits := f.stow.thumbs.hitCount()
	_, first := f.get(t, instance+"?viewport=32,32", "")
	if f.stow.thumbs.hitCount() != hits+1 {
		t.Errorf("the second request for a thumbnail did not come from the cache")
	}
	if _, again := f.get(t, instance+"?viewport=32,32&quality=50", ""); bytes.Equal(first, again) {
		t.Errorf("another quality gave the cached thumbnail")
	}
	resp, body := f.get(t, instance+"?viewport=2000,2000", "")
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a thumbnail of 2000×2000: status %d: %s", resp.StatusCode, body)
	}
}

func TestThumbnailCacheStaysWithinItsBytes(t *testing.T) {
	t.Parallel()
	tc := newThumbnailCache(8000)
	for i := range 100 {
		tc.put(fmt.Sprintf("k%03d", i), make([]byte, 900))
	}
	if tc.len > tc.max || tc.order.Len() != len(tc.byKey) {
		t.Errorf("%d bytes in a cache of %d; %d entries listed, %d keyed", tc.len, tc.max, tc.order.Len(), len(tc.byKey))
	}
	if _, ok := tc.get("k099"); !ok {
		t.Error("the newest entry is gone")
	}
	if _, ok := tc.get("k000"); ok {
		t.Error("the oldest entry is still there")
	}
	tc.put("big", make([]byte, 1001)) // more than an eighth
	if _, ok := tc.get("big"); ok {
		t.Error("an entry larger than an eighth of the cache was kept")
	}
}

// linkedTo is a PatientIdentities whose every study is linked to one patient.
type linkedTo string

func (linkedTo) PatientsWithID(context.Context, string, string) ([]string, error) { return nil, nil }
func (linkedTo) PatientsWithName(context.Context, string) ([]string, bool, error) {
	return nil, true, nil
}
func (p linkedTo) LinkedIdentity(context.Context, string) (*engine.PatientIdentity, error) {
	return &engine.PatientIdentity{PatientFHIRID: string(p)}, nil
}

// TestWADONamesThePatientForTheAudit: every retrieval tells the audit the patient its study is
// linked to; a refused lookup names none.
func TestWADONamesThePatientForTheAudit(t *testing.T) {
	var named []string
	f := newWADOFixture(t, func(c *Config) {
		c.Identities = linkedTo("p7")
		c.AuditPatient = func(_ echo.Context, patient string) { named = append(named, patient) }
	})
	instance := "/studies/" + wadoStudy + "/series/" + wadoSeries1 + "/instances/" + wadoCT
	for _, path := range []string{"/studies/" + wadoStudy, instance, instance + "/metadata", instance + "/frames/1",
		instance + "/rendered", instance + "/thumbnail", "/studies/" + wadoStudy + "/series/" + wadoSeries1 + "/metadata"} {
		named = nil
		if resp, body := f.get(t, path, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d: %s", path, resp.StatusCode, body)
		}
		if len(named) != 1 || named[0] != "Patient/p7" {
			t.Errorf("%s: the audit was told %v, want [Patient/p7]", path, named)
		}
	}
	named = nil
	if resp, _ := f.get(t, "/studies/1.2.3.4.5/metadata", ""); resp.StatusCode != http.StatusNotFound || len(named) != 0 {
		t.Errorf("a study not found: status %d, the audit told %v", resp.StatusCode, named)
	}
}
