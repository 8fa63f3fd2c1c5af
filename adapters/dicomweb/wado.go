package dicomweb

import (
	"archive/zip"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/engine"
)

// WADO-RS, the Retrieve transactions of PS3.18 10.4: studies, series and instances as
// multipart/related; type="application/dicom" (the stored files, byte for byte), or a study or
// series as a zip of its Part 10 files; their metadata in the DICOM JSON Model (metadata.go);
// frames, rendered images and thumbnails (frames.go).
//
// Every retrieval starts from the study, found the way QIDO-RS finds studies
// (StudySearcher.SearchStudies with the study's UID): whatever limits what a caller may search —
// a physician's own patients — limits what it may retrieve, with no code of its own here. A
// study the search does not return is 404, and so is a series or instance that is not in it.

// InstanceReader reads a study's series and instances for WADO-RS; engine.InstanceStore
// implements it. Each is called from the request's goroutine, only after the study was found
// by StudySearcher; the UIDs passed are valid UIDs. An error other than engine.ErrNotFound
// fails the request (500, logged: it must hold no patient data).
type InstanceReader interface {
	StudySeries(ctx context.Context, studyInstanceUID string) ([]*engine.Series, error)
	SeriesInstances(ctx context.Context, seriesInstanceUID string) ([]*engine.Instance, error)
	Instance(ctx context.Context, sopInstanceUID string) (*engine.Instance, error)
}

var _ InstanceReader = (engine.InstanceStore)(nil)

// Media types of the retrieve transactions (PS3.18 8.7.3).
const (
	mediaTypeDICOM       = "application/dicom"
	mediaTypeOctetStream = "application/octet-stream"
	mediaTypeZip         = "application/zip"
	mediaTypeJPEG        = "image/jpeg"
	mediaTypePNG         = "image/png"
	anyTransferSyntax    = "*"
)

// registerWADO adds the retrieve routes.
func (s *STOW) registerWADO(g *echo.Group) {
	const study, series, instance = "/studies/:study", "/studies/:study/series/:series", "/studies/:study/series/:series/instances/:instance"
	g.GET(study, s.retrieve)
	g.GET(series, s.retrieve)
	g.GET(instance, s.retrieve)
	g.GET(study+"/metadata", s.metadata)
	g.GET(series+"/metadata", s.metadata)
	g.GET(instance+"/metadata", s.metadata)
	g.GET(instance+"/bulkdata/*", s.bulkdata)
	g.GET(instance+"/frames/:frames", s.frames)
	g.GET(instance+"/rendered", s.rendered)
	g.GET(instance+"/frames/:frames/rendered", s.rendered)
	g.GET(study+"/thumbnail", s.thumbnail)
	g.GET(series+"/thumbnail", s.thumbnail)
	g.GET(instance+"/thumbnail", s.thumbnail)
	g.GET(instance+"/frames/:frames/thumbnail", s.thumbnail)
}

// target is what a retrieve URL names: a study, and maybe a series and an instance of it.
type target struct {
	study            *engine.Study
	series, instance string // "" when the URL names none
}

// lookup finds the study the URL names through the study search — 404 when the caller cannot
// find it — and checks the series and instance UIDs it names. It tells the audit which patient
// the study is linked to.
func (s *STOW) lookup(c echo.Context) (*target, error) {
	ctx := c.Request().Context()
	uids := []string{c.Param("study"), c.Param("series"), c.Param("instance")}
	for i, name := range []string{"Study", "Series", "SOP"} {
		if (i == 0 || uids[i] != "") && !dicom.ValidUID(uids[i]) {
			return nil, echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("the %s Instance UID in the URL is not a UID", name))
		}
	}
	studies, err := s.cfg.Studies.SearchStudies(ctx, engine.StudyFilter{StudyInstanceUIDs: uids[:1], Limit: 1})
	if err != nil {
		return nil, fmt.Errorf("WADO-RS: finding study %s: %w", uids[0], err)
	}
	if len(studies) == 0 {
		return nil, echo.NewHTTPError(http.StatusNotFound, "no such study")
	}
	if s.cfg.Identities != nil && s.cfg.AuditPatient != nil {
		id, err := s.cfg.Identities.LinkedIdentity(ctx, uids[0])
		if err != nil {
			return nil, fmt.Errorf("WADO-RS: the patient study %s is linked to: %w", uids[0], err)
		}
		if id != nil && id.PatientFHIRID != "" {
			s.cfg.AuditPatient(c, "Patient/"+id.PatientFHIRID)
		}
	}
	return &target{study: studies[0], series: uids[1], instance: uids[2]}, nil
}

