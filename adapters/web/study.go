package web

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/dicom/render"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
)

// The study page (docs/physicians.md, "A study"): GET /studies/{StudyInstanceUID} shows a study's
// series, each with its thumbnail, and one image at a time — an <img> of WADO-RS's rendered
// frame — with links to the previous and next image, the CT window presets and the study's
// download as a zip. It is plain HTML: links move through the images, no script is needed.
// The images are Ferry's own WADO-RS routes (adapters/dicomweb), which ask who is calling and
// audit each retrieval as any client's.

// Studies is what the study page reads. Search must be limited to the patients the identity in
// its context reaches (access.Studies over the store): a study it does not return is "not
// found". Instances reads the found study's series and images (engine.InstanceStore) and Links
// its patient, for the audit trail (engine.LinkStore).
type Studies struct {
	Search    access.StudySearcher
	Instances interface {
		StudySeries(ctx context.Context, studyInstanceUID string) ([]*engine.Series, error)
		SeriesInstances(ctx context.Context, seriesInstanceUID string) ([]*engine.Instance, error)
	}
	Links interface {
		StudyLink(ctx context.Context, studyInstanceUID string) (*engine.StudyLink, error)
	}
}

// dicomwebBase is where adapters/dicomweb serves WADO-RS (dicomweb.BasePath).
const dicomwebBase = "/dicomweb"

// viewerSize is the rendered image's viewport: the browser scales it down to the screen.
const viewerSize = "1024,1024"

// windowPreset is a CT window the page offers (dicom/render.Presets, Hounsfield units).
type windowPreset struct {
	Key, Label string
	Center     float64
	Width      float64
}

// windowPresets are the presets in the order the page shows them: lung W1500/L−600, soft
// tissue W400/L40, bone W1800/L400, brain W80/L40 (docs/physicians.md, "A study" says why).
var windowPresets = func() []windowPreset {
	var out []windowPreset
	for _, k := range []string{"lung", "soft-tissue", "bone", "brain"} {
		w := render.Presets[k]
		label := map[string]string{"lung": "Lung", "soft-tissue": "Soft tissue", "bone": "Bone", "brain": "Brain"}[k]
		out = append(out, windowPreset{Key: k, Label: label, Center: w.Center, Width: w.Width})
	}
	return out
}()

// studyView is what templates/study.html shows.
type studyView struct {
	view
	Study  *engine.Study
	Series []seriesView
	// The image shown: its series, its place, its rendered URL, and the links around it.
	Current      *seriesView
	Index, Count int
	Image        string
	Prev, Next   string
	First, Last  string
	Presets      []presetLink
	Window       string // the preset in force, its label; "" for the image's own window
	Download     string
	ImageAlt     string
}

type seriesView struct {
	*engine.Series
	Thumbnail string
	Link      string
	Current   bool
}

type presetLink struct {
	Label, Link string
	Current     bool
}

// studyPage serves GET /studies/{StudyInstanceUID}?series=UID&image=N&preset=KEY.
func (p *pages) studyPage(c echo.Context) error {
	ident, sess, _ := p.session(c)
	if ident == nil {
		return c.Redirect(http.StatusSeeOther, "/login?next="+url.QueryEscape(c.Request().URL.RequestURI()))
	}
	uid := c.Param("uid")
	entity := "GET /studies/" + uid
	if !ident.Grants(access.PermDICOMwebRead) {
		p.record(c, &audit.Event{Action: audit.ActionRead, Outcome: audit.OutcomeMinor, Agent: ident.User, Role: string(ident.Role),
			Entity: entity, Detail: "403: role " + string(ident.Role) + " does not read studies"})
		return echo.NewHTTPError(http.StatusForbidden, "studies are for physicians and radiologists")
	}
	ctx := access.WithIdentity(c.Request().Context(), ident)
	notFound := func(patient string) error {
		p.record(c, &audit.Event{Action: audit.ActionRead, Outcome: audit.OutcomeMinor, Agent: ident.User, Role: string(ident.Role),
			Entity: entity, Patient: patient, Detail: "404: refused: not among the patients of " + ident.User})
		return echo.NewHTTPError(http.StatusNotFound, "not found")
	}
	patient := ""
	if dicom.ValidUID(uid) {
		if l, err := p.opt.Studies.Links.StudyLink(ctx, uid); err == nil && l.PatientID != "" {
			patient = "Patient/" + l.PatientID
		} else if err != nil && !errors.Is(err, engine.ErrNotFound) {
			return err
		}
	}
	if !dicom.ValidUID(uid) {
		return notFound("")
	}
	found, err := p.opt.Studies.Search.SearchStudies(ctx, engine.StudyFilter{StudyInstanceUIDs: []string{uid}, Limit: 1})
	if err != nil {
		return err
	}
	if len(found) == 0 {
		return notFound(patient)
	}
	v := studyView{view: view{Title: "Study", User: ident.User, Role: string(ident.Role), CSRF: sess.CSRFToken, Wide: true},
		Study: found[0], Download: dicomwebBase + "/studies/" + uid + "?accept=" + url.QueryEscape("application/zip")}
	series, err := p.opt.Studies.Instances.StudySeries(ctx, uid)
	if err != nil {
		return err
	}
	q := c.QueryParams()
	preset := q.Get("preset")
	if !slices.ContainsFunc(windowPresets, func(w windowPreset) bool { return w.Key == preset }) {
		preset = ""
	}
	want := q.Get("series")
	for _, s := range series {
		sv := seriesView{Series: s,
			Thumbnail: dicomwebBase + "/studies/" + uid + "/series/" + s.SeriesInstanceUID + "/thumbnail",
			Link:      studyPageLink(uid, s.SeriesInstanceUID, 1, preset)}
		v.Series = append(v.Series, sv)
	}
	for i := range v.Series {
		if v.Series[i].SeriesInstanceUID == want || want == "" && i == 0 {
			v.Series[i].Current, v.Current = true, &v.Series[i]
		}
	}
	if v.Current == nil && len(v.Series) > 0 {
		v.Series[0].Current, v.Current = true, &v.Series[0]
	}
	if v.Current != nil {
		if err := p.currentImage(ctx, &v, uid, preset, q.Get("image")); err != nil {
			return err
		}
	}
	e := &audit.Event{Action: audit.ActionRead, Outcome: audit.OutcomeSuccess, Agent: ident.User, Role: string(ident.Role),
		Entity: entity, Patient: patient}
	p.record(c, e)
	return p.render(c, http.StatusOK, p.study, "study.html", v)
}

