// Package dicomweb is Ferry's DICOMweb edge: STOW-RS, the Studies Store transaction of DICOM
// PS3.18 10.5 (POST /dicomweb/studies[/{StudyInstanceUID}], multipart/related;
// type="application/dicom"), QIDO-RS, the Search for Studies transaction of PS3.18 10.6
// (GET /dicomweb/studies, qido.go), and WADO-RS, the Retrieve transactions of PS3.18 10.4
// (studies, series, instances, metadata, frames, rendered images and thumbnails: wado.go,
// metadata.go, frames.go). Each STOW-RS part is a DICOM Part 10 file; it is streamed to a file in the
// incoming area, fsynced, read with dicom.ReadInstance (the same reading and checks as
// C-STORE, which never allocates a length a part declares)
// and handed to the DICOM intake, and it is reported stored only once the intake has committed
// it (DESIGN.md rule 1). The routes mount under the admin bearer token (adapters/httpapi).
package dicomweb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/engine"
)

// BasePath is where the DICOMweb routes are mounted.
const BasePath = "/dicomweb"

// MediaTypeDICOMJSON is the media type of the Store Instances Response (PS3.18 F, I.3).
const MediaTypeDICOMJSON = "application/dicom+json"

// Failure Reason (0008,1197) values (PS3.18 table I.2-2; the same codes as C-STORE, PS3.4 B.2.3).
const (
	FailureOutOfResources   = uint16(dicom.StatusOutOfResources)  // A700: retry later
	FailureDataSetMismatch  = uint16(dicom.StatusDataSetMismatch) // A900: includes a Study Instance UID other than the URL's
	FailureCannotUnderstand = uint16(dicom.StatusCannotUnderstand)
)

// peerSTOWRS is engine.Instance.PeerAddr for instances received over STOW-RS.
const peerSTOWRS = "stow-rs"

// InstanceSink keeps a received instance: engine.Intake implements it. STOW-RS calls
// StoreInstance once per instance, from the request's goroutine (so concurrently for concurrent
// requests), after it has written tmpPath — a complete Part 10 file in Config.IncomingDir,
// fsynced — and read inst from it (inst.Path is tmpPath).
//
// StoreInstance moves the file into place and commits the instance; it returns nil only once
// both are durable, and only then is the instance listed as stored. added=false means the
// instance was stored before: still a success (the first file is kept, tmpPath removed). On
// error nothing is committed; the instance is reported failed with A700 (out of resources, the
// client may retry), or C000 when the error wraps dicom.ErrInstanceRefused. The error's text
// is logged, so it must not hold patient data. ctx ends when the request does.
type InstanceSink interface {
	StoreInstance(ctx context.Context, inst *engine.Instance, tmpPath string) (added bool, err error)
}

var _ InstanceSink = (*engine.Intake)(nil)

// Config configures STOW-RS. Its zero fields take the defaults named below.
type Config struct {
	// IncomingDir is where a part is written while it arrives, on the data directory's file
	// system (the intake renames it). Required; the C-STORE SCP's incoming area serves.
	IncomingDir string
	// MaxInstanceSize caps one part (one Part 10 file), in bytes (default
	// dicom.DefaultMaxInstanceSize). A larger part fails with A700 and its bytes are discarded.
	MaxInstanceSize int64
	// MaxHeaderSize caps the memory reading one part's header may use (default
	// dicom.DefaultMaxHeaderSize); a declared length is never allocated (dicom.ReadInstance).
	MaxHeaderSize int64
	// Logger receives one line per instance (UIDs, sizes, reasons; no patient data); nil discards.
	Logger *slog.Logger
	// Studies answers QIDO-RS searches; nil: GET /studies is not served.
	Studies StudySearcher
	// Identities gives QIDO-RS the patient each study is linked to, so that it matches PatientID
	// and answers with that patient's identity (the link wins; qido.go); the engine.Linker serves.
	// nil: the patient attributes are the ones the modality sent.
	Identities PatientIdentities
	// Instances reads a study's series and instances for WADO-RS (the engine.InstanceStore),
	// whose files are under DataDir (engine.Intake.Dir). nil, or Studies nil: WADO-RS is not
	// served.
	Instances InstanceReader
	DataDir   string
	// ThumbnailCacheBytes bounds the memory of the thumbnail cache (0:
	// DefaultThumbnailCacheBytes; less than 0: no cache).
	ThumbnailCacheBytes int64
	// AuditPatient, if set, is told the patient ("Patient/ID") a WADO-RS retrieval concerns —
	// the one its study is linked to (Identities) — for the request's audit event
	// (httpapi.SetAuditPatient).
	AuditPatient func(c echo.Context, patient string)
}

