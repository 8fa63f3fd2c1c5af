package web_test

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/adapters/httpapi/accesstest"
	"github.com/ferryhealth/ferry/adapters/web"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
	"github.com/ferryhealth/ferry/engine/critical"
)

// viewerSite is the access fixture (its CT study, physician doc's patient p1 with report r1)
// with the pages on top: the study linked to p1, r1 a critical result, and two physicians who
// sign in with a password — drweb (p1's) and drother (someone else's).
type viewerSite struct {
	*accesstest.Fixture
	acks *critical.Service
}

const viewerPassword = "correct horse battery staple"

func newViewerSite(t *testing.T) *viewerSite {
	t.Helper()
	st := accesstest.SQLiteStore(t)
	f := accesstest.NewFixture(t, st, true)
	ctx := context.Background()
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	tx, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.PutStudyLink(ctx, &engine.StudyLink{StudyInstanceUID: accesstest.Study, Status: engine.LinkLinked,
		ServiceRequestID: "s1", PatientID: "p1", Rule: "accession", DecidedAt: at}); err != nil {
		t.Fatal(err)
	}
	if err := tx.PutCriticalResult(ctx, &engine.CriticalResult{ReportID: "r1", Version: 1, PatientID: "p1", OrderID: "s1", ReportedAt: at}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, u := range []*access.User{
		{Name: "drweb", Role: access.RolePhysician, Practitioners: []access.Practitioner{accesstest.DocNPI}},
		{Name: "drother", Role: access.RolePhysician, Practitioners: []access.Practitioner{{System: "urn:npi", Value: "5555555555"}}},
	} {
		if err := f.Svc.AddUser(ctx, u, viewerPassword); err != nil {
			t.Fatal(err)
		}
	}
	trail := &audit.Recorder{Begin: st.Begin}
	s := &viewerSite{Fixture: f, acks: &critical.Service{Store: st, Patients: f.Patients, Reports: st, Audit: trail}}
	e := f.Srv.Config.Handler.(*echo.Echo) // the fixture's API: the pages join it, as in ferry serve
	if err := web.Register(e, web.Options{Access: f.Svc, Audit: trail, Critical: s.acks,
		Studies: &web.Studies{Search: &access.Studies{Patients: f.Patients, Studies: st}, Instances: st, Links: st}}); err != nil {
		t.Fatal(err)
	}
	return s
}

// session signs user in and returns a client holding the session, and the session's CSRF token.
func (s *viewerSite) session(t *testing.T, user string) (*http.Client, string) {
	t.Helper()
	id, sess, err := s.Svc.OpenSession(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(s.Srv.URL)
	jar.SetCookies(u, []*http.Cookie{{Name: web.SessionCookie, Value: id, Path: "/"}})
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, sess.CSRFToken
}

// TestBrowserStudyViewer: in headless Chromium, the patient's physician signs in and opens the
// study page: the image (WADO-RS rendered) and the series thumbnail decode; a window preset
// changes the rendered image's URL to PS3.18's window=center,width,function; phone and desktop
// widths; another physician gets 404; each view is audited.
func TestBrowserStudyViewer(t *testing.T) {
	s := newViewerSite(t)
	studyURL := s.Srv.URL + "/studies/" + accesstest.Study
	shots := map[string][]byte{}
	for _, width := range []int{390, 1280} {
		b := browserAt(t, width, 900)
		tb := tab{t, b}
		// Chromium's window has a minimum width above a phone's: the viewport is emulated.
		tb.do("signing in", chromedp.EmulateViewport(int64(width), 900), chromedp.Navigate(studyURL), chromedp.WaitVisible(css("#username")),
			chromedp.SendKeys(css("#username"), "drweb"), chromedp.SendKeys(css("#password"), viewerPassword),
			chromedp.Submit(css("#password")), chromedp.WaitVisible(css("#frame")))
		decoded := func(sel string) float64 {
			t.Helper()
			// Resolves once the image has loaded or failed: no polling, no clock.
			w, err := chromedp.Run(b, chromedp.Evaluate[float64](`new Promise(r => { const i = document.querySelector(`+"`"+sel+"`"+`);
				if (i.complete) { r(i.naturalWidth); return; }
				i.addEventListener('load', () => r(i.naturalWidth)); i.addEventListener('error', () => r(0)); })`,
				chromedp.EvalAwaitPromise))
			if err != nil {
				t.Fatalf("reading %s: %v", sel, err)
			}
			return w
		}
		if w := decoded("#frame"); w <= 0 {
			t.Errorf("width %d: the rendered image did not decode (naturalWidth %v)", width, w)
		}
		if w := decoded("ul.series img"); w <= 0 {
			t.Errorf("width %d: the series thumbnail did not decode (naturalWidth %v)", width, w)
		}
		before, err := chromedp.Run(b, chromedp.AttributeValue(css("#frame"), "src"))
		if err != nil {
			t.Fatal(err)
		}
		shot, err := chromedp.Run(b, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		shots[map[int]string{390: "study-phone.png", 1280: "study-desktop.png"}[width]] = shot
		tb.do("choosing the lung window", chromedp.Click(css(`.presets a[href*="preset=lung"]`)),
			chromedp.WaitVisible(css(`.presets a[aria-current][href*="preset=lung"]`)))
		after, err := chromedp.Run(b, chromedp.AttributeValue(css("#frame"), "src"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(before.Value, "window=") || !strings.Contains(after.Value, "window=-600,1500,linear") {
			t.Errorf("rendered URL before %q, after the lung preset %q: want window=-600,1500,linear after only", before.Value, after.Value)
		}
		if w := decoded("#frame"); w <= 0 {
			t.Errorf("width %d: the image in the lung window did not decode", width)
		}
	}
	if dir := os.Getenv("FERRY_SCREENSHOTS"); dir != "" {
		for name, b := range shots {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}

	other, _ := s.session(t, "drother")
	resp, err := other.Get(studyURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("another physician's study: %d, want 404", resp.StatusCode)
	}
	var views, refused int
	for _, e := range s.Events(t) {
		if e.Entity == "GET /studies/"+accesstest.Study {
			switch {
			case e.Agent == "drweb" && e.Outcome == audit.OutcomeSuccess && e.Patient == "Patient/p1":
				views++
			case e.Agent == "drother" && e.Outcome == audit.OutcomeMinor && e.Patient == "Patient/p1":
				refused++
			}
		}
	}
	if views < 4 || refused != 1 {
		t.Errorf("audit: %d views by drweb, %d refusals of drother; want 4 (2 widths × 2 windows) and 1", views, refused)
	}
}

// TestAcknowledgeCriticalResult: the report page's form acknowledges with the session's CSRF
// token and goes back to the report (303); without the token it is refused; another physician
// gets 404; the first acknowledgement is the one kept.
func TestAcknowledgeCriticalResult(t *testing.T) {
	s := newViewerSite(t)
	post := func(c *http.Client, csrf string) *http.Response {
		t.Helper()
		resp, err := c.PostForm(s.Srv.URL+"/reports/r1/acknowledge", url.Values{"csrf_token": {csrf}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	doc, csrf := s.session(t, "drweb")
	other, otherCSRF := s.session(t, "drother")
	if resp := post(doc, "not-the-token"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("without the CSRF token: %d, want 403", resp.StatusCode)
	}
	if resp := post(other, otherCSRF); resp.StatusCode != http.StatusNotFound {
		t.Errorf("another physician: %d, want 404", resp.StatusCode)
	}
	if _, _, ok, _ := s.acks.Acknowledgement(context.Background(), "r1"); ok {
		t.Fatal("acknowledged by a refused request")
	}
	resp := post(doc, csrf)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/reports/r1" {
		t.Fatalf("acknowledging: %d to %q, want 303 to /reports/r1", resp.StatusCode, resp.Header.Get("Location"))
	}
	by, _, ok, err := s.acks.Acknowledgement(context.Background(), "r1")
	if err != nil || !ok || by != "drweb" {
		t.Errorf("Acknowledgement = %s, %v, %v; want drweb", by, ok, err)
	}
}
