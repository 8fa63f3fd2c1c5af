package web_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ferryhealth/ferry/adapters/httpapi"
	"github.com/ferryhealth/ferry/adapters/httpapi/accesstest"
	"github.com/ferryhealth/ferry/adapters/web"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
	"github.com/ferryhealth/ferry/fhir"
	"github.com/ferryhealth/ferry/hl7"
	"github.com/ferryhealth/ferry/mappings"
)

// syncBuffer is a bytes.Buffer that handlers on several goroutines may write at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// consoleORM is an order whose procedure code the shipped table lacks: under a strict table it
// failed after its AA. Its patient's name carries markup that must stay text.
func consoleORM(ctrl string) string {
	return strings.Join([]string{
		"MSH|^~\\&|RIS|STMARYS|FERRY|FERRY|20261127083000-0500||ORM^O01|" + ctrl + "|P|2.3.1",
		"PID|1||000888^^^STMARYS^MR||<script>alert(1)</script>^JANE||19800102|F",
		"ORC|NW|PL" + ctrl + "^RIS|||SC||^^^202611270930^^R||20261127082500|||1234^SMITH^ROBERT",
		"OBR|1|PL" + ctrl + "^RIS||99999^EXAM^C4||||||||||||||ACC" + ctrl + "|||||CT",
	}, "\r") + "\r"
}

