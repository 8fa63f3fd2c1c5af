package dicomweb

import (
	"bytes"
	"container/list"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/dicom/render"
	"github.com/ferryhealth/ferry/engine"
)

// Frames, rendered images and thumbnails (PS3.18 10.4.1.1.3 Retrieve Frames, 10.4.1.1.4 Rendered
// Resources, 10.4.1.1.5 Thumbnail Resources). Frames are the stored bytes of each frame
// (uncompressed: application/octet-stream; compressed: the codestream, image/jpeg for JPEG);
// rendered images and thumbnails go through dicom/render (PS3.3 C.11: rescale, VOI window from the
// header or ?window=, MONOCHROME1 inverted, colour) for native pixel data and JPEG baseline. What
// a request may make Ferry read or build is bounded before anything is read: frame numbers by
// the instance's frame count, the pixels by render.MaxPixels, the output by maxViewport.

const (
	// maxViewport bounds each side of a rendered image (PS3.18 viewport), so a request cannot
	// ask for a huge output; a larger frame is scaled down to fit.
	maxViewport = 4096
	// defaultThumbnail and maxThumbnail are a thumbnail's sides, by default and at most.
	defaultThumbnail = 128
	maxThumbnail     = 1024
	// maxFrameList bounds the frame numbers one Retrieve Frames request may list.
	maxFrameList = 4096
	// maxRenderBytes bounds the stored bytes of one frame that is rendered: a 64 M-pixel
	// 8-bit RGB frame; JPEG frames are far smaller.
	maxRenderBytes = 3 * render.MaxPixels
	// DefaultThumbnailCacheBytes is the thumbnail cache's size when Config leaves it 0.
	DefaultThumbnailCacheBytes = 32 << 20
)

// frameMediaType is the media type of a stored frame's bytes in transfer syntax ts (PS3.18
// table 8.7.3-2); application/octet-stream for uncompressed and unknown ones.
func frameMediaType(ts string) string {
	switch ts {
	case dicom.JPEGBaseline, "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70":
		return mediaTypeJPEG
	case "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81":
		return "image/jls"
	case "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91":
		return "image/jp2"
	case "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.203":
		return "image/jphc"
	case "1.2.840.10008.1.2.5":
		return "image/x-dicom-rle"
	}
	return mediaTypeOctetStream
}

// parseFrameList reads the {frames} of a URL: frame numbers, comma separated, each positive.
func parseFrameList(s string) ([]int, error) {
	parts := strings.Split(s, ",")
	if len(parts) > maxFrameList {
		return nil, echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("at most %d frames per request", maxFrameList))
	}
	out := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 {
			return nil, echo.NewHTTPError(http.StatusBadRequest, "frames: want frame numbers from 1, comma separated")
		}
		out[i] = n
	}
	return out, nil
}

// oneInstance finds the instance a URL names (the middle instance of a study or series, for
// their thumbnails) and reads its stored file; done closes it.
func (s *STOW) oneInstance(c echo.Context) (*engine.Instance, *dicom.Stored, func(), error) {
	_, insts, err := s.found(c)
	if err != nil {
		return nil, nil, nil, err
	}
	inst := insts[len(insts)/2]
	st, done, err := s.stored(inst)
	if err != nil {
		return nil, nil, nil, err
	}
	return inst, st, done, nil
}

// checkFrames answers 404 for a frame the instance does not have.
func checkFrames(st *dicom.Stored, frames []int) error {
	if st.Pixels == nil {
		return echo.NewHTTPError(http.StatusNotFound, "the instance has no pixel data")
	}
	for _, n := range frames {
		if n > st.NumberOfFrames() {
			return echo.NewHTTPError(http.StatusNotFound, fmt.Sprintf("frame %d: the instance has %d", n, st.NumberOfFrames()))
		}
	}
	return nil
}