// STOW serves the Studies Store transaction.
type STOW struct {
	sink   InstanceSink
	cfg    Config
	log    *slog.Logger
	thumbs *thumbnailCache // nil: thumbnails are not cached
}

// NewSTOW returns STOW-RS over sink; cfg is validated as the C-STORE SCP's storage is.
func NewSTOW(sink InstanceSink, cfg Config) (*STOW, error) {
	if sink == nil {
		return nil, errors.New("dicomweb: NewSTOW: sink is nil")
	}
	if err := dicom.ValidateIncoming(cfg.IncomingDir, cfg.MaxInstanceSize, cfg.MaxHeaderSize); err != nil {
		return nil, fmt.Errorf("dicomweb: invalid configuration: %w", err)
	}
	if cfg.MaxInstanceSize == 0 {
		cfg.MaxInstanceSize = dicom.DefaultMaxInstanceSize
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Instances != nil && cfg.DataDir == "" {
		return nil, errors.New("dicomweb: invalid configuration: WADO-RS (Instances) needs DataDir")
	}
	s := &STOW{sink: sink, cfg: cfg, log: log}
	if cfg.ThumbnailCacheBytes == 0 {
		cfg.ThumbnailCacheBytes = DefaultThumbnailCacheBytes
	}
	if cfg.ThumbnailCacheBytes > 0 {
		s.thumbs = newThumbnailCache(cfg.ThumbnailCacheBytes)
	}
	return s, nil
}

// BasePath returns where the routes are mounted (BasePath): the HTTP server mounts Register's
// group there.
func (s *STOW) BasePath() string { return BasePath }

// Register adds the STOW-RS routes, QIDO-RS's when Config.Studies is set, and WADO-RS's when
// Config.Instances is set too, to g, mounted at BasePath behind authentication.
func (s *STOW) Register(g *echo.Group) {
	g.POST("/studies", s.store)
	g.POST("/studies/:study", s.store)
	if s.cfg.Studies != nil {
		g.GET("/studies", s.searchStudies)
		if s.cfg.Instances != nil {
			s.registerWADO(g)
		}
	}
}

// result is the outcome of one part that held (or claimed to hold) an instance.
type result struct {
	sopClass, sopInstance, study, series string
	failure                              uint16 // 0: stored
}

// store answers one Store Instances request (PS3.18 10.5.2, 10.5.3).
func (s *STOW) store(c echo.Context) error {
	req := c.Request()
	wantStudy := c.Param("study")
	if wantStudy != "" && !dicom.ValidUID(wantStudy) {
		return echo.NewHTTPError(http.StatusBadRequest, "the Study Instance UID in the URL is not a UID")
	}
	boundary, err := multipartBoundary(req.Header.Get(echo.HeaderContentType))
	if err != nil {
		return err
	}
	start := time.Now()
	mr := multipart.NewReader(req.Body, boundary)
	var results []result
	otherParts := 0
	for {
		// NextRawPart: a part's bytes are the file as sent, never quoted-printable decoded.
		part, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// Instances stored so far stay stored (they were committed); sending them again is
			// harmless, a second copy being a success.
			s.log.Warn("STOW-RS request malformed", "stored_before", len(results), "err", err)
			return echo.NewHTTPError(http.StatusBadRequest, "malformed multipart/related body")
		}
		if !isDICOMPart(part.Header.Get(echo.HeaderContentType)) {
			otherParts++
			part.Close()
			continue
		}
		r := s.storePart(req.Context(), part, wantStudy)
		part.Close()
		results = append(results, r)
	}
	if len(results) == 0 {
		if otherParts > 0 {
			return echo.NewHTTPError(http.StatusUnsupportedMediaType, `no part of type application/dicom`)
		}
		return echo.NewHTTPError(http.StatusBadRequest, "no instance in the request")
	}
	stored := 0
	for _, r := range results {
		if r.failure == 0 {
			stored++
		}
	}
	code := http.StatusOK
	switch {
	case stored == 0:
		code = http.StatusConflict
	case stored < len(results):
		code = http.StatusAccepted
	}
	s.log.Info("STOW-RS", "instances", len(results), "stored", stored, "other_parts", otherParts,
		"status", code, "duration", time.Since(start))
	body := responseDataset(baseURL(c), wantStudy, results)
	return c.Blob(code, MediaTypeDICOMJSON, body)
}

