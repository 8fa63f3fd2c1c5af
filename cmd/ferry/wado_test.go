package main

import (
	"bytes"
	"encoding/json"
	"image"
	_ "image/jpeg" // thumbnails
	"image/png"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/dicom/dicomtest"
	"github.com/ferryhealth/ferry/internal/peers"
)

// TestServeWADORS: dcmtk's storescu sends a CT and a JPEG baseline instance to `ferry serve`;
// WADO-RS (PS3.18 10.4) gives back each stored file byte for byte (its data set the one sent),
// metadata that pydicom's Dataset.from_json reads, a rendered frame within half a gray level of
// dcmtk's dcmj2pnm (mean absolute difference, same file and window), and a thumbnail — on both
// stores.
func TestServeWADORS(t *testing.T) {
	storescu := requirePeer(t, "storescu", "dcmtk")
	dcmcjpeg := requirePeer(t, "dcmcjpeg", "dcmtk")
	dcmj2pnm := requirePeer(t, "dcmj2pnm", "dcmtk")
	python := peers.Python(t, "pydicom", "python3-pydicom")
	const study = "1.2.826.0.1.3680043.8.498.13.1"
	forEachStore(t, func(t *testing.T, db, dir string) {
		src := t.TempDir()
		sent := map[string]string{} // file sent, by SOP Instance UID
		for _, sop := range []string{study + ".1.1", study + ".2.1"} {
			ds := dicomtest.Instance(dicomtest.CTImageStorage, sop, 32*32*2)
			ds.Set(dicom.NewString(dicom.TagStudyInstanceUID, dicom.VRUI, study))
			ds.Set(dicom.NewString(dicom.TagSeriesInstanceUID, dicom.VRUI, sop[:len(sop)-2]))
			ds.Set(dicom.NewString(0x00281050, dicom.VRDS, "1000"))
			ds.Set(dicom.NewString(0x00281051, dicom.VRDS, "2000"))
			path := dicomtest.WriteInstance(t, src, sop+".dcm", ds)
			if strings.HasSuffix(sop, ".2.1") { // JPEG baseline, by dcmtk
				dicomtest.Image8(ds)
				raw := dicomtest.WriteInstance(t, src, "raw.dcm", ds)
				if out, err := exec.Command(dcmcjpeg, "+eb", "+un", raw, path).CombinedOutput(); err != nil {
					t.Fatalf("dcmcjpeg: %v\n%s", err, out)
				}
			}
			sent[sop] = path
		}
		p := startFerry(t, db, dir, serveOptions{})
		host, port, _ := net.SplitHostPort(p.DICOMAddr)
		// One association per transfer syntax: storescu proposes one (-xe, -xy: JPEG baseline).
		for sop, proposal := range map[string]string{study + ".1.1": "-xe", study + ".2.1": "-xy"} {
			if out, err := exec.Command(storescu, proposal, "-aec", "FERRY", host, port, sent[sop]).CombinedOutput(); err != nil {
				t.Fatalf("storescu %s: %v\n%s", proposal, err, out)
			}
		}
		get := func(path, accept string) (*http.Response, []byte) {
			req, _ := http.NewRequest(http.MethodGet, "http://"+p.HTTPAddr+"/dicomweb"+path, nil)
			req.Header.Set("Authorization", "Bearer "+testAdminToken)
			if accept != "" {
				req.Header.Set("Accept", accept)
			}
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: status %d: %s", path, resp.StatusCode, b)
			}
			return resp, b
		}

		resp, body := get("/studies/"+study, `multipart/related; type="application/dicom"; transfer-syntax=*`)
		_, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		n := 0
		for part, err := mr.NextRawPart(); err != io.EOF; part, err = mr.NextRawPart() {
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(part)
			meta, gotDS, gotTS, err := dicom.SplitFile(got)
			if err != nil {
				t.Fatalf("part %d: %v", n, err)
			}
			sop := meta.String(dicom.NewTag(0x0002, 0x0003))
			stored, err := os.ReadFile(filepath.Join(dir, "ferry-data", "dicom", study, sop[:len(sop)-2], sop+".dcm"))
			if err != nil || !bytes.Equal(got, stored) {
				t.Errorf("instance %s: retrieved bytes differ from the file stored (%v)", sop, err)
			}
			orig, _ := os.ReadFile(sent[sop])
			if _, origDS, origTS, _ := dicom.SplitFile(orig); origTS == gotTS && !bytes.Equal(origDS, gotDS) {
				t.Errorf("instance %s: the data set differs from the one storescu sent in %s", sop, gotTS)
			}
			n++
		}
		if n != 2 {
			t.Errorf("%d instances retrieved, want 2", n)
		}

		_, body = get("/studies/"+study+"/metadata", "application/dicom+json")
		metaFile := filepath.Join(t.TempDir(), "metadata.json")
		os.WriteFile(metaFile, body, 0o600)
		script := `
import json, sys, warnings
from pydicom.dataset import Dataset
warnings.simplefilter("ignore")
print(json.dumps([str(Dataset.from_json(d).PatientName) for d in json.load(open(sys.argv[1]))]))`
		out, err := exec.Command(python, "-c", script, metaFile).CombinedOutput()
		var names []string
		if err != nil || json.Unmarshal(out, &names) != nil || len(names) != 2 || names[0] != "Müller^Hans" {
			t.Errorf("pydicom on the metadata: %v: %s", err, out)
		}

		ct := "/studies/" + study + "/series/" + study + ".1/instances/" + study + ".1.1"
		_, body = get(ct+"/rendered?window=40,400", "image/png")
		pnm := filepath.Join(t.TempDir(), "ct.png")
		stored := filepath.Join(dir, "ferry-data", "dicom", study, study+".1", study+".1.1.dcm")
		if out, err := exec.Command(dcmj2pnm, "+Ww", "40", "400", "+on", stored, pnm).CombinedOutput(); err != nil {
			t.Fatalf("dcmj2pnm: %v\n%s", err, out)
		}
		want, _ := os.ReadFile(pnm)
		if d := grayDifference(t, body, want); d > 0.5 {
			t.Errorf("rendered frame: mean absolute difference from dcmj2pnm %.3f gray levels, more than 0.5", d)
		}

		_, body = get("/studies/"+study+"/series/"+study+".2/instances/"+study+".2.1/thumbnail", "")
		if img, _, err := image.Decode(bytes.NewReader(body)); err != nil || img.Bounds().Dx() == 0 {
			t.Errorf("thumbnail of the JPEG baseline instance: %v", err)
		}
	})
}

// grayDifference is the mean absolute difference of two gray PNGs of the same size.
func grayDifference(t *testing.T, a, b []byte) float64 {
	t.Helper()
	ia, err1 := png.Decode(bytes.NewReader(a))
	ib, err2 := png.Decode(bytes.NewReader(b))
	ga, ok1 := ia.(*image.Gray)
	gb, ok2 := ib.(*image.Gray)
	if err1 != nil || err2 != nil || !ok1 || !ok2 || ga.Rect != gb.Rect {
		t.Fatalf("comparing gray PNGs: %v, %v (gray %v %v)", err1, err2, ok1, ok2)
	}
	sum := 0
	for i := range ga.Pix {
		sum += max(int(ga.Pix[i])-int(gb.Pix[i]), int(gb.Pix[i])-int(ga.Pix[i]))
	}
	return float64(sum) / float64(len(ga.Pix))
}
