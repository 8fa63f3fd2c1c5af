package web_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// axeVersion is the axe-core (npm) the pages are checked with.
const axeVersion = "4.10.2"

// axeScript returns axe-core's script: from FERRY_PEERS_DIR's node_modules when the peers have
// it, else installed with npm into a temporary directory.
func axeScript(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("FERRY_PEERS_DIR"); dir != "" {
		if b, err := os.ReadFile(filepath.Join(dir, "node_modules", "axe-core", "axe.min.js")); err == nil {
			return string(b)
		}
	}
	dir := t.TempDir()
	out, err := exec.Command("npm", "install", "--prefix", dir, "--no-audit", "--no-fund", "--silent", "axe-core@"+axeVersion).CombinedOutput()
	if err == nil {
		var b []byte
		if b, err = os.ReadFile(filepath.Join(dir, "node_modules", "axe-core", "axe.min.js")); err == nil {
			return string(b)
		}
	}
	if os.Getenv("FERRY_REQUIRE_PEERS") != "" {
		t.Fatalf("axe-core %s: npm install failed: %v\n%s", axeVersion, err, out)
	}
	t.Skipf("axe-core %s not installable (npm): %v; FERRY_REQUIRE_PEERS=1 makes this fatal", axeVersion, err)
	return ""
}

// axeViolation is one rule axe-core found broken.
type axeViolation struct {
	ID, Impact, Help string
	Nodes            []struct{ Target []any }
}

// axeCheck runs axe-core in the page and returns its serious and critical violations. The
// script is evaluated through the DevTools protocol, which the page's CSP (no scripts at all)
// does not govern.
func axeCheck(t *testing.T, ctx context.Context, script string) []axeViolation {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](script+"\n;true")); err != nil {
		t.Fatalf("injecting axe-core: %v", err)
	}
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](`axe.run(document, {resultTypes: ["violations"]}).then(r => JSON.stringify(r.violations))`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("running axe-core: %v", err)
	}
	var all []axeViolation
	if err := json.Unmarshal([]byte(raw), &all); err != nil {
		t.Fatal(err)
	}
	var bad []axeViolation
	for _, v := range all {
		if v.Impact == "serious" || v.Impact == "critical" {
			bad = append(bad, v)
		}
	}
	return bad
}

// TestBrowserPhysicianReport (headless Chromium, both stores): the physician signs in, finds the
// report by the patient's name, opens it, reads the order's reason, the prior and what changed
// from the preliminary to the final, and sees the key image decoded; at phone and desktop width,
// with axe-core finding no serious or critical violation; markup in PID-5 and OBX-5 stays text;
// another physician's report is "not found".
func TestBrowserPhysicianReport(t *testing.T) {
	axe := axeScript(t)
	eachStore(t, func(t *testing.T, st physStore) {
		f := newPhysFixture(t, st)
		shots := map[string][]byte{}
		for _, size := range []struct {
			name string
			w, h int
		}{{"phone", 390, 844}, {"desktop", 1280, 900}} {
			b := browserAt(t, size.w, size.h)
			tb := tab{t, b}
			do, text := tb.do, tb.text
			shot := func(name string) {
				t.Helper()
				png, err := chromedp.Run(b, chromedp.FullScreenshot(100))
				if err != nil {
					t.Fatal(err)
				}
				shots[name+"-"+size.name+".png"] = png
			}
			do("signing in", chromedp.Navigate(f.srv.URL+"/"), chromedp.WaitVisible(css("#username")),
				chromedp.SendKeys(css("#username"), "doc"), chromedp.SendKeys(css("#password"), physPassword),
				chromedp.Submit(css("#password")), chromedp.WaitVisible(css("#reports")))
			if v := axeCheck(t, b, axe); len(v) > 0 {
				t.Errorf("%s, report list: axe-core violations %+v", size.name, v)
			}
			shot("physician-home")
			do("searching by name", chromedp.SetValue(css("#s-by"), "name"), chromedp.SendKeys(css("#s-q"), "doe"),
				chromedp.Click(css("#s-go")), chromedp.WaitVisible(css(`#s-q[value="doe"]`)))
			loc, err := chromedp.Run(b, chromedp.Location())
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(strings.ToLower(loc), "doe") {
				t.Errorf("the search put the name in the URL: %s", loc)
			}
			if list := text("#reports"); !strings.Contains(list, "DOE, JANE Q") || strings.Contains(list, "MR BRAIN") {
				t.Errorf("search doe: %q", list)
			}
			do("opening the report", chromedp.Click(css(`a[href="/reports/r1"]`)), chromedp.WaitVisible(css("#report-body")))
			if reason := text("#reason"); reason != "Cough, rule out mass" {
				t.Errorf("reason for study %q", reason)
			}
			if priors := text("#priors"); !strings.Contains(priors, "XR CHEST 2 VIEWS") {
				t.Errorf("priors %q", priors)
			}
			if diff := text("#diff"); !strings.Contains(diff, "Pulmonary embolism") {
				t.Errorf("diff %q", diff)
			}
			ins, err := chromedp.Run(b, chromedp.Evaluate[int](`document.querySelectorAll("#diff ins").length + document.querySelectorAll("#diff del").length`))
			if err != nil || ins == 0 {
				t.Errorf("the diff marks no insertion or deletion (%v)", err)
			}
			// The thumbnail, from WADO-RS with the page's session: decoded.
			width, err := chromedp.Run(b, chromedp.Evaluate[int](`new Promise(done => {
				const i = document.querySelector("ul.thumbs img");
				if (!i) return done(-1);
				if (i.complete) return done(i.naturalWidth);
				i.addEventListener("load", () => done(i.naturalWidth));
				i.addEventListener("error", () => done(0));
			})`, chromedp.EvalAwaitPromise))
			if err != nil || width <= 0 {
				t.Errorf("the key image: decoded width %d (%v), want > 0", width, err)
			}
			if v := axeCheck(t, b, axe); len(v) > 0 {
				t.Errorf("%s, report page: axe-core violations %+v", size.name, v)
			}
			shot("physician-report")
			// The preliminary version, from the history.
			do("version 1", chromedp.Click(css(`a[href="/reports/r1?version=1"]`)), chromedp.WaitVisible(css(`strong[aria-current=page]`)))
			if body := text("#report-body"); !strings.Contains(body, "Nodule, follow-up advised.") {
				t.Errorf("version 1 body %q", body)
			}
			// Markup in a name and a report: text, no script element, nothing run.
			do("the report with markup", chromedp.Navigate(f.srv.URL+"/reports/rx"), chromedp.WaitVisible(css("#patient")))
			scripts, err := chromedp.Run(b, chromedp.Evaluate[int](`document.querySelectorAll("script").length + document.querySelectorAll("[onerror]").length + document.querySelectorAll("a[href^='javascript']").length`))
			if err != nil {
				t.Fatal(err)
			}
			if who := text("#patient .who"); scripts != 0 || !strings.Contains(who, "<script>alert(1)</script>") {
				t.Errorf("markup: %d active elements, name shown as %q", scripts, who)
			}
			// Another physician's report.
			do("r2", chromedp.Navigate(f.srv.URL+"/reports/r2"), chromedp.WaitVisible(css("h1")))
			if h := text("h1"); h != "Not found" {
				t.Errorf("r2: heading %q, want Not found", h)
			}
		}
		if dir := os.Getenv("FERRY_SCREENSHOTS"); dir != "" && strings.HasSuffix(t.Name(), "sqlite") {
			for name, png := range shots {
				if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}