// multipartBoundary checks the request's media type: multipart/related whose type, if given,
// is application/dicom (415 otherwise); a missing boundary is 400.
func multipartBoundary(contentType string) (string, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		// Clients send type=application/dicom unquoted, though "/" makes quotes necessary
		// (RFC 2045 5.1); PS3.18's own examples vary. Quote it and try again.
		mt, params, err = mime.ParseMediaType(unquotedParam.ReplaceAllString(contentType, `$1"$2"`))
	}
	if err != nil {
		return "", echo.NewHTTPError(http.StatusUnsupportedMediaType, "Content-Type does not parse")
	}
	if mt != "multipart/related" {
		return "", echo.NewHTTPError(http.StatusUnsupportedMediaType, `Content-Type must be multipart/related; type="application/dicom"`)
	}
	if t, ok := params["type"]; ok && !strings.EqualFold(strings.TrimSpace(t), "application/dicom") {
		return "", echo.NewHTTPError(http.StatusUnsupportedMediaType, `only type="application/dicom" is accepted`)
	}
	if params["boundary"] == "" {
		return "", echo.NewHTTPError(http.StatusBadRequest, "multipart/related without a boundary")
	}
	return params["boundary"], nil
}

// unquotedParam matches a parameter whose value is not quoted.
var unquotedParam = regexp.MustCompile(`(;\s*[A-Za-z-]+\s*=\s*)([^";\s]+)`)

// isDICOMPart reports whether a part's Content-Type is application/dicom (with any parameters,
// transfer-syntax included: the file meta information says it). A part without one takes the
// request's type, application/dicom.
func isDICOMPart(contentType string) bool {
	if strings.TrimSpace(contentType) == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/dicom"
}

// storePart receives one Part 10 file and hands it to the sink.
func (s *STOW) storePart(ctx context.Context, part io.Reader, wantStudy string) (r result) {
	var ie *dicom.InstanceError
	var tmpPath string
	defer func() {
		if r.failure == 0 {
			s.log.Info("STOW-RS instance stored", "sop_instance_uid", r.sopInstance)
			return
		}
		if tmpPath != "" {
			if err := os.Remove(tmpPath); err != nil && !errors.Is(err, os.ErrNotExist) {
				s.log.Warn("removing an unacknowledged instance file", "path", tmpPath, "err", err)
			}
		}
		attrs := []any{"sop_instance_uid", r.sopInstance, "reason", fmt.Sprintf("%04X", r.failure)}
		if ie != nil {
			attrs = append(attrs, "comment", ie.Reason)
			if ie.Err != nil {
				attrs = append(attrs, "err", ie.Err)
			}
		}
		s.log.Warn("STOW-RS instance refused", attrs...)
	}()

	f, err := os.CreateTemp(s.cfg.IncomingDir, "stow-*.dcm")
	if err != nil {
		ie = &dicom.InstanceError{Status: dicom.StatusOutOfResources, Reason: "cannot create the instance file", Err: err}
		return result{failure: FailureOutOfResources}
	}
	tmpPath = f.Name()
	size, sum, ie := dicom.ReceiveFile(f, nil, part, s.cfg.MaxInstanceSize)
	if cerr := f.Close(); cerr != nil && ie == nil {
		ie = dicom.WriteFailure(cerr)
	}
	if ie != nil {
		return result{failure: uint16(ie.Status)}
	}

	hdr, err := dicom.ReadInstance(tmpPath, s.cfg.MaxHeaderSize)
	if err != nil {
		ie = dicom.AsInstanceError(err, "cannot read the instance file")
		return result{failure: uint16(ie.Status)}
	}
	inst := engine.NewInstance(hdr, tmpPath)
	r = result{sopClass: inst.SOPClassUID, sopInstance: inst.SOPInstanceUID, study: inst.StudyInstanceUID, series: inst.SeriesInstanceUID}
	if wantStudy != "" && inst.StudyInstanceUID != wantStudy {
		// PS3.18 10.5.3: an instance of another study than the URL's is not stored; its failure
		// is of the A9xx family (the data set does not match the request).
		ie = &dicom.InstanceError{Status: dicom.StatusDataSetMismatch, Tag: dicom.TagStudyInstanceUID,
			Reason: "Study Instance UID differs from the one in the URL"}
		r.failure = FailureDataSetMismatch
		return r
	}
	inst.SHA256 = sum
	inst.Size = size
	inst.ReceivedAt = time.Now().UTC()
	inst.PeerAddr = peerSTOWRS

	if _, err = s.sink.StoreInstance(ctx, inst, tmpPath); err != nil {
		ie = dicom.SinkFailure(ctx, err)
		r.failure = uint16(ie.Status)
		return r
	}
	tmpPath = "" // the sink has it
	return r
}

// baseURL is the DICOMweb base URL as the client reached it.
func baseURL(c echo.Context) string {
	return c.Scheme() + "://" + c.Request().Host + BasePath
}
