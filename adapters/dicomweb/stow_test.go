package dicomweb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"sync"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/dicom/dicomtest"
	"github.com/ferryhealth/ferry/engine"
)

// Two instances of different studies, Ferry's own (dicom/dicomtest): one with German text in
// ISO_IR 100, one with Arabic text in ISO_IR 127.
var (
	german = instanceFile{sopClass: "1.2.840.10008.5.1.4.1.1.7", sop: "1.2.826.0.1.3680043.8.498.5.1.1.1",
		study: "1.2.826.0.1.3680043.8.498.5.1", series: "1.2.826.0.1.3680043.8.498.5.1.1",
		charset: "ISO_IR 100", name: "Gr\xf6\xdfe^M\xfcller"}
	arabic = instanceFile{sopClass: "1.2.840.10008.5.1.4.1.1.7", sop: "1.2.826.0.1.3680043.8.498.5.2.1.1",
		study: "1.2.826.0.1.3680043.8.498.5.2", series: "1.2.826.0.1.3680043.8.498.5.2.1",
		charset: "ISO_IR 127", name: "\xe2\xc8\xc7\xe6\xea^\xe4\xe6\xd2\xc7\xd1"}
)

// instanceFile is a Part 10 file built for the tests: its UIDs, and its patient's name in a
// character set.
type instanceFile struct{ sopClass, sop, study, series, charset, name string }

func (f instanceFile) read(t *testing.T) []byte {
	t.Helper()
	ds := dicomtest.Instance(f.sopClass, f.sop, 32*32*2)
	ds.Set(dicom.NewString(dicom.TagStudyInstanceUID, dicom.VRUI, f.study))
	ds.Set(dicom.NewString(dicom.TagSeriesInstanceUID, dicom.VRUI, f.series))
	ds.Set(dicom.NewString(dicom.TagSpecificCharacterSet, dicom.VRCS, f.charset))
	ds.Set(dicom.NewString(dicom.TagPatientName, dicom.VRPN, f.name))
	ds.Set(dicom.NewString(dicomtest.TagReferringPhysicianName, dicom.VRPN, "Smith^Ann"))
	return dicomtest.Part10(t, dicom.ExplicitVRLittleEndian, f.sopClass, f.sop, dicomtest.Encode(t, ds, dicom.ExplicitVRLittleEndian))
}

// fakeSink keeps instances as engine.Intake does at its boundary: it takes the file (here: reads
// and removes it) and reports a second copy as added=false.
type fakeSink struct {
	mu     sync.Mutex
	stored map[string]*engine.Instance
	files  map[string][]byte
	err    error
}

func newFakeSink() *fakeSink {
	return &fakeSink{stored: map[string]*engine.Instance{}, files: map[string][]byte{}}
}

func (s *fakeSink) StoreInstance(_ context.Context, inst *engine.Instance, tmpPath string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		os.Remove(tmpPath)
		return false, s.err
	}
	b, err := os.ReadFile(tmpPath)
	if err != nil {
		return false, err
	}
	os.Remove(tmpPath)
	if _, ok := s.stored[inst.SOPInstanceUID]; ok {
		return false, nil
	}
	s.stored[inst.SOPInstanceUID] = inst
	s.files[inst.SOPInstanceUID] = b
	return true, nil
}

type part struct {
	contentType string
	body        []byte
}

// multipartBody builds a multipart/related body and its Content-Type.
func multipartBody(t *testing.T, typeParam string, parts ...part) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		if p.contentType != "" {
			h.Set("Content-Type", p.contentType)
		}
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(p.body)
	}
	mw.Close()
	return fmt.Sprintf("multipart/related; type=%s; boundary=%s", typeParam, mw.Boundary()), buf.Bytes()
}

type server struct {
	sink     *fakeSink
	incoming string
	url      string
}

