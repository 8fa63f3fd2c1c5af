package web_test

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/ferryhealth/ferry/adapters/httpapi"
	"github.com/ferryhealth/ferry/adapters/httpapi/accesstest"
	"github.com/ferryhealth/ferry/adapters/sqlite"
	"github.com/ferryhealth/ferry/adapters/web"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
)

// server is Ferry's HTTP edge (the API and the pages) over a real, migrated SQLite store.
type server struct {
	store *sqlite.Store
	svc   *access.Service
	srv   *httptest.Server
}

func newServer(t *testing.T) *server { return startServer(t, false) }

// startServer starts the server, under TLS when tls is set.
func startServer(t *testing.T, tls bool) *server { return start(t, tls, nil) }

// startServerWith starts the server with the single sign-on sso returns for its base URL.
func startServerWith(t *testing.T, sso func(base string) *web.SSO) *server {
	return start(t, false, sso)
}

func start(t *testing.T, tls bool, sso func(base string) *web.SSO) *server {
	t.Helper()
	st := accesstest.SQLiteStore(t)
	s := &server{store: st, svc: &access.Service{Store: st}}
	trail := &audit.Recorder{Begin: st.Begin}
	e, err := httpapi.New(httpapi.Options{Messages: st, Access: s.svc, SessionCookie: web.SessionCookie, Audit: trail})
	if err != nil {
		t.Fatal(err)
	}
	s.srv = httptest.NewUnstartedServer(e)
	if tls {
		s.srv.StartTLS()
	} else {
		s.srv.Start()
	}
	opt := web.Options{Access: s.svc, Audit: trail}
	if sso != nil {
		opt.SSO = sso(s.srv.URL)
	}
	if err := web.Register(e, opt); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.srv.Close)
	return s
}

// browser starts headless Chromium (Debian's chromium), at phone width.
func browser(t *testing.T) context.Context {
	t.Helper()
	return browserAt(t, 390, 844)
}

// browserAt starts headless Chromium with a window w × h pixels.
func browserAt(t *testing.T, w, h int) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("FERRY_REQUIRE_PEERS") != "" {
			t.Fatalf("chromium not installed (apt-get install chromium): %v", err)
		}
		t.Skip("chromium not installed (apt-get install chromium); FERRY_REQUIRE_PEERS=1 makes this fatal")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(w, h), chromedp.Flag("headless", "new"))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(cancelCtx)
	return ctx
}

// tab drives one browser tab in a test: each step fails the test with what it was doing.
type tab struct {
	t   *testing.T
	ctx context.Context
}

func css(s string) chromedp.CSS { return chromedp.CSS(s) }

func (b tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("browser, %s: %v", what, err)
	}
}

// text returns the text of the element sel selects.
func (b tab) text(sel string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Text(css(sel)))
	if err != nil {
		b.t.Fatalf("browser, reading %s: %v", sel, err)
	}
	return v
}

// TestBrowserSignInAndOut: in real headless Chromium at phone width, a user signs in on the
// server-rendered page, sees who they are, and signs out; the session is gone from the store,
// the sign-in page shows a wrong password as an alert, and the audit trail has every attempt.
func TestBrowserSignInAndOut(t *testing.T) {
	s := newServer(t)
	ctx := context.Background()
	if err := s.svc.AddUser(ctx, &access.User{Name: "ana", Role: access.RoleAnalyst}, "correct horse battery staple"); err != nil {
		t.Fatal(err)
	}
	b := browser(t)
	tb := tab{t, b}
	do, text := tb.do, tb.text
	// A page needing a session sends the browser to sign in.
	do("opening /", chromedp.Navigate(s.srv.URL+"/"), chromedp.WaitVisible(css("#username")))
	// A wrong password: an alert, and the name kept.
	do("a wrong password", chromedp.SendKeys(css("#username"), "ana"), chromedp.SendKeys(css("#password"), "not the password"),
		chromedp.Submit(css("#password")), chromedp.WaitVisible(css("[role=alert]")))
	alert := text("[role=alert]")
	loginShot, err := chromedp.Run(b, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatal(err)
	}
	// The right one.
	do("the right password", chromedp.SetValue(css("#password"), "correct horse battery staple"), chromedp.Submit(css("#password")),
		chromedp.WaitVisible(css(".logout button")))
	heading := text("main")
	shot, err := chromedp.Run(b, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	// Sign out.
	do("signing out", chromedp.Click(css(".logout button")), chromedp.WaitVisible(css("#username")))
	afterLogout, err := chromedp.Run(b, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(alert, "Wrong user name or password") {
		t.Errorf("alert %q", alert)
	}
	if !strings.Contains(heading, "ana") || !strings.Contains(heading, "analyst") {
		t.Errorf("home page %q: want the user and role", heading)
	}
	if !strings.HasSuffix(afterLogout, "/login") {
		t.Errorf("after signing out: at %s, want /login", afterLogout)
	}
	// FERRY_SCREENSHOTS=DIR keeps the screenshots, to look at.
	if dir := os.Getenv("FERRY_SCREENSHOTS"); dir != "" {
		for name, b := range map[string][]byte{"sign-in-phone.png": loginShot, "signed-in-phone.png": shot} {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Going back to the page after signing out asks for a sign-in again: the session is gone.
	do("opening / again", chromedp.Navigate(s.srv.URL+"/"), chromedp.WaitVisible(css("#username")))
	loc, err := chromedp.Run(b, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(loc, "/login") {
		t.Errorf("/ after signing out: at %s, want the sign-in page", loc)
	}
	evs, err := s.store.AuditEvents(ctx, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, string(e.Action)+":"+string(e.Outcome)+":"+e.Agent)
	}
	want := "login:4:ana login:0:ana logout:0:ana"
	if strings.Join(got, " ") != want {
		t.Errorf("audit trail %v, want %s", got, want)
	}
}