// instances returns the instances the target names, in series then instance order; none is 404.
func (s *STOW) instances(ctx context.Context, t *target) ([]*engine.Instance, error) {
	if t.instance != "" {
		inst, err := s.cfg.Instances.Instance(ctx, t.instance)
		if errors.Is(err, engine.ErrNotFound) || err == nil && (inst.StudyInstanceUID != t.study.StudyInstanceUID || inst.SeriesInstanceUID != t.series) {
			return nil, echo.NewHTTPError(http.StatusNotFound, "no such instance in the study and series")
		}
		if err != nil {
			return nil, fmt.Errorf("WADO-RS: reading instance %s: %w", t.instance, err)
		}
		return []*engine.Instance{inst}, nil
	}
	seriesUIDs := []string{t.series}
	if t.series == "" {
		all, err := s.cfg.Instances.StudySeries(ctx, t.study.StudyInstanceUID)
		if err != nil {
			return nil, fmt.Errorf("WADO-RS: reading the series of study %s: %w", t.study.StudyInstanceUID, err)
		}
		seriesUIDs = seriesUIDs[:0]
		for _, se := range all {
			seriesUIDs = append(seriesUIDs, se.SeriesInstanceUID)
		}
	}
	var out []*engine.Instance
	for _, uid := range seriesUIDs {
		insts, err := s.cfg.Instances.SeriesInstances(ctx, uid)
		if err != nil && !errors.Is(err, engine.ErrNotFound) {
			return nil, fmt.Errorf("WADO-RS: reading the instances of series %s: %w", uid, err)
		}
		for _, inst := range insts {
			// A series UID is unique by the standard, but only the study's instances are its.
			if inst.StudyInstanceUID == t.study.StudyInstanceUID {
				out = append(out, inst)
			}
		}
	}
	if len(out) == 0 {
		return nil, echo.NewHTTPError(http.StatusNotFound, "no such series in the study")
	}
	return out, nil
}

// found finds the instances a retrieve URL names (lookup, then instances).
func (s *STOW) found(c echo.Context) (*target, []*engine.Instance, error) {
	t, err := s.lookup(c)
	if err != nil {
		return nil, nil, err
	}
	insts, err := s.instances(c.Request().Context(), t)
	if err != nil {
		return nil, nil, err
	}
	return t, insts, nil
}

// open opens an instance's stored file.
func (s *STOW) open(inst *engine.Instance) (*os.File, error) {
	rel := filepath.FromSlash(inst.Path)
	if !filepath.IsLocal(rel) {
		return nil, fmt.Errorf("WADO-RS: instance %s: stored path is not within the data directory", inst.SOPInstanceUID)
	}
	f, err := os.Open(filepath.Join(s.cfg.DataDir, rel))
	if err != nil {
		return nil, fmt.Errorf("WADO-RS: opening instance %s: %w", inst.SOPInstanceUID, err)
	}
	return f, nil
}

// acceptRange is one media range of an Accept header (or accept query parameter).
type acceptRange struct {
	mediaType string
	params    map[string]string
}

// acceptable parses the request's accept query parameter, which wins (PS3.18 8.3.3.1), else
// its Accept header; media ranges with q=0 are left out. None: */*.
func acceptable(c echo.Context) []acceptRange {
	header := c.QueryParam("accept")
	if header == "" {
		header = c.Request().Header.Get(echo.HeaderAccept)
	}
	var out []acceptRange
	for _, r := range splitAccept(header) {
		mt, params, err := mime.ParseMediaType(r)
		if err != nil {
			mt, params, err = mime.ParseMediaType(unquotedParam.ReplaceAllString(r, `$1"$2"`))
		}
		if q, set := params["q"]; err != nil || set && isZero(q) {
			continue
		}
		out = append(out, acceptRange{mediaType: mt, params: params})
	}
	if len(out) == 0 && strings.TrimSpace(header) == "" {
		out = append(out, acceptRange{mediaType: "*/*"})
	}
	return out
}

// isZero reports whether a q value is 0 (RFC 9110 12.4.2: "not acceptable").
func isZero(q string) bool {
	v, err := strconv.ParseFloat(strings.TrimSpace(q), 64)
	return err == nil && v == 0
}

// splitAccept splits an Accept value at the commas outside quotes.
func splitAccept(h string) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(h); i++ {
		switch h[i] {
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				out = append(out, strings.TrimSpace(h[start:i]))
				start = i + 1
			}
		}
	}
	if rest := strings.TrimSpace(h[start:]); rest != "" {
		out = append(out, rest)
	}
	return out
}