func newServer(t *testing.T, cfg Config) *server {
	t.Helper()
	s := &server{sink: newFakeSink(), incoming: t.TempDir()}
	cfg.IncomingDir = s.incoming
	stow, err := NewSTOW(s.sink, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	stow.Register(e.Group(BasePath))
	ts := httptest.NewServer(e)
	t.Cleanup(ts.Close)
	s.url = ts.URL
	return s
}

// post sends a STOW-RS request and decodes a DICOM JSON answer.
func (s *server) post(t *testing.T, path, contentType string, body []byte) (int, map[string]jsonAttribute) {
	t.Helper()
	resp, err := http.Post(s.url+path, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("Content-Type") != MediaTypeDICOMJSON {
		return resp.StatusCode, nil
	}
	var ds map[string]jsonAttribute
	if err := json.Unmarshal(b, &ds); err != nil {
		t.Fatalf("response is not DICOM JSON: %v\n%s", err, b)
	}
	// Nothing unacknowledged is left behind.
	if left, _ := os.ReadDir(s.incoming); len(left) > 0 {
		t.Errorf("%d files left in the incoming area", len(left))
	}
	return resp.StatusCode, ds
}

// jsonAttribute decodes a DICOM JSON attribute; Value holds strings, numbers or items.
type jsonAttribute struct {
	VR    string            `json:"vr"`
	Value []json.RawMessage `json:"Value"`
}

func (a jsonAttribute) items(t *testing.T) []map[string]jsonAttribute {
	t.Helper()
	if a.VR != "SQ" {
		t.Fatalf("vr %q, want SQ", a.VR)
	}
	var out []map[string]jsonAttribute
	for _, v := range a.Value {
		var item map[string]jsonAttribute
		if err := json.Unmarshal(v, &item); err != nil {
			t.Fatal(err)
		}
		out = append(out, item)
	}
	return out
}

// str returns a single-valued string attribute after checking its VR; "" when it has no value.
func str(t *testing.T, ds map[string]jsonAttribute, tag, vr string) string {
	t.Helper()
	a, ok := ds[tag]
	if !ok {
		t.Fatalf("%s missing", tag)
	}
	if a.VR != vr {
		t.Errorf("%s: vr %q, want %q", tag, a.VR, vr)
	}
	if len(a.Value) == 0 {
		return ""
	}
	var s string
	if err := json.Unmarshal(a.Value[0], &s); err != nil {
		t.Fatalf("%s: %v", tag, err)
	}
	return s
}

func failureReason(t *testing.T, item map[string]jsonAttribute) uint16 {
	t.Helper()
	a := item[tagFailureReason]
	if a.VR != "US" || len(a.Value) != 1 {
		t.Fatalf("Failure Reason %+v, want one US value", a)
	}
	var n uint16
	if err := json.Unmarshal(a.Value[0], &n); err != nil {
		t.Fatalf("Failure Reason is not a number: %v", err)
	}
	return n
}

func TestStoreInstances(t *testing.T) {
	t.Parallel()
	s := newServer(t, Config{})
	g, a := german.read(t), arabic.read(t)
	for _, typeParam := range []string{`"application/dicom"`, `application/dicom`} {
		ct, body := multipartBody(t, typeParam, part{"application/dicom", g}, part{"application/dicom; transfer-syntax=1.2.840.10008.1.2.1", a})
		code, ds := s.post(t, "/dicomweb/studies", ct, body)
		if code != http.StatusOK {
			t.Fatalf("type=%s: status %d, want 200", typeParam, code)
		}
		if _, ok := ds[tagFailedSOPSequence]; ok {
			t.Errorf("Failed SOP Sequence present when all were stored")
		}
		if _, ok := ds[tagRetrieveURL]; ok {
			t.Errorf("Retrieve URL of a study present for instances of two studies")
		}
		items := ds[tagReferencedSOPSequence].items(t)
		if len(items) != 2 {
			t.Fatalf("%d referenced instances, want 2", len(items))
		}
		for i, f := range []instanceFile{german, arabic} {
			if got := str(t, items[i], tagReferencedSOPClassUID, "UI"); got != f.sopClass {
				t.Errorf("item %d SOP class %q, want %q", i, got, f.sopClass)
			}
			if got := str(t, items[i], tagReferencedSOPInstanceUID, "UI"); got != f.sop {
				t.Errorf("item %d SOP instance %q, want %q", i, got, f.sop)
			}
			want := s.url + "/dicomweb/studies/" + f.study + "/series/" + f.series + "/instances/" + f.sop
			if got := str(t, items[i], tagRetrieveURL, "UR"); got != want {
				t.Errorf("item %d Retrieve URL %q, want %q", i, got, want)
			}
		}
	}
	// Sent twice (two type spellings): stored once, each file byte for byte, the header read.
	if len(s.sink.stored) != 2 {
		t.Fatalf("%d instances stored, want 2", len(s.sink.stored))
	}
	inst := s.sink.stored[german.sop]
	if !bytes.Equal(s.sink.files[german.sop], g) {
		t.Error("the stored file differs from the part")
	}
	if inst.StudyInstanceUID != german.study || inst.TransferSyntaxUID != "1.2.840.10008.1.2.1" ||
		inst.Size != int64(len(g)) || len(inst.SHA256) != 64 || inst.PeerAddr != "stow-rs" || inst.ReceivedAt.IsZero() {
		t.Errorf("instance %+v", inst)
	}
	if got := s.sink.stored[arabic.sop].PatientName; got != "قباني^لنزار" {
		t.Errorf("Arabic patient name %q", got)
	}
	if got := inst.PatientName; got != "Größe^Müller" {
		t.Errorf("German patient name %q", got)
	}
}

func TestStoreMixed(t *testing.T) {
	t.Parallel()
	s := newServer(t, Config{})
	g := german.read(t)
	ct, body := multipartBody(t, `"application/dicom"`,
		part{"application/dicom", g},
		part{"application/dicom", []byte("this is not DICOM at all")},
		part{"application/dicom", g[132:]}, // the file without preamble and "DICM": not Part 10
	)
	code, ds := s.post(t, "/dicomweb/studies", ct, body)
	if code != http.StatusAccepted {
		t.Fatalf("status %d, want 202", code)
	}
	if got, want := str(t, ds, tagRetrieveURL, "UR"), s.url+"/dicomweb/studies/"+german.study; got != want {
		t.Errorf("Retrieve URL %q, want %q", got, want)
	}
	if items := ds[tagReferencedSOPSequence].items(t); len(items) != 1 ||
		str(t, items[0], tagReferencedSOPInstanceUID, "UI") != german.sop {
		t.Errorf("Referenced SOP Sequence %+v, want the one good instance", items)
	}
	failed := ds[tagFailedSOPSequence].items(t)
	if len(failed) != 2 {
		t.Fatalf("%d failed, want 2", len(failed))
	}
	for i, item := range failed {
		if r := failureReason(t, item); r != 0xC000 {
			t.Errorf("failed item %d: reason %04X, want C000", i, r)
		}
		if uid := str(t, item, tagReferencedSOPInstanceUID, "UI"); uid != "" {
			t.Errorf("failed item %d: SOP Instance UID %q, want empty", i, uid)
		}
	}
	if len(s.sink.stored) != 1 {
		t.Errorf("%d stored, want 1", len(s.sink.stored))
	}
}

func TestStoreStudyMismatch(t *testing.T) {
	t.Parallel()
	s := newServer(t, Config{})
	ct, body := multipartBody(t, `"application/dicom"`, part{"application/dicom", german.read(t)}, part{"application/dicom", arabic.read(t)})
	code, ds := s.post(t, "/dicomweb/studies/"+german.study, ct, body)
	if code != http.StatusAccepted {
		t.Fatalf("status %d, want 202", code)
	}
	if got, want := str(t, ds, tagRetrieveURL, "UR"), s.url+"/dicomweb/studies/"+german.study; got != want {
		t.Errorf("Retrieve URL %q, want %q", got, want)
	}
	failed := ds[tagFailedSOPSequence].items(t)
	if len(failed) != 1 || failureReason(t, failed[0]) != 0xA900 ||
		str(t, failed[0], tagReferencedSOPInstanceUID, "UI") != arabic.sop ||
		str(t, failed[0], tagReferencedSOPClassUID, "UI") != arabic.sopClass {
		t.Errorf("Failed SOP Sequence %+v, want the Arabic instance with A900", failed)
	}
	if _, ok := s.sink.stored[arabic.sop]; ok {
		t.Error("the instance of another study was stored")
	}

	// Only instances of another study: nothing stored, 409 with the body.
	ct, body = multipartBody(t, `"application/dicom"`, part{"application/dicom", arabic.read(t)})
	if code, ds := s.post(t, "/dicomweb/studies/"+german.study, ct, body); code != http.StatusConflict || len(ds[tagFailedSOPSequence].Value) != 1 {
		t.Errorf("status %d, body %+v; want 409 with one failure", code, ds)
	}
}

func TestStoreSinkFails(t *testing.T) {
	t.Parallel()
	s := newServer(t, Config{})
	s.sink.err = errors.New("database unreachable")
	ct, body := multipartBody(t, `"application/dicom"`, part{"application/dicom", german.read(t)})
	code, ds := s.post(t, "/dicomweb/studies", ct, body)
	if code != http.StatusConflict {
		t.Fatalf("status %d, want 409", code)
	}
	if failed := ds[tagFailedSOPSequence].items(t); len(failed) != 1 || failureReason(t, failed[0]) != 0xA700 {
		t.Errorf("Failed SOP Sequence %+v, want A700", failed)
	}
}

func TestStoreTooLarge(t *testing.T) {
	t.Parallel()
	s := newServer(t, Config{MaxInstanceSize: 1000})
	ct, body := multipartBody(t, `"application/dicom"`, part{"application/dicom", german.read(t)})
	code, ds := s.post(t, "/dicomweb/studies", ct, body)
	if code != http.StatusConflict {
		t.Fatalf("status %d, want 409", code)
	}
	if failed := ds[tagFailedSOPSequence].items(t); len(failed) != 1 || failureReason(t, failed[0]) != 0xA700 {
		t.Errorf("Failed SOP Sequence %+v, want A700", failed)
	}
}

func TestStoreRejectsRequest(t *testing.T) {
	t.Parallel()
	s := newServer(t, Config{})
	textCT, textBody := multipartBody(t, `"application/dicom"`, part{"text/plain", []byte("hello")})
	jsonCT, jsonBody := multipartBody(t, `"application/dicom+json"`, part{"application/dicom+json", []byte("[]")})
	emptyCT, emptyBody := multipartBody(t, `"application/dicom"`)
	for _, tc := range []struct {
		name, path, contentType string
		body                    []byte
		want                    int
	}{
		{"not multipart", "/dicomweb/studies", "application/dicom", []byte("DICM"), http.StatusUnsupportedMediaType},
		{"json", "/dicomweb/studies", "application/json", []byte("{}"), http.StatusUnsupportedMediaType},
		{"other type parameter", "/dicomweb/studies", jsonCT, jsonBody, http.StatusUnsupportedMediaType},
		{"no application/dicom part", "/dicomweb/studies", textCT, textBody, http.StatusUnsupportedMediaType},
		{"no boundary", "/dicomweb/studies", `multipart/related; type="application/dicom"`, []byte("x"), http.StatusBadRequest},
		{"truncated", "/dicomweb/studies", textCT, textBody[:len(textBody)/2], http.StatusBadRequest},
		{"no parts", "/dicomweb/studies", emptyCT, emptyBody, http.StatusBadRequest},
		{"study not a UID", "/dicomweb/studies/abc", textCT, textBody, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, _ := s.post(t, tc.path, tc.contentType, tc.body); code != tc.want {
				t.Errorf("status %d, want %d", code, tc.want)
			}
		})
	}
}