// currentImage fills in the image shown: the image-th instance of the current series (from 1,
// kept within the series), rendered in the preset's window or the image's own.
func (p *pages) currentImage(ctx context.Context, v *studyView, uid, preset, image string) error {
	se := v.Current.SeriesInstanceUID
	insts, err := p.opt.Studies.Instances.SeriesInstances(ctx, se)
	if err != nil {
		return err
	}
	v.Count = len(insts)
	if v.Count == 0 {
		return nil
	}
	n, _ := strconv.Atoi(image)
	n = min(max(n, 1), v.Count)
	v.Index = n
	inst := insts[n-1]
	// WADO-RS window=center,width,function (PS3.18 8.3.5.1.4); none: the image's own VOI.
	src := dicomwebBase + "/studies/" + uid + "/series/" + se + "/instances/" + inst.SOPInstanceUID +
		"/frames/1/rendered?viewport=" + viewerSize
	for _, w := range windowPresets {
		if w.Key == preset {
			src += "&window=" + strconv.FormatFloat(w.Center, 'g', -1, 64) + "," + strconv.FormatFloat(w.Width, 'g', -1, 64) + ",linear"
			v.Window = w.Label
		}
	}
	v.Image = src
	v.ImageAlt = fmt.Sprintf("Image %d of %d, series %s", n, v.Count, strings.TrimSpace(v.Current.SeriesDescription))
	if n > 1 {
		v.Prev, v.First = studyPageLink(uid, se, n-1, preset), studyPageLink(uid, se, 1, preset)
	}
	if n < v.Count {
		v.Next, v.Last = studyPageLink(uid, se, n+1, preset), studyPageLink(uid, se, v.Count, preset)
	}
	v.Presets = append(v.Presets, presetLink{Label: "Image's own", Link: studyPageLink(uid, se, n, ""), Current: preset == ""})
	for _, w := range windowPresets {
		v.Presets = append(v.Presets, presetLink{Label: w.Label, Link: studyPageLink(uid, se, n, w.Key), Current: w.Key == preset})
	}
	return nil
}

// studyPageLink is the study page showing image n of series se in preset.
func studyPageLink(uid, se string, n int, preset string) string {
	q := url.Values{"series": {se}, "image": {strconv.Itoa(n)}}
	if preset != "" {
		q.Set("preset", preset)
	}
	return "/studies/" + uid + "?" + q.Encode()
}

// parseStudyPage parses the study page's template.
func parseStudyPage() (*template.Template, error) {
	return template.New("").Funcs(template.FuncMap{"da": dicomDate}).ParseFS(templateFiles, "templates/layout.html", "templates/study.html")
}

// dicomDate writes a DICOM date (DA, YYYYMMDD) as YYYY-MM-DD; anything else as it is.
func dicomDate(da string) string {
	if len(da) != 8 {
		return da
	}
	for i := 0; i < len(da); i++ {
		if da[i] < '0' || da[i] > '9' {
			return da
		}
	}
	return da[:4] + "-" + da[4:6] + "-" + da[6:]
}
