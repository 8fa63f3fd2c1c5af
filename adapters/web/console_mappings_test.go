package web_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ferryhealth/ferry/adapters/httpapi"
	"github.com/ferryhealth/ferry/adapters/httpapi/accesstest"
	"github.com/ferryhealth/ferry/adapters/web"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
	"github.com/ferryhealth/ferry/fhir"
	"github.com/ferryhealth/ferry/mappings"
)

// TestBrowserConsoleMappings is issue 14's flow in headless Chromium at 1280 px: an order
// acknowledged on receipt fails because the site's procedures table lacks its code; the analyst
// finds it in the error queue, opens the table in the console, is refused a broken save
// (nothing changes), saves the fix (tried, tested, written, applied at once, recorded under
// her name), sees the ServiceRequest the tester makes of the stored message, reprocesses the
// message and the order is placed; she compares two revisions and rolls back to the first.
func TestBrowserConsoleMappings(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	tablePath := filepath.Join(dir, "tables", "procedures.yaml")
	shipped, err := fs.ReadFile(mappings.Shipped(), "tables/procedures.yaml")
	if err != nil {
		t.Fatal(err)
	}
	strict := strings.Replace(string(shipped), "\nmissing: empty\n", "\nmissing: error\n", 1)
	fixed := strings.Replace(strict, "\nrows:\n", "\nrows:\n  \"99999\": {system: \"http://loinc.org\", code: \"24627-2\", scheme: LN, display: \"CT Chest\", modality: CT}\n", 1)
	if strict == string(shipped) || fixed == strict {
		t.Fatal("the shipped procedures table changed shape: fix the test's edits")
	}
	if err := os.MkdirAll(filepath.Dir(tablePath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tablePath, []byte(strict), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := mappings.Config{Dir: dir}
	reloader, err := mappings.NewReloader(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	validator, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	processor := &engine.Processor{Mappings: func() engine.MappingSource { return reloader.Current() }, Validator: validator}

	st := accesstest.SQLiteStore(t)
	svc := &access.Service{Store: st}
	trail := &audit.Recorder{Begin: st.Begin}
	e, err := httpapi.New(httpapi.Options{Messages: st, Access: svc, SessionCookie: web.SessionCookie, Audit: trail})
	if err != nil {
		t.Fatal(err)
	}
	pages := &web.ConsoleMappings{Editor: &mappings.Editor{Config: cfg, Reloader: reloader}, Current: reloader.Current, History: st}
	if err := pages.SyncHistory(ctx); err != nil { // as serve does at start: history begins with what is deployed
		t.Fatal(err)
	}
	if err := web.Register(e, web.Options{Access: svc, Audit: trail, Console: &web.Console{Messages: st, Mappings: pages}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	for _, u := range []*access.User{{Name: "ana", Role: access.RoleAnalyst},
		{Name: "doc", Role: access.RolePhysician, Practitioners: []access.Practitioner{{Value: "1234"}}}} {
		if err := svc.AddUser(ctx, u, "correct horse battery staple"); err != nil {
			t.Fatal(err)
		}
	}

	// ack: on_receipt — the order is committed and answered AA, processed after: it fails.
	order := &engine.InboundMessage{Channel: "mllp", ReceivedAt: time.Now().UTC(), PeerAddr: "10.0.0.7:5000",
		Raw: []byte(consoleORM("MP1")), SendingApplication: "RIS", SendingFacility: "STMARYS", MessageType: "ORM^O01",
		ControlID: "MP1", Version: "2.3.1", Status: engine.StatusAccepted, ACKCode: "AA", Pending: true}
	if err := st.CommitInbound(ctx, []*engine.InboundMessage{order}); err != nil {
		t.Fatal(err)
	}
	if n, err := (&engine.PendingWorker{Store: st, Processor: processor}).ProcessBatch(ctx); err != nil || n != 1 {
		t.Fatalf("processing the order: %d, %v", n, err)
	}

	b := browserAt(t, 1280, 900)
	tb := tab{t, b}
	do, text := tb.do, tb.text
	shots := map[string][]byte{}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(b, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		shots[name] = png
	}
	onDisk := func() string {
		t.Helper()
		b, err := os.ReadFile(tablePath)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	revisions := func() []*engine.MappingRevision {
		t.Helper()
		revs, err := st.MappingRevisions(ctx, "", "tables/procedures.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return revs
	}
	if revs := revisions(); len(revs) != 1 || revs[0].Author != engine.MappingFilesAuthor {
		t.Fatalf("history at start: %d revisions; want 1, by files", len(revs))
	}

	do("signing in, to the error queue", chromedp.Navigate(srv.URL+"/console/messages?queue=errors"), chromedp.WaitVisible(css("#username")),
		chromedp.SendKeys(css("#username"), "ana"), chromedp.SendKeys(css("#password"), "correct horse battery staple"),
		chromedp.Submit(css("#password")), chromedp.WaitVisible(css("#matching")))
	if row := text("tbody"); !strings.Contains(row, "MP1") || !strings.Contains(row, "ERR 103") || !strings.Contains(row, "procedures") {
		t.Fatalf("error queue %q: want MP1, failed for the procedures table (ERR 103)", row)
	}

	do("the mappings", chromedp.Click(css(`nav.console a[href="/console/mappings"]`)), chromedp.WaitVisible(css("#files")))
	if list := text("#files"); !strings.Contains(list, "orm_o01.yaml") || !strings.Contains(list, "mapping (inbound)") ||
		!strings.Contains(list, "overridden by the site's") || !strings.Contains(list, "orm_o01@") {
		t.Errorf("the list %q: want the mappings in force, their direction, layer and version", list)
	}
	shot("console-mappings.png")

	editURL := srv.URL + "/console/mappings/edit?" + url.Values{"facility": {""}, "path": {"tables/procedures.yaml"}}.Encode()
	do("the procedures table", chromedp.Navigate(editURL), chromedp.WaitVisible(css("#content")))
	if l := text("#layer"); l != "site" {
		t.Errorf("layer %q, want site", l)
	}

	// A broken table is refused: problems shown, the file and the history as they were.
	do("a broken save", chromedp.SetValue(css("#content"), "table: procedures\nmissing: sometimes\nrows:\n  X: {code: 1}\n"),
		chromedp.SetValue(css("#note"), "oops"), chromedp.Click(css("#save")), chromedp.WaitVisible(css("#problems")))
	if p := text("#problems"); !strings.Contains(p, "missing: want empty, error or default") {
		t.Errorf("problems %q: want the table's problem", p)
	}
	if onDisk() != strict || len(revisions()) != 1 {
		t.Fatal("a refused save changed the file or the history")
	}
	shot("console-mapping-refused.png")

	// The fix: saved, tested, applied without a restart, recorded under ana's name.
	do("the fix", chromedp.Navigate(editURL), chromedp.WaitVisible(css("#content")),
		chromedp.SetValue(css("#content"), fixed), chromedp.SetValue(css("#note"), "procedure 99999 added"),
		chromedp.Click(css("#save")), chromedp.WaitVisible(css(".notice")))
	if n := text(".notice"); !strings.Contains(n, "Saved") {
		t.Errorf("notice %q", n)
	}
	if onDisk() != fixed {
		t.Fatal("the saved table is not on disk")
	}
	if res, err := reloader.Current().Try([]byte(consoleORM("MP9"))); err != nil || res.Error != nil {
		t.Fatalf("the mappings in force after the save still refuse 99999: %+v, %v", res, err)
	}
	revs := revisions()
	if len(revs) != 2 || revs[0].Author != "ana" || revs[0].Note != "procedure 99999 added" {
		t.Fatalf("history after the save: %+v", revs)
	}
	if h := text("#history"); !strings.Contains(h, "ana") || !strings.Contains(h, "files") {
		t.Errorf("history on the page %q", h)
	}

	// The tester, on the stored message by its ID: the ServiceRequest it now yields.
	do("trying the stored message", chromedp.SetValue(css("#message-id"), fmt.Sprint(order.ID)), chromedp.Click(css("#try")),
		chromedp.WaitVisible(css("#output")))
	if out := text("#output"); !strings.Contains(out, "service_request") || !strings.Contains(out, "24627-2") || !strings.Contains(out, "PLMP1") || strings.Contains(out, "ERR") {
		t.Errorf("tester output %q: want the ServiceRequest with LOINC 24627-2", out)
	}
	shot("console-mapping-tester.png")

	// Reprocessed with the table now in force: the order is placed.
	do("reprocessing", chromedp.Navigate(fmt.Sprintf("%s/console/messages/%d", srv.URL, order.ID)), chromedp.WaitVisible(css("#reprocess-reason")),
		chromedp.SendKeys(css("#reprocess-reason"), "procedure 99999 added"), chromedp.Click(css("#reprocess")), chromedp.WaitVisible(css(".notice")))
	if n, err := (&engine.Reprocessor{Store: st, Processor: processor}).RunBatch(ctx); err != nil || n != 1 {
		t.Fatalf("RunBatch: %d, %v", n, err)
	}
	srs, err := st.SearchResources(ctx, engine.ResourceQuery{Type: "ServiceRequest"})
	if err != nil || len(srs) != 1 || !bytes.Contains(srs[0].JSON, []byte("PLMP1")) {
		t.Fatalf("ServiceRequests after reprocessing: %d (%v); want MP1's", len(srs), err)
	}

	// Compare the two revisions: the added row is shown as added.
	do("comparing", chromedp.Navigate(editURL), chromedp.WaitVisible(css("#compare-button")), chromedp.Click(css("#compare-button")),
		chromedp.WaitVisible(css("#diff")))
	ins, err := chromedp.Run(b, chromedp.Evaluate[string](`Array.from(document.querySelectorAll("#diff ins")).map(e => e.textContent).join("")`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ins, "99999") {
		t.Errorf("the diff's insertions %q: want the 99999 row", ins)
	}
	shot("console-mapping-diff.png")

	// Roll back to revision 1 (tested as a save): the strict table is back, a third revision.
	do("rolling back", chromedp.Navigate(editURL), chromedp.WaitVisible(css("#rollback-1")), chromedp.Click(css("#rollback-1")),
		chromedp.WaitVisible(css(".notice")))
	if n := text(".notice"); !strings.Contains(n, "Rolled back") {
		t.Errorf("notice %q", n)
	}
	if onDisk() != strict {
		t.Fatal("the rollback did not restore revision 1 on disk")
	}
	if revs := revisions(); len(revs) != 3 || revs[0].Author != "ana" || !strings.HasPrefix(revs[0].Note, "rollback to revision 1") {
		t.Fatalf("history after the rollback: %d revisions, latest %+v", len(revs), revs[0])
	}
	if res, err := reloader.Current().Try([]byte(consoleORM("MP8"))); err != nil || res.Error == nil || res.Error.Code != 103 {
		t.Fatalf("after the rollback the mappings in force accept 99999: %+v, %v", res, err)
	}
	shot("console-mapping-history.png")

	// A physician has no mappings pages, a form without its token is refused, and both are audited.
	sess, _, _, err := svc.Login(ctx, "doc", "correct horse battery staple", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/console/mappings", nil)
	req.AddCookie(&http.Cookie{Name: web.SessionCookie, Value: sess})
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("physician at /console/mappings: %v %v, want 403", resp.StatusCode, err)
	} else {
		resp.Body.Close()
	}
	anaSess, _, _, err := svc.Login(ctx, "ana", "correct horse battery staple", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"path": {"tables/procedures.yaml"}, "content": {fixed}, "action": {"save"}}
	req, _ = http.NewRequest(http.MethodPost, srv.URL+"/console/mappings/edit", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: web.SessionCookie, Value: anaSess})
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("a save without the CSRF token: %v %v, want 403", resp.StatusCode, err)
	} else {
		resp.Body.Close()
	}
	if onDisk() != strict {
		t.Fatal("a save without the CSRF token changed the file")
	}
	evs, err := st.AuditEvents(ctx, audit.Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var updates, refused, tried int
	for _, ev := range evs {
		switch {
		case ev.Agent == "ana" && ev.Action == audit.ActionUpdate && ev.Outcome == audit.OutcomeSuccess && strings.Contains(ev.Entity, "tables/procedures.yaml"):
			updates++
		case ev.Agent == "ana" && ev.Action == audit.ActionUpdate && ev.Outcome == audit.OutcomeMinor:
			refused++
		case ev.Agent == "ana" && ev.Action == audit.ActionRead && strings.Contains(ev.Entity, fmt.Sprintf("message %d", order.ID)):
			tried++
		}
	}
	if updates != 2 || refused != 1 || tried < 1 {
		t.Errorf("audit: %d saves, %d refused saves, %d reads of the stored message; want 2, 1, ≥1", updates, refused, tried)
	}
	if dir := os.Getenv("FERRY_SCREENSHOTS"); dir != "" {
		for name, png := range shots {
			if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestMappingHistoryFromDisk: the history starts with the files as deployed (by "files"), and an
// edit made outside the console becomes a revision when the reloader notices it — once, however
// often the history is synced.
func TestMappingHistoryFromDisk(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	site, general := t.TempDir(), t.TempDir()
	shipped, err := fs.ReadFile(mappings.Shipped(), "tables/procedures.yaml")
	if err != nil {
		t.Fatal(err)
	}
	write := func(dir, body string) {
		t.Helper()
		p := filepath.Join(dir, "tables", "procedures.yaml")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		later := time.Now().Add(time.Duration(len(body)) * time.Second) // coarse file clocks
		if err := os.Chtimes(p, later, later); err != nil {
			t.Fatal(err)
		}
	}
	write(site, string(shipped))
	write(general, string(shipped))
	cfg := mappings.Config{Dir: site, Facilities: map[string]string{"GENERAL": general}}
	reloader, err := mappings.NewReloader(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := accesstest.SQLiteStore(t)
	pages := &web.ConsoleMappings{Editor: &mappings.Editor{Config: cfg, Reloader: reloader}, Current: reloader.Current, History: st}
	for range 2 { // at start, on every node: recorded once
		if err := pages.SyncHistory(ctx); err != nil {
			t.Fatal(err)
		}
	}
	history := func(facility string) []*engine.MappingRevision {
		t.Helper()
		revs, err := st.MappingRevisions(ctx, facility, "tables/procedures.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return revs
	}
	if s, g := history(""), history("GENERAL"); len(s) != 1 || len(g) != 1 || s[0].Author != "files" {
		t.Fatalf("history at start: site %d, GENERAL %d revisions; want 1 each, by files", len(s), len(g))
	}
	var synced error
	reloader.Changed = func() { synced = pages.SyncHistory(ctx) }
	edited := strings.Replace(string(shipped), "\nrows:\n", "\nrows:\n  \"99999\": {system: \"http://loinc.org\", code: \"24627-2\", display: \"CT Chest\", modality: CT}\n", 1)
	write(general, edited)
	if !reloader.Check() || synced != nil {
		t.Fatalf("the reloader did not load the edit (sync: %v)", synced)
	}
	g := history("GENERAL")
	if len(g) != 2 || g[0].Author != "files" || g[0].Seq != 2 {
		t.Fatalf("GENERAL's history after an edit on disk: %d revisions; want 2, the latest by files", len(g))
	}
	rev, err := st.MappingRevision(ctx, g[0].ID)
	if err != nil || string(rev.Content) != edited {
		t.Fatalf("the revision recorded from disk: %v; want the edited file", err)
	}
	if len(history("")) != 1 {
		t.Error("the site's unchanged table got a new revision")
	}
}
