package main

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/dicom/dicomtest"
)

// TestServeStowRS: two of Ferry's own instances POSTed to `ferry serve` over STOW-RS (PS3.18 10.5) with
// the admin token are acknowledged with 200 and kept as Part 10 files under the DICOM data
// directory (STUDY/SERIES/SOP.dcm), byte for byte; without the token the request is refused.
func TestServeStowRS(t *testing.T) {
	t.Parallel()
	// Two of Ferry's own instances of different studies.
	type instance struct{ path, study, series, sop string }
	files := []instance{
		{"german.dcm", "1.2.826.0.1.3680043.8.498.5.1", "1.2.826.0.1.3680043.8.498.5.1.1", "1.2.826.0.1.3680043.8.498.5.1.1.1"},
		{"arabic.dcm", "1.2.826.0.1.3680043.8.498.5.2", "1.2.826.0.1.3680043.8.498.5.2.1", "1.2.826.0.1.3680043.8.498.5.2.1.1"},
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	contents := map[string][]byte{}
	for _, f := range files {
		ds := dicomtest.Instance(dicomtest.CTImageStorage, f.sop, 32*32*2)
		ds.Set(dicom.NewString(dicom.TagStudyInstanceUID, dicom.VRUI, f.study))
		ds.Set(dicom.NewString(dicom.TagSeriesInstanceUID, dicom.VRUI, f.series))
		b := dicomtest.Part10(t, dicom.ExplicitVRLittleEndian, dicomtest.CTImageStorage, f.sop, dicomtest.Encode(t, ds, dicom.ExplicitVRLittleEndian))
		contents[f.sop] = b
		w, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
	}
	mw.Close()
	contentType := `multipart/related; type="application/dicom"; boundary=` + mw.Boundary()

	dir := t.TempDir()
	p := startFerry(t, "sqlite:"+filepath.Join(dir, "ferry.db"), dir, serveOptions{})
	post := func(token string) (int, []byte) {
		req, err := http.NewRequest(http.MethodPost, "http://"+p.HTTPAddr+"/dicomweb/studies", bytes.NewReader(body.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Accept", "application/dicom+json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	if code, _ := post(""); code != http.StatusUnauthorized {
		t.Errorf("without a token: status %d, want 401", code)
	}
	code, b := post(testAdminToken)
	if code != http.StatusOK {
		t.Fatalf("STOW-RS: status %d, want 200\n%s", code, b)
	}
	var ds map[string]struct {
		VR    string            `json:"vr"`
		Value []json.RawMessage `json:"Value"`
	}
	if err := json.Unmarshal(b, &ds); err != nil {
		t.Fatalf("response is not DICOM JSON: %v\n%s", err, b)
	}
	if seq := ds["00081199"]; seq.VR != "SQ" || len(seq.Value) != len(files) {
		t.Errorf("Referenced SOP Sequence %s, want %d items", b, len(files))
	}
	for _, f := range files {
		stored := filepath.Join(dir, "ferry-data", "dicom", f.study, f.series, f.sop+".dcm")
		got, err := os.ReadFile(stored)
		if err != nil {
			t.Errorf("%s not stored: %v", f.path, err)
			continue
		}
		if !bytes.Equal(got, contents[f.sop]) {
			t.Errorf("%s differs from the file sent", stored)
		}
	}
	// A second copy is a success, and is not stored again.
	if code, b := post(testAdminToken); code != http.StatusOK {
		t.Errorf("second STOW-RS: status %d, want 200\n%s", code, b)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "ferry-data", "dicom", ".incoming")); len(left) > 0 {
		t.Errorf("%d files left in the incoming area", len(left))
	}

	// QIDO-RS (PS3.18 10.6) finds the studies stored, each counted once: one series, one
	// instance, though sent twice.
	search := func(token, query string) (int, []byte) {
		req, err := http.NewRequest(http.MethodGet, "http://"+p.HTTPAddr+"/dicomweb/studies?"+query, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", "application/dicom+json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	query := "StudyInstanceUID=" + files[0].study + "," + files[1].study
	if code, _ := search("", query); code != http.StatusUnauthorized {
		t.Errorf("QIDO-RS without a token: status %d, want 401", code)
	}
	code, b = search(testAdminToken, query)
	if code != http.StatusOK {
		t.Fatalf("QIDO-RS: status %d, want 200\n%s", code, b)
	}
	var studies []map[string]struct {
		VR    string            `json:"vr"`
		Value []json.RawMessage `json:"Value"`
	}
	if err := json.Unmarshal(b, &studies); err != nil {
		t.Fatalf("QIDO-RS response is not a DICOM JSON array: %v\n%s", err, b)
	}
	found := map[string]bool{}
	for _, st := range studies {
		var uid string
		if v := st["0020000D"].Value; len(v) == 1 {
			json.Unmarshal(v[0], &uid)
		}
		found[uid] = true
		for _, tag := range []string{"00201206", "00201208"} { // series, instances
			if a := st[tag]; a.VR != "IS" || len(a.Value) != 1 || string(a.Value[0]) != "1" {
				t.Errorf("study %s: %s = %+v, want IS 1", uid, tag, a)
			}
		}
	}
	if len(studies) != 2 || !found[files[0].study] || !found[files[1].study] {
		t.Errorf("QIDO-RS found %v, want the 2 studies stored", found)
	}
	if code, b := search(testAdminToken, "AccessionNumber=NOT-SENT"); code != http.StatusNoContent {
		t.Errorf("QIDO-RS without a match: status %d, want 204\n%s", code, b)
	}
}
