package web_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/ferryhealth/ferry/adapters/web"
	"github.com/ferryhealth/ferry/engine/access"
)

// client is a browser without JavaScript: a cookie jar, no redirects followed.
func client(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var formToken = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// get fetches path and returns the status, headers and the page's form token.
func get(t *testing.T, c *http.Client, base, path string) (int, http.Header, string) {
	t.Helper()
	resp, err := c.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := formToken.FindSubmatch(body)
	if m == nil {
		return resp.StatusCode, resp.Header, ""
	}
	return resp.StatusCode, resp.Header, string(m[1])
}

func post(t *testing.T, c *http.Client, base, path string, form url.Values) *http.Response {
	t.Helper()
	resp, err := c.PostForm(base+path, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestSignInWithoutJavaScript: the forms work as plain HTML; the session cookie is HttpOnly and
// SameSite; every form needs its CSRF token; a sign-in never redirects off the site; signing
// out ends the session in the store.
func TestSignInWithoutJavaScript(t *testing.T) {
	s := newServer(t)
	ctx := context.Background()
	if err := s.svc.AddUser(ctx, &access.User{Name: "ana", Role: access.RoleAnalyst}, "correct horse battery staple"); err != nil {
		t.Fatal(err)
	}
	c := client(t)
	code, h, token := get(t, c, s.srv.URL, "/login")
	if code != http.StatusOK || token == "" {
		t.Fatalf("GET /login: %d, form token %q", code, token)
	}
	for _, header := range []string{"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options"} {
		if h.Get(header) == "" {
			t.Errorf("GET /login: no %s", header)
		}
	}
	if csp := h.Get("Content-Security-Policy"); strings.Contains(csp, "script-src") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q: want no scripts at all", csp)
	}

	// Without the form's token (a form posted from another site), nothing happens.
	other := client(t)
	if resp := post(t, other, s.srv.URL, "/login", url.Values{"username": {"ana"}, "password": {"correct horse battery staple"}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("sign-in without the form token: %d, want 400", resp.StatusCode)
	}

	resp := post(t, c, s.srv.URL, "/login", url.Values{"csrf_token": {token}, "username": {"ana"},
		"password": {"correct horse battery staple"}, "next": {"//evil.example/"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("sign-in: %d to %q, want 303 to / (never off the site)", resp.StatusCode, resp.Header.Get("Location"))
	}
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == web.SessionCookie {
			session = ck
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteLaxMode || session.Path != "/" {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Lax, Path=/", session)
	}
	if session.Secure {
		t.Errorf("session cookie Secure over plain HTTP: the browser would drop it")
	}
	code, _, logoutToken := get(t, c, s.srv.URL, "/")
	if code != http.StatusOK || logoutToken == "" {
		t.Fatalf("GET / signed in: %d, sign-out form token %q", code, logoutToken)
	}
	// The session works for the API too (a read needs no CSRF token).
	req, _ := http.NewRequest(http.MethodGet, s.srv.URL+"/api/v1/messages", nil)
	req.AddCookie(session)
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != http.StatusOK {
		t.Errorf("the API with the session: %v %v, want 200", r.StatusCode, err)
	}

	// Sign-out needs the session's CSRF token.
	if resp := post(t, c, s.srv.URL, "/logout", url.Values{}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign-out without the token: %d, want 403", resp.StatusCode)
	}
	if resp := post(t, c, s.srv.URL, "/logout", url.Values{"csrf_token": {logoutToken}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("sign-out: %d, want 303", resp.StatusCode)
	}
	// The old cookie, replayed (from another node or a copy), opens nothing.
	req, _ = http.NewRequest(http.MethodGet, s.srv.URL+"/api/v1/messages", nil)
	req.AddCookie(session)
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != http.StatusUnauthorized {
		t.Errorf("the ended session's cookie: %v %v, want 401", r.StatusCode, err)
	}
	if code, h, _ := get(t, c, s.srv.URL, "/"); code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/login") {
		t.Errorf("GET / signed out: %d to %q, want 303 to /login", code, h.Get("Location"))
	}
}

// TestSessionCookieSecureUnderTLS: over HTTPS the session cookie is Secure.
func TestSessionCookieSecureUnderTLS(t *testing.T) {
	s := startServer(t, true)
	if err := s.svc.AddUser(context.Background(), &access.User{Name: "ana", Role: access.RoleAnalyst}, "correct horse battery staple"); err != nil {
		t.Fatal(err)
	}
	c := s.srv.Client()
	c.Jar, _ = cookiejar.New(nil)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	_, _, token := get(t, c, s.srv.URL, "/login")
	resp := post(t, c, s.srv.URL, "/login", url.Values{"csrf_token": {token}, "username": {"ana"}, "password": {"correct horse battery staple"}})
	for _, ck := range resp.Cookies() {
		if ck.Name == web.SessionCookie && !ck.Secure {
			t.Errorf("session cookie over HTTPS without Secure: %+v", ck)
		}
	}
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("sign-in over HTTPS: %d, want 303", resp.StatusCode)
	}
}
