package dicomweb

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/dicom/dicomtest"
	"github.com/ferryhealth/ferry/engine"
)

// discardSink takes each instance's file and removes it: the benchmark measures STOW-RS itself
// (multipart reading, write, fsync, header read), not a store.
type discardSink struct{}

func (discardSink) StoreInstance(_ context.Context, _ *engine.Instance, tmpPath string) (bool, error) {
	return true, os.Remove(tmpPath)
}

// BenchmarkSTOW stores a 512×512 16-bit CT image (about 520 KB) per STOW-RS request, one at a
// time, through the routes as served: multipart parsing, write, fsync, header read.
func BenchmarkSTOW(b *testing.B) {
	stow, err := NewSTOW(discardSink{}, Config{IncomingDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	e := echo.New()
	stow.Register(e.Group(BasePath))
	ds := dicomtest.Instance(dicomtest.CTImageStorage, "1.2.826.0.1.3680043.8.498.2.1", 512*512*2)
	file := dicomtest.Part10(b, dicom.ExplicitVRLittleEndian, dicomtest.CTImageStorage, "1.2.826.0.1.3680043.8.498.2.1",
		dicomtest.Encode(b, ds, dicom.ExplicitVRLittleEndian))
	const boundary = "ferrybenchboundary"
	body := fmt.Appendf(nil, "--%s\r\nContent-Type: application/dicom\r\n\r\n", boundary)
	body = append(append(body, file...), fmt.Sprintf("\r\n--%s--\r\n", boundary)...)
	ct := `multipart/related; type="application/dicom"; boundary=` + boundary
	b.SetBytes(int64(len(file)))
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, BasePath+"/studies", bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
