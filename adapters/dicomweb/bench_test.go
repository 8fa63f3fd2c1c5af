package dicomweb

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

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

// wadoBench serves WADO-RS over a real SQLite store holding one 512×512 16-bit CT instance
// (12 bits stored, a ramp over -1024…3071 HU, stored through the intake), with a thumbnail cache
// of cacheBytes (less than 0: none). It returns the handler and the instance's URL path.
func wadoBench(b *testing.B, cacheBytes int64) (*echo.Echo, string) {
	ctx := context.Background()
	dir := b.TempDir()
	st := sqliteStore(b, dir)
	const sop = "1.2.826.0.1.3680043.8.498.13.9.1.1"
	ds := dicomtest.Instance(dicomtest.CTImageStorage, sop, 512*512*2)
	ds.Set(dicom.NewString(0x00281052, dicom.VRDS, "-1024"))
	ds.Set(dicom.NewString(0x00281053, dicom.VRDS, "1"))
	data := filepath.Join(dir, "dicom")
	if err := os.Mkdir(data, 0o750); err != nil {
		b.Fatal(err)
	}
	path := dicomtest.WriteInstance(b, dir, "ct.dcm", ds)
	hdr, err := dicom.ReadInstance(path, 0)
	if err != nil {
		b.Fatal(err)
	}
	inst := engine.NewInstance(hdr, path)
	inst.ReceivedAt, inst.SHA256 = time.Now(), "bench"
	intake := &engine.Intake{Store: st, Dir: data}
	if _, err := intake.StoreInstance(ctx, inst, path); err != nil {
		b.Fatal(err)
	}
	stow, err := NewSTOW(intake, Config{IncomingDir: dir, Studies: st, Instances: st, DataDir: data, ThumbnailCacheBytes: cacheBytes})
	if err != nil {
		b.Fatal(err)
	}
	e := echo.New()
	stow.Register(e.Group(BasePath))
	return e, BasePath + "/studies/" + inst.StudyInstanceUID + "/series/" + inst.SeriesInstanceUID + "/instances/" + sop
}

// benchGet serves GET path per iteration. Besides ns/op it reports cpu-ms/op, the process's
// CPU time (user and system, every goroutine) per request: on a machine others share, wall time
// measures the queue for a core as much as the work.
func benchGet(b *testing.B, e *echo.Echo, path, accept string) {
	b.ReportAllocs()
	start := cpuTime()
	defer func() { b.ReportMetric(float64(cpuTime()-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op") }()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Accept", accept)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkWADORendered renders a 512×512 16-bit CT frame per request through the routes as
// served: the study, series and instance looked up in the store, the file's header and frame
// read, the soft-tissue window, JPEG (quality 90) or PNG encoding. Issue 13: ≤ 15 ms to JPEG.
func BenchmarkWADORendered(b *testing.B) {
	e, inst := wadoBench(b, -1)
	b.Run("CT512/JPEG", func(b *testing.B) { benchGet(b, e, inst+"/rendered?preset=soft-tissue", "image/jpeg") })
	b.Run("CT512/PNG", func(b *testing.B) { benchGet(b, e, inst+"/rendered?preset=soft-tissue", "image/png") })
}

// BenchmarkWADOThumbnail serves the 128-pixel thumbnail of a 512×512 CT frame, rendered each
// time (no cache) and from the cache.
func BenchmarkWADOThumbnail(b *testing.B) {
	uncached, inst := wadoBench(b, -1)
	b.Run("Rendered", func(b *testing.B) { benchGet(b, uncached, inst+"/thumbnail", "image/jpeg") })
	cached, inst := wadoBench(b, 0)
	b.Run("Cached", func(b *testing.B) { benchGet(b, cached, inst+"/thumbnail", "image/jpeg") })
}

// cpuTime is the CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