// frames answers Retrieve Frames: each frame's stored bytes as a part of multipart/related.
// Uncompressed frames are application/octet-stream (little endian, as stored); compressed
// frames are their codestream in its own media type (image/jpeg for JPEG baseline), or
// application/octet-stream when the request takes transfer-syntax=*. Ferry does not
// decompress: a request only for uncompressed frames of a compressed instance is 406.
func (s *STOW) frames(c echo.Context) error {
	list, err := parseFrameList(c.Param("frames"))
	if err != nil {
		return err
	}
	inst, st, done, err := s.oneInstance(c)
	if err != nil {
		return err
	}
	defer done()
	if err := checkFrames(st, list); err != nil {
		return err
	}
	ts := inst.TransferSyntaxUID
	stored := frameMediaType(ts)
	if !st.Pixels.Encapsulated() {
		ts = dicom.ExplicitVRLittleEndian // native frames are little endian bytes, whatever the data set's encoding
	}
	partType := ""
	for _, r := range acceptable(c) {
		typ := strings.ToLower(strings.TrimSpace(r.params["type"]))
		want := strings.TrimSpace(r.params["transfer-syntax"])
		switch {
		case r.mediaType == "*/*" || r.mediaType == "multipart/*" || (r.mediaType == "multipart/related" && typ == ""):
			partType = stored
		case r.mediaType != "multipart/related":
		case want == anyTransferSyntax && (typ == stored || typ == mediaTypeOctetStream):
			partType = typ
		case typ == stored && (want == ts || want == "" && (ts == dicom.ExplicitVRLittleEndian || ts == dicom.JPEGBaseline)):
			partType = typ
		}
		if partType != "" {
			break
		}
	}
	if partType == "" {
		msg := fmt.Sprintf("the frames of instance %s are stored in %s and Ferry does not transcode: ask for multipart/related; type=%q",
			inst.SOPInstanceUID, dicom.TransferSyntaxName(inst.TransferSyntaxUID), stored)
		if st.Pixels.Encapsulated() {
			msg += `, or type="application/octet-stream"; transfer-syntax=*`
		}
		return echo.NewHTTPError(http.StatusNotAcceptable, msg)
	}
	return s.writeFrames(c, inst, st, list, partType)
}

// writeFrames answers the frames, each a part of type partType.
func (s *STOW) writeFrames(c echo.Context, inst *engine.Instance, st *dicom.Stored, frames []int, partType string) error {
	ts := inst.TransferSyntaxUID
	if !st.Pixels.Encapsulated() {
		ts = dicom.ExplicitVRLittleEndian
	}
	// Every frame is located before the answer starts, so a bad one is a clear error.
	spans := make([][]dicom.Span, len(frames))
	for i, n := range frames {
		sp, err := st.Frame(n)
		if err != nil {
			return echo.NewHTTPError(http.StatusNotFound, err.Error())
		}
		spans[i] = sp
	}
	base := baseURL(c) + instancePath(inst) + "/frames/"
	return writeParts(c, partType, func(mw *multipart.Writer) error {
		for i, sp := range spans {
			r, n := st.FrameReader(sp)
			part, err := mw.CreatePart(textproto.MIMEHeader{
				echo.HeaderContentType:   {partType + "; transfer-syntax=" + ts},
				echo.HeaderContentLength: {strconv.FormatInt(n, 10)},
				"Content-Location":       {base + strconv.Itoa(frames[i])},
			})
			if err != nil {
				return s.abort(err, inst)
			}
			if _, err := copyN(part, r, n); err != nil {
				return s.abort(err, inst)
			}
		}
		return nil
	})
}

func copyN(w io.Writer, r io.Reader, n int64) (int64, error) {
	got, err := io.CopyN(w, r, n)
	if err == nil && got != n {
		err = io.ErrUnexpectedEOF
	}
	return got, err
}

// renderOptions are a rendered or thumbnail request's parameters (PS3.18 8.3.5).
type renderOptions struct {
	mediaType     string
	window        *render.Window
	width, height int // the viewport; 0: the frame's size (within maxViewport)
	quality       int // JPEG quality, 1–100; 0: the default
}

// key is the options' part of a cache key.
func (o renderOptions) key() string {
	w := "header"
	if o.window != nil {
		w = strconv.FormatFloat(o.window.Center, 'g', -1, 64) + "," + strconv.FormatFloat(o.window.Width, 'g', -1, 64) + "," + o.window.Name
	}
	return fmt.Sprintf("%s|%s|%dx%d|q%d", o.mediaType, w, o.width, o.height, o.quality)
}

// voiFunctions are the values of window's third part (PS3.18 8.3.5.1.4), as PS3.3 names them.
var voiFunctions = map[string]string{"linear": "LINEAR", "linear-exact": "LINEAR_EXACT", "sigmoid": "SIGMOID"}

