package web_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/ferryhealth/ferry/adapters/web"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
)

// hospitalClaims is the example provider's storage with the claims a hospital's provider adds
// for Ferry: the role and the practitioner identifier, on the userinfo endpoint.
type hospitalClaims struct {
	*storage.Storage
}

func (h hospitalClaims) SetUserinfoFromToken(ctx context.Context, ui *zoidc.UserInfo, tokenID, subject, origin string) error {
	if err := h.Storage.SetUserinfoFromToken(ctx, ui, tokenID, subject, origin); err != nil {
		return err
	}
	if subject == "id2" { // test-user2: a referring physician
		ui.AppendClaims("ferry_role", "physician")
		ui.AppendClaims("npi", []string{"http://hl7.org/fhir/sid/us-npi|1234567893"})
	}
	return nil
}

// provider starts the example OpenID provider of github.com/zitadel/oidc (a real provider:
// discovery, authorization code with PKCE, signed ID tokens, userinfo) with Ferry's callback
// registered, and returns its issuer.
func provider(t *testing.T, callback string) string {
	t.Helper()
	var router http.Handler
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { router.ServeHTTP(w, r) }))
	srv.Start()
	t.Cleanup(srv.Close)
	issuer := srv.URL + "/"
	storage.RegisterClients(storage.WebClient("ferry", "ferry-client-secret", callback))
	router = exampleop.SetupServer(issuer, hospitalClaims{storage.NewStorage(storage.NewUserStore(issuer))}, nil, false)
	return issuer
}

// TestSingleSignOn: end to end in headless Chromium, against a real OpenID provider — a user
// new to Ferry is created from the role and practitioner claims and signed in; an unknown user
// without a role claim is refused; both are audited.
func TestSingleSignOn(t *testing.T) {
	s := startServerWith(t, func(base string) *web.SSO {
		issuer := provider(t, base+"/login/sso/callback")
		sso, err := web.NewSSO(web.SSOConfig{Name: "St Mary's", Issuer: issuer, ClientID: "ferry", ClientSecret: "ferry-client-secret",
			RedirectURL: base + "/login/sso/callback", UsernameClaim: "preferred_username", RoleClaim: "ferry_role", PractitionerClaim: "npi"})
		if err != nil {
			t.Fatal(err)
		}
		return sso
	})
	tb := tab{t, browser(t)}
	do := tb.do
	signIn := func(user string) {
		t.Helper()
		do("opening /login", chromedp.Navigate(s.srv.URL+"/login"), chromedp.WaitVisible(css(`a.button`)))
		do("the SSO button", chromedp.Click(css(`a.button`)), chromedp.WaitVisible(css(`#username`)))
		// The provider's own sign-in page.
		do("the provider's form", chromedp.SendKeys(css(`#username`), user), chromedp.SendKeys(css(`#password`), "verysecure"),
			chromedp.Submit(css(`#password`)))
	}

	signIn("test-user2")
	do("back at Ferry", chromedp.WaitVisible(css(".logout button")))
	main := tb.text("main")
	if !strings.Contains(main, "test-user2") || !strings.Contains(main, "physician") {
		t.Errorf("after single sign-on: %q, want test-user2 as physician", main)
	}
	u, err := s.store.User(context.Background(), "test-user2")
	if err != nil {
		t.Fatalf("the user was not created: %v", err)
	}
	if u.Role != access.RolePhysician || len(u.Practitioners) != 1 || u.Practitioners[0].Value != "1234567893" || u.PasswordHash != "" {
		t.Errorf("created user %+v: want a physician with the NPI of the claim and no password", u)
	}
	do("signing out", chromedp.Click(css(".logout button")), chromedp.WaitVisible(css("#username")))

	// The other example user carries no role claim and is not a Ferry user: refused.
	signIn("test-user@127.0.0.1")
	do("refused", chromedp.WaitVisible(css("[role=alert]")))

	evs, err := s.store.AuditEvents(context.Background(), audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, string(e.Action)+":"+string(e.Outcome)+":"+e.Agent)
	}
	if want := "login:0:test-user2 logout:0:test-user2 login:4:test-user@127.0.0.1"; strings.Join(got, " ") != want {
		t.Errorf("audit trail %v, want %s", got, want)
	}
}