// instanceSyntaxes says, for a request for instances, whether it wants a zip and which
// transfer syntaxes it takes: "*" for any, as stored. A range of application/dicom instances
// without a transfer-syntax parameter asks for Explicit VR Little Endian (PS3.18 8.7.3.5.2).
func instanceSyntaxes(ranges []acceptRange, zipOK bool) (zipped bool, syntaxes map[string]bool, err error) {
	syntaxes = map[string]bool{}
	for _, r := range ranges {
		switch r.mediaType {
		case "*/*", "multipart/*":
			syntaxes[anyTransferSyntax] = true
		case mediaTypeZip:
			if zipOK {
				return true, nil, nil
			}
		case "multipart/related":
			typ := strings.ToLower(strings.TrimSpace(r.params["type"]))
			if typ != "" && typ != mediaTypeDICOM {
				continue
			}
			if ts := strings.TrimSpace(r.params["transfer-syntax"]); ts != "" {
				syntaxes[ts] = true
			} else if typ == "" {
				syntaxes[anyTransferSyntax] = true
			} else {
				syntaxes[dicom.ExplicitVRLittleEndian] = true
			}
		}
	}
	if len(syntaxes) == 0 {
		want := `multipart/related; type="application/dicom" (with transfer-syntax=* for instances as stored)`
		if zipOK {
			want += " or application/zip"
		}
		return false, nil, echo.NewHTTPError(http.StatusNotAcceptable, "WADO-RS answers "+want)
	}
	return false, syntaxes, nil
}

// retrieve answers Retrieve Study, Series or Instance (PS3.18 10.4): the stored files as
// parts of multipart/related; type="application/dicom", each with its transfer syntax, or a
// zip of them for a study or series (Accept or ?accept=application/zip). Ferry does not
// transcode: an instance stored in a syntax the request does not take is 406, naming it.
func (s *STOW) retrieve(c echo.Context) error {
	zipped, syntaxes, err := instanceSyntaxes(acceptable(c), c.Param("instance") == "")
	if err != nil {
		return err
	}
	t, insts, err := s.found(c)
	if err != nil {
		return err
	}
	if !zipped && !syntaxes[anyTransferSyntax] {
		for _, inst := range insts {
			if !syntaxes[inst.TransferSyntaxUID] {
				return echo.NewHTTPError(http.StatusNotAcceptable, fmt.Sprintf(
					"instance %s is stored in %s and Ferry does not transcode: ask with transfer-syntax=%s or transfer-syntax=*",
					inst.SOPInstanceUID, dicom.TransferSyntaxName(inst.TransferSyntaxUID), inst.TransferSyntaxUID))
			}
		}
	}
	if zipped {
		return s.writeZip(c, t, insts)
	}
	w := c.Response()
	mw := multipart.NewWriter(w)
	w.Header().Set(echo.HeaderContentType, `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
	w.WriteHeader(http.StatusOK)
	for _, inst := range insts {
		part, err := mw.CreatePart(textproto.MIMEHeader{
			echo.HeaderContentType: {mediaTypeDICOM + "; transfer-syntax=" + inst.TransferSyntaxUID},
			"Content-Location":     {baseURL(c) + instancePath(inst)},
		})
		if err != nil {
			return s.abort(err, inst)
		}
		if err := s.copyFile(part, inst); err != nil {
			return s.abort(err, inst)
		}
	}
	s.log.Info("WADO-RS retrieve", "study_instance_uid", t.study.StudyInstanceUID, "instances", len(insts))
	return mw.Close()
}

// writeZip streams the instances as a zip of Part 10 files, STUDY/SERIES/SOP.dcm, stored
// without compression (most pixel data does not shrink, and the download starts at once).
func (s *STOW) writeZip(c echo.Context, t *target, insts []*engine.Instance) error {
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, mediaTypeZip)
	w.Header().Set(echo.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="%s.zip"`, t.study.StudyInstanceUID))
	w.WriteHeader(http.StatusOK)
	zw := zip.NewWriter(w)
	for _, inst := range insts {
		fw, err := zw.CreateHeader(&zip.FileHeader{Name: strings.TrimPrefix(instanceFileName(inst), "/"), Method: zip.Store, Modified: inst.ReceivedAt})
		if err != nil {
			return s.abort(err, inst)
		}
		if err := s.copyFile(fw, inst); err != nil {
			return s.abort(err, inst)
		}
	}
	s.log.Info("WADO-RS zip", "study_instance_uid", t.study.StudyInstanceUID, "instances", len(insts))
	return zw.Close()
}

func instanceFileName(inst *engine.Instance) string {
	return inst.StudyInstanceUID + "/" + inst.SeriesInstanceUID + "/" + inst.SOPInstanceUID + ".dcm"
}

func instancePath(inst *engine.Instance) string {
	return "/studies/" + inst.StudyInstanceUID + "/series/" + inst.SeriesInstanceUID + "/instances/" + inst.SOPInstanceUID
}

// copyFile writes an instance's stored file to w.
func (s *STOW) copyFile(w io.Writer, inst *engine.Instance) error {
	f, err := s.open(inst)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// abort ends a response that has started: the status is sent, so the client learns of the
// failure from a body cut short (no closing boundary, no zip directory). It is logged.
func (s *STOW) abort(err error, inst *engine.Instance) error {
	s.log.Warn("WADO-RS response cut short", "sop_instance_uid", inst.SOPInstanceUID, "err", err)
	return err
}