// TestBrowserConsoleErrorQueue: in headless Chromium at desktop width an analyst signs in, sees
// the error queue on the dashboard, finds the failed order by its control ID, reads why it
// failed and what each field is, reprocesses it once the table is fixed, and dismisses a test
// message; a physician is refused the console; markup in a message stays text.
func TestBrowserConsoleErrorQueue(t *testing.T) {
	ctx := context.Background()
	st := accesstest.SQLiteStore(t)
	svc := &access.Service{Store: st}
	trail := &audit.Recorder{Begin: st.Begin}
	// Every log line of both, to check that no search term (patient data) reaches a log.
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e, err := httpapi.New(httpapi.Options{Messages: st, Access: svc, SessionCookie: web.SessionCookie, Audit: trail, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := web.Register(e, web.Options{Access: svc, Audit: trail, Console: &web.Console{Messages: st}, Logger: logger}); err != nil {
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
	failed := &engine.InboundMessage{Channel: "mllp", ReceivedAt: time.Now().UTC(), PeerAddr: "10.0.0.7:5000",
		Raw: []byte(consoleORM("CQ1")), SendingApplication: "RIS", SendingFacility: "STMARYS", MessageType: "ORM^O01",
		ControlID: "CQ1", Version: "2.3.1", Status: engine.StatusAccepted, ACKCode: "AA",
		ACK:            []byte("MSH|^~\\&|FERRY|FERRY|RIS|STMARYS|20261127083000||ACK^O01|A1|P|2.3.1\rMSA|AA|CQ1\r"),
		MappingVersion: "orm_o01@1+strict", ProcessingError: "OBR-4: code not found in table procedures (ERR 103)"}
	test := &engine.InboundMessage{Channel: "mllp", ReceivedAt: time.Now().UTC(), PeerAddr: "10.0.0.7:5000",
		Raw: []byte(consoleORM("CQ2")), SendingApplication: "RIS", SendingFacility: "STMARYS", MessageType: "ORM^O01",
		ControlID: "CQ2", Version: "2.3.1", Status: engine.StatusError, ACKCode: "AE", Error: "OBR-4: code not found in table procedures"}
	for _, m := range []*engine.InboundMessage{failed, test} {
		parsed, err := hl7.Parse(m.Raw)
		if err != nil {
			t.Fatal(err)
		}
		m.SearchKeys = engine.SearchKeysOf(parsed) // as the intake extracts them
	}
	if err := st.CommitInbound(ctx, []*engine.InboundMessage{failed, test}); err != nil {
		t.Fatal(err)
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
	do("signing in", chromedp.Navigate(srv.URL+"/console"), chromedp.WaitVisible(css("#username")),
		chromedp.SendKeys(css("#username"), "ana"), chromedp.SendKeys(css("#password"), "correct horse battery staple"),
		chromedp.Submit(css("#password")), chromedp.WaitVisible(css(".stats")))
	if dash := text(".stats"); !strings.Contains(dash, "2\nIn the error queue") && !strings.Contains(dash, "2 In the error queue") {
		t.Errorf("dashboard %q: want 2 in the error queue", dash)
	}
	shot("console-dashboard.png")

	do("the error queue, by control ID", chromedp.Click(css(`nav.console a[href$="queue=errors"]`)), chromedp.WaitVisible(css("#f-control")),
		chromedp.SendKeys(css("#f-control"), "CQ1"), chromedp.Submit(css("#f-control")),
		// The value attribute is the server's: only the searched page has it (#matching is on
		// both the page before and after the search).
		chromedp.WaitVisible(css(`#f-control[value="CQ1"]`)), chromedp.WaitVisible(css("#matching")))
	if m := text("#matching"); m != "1 messages match" {
		t.Errorf("bulk count %q, want 1 messages match", m)
	}
	if row := text("tbody"); !strings.Contains(row, "CQ1") || !strings.Contains(row, "ERR 103") {
		t.Errorf("queue row %q: want CQ1 and why it failed", row)
	}
	shot("console-error-queue.png")

	// Found by its accession (OBR-18), then by the patient's MRN (PID-3): both orders are hers.
	do("search by accession", chromedp.Click(css(`nav.console a[href="/console/messages"]`)), chromedp.WaitVisible(css("#f-accession")),
		chromedp.SendKeys(css("#f-accession"), "accCQ2"), chromedp.Submit(css("#f-accession")),
		chromedp.WaitVisible(css(`#f-accession[value="accCQ2"]`)))
	if rows := text("tbody"); !strings.Contains(rows, "CQ2") || strings.Contains(rows, "CQ1") {
		t.Errorf("by accession ACCCQ2: %q, want CQ2 alone", rows)
	}
	do("search by MRN", chromedp.Navigate(srv.URL+"/console/messages"), chromedp.WaitVisible(css("#f-mrn")),
		chromedp.SendKeys(css("#f-mrn"), "000888"), chromedp.Submit(css("#f-mrn")),
		chromedp.WaitVisible(css(`#f-mrn[value="000888"]`)))
	if rows := text("tbody"); !strings.Contains(rows, "CQ2") || !strings.Contains(rows, "CQ1") {
		t.Errorf("by MRN 000888: %q, want CQ1 and CQ2", rows)
	}
	shot("console-search.png")
	do("back to the failed order", chromedp.Navigate(srv.URL+"/console/messages?control_id=CQ1"), chromedp.WaitVisible(css(`#f-control[value="CQ1"]`)))

	do("the message", chromedp.Click(css("tbody a")), chromedp.WaitVisible(css("#raw")))
	attr, err := chromedp.Run(b, chromedp.AttributeValue(css(`#raw span[title^="PID-5 "]`), "title"))
	if err != nil {
		t.Fatal(err)
	}
	pid5 := attr.Value
	scripts, err := chromedp.Run(b, chromedp.Evaluate[int](`document.querySelectorAll("script").length`))
	if err != nil {
		t.Fatal(err)
	}
	if pid5 != "PID-5 Patient Name" {
		t.Errorf("PID-5's title %q", pid5)
	}
	if raw := text("#raw"); scripts != 0 || !strings.Contains(raw, "<script>alert(1)</script>") {
		t.Errorf("markup in PID-5: %d script elements, raw shows %q", scripts, raw)
	}
	shot("console-message.png")

	do("reprocessing", chromedp.SendKeys(css("#reprocess-reason"), "procedure 99999 added"), chromedp.Click(css("#reprocess")),
		chromedp.WaitVisible(css(".notice")))
	if h := text("#history"); !strings.Contains(h, "queued") || !strings.Contains(h, "procedure 99999 added") || !strings.Contains(h, "ana") {
		t.Errorf("history after reprocess %q", h)
	}
	// The Reprocessor runs it with the fixed table (in serve it is nudged and runs at once).
	rp := &engine.Reprocessor{Store: st, Processor: fixedProcessor(t)}
	if n, err := rp.RunBatch(ctx); err != nil || n != 1 {
		t.Fatalf("RunBatch: %d, %v", n, err)
	}
	// Navigate waits for the new page's load: #history is on the old page too.
	do("reloading", chromedp.Navigate(fmt.Sprintf("%s/console/messages/%d", srv.URL, failed.ID)), chromedp.WaitVisible(css("#history")))
	if h, main := text("#history"), text("main"); !strings.Contains(h, "done") || !strings.Contains(main, "Not in the error queue") {
		t.Errorf("after the run: history %q", h)
	}

	do("dismissing the test order", chromedp.Navigate(srv.URL+"/console/messages?queue=errors"), chromedp.WaitVisible(css("tbody a")),
		chromedp.Click(css("tbody a")), chromedp.WaitVisible(css("#dismiss-reason")),
		chromedp.SendKeys(css("#dismiss-reason"), "vendor's test order"), chromedp.Submit(css("#dismiss-reason")),
		chromedp.WaitVisible(css(".notice")))
	if n, err := st.CountMessages(ctx, engine.MessageFilter{InErrorQueue: true}); err != nil || n != 0 {
		t.Errorf("error queue after reprocess and dismiss: %d, %v", n, err)
	}

	// A physician has no console: 403, audited.
	sess, _, _, err := svc.Login(ctx, "doc", "correct horse battery staple", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/console/messages", nil)
	req.AddCookie(&http.Cookie{Name: web.SessionCookie, Value: sess})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("physician at /console/messages: %d, want 403", resp.StatusCode)
	}
	evs, err := st.AuditEvents(ctx, audit.Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var reads, replays, refusals, searches int
	for _, e := range evs {
		switch {
		case e.Agent == "ana" && e.Action == audit.ActionSearch && strings.Contains(e.Entity, "mrn=000888"):
			searches++
		case e.Agent == "ana" && e.Action == audit.ActionRead && strings.HasPrefix(e.Entity, "/console/messages/"):
			reads++
		case e.Agent == "ana" && e.Action == audit.ActionReplay:
			replays++
		case e.Agent == "doc" && e.Outcome == audit.OutcomeMinor:
			refusals++
		}
	}
	if reads < 2 || replays != 1 || refusals != 1 || searches != 1 {
		t.Errorf("audit: %d message reads, %d reprocess requests, %d refusals, %d searches by the MRN; want ≥2, 1, 1, 1",
			reads, replays, refusals, searches)
	}
	for _, term := range []string{"000888", "accCQ2"} {
		if strings.Contains(logs.String(), term) {
			t.Errorf("a log line holds the search term %q:\n%s", term, logs.String())
		}
	}
	if dir := os.Getenv("FERRY_SCREENSHOTS"); dir != "" {
		for name, png := range shots {
			if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// fixedProcessor maps with the shipped mappings and a procedures table that has code 99999.
func fixedProcessor(t *testing.T) *engine.Processor {
	t.Helper()
	table, err := fs.ReadFile(mappings.Shipped(), "tables/procedures.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fixed := strings.Replace(string(table), "\nrows:\n", "\nrows:\n  \"99999\": {system: \"http://loinc.org\", code: \"24627-2\", scheme: LN, display: \"CT Chest\", modality: CT}\n", 1)
	set, err := mappings.Load(mappings.Source{Base: []fs.FS{mappings.Shipped(), fstest.MapFS{"tables/procedures.yaml": {Data: []byte(fixed)}}}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	return &engine.Processor{Mappings: func() engine.MappingSource { return set }, Validator: v}
}