// parseRenderOptions reads Accept (image/jpeg by default, or image/png), window=center,width[,
// function], Ferry's preset=lung|soft-tissue|bone|brain, viewport=width,height and quality.
// Other parameters of PS3.18 (annotation, charset) are ignored, as the standard allows.
func parseRenderOptions(c echo.Context, thumbnail bool) (renderOptions, *string, error) {
	var o renderOptions
	bad := func(format string, a ...any) error {
		return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf(format, a...))
	}
	for _, r := range acceptable(c) {
		switch r.mediaType {
		case "*/*", "image/*", mediaTypeJPEG:
			o.mediaType = mediaTypeJPEG
		case mediaTypePNG:
			o.mediaType = mediaTypePNG
		}
		if o.mediaType != "" {
			break
		}
	}
	if o.mediaType == "" {
		return o, nil, echo.NewHTTPError(http.StatusNotAcceptable, "rendered images are image/jpeg or image/png")
	}
	q := c.QueryParams()
	var function *string
	if v := q.Get("window"); v != "" {
		parts := strings.Split(v, ",")
		if len(parts) < 2 || len(parts) > 3 {
			return o, nil, bad("window: want center,width[,function]")
		}
		center, err1 := strconv.ParseFloat(parts[0], 64)
		width, err2 := strconv.ParseFloat(parts[1], 64)
		if err1 != nil || err2 != nil || width < 1 || width > 1e7 || center < -1e7 || center > 1e7 {
			return o, nil, bad("window: center and width are numbers, width at least 1")
		}
		o.window = &render.Window{Center: center, Width: width}
		if len(parts) == 3 {
			fn, ok := voiFunctions[strings.ToLower(parts[2])]
			if !ok {
				return o, nil, bad("window: the function is linear, linear-exact or sigmoid")
			}
			function = &fn
			o.window.Name = fn
		}
	}
	if v := q.Get("preset"); v != "" {
		if o.window != nil {
			return o, nil, bad("preset and window: give one")
		}
		p, ok := render.Presets[v]
		if !ok {
			return o, nil, bad("preset: lung, soft-tissue, bone or brain")
		}
		o.window = &p
	}
	limit := maxViewport
	if thumbnail {
		limit, o.width, o.height = maxThumbnail, defaultThumbnail, defaultThumbnail
	}
	if v := q.Get("viewport"); v != "" {
		parts := strings.Split(v, ",")
		if len(parts) != 2 {
			return o, nil, bad("viewport: want width,height (cropping is not supported)")
		}
		w, err1 := strconv.Atoi(parts[0])
		h, err2 := strconv.Atoi(parts[1])
		if err1 != nil || err2 != nil || w < 1 || h < 1 || w > limit || h > limit {
			return o, nil, bad("viewport: width and height from 1 to %d", limit)
		}
		o.width, o.height = w, h
	}
	if v := q.Get("quality"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return o, nil, bad("quality: from 1 to 100")
		}
		o.quality = n
	}
	return o, function, nil
}

// rendered answers Retrieve Rendered Instance or Frame: one frame (the first by default) as an
// image.
func (s *STOW) rendered(c echo.Context) error {
	return s.serveImage(c, false)
}

// thumbnail answers Retrieve Thumbnail (an instance's or frame's; a series' or study's is its
// middle instance's), from the cache when it holds it.
func (s *STOW) thumbnail(c echo.Context) error {
	return s.serveImage(c, true)
}

func (s *STOW) serveImage(c echo.Context, thumbnail bool) error {
	frame := 1
	if v := c.Param("frames"); v != "" {
		list, err := parseFrameList(v)
		if err != nil {
			return err
		}
		if len(list) != 1 {
			return echo.NewHTTPError(http.StatusBadRequest, "one frame is rendered per request")
		}
		frame = list[0]
	}
	o, function, err := parseRenderOptions(c, thumbnail)
	if err != nil {
		return err
	}
	_, insts, err := s.found(c)
	if err != nil {
		return err
	}
	inst := insts[len(insts)/2]
	key := ""
	if thumbnail && s.thumbs != nil {
		// The stored file's digest is in the key: an instance replaced is a new entry, and the
		// old one ages out.
		key = fmt.Sprintf("%s|%s|%d|%s|%s", inst.SOPInstanceUID, inst.SHA256, frame, o.key(), strOr(function))
		if body, ok := s.thumbs.get(key); ok {
			return c.Blob(http.StatusOK, o.mediaType, body)
		}
	}
	st, done, err := s.stored(inst)
	if err != nil {
		return err
	}
	defer done()
	body, err := renderFrame(st, inst.TransferSyntaxUID, frame, o, function)
	if err != nil {
		return err
	}
	if key != "" {
		s.thumbs.put(key, body)
	}
	return c.Blob(http.StatusOK, o.mediaType, body)
}

func strOr(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// renderFrame reads frame n of st and renders it as o says.
func renderFrame(st *dicom.Stored, ts string, n int, o renderOptions, function *string) ([]byte, error) {
	if err := checkFrames(st, []int{n}); err != nil {
		return nil, err
	}
	f := render.FrameOf(st.DataSet)
	if function != nil {
		f.VOIFunction = *function
	}
	if f.Rows < 0 || f.Columns < 0 || int64(f.Rows)*int64(f.Columns) > render.MaxPixels {
		return nil, echo.NewHTTPError(http.StatusUnprocessableEntity, fmt.Sprintf("a frame of %d×%d pixels is too large to render", f.Rows, f.Columns))
	}
	spans, err := st.Frame(n)
	if err != nil {
		return nil, echo.NewHTTPError(http.StatusNotFound, err.Error())
	}
	r, size := st.FrameReader(spans)
	if size > maxRenderBytes {
		return nil, echo.NewHTTPError(http.StatusUnprocessableEntity, fmt.Sprintf("a frame of %d bytes is too large to render", size))
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, fmt.Errorf("WADO-RS: reading frame %d: %w", n, err)
	}
	img, err := render.Decode(ts, &f, data, o.window)
	switch {
	case errors.Is(err, render.ErrUnsupported):
		return nil, echo.NewHTTPError(http.StatusNotAcceptable, fmt.Sprintf(
			"Ferry cannot render this frame (%v); its instance is stored in %s: retrieve it as stored (transfer-syntax=*) or download the study",
			strings.TrimPrefix(err.Error(), "render: "), dicom.TransferSyntaxName(ts)))
	case err != nil:
		return nil, echo.NewHTTPError(http.StatusUnprocessableEntity, "the frame cannot be rendered: "+strings.TrimPrefix(err.Error(), "render: "))
	}
	w, h := o.width, o.height
	if w == 0 {
		w, h = maxViewport, maxViewport
	}
	img = render.Fit(img, w, h)
	var buf bytes.Buffer
	if err := render.Encode(&buf, img, o.mediaType, o.quality); err != nil {
		return nil, fmt.Errorf("WADO-RS: encoding the image: %w", err)
	}
	return buf.Bytes(), nil
}

// thumbnailCache keeps rendered thumbnails, least recently used first out, within a number of
// bytes. Safe for concurrent use.
type thumbnailCache struct {
	mu       sync.Mutex
	max, len int64
	order    *list.List // of *cached, most recently used at the front
	byKey    map[string]*list.Element
	hits     int64 // answers from the cache
}

type cached struct {
	key  string
	body []byte
}

func newThumbnailCache(max int64) *thumbnailCache {
	return &thumbnailCache{max: max, order: list.New(), byKey: map[string]*list.Element{}}
}

func (tc *thumbnailCache) get(key string) ([]byte, bool) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	e, ok := tc.byKey[key]
	if !ok {
		return nil, false
	}
	tc.order.MoveToFront(e)
	tc.hits++
	return e.Value.(*cached).body, true
}

// hitCount is how many answers came from the cache.
func (tc *thumbnailCache) hitCount() int64 {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.hits
}

// put adds a thumbnail, dropping the least recently used ones to make room; one larger than an
// eighth of the cache is not kept.
func (tc *thumbnailCache) put(key string, body []byte) {
	size := int64(len(body) + len(key))
	if size > tc.max/8 {
		return
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if _, ok := tc.byKey[key]; ok {
		return
	}
	tc.byKey[key] = tc.order.PushFront(&cached{key: key, body: body})
	tc.len += size
	for tc.len > tc.max {
		last := tc.order.Back()
		old := last.Value.(*cached)
		tc.order.Remove(last)
		delete(tc.byKey, old.key)
		tc.len -= int64(len(old.body) + len(old.key))
	}
}
