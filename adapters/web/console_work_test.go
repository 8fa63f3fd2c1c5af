package web_test

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ferryhealth/ferry/adapters/delivery"
	"github.com/ferryhealth/ferry/adapters/httpapi"
	"github.com/ferryhealth/ferry/adapters/httpapi/accesstest"
	"github.com/ferryhealth/ferry/adapters/sqlite"
	"github.com/ferryhealth/ferry/adapters/web"
	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
	"github.com/ferryhealth/ferry/engine/outbox"
	"github.com/ferryhealth/ferry/engine/patientid"
	"github.com/ferryhealth/ferry/engine/turnaround"
	"github.com/ferryhealth/ferry/fhir"
	"github.com/ferryhealth/ferry/hl7"
	"github.com/ferryhealth/ferry/mappings"
)

// workMRN is St Mary's MRN system (mappings/shipped/tables/authorities.yaml).
const workMRN = "urn:oid:2.16.840.1.113883.3.9999.1"

// TestBrowserConsoleWork: in headless Chromium at desktop width an analyst reconciles a study the
// linker held (two patients registered by ADT, a study whose patient ID no rule knows, the real
// linker's decision with its evidence), replays a dead letter a FHIR receiver refused (the real
// deliverer and FHIR transport) once the receiver is fixed, and reads the turnaround board;
// markup in a patient's name and in a payload stays text; every page is audited.
func TestBrowserConsoleWork(t *testing.T) {
	ctx := context.Background()
	st := accesstest.SQLiteStore(t)
	svc := &access.Service{Store: st}
	trail := &audit.Recorder{Begin: st.Begin}

	// Patients registered as the EHR sends them, and a study the modality sent.
	linker := registerAndReceive(t, st)
	const studyUID = "1.2.826.0.1.3680043.10.14.1"
	study, err := st.Study(ctx, studyUID)
	if err != nil {
		t.Fatal(err)
	}
	held, err := linker.LinkStudy(ctx, study)
	if err != nil {
		t.Fatal(err)
	}
	if !held.Status.Open() || len(held.Candidates) == 0 {
		t.Fatalf("the linker's decision %s with %d candidates: want held for a person with candidates (evidence %v)",
			held.Status, len(held.Candidates), held.Evidence)
	}

	// A FHIR receiver that refuses (400) until it is fixed.
	var fixed atomic.Bool
	var received atomic.Int32
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/fhir+json")
		if !fixed.Load() {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"Patient <b>unknown</b> at this site"}]}`)
			return
		}
		received.Add(1)
		io.WriteString(w, `{"resourceType":"Bundle","type":"transaction-response"}`)
	}))
	t.Cleanup(receiver.Close)
	dest := outbox.Destination{Name: "fhir", Kind: outbox.FHIR, BaseURL: receiver.URL}
	sends := delivery.New(1, 10*time.Second, nil)
	deliverer := &outbox.Deliverer{Store: st, Transport: sends.Send, Retry: outbox.RetryPolicy{MaxAttempts: 1},
		Destination: func(name string) (outbox.Destination, bool) { return dest, name == "STMARYS/fhir" }}
	payload := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","name":[{"family":"<script>alert(2)</script>"}]}}]}`
	d := &outbox.Delivery{ReportID: "rep1", ReportVersion: 1, Destination: "STMARYS/fhir", Kind: outbox.FHIR,
		QueueKey: "STMARYS/fhir|p1", Status: outbox.Pending, ControlID: "rep1-1", Payload: []byte(payload),
		CreatedAt: time.Now().UTC(), NextAttemptAt: time.Now().UTC()}
	tx, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.InsertDelivery(ctx, d); err != nil {
		t.Fatal(err)
	}
	// Turnaround clocks: a stat order whose preliminary is overdue, a routine one whose final is
	// due within the board's two hours.
	now := time.Now().UTC()
	for _, m := range []struct {
		sr, priority string
		at           time.Time
	}{{"sr-stat", "stat", now.Add(-time.Hour)}, {"sr-routine", "routine", now.Add(-23 * time.Hour)}} {
		for _, stage := range []turnaround.Stage{turnaround.Ordered, turnaround.Study} {
			if _, err := tx.MarkTurnaround(ctx, m.sr, m.priority, stage, m.at); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if n, err := deliverer.DeliverDue(ctx); err != nil || n != 1 {
		t.Fatalf("first delivery: %d attempted, %v", n, err)
	}
	if got, err := st.Delivery(ctx, d.ID); err != nil || got.Status != outbox.Dead {
		t.Fatalf("after the refusal: %+v, %v; want a dead letter", got, err)
	}

	e, err := httpapi.New(httpapi.Options{Messages: st, Access: svc, SessionCookie: web.SessionCookie, Audit: trail})
	if err != nil {
		t.Fatal(err)
	}
	if err := web.Register(e, web.Options{Access: svc, Audit: trail, Console: &web.Console{Messages: st,
		Deliveries: &web.ConsoleDeliveries{Log: st},
		Studies:    &web.ConsoleStudies{Store: st, Unlearner: linker},
		Turnaround: &web.ConsoleTurnaround{Clocks: st, Orders: st}}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	if err := svc.AddUser(ctx, &access.User{Name: "ana", Role: access.RoleAnalyst}, "correct horse battery staple"); err != nil {
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
	scripts := func() int {
		t.Helper()
		n, err := chromedp.Run(b, chromedp.Evaluate[int](`document.querySelectorAll("script").length`))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	do("signing in", chromedp.Navigate(srv.URL+"/console/reconciliation"), chromedp.WaitVisible(css("#username")),
		chromedp.SendKeys(css("#username"), "ana"), chromedp.SendKeys(css("#password"), "correct horse battery staple"),
		chromedp.Submit(css("#password")), chromedp.WaitVisible(css("#held")))

	// Reconciliation: the worklist, the study, its candidates and evidence; link to the first.
	if row := text("#held tbody"); !strings.Contains(row, "ACC14") || !strings.Contains(row, string(held.Status)) {
		t.Errorf("worklist %q: want the study by its accession and why it is held", row)
	}
	shot("console-reconciliation.png")
	do("the study", chromedp.Click(css("#held tbody a")), chromedp.WaitVisible(css("#candidate-1")))
	if cands := text("main"); !strings.Contains(cands, "<script>alert(1)</script>") || scripts() != 0 {
		t.Errorf("candidates %q: want the twin's name, markup and all, as text; no script element", cands)
	}
	if ev := text("main"); !strings.Contains(ev, "Thresholds") || !strings.Contains(ev, "birth_date") {
		t.Errorf("study page: want the thresholds and the fields compared; got %q", ev)
	}
	shot("console-study.png")
	// At phone width the page fits the screen: wide tables scroll inside their own box.
	do("the study at phone width", chromedp.EmulateViewport(390, 844), chromedp.Reload(), chromedp.WaitVisible(css("#candidate-1")))
	width, err := chromedp.Run(b, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
	if err != nil {
		t.Fatal(err)
	}
	if width > 390 {
		t.Errorf("the study page at phone width is %d px wide, want ≤ 390 (no sideways scrolling)", width)
	}
	shot("console-study-phone.png")
	do("back to desktop width", chromedp.EmulateViewport(1280, 900), chromedp.Reload(), chromedp.WaitVisible(css("#candidate-1")))
	do("linking", chromedp.SendKeys(css("#reason-1"), "same person: called the ward"), chromedp.Click(css("#link-1")),
		chromedp.WaitVisible(css(".notice")))
	if h := text("#history tbody tr"); !strings.Contains(h, "ana") || !strings.Contains(h, "linked") || !strings.Contains(h, "called the ward") {
		t.Errorf("newest decision %q: want ana's link with her reason", h)
	}
	if l, err := st.StudyLink(ctx, studyUID); err != nil || l.Status != engine.LinkLinked || l.PatientID != held.Candidates[0].PatientID ||
		l.DecidedBy != "ana" || l.Rule != engine.RuleManual {
		t.Errorf("the study's decision %+v, %v: want linked to Patient/%s by ana, rule manual", l, err, held.Candidates[0].PatientID)
	}
	// A move to a patient that does not exist is refused with why, nothing changed.
	do("moving to no patient", chromedp.SendKeys(css("#move-patient"), "nobody"), chromedp.SendKeys(css("#move-reason"), "typo"),
		chromedp.Click(css("#move")), chromedp.WaitVisible(css("[role=alert]")))
	if a := text("[role=alert]"); !strings.Contains(a, "Patient/nobody not found") {
		t.Errorf("refused move: %q", a)
	}

	// Deliveries: the dead letter, its payload and the receiver's answer; replay it.
	do("deliveries", chromedp.Click(css(`nav.console a[href="/console/deliveries"]`)), chromedp.WaitVisible(css("#destinations")))
	if row := text("#destinations tbody"); !strings.Contains(row, "STMARYS/fhir") {
		t.Errorf("destinations %q", row)
	}
	do("dead letters", chromedp.Click(css(`#destinations a[href*="status=dead"]`)), chromedp.WaitVisible(css("#matching")))
	if m := text("#matching"); m != "1 deliveries match" {
		t.Errorf("bulk replay count %q, want 1 deliveries match", m)
	}
	shot("console-deliveries.png")
	do("the dead letter", chromedp.Click(css("#deliveries tbody a")), chromedp.WaitVisible(css("#payload")))
	if p, r := text("#payload"), text("#response"); !strings.Contains(p, "<script>alert(2)</script>") || !strings.Contains(r, "<b>unknown</b>") || scripts() != 0 {
		t.Errorf("payload %q, response %q: want both as text", p, r)
	}
	shot("console-delivery.png")
	fixed.Store(true)
	do("replaying", chromedp.SendKeys(css("#replay-reason"), "the receiver registered the patient"), chromedp.Click(css("#replay")),
		chromedp.WaitVisible(css(".notice")))
	if n, err := deliverer.DeliverDue(ctx); err != nil || n != 1 {
		t.Fatalf("after the replay: %d attempted, %v", n, err)
	}
	do("reloading", chromedp.Navigate(fmt.Sprintf("%s/console/deliveries/%d", srv.URL, d.ID)), chromedp.WaitVisible(css("#delivery")))
	if h := text("h1"); !strings.Contains(h, "delivered") || received.Load() != 1 {
		t.Errorf("after the replay: %q, %d received; want delivered once", h, received.Load())
	}

	// Turnaround: the stat preliminary overdue, the routine final due.
	do("turnaround", chromedp.Click(css(`nav.console a[href="/console/turnaround"]`)), chromedp.WaitVisible(css("#overdue")))
	if o, main := text("#overdue"), text("main"); o != "1 overdue" || !strings.Contains(main, "sr-stat") || !strings.Contains(main, "sr-routine") ||
		!strings.Contains(main, "overdue by") || !strings.Contains(main, "due in") {
		t.Errorf("board: %q, %q", o, main)
	}
	shot("console-turnaround.png")

	evs, err := st.AuditEvents(ctx, audit.Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var studyReads, links, deliveryReads, replays int
	for _, e := range evs {
		switch {
		case e.Agent != "ana":
		case e.Action == audit.ActionRead && strings.HasPrefix(e.Entity, "/console/reconciliation/"):
			studyReads++
		case e.Action == audit.ActionLink:
			links++
		case e.Action == audit.ActionRead && strings.HasPrefix(e.Entity, "/console/deliveries/"):
			deliveryReads++
		case e.Action == audit.ActionReplay:
			replays++
		}
	}
	if studyReads < 2 || links != 1 || deliveryReads < 2 || replays != 1 {
		t.Errorf("audit: %d study reads, %d links, %d delivery reads, %d replays; want ≥2, 1, ≥2, 1", studyReads, links, deliveryReads, replays)
	}
	if dir := os.Getenv("FERRY_SCREENSHOTS"); dir != "" {
		for name, png := range shots {
			if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// registerAndReceive registers two patients by ADT^A04 — twins in all but the given name, one
// written with markup — through the real inbound flow and the shipped mappings, and stores a
// study of Jane's sent with an outside centre's patient ID; it returns the linker to decide it.
func registerAndReceive(t *testing.T, st *sqlite.Store) *engine.Linker {
	t.Helper()
	ctx := context.Background()
	set, err := mappings.Load(mappings.Source{Base: []fs.FS{mappings.Shipped()}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	gc := engine.NewGroupCommitter(st, engine.GroupCommitOptions{})
	t.Cleanup(gc.Close)
	in := engine.NewInbound("mllp", gc, nil, nil)
	in.Processor = &engine.Processor{Mappings: func() engine.MappingSource { return set }, Validator: v}
	for i, p := range []struct{ mrn, name string }{{"000777", "DOE^JANE"}, {"000778", "DOE^<script>alert(1)</script>"}} {
		raw := strings.Join([]string{
			fmt.Sprintf(`MSH|^~\&|ADT|STMARYS|FERRY|FERRY|20261127083000-0500||ADT^A04^ADT_A01|W%04d|P|2.5.1`, i),
			"EVN|A04|20261127083000-0500",
			"PID|1||" + p.mrn + "^^^STMARYS^MR||" + p.name + "||19800102|F",
			"PV1|1|O",
		}, "\r") + "\r"
		ack, err := hl7.Parse(in.Receive(ctx, engine.Received{Data: []byte(raw), ReceivedAt: time.Now()}))
		if err != nil || ack.Value("MSA-1") != "AA" {
			t.Fatalf("ADT^A04 for %s: %v %s %s", p.mrn, err, ack.Value("MSA-1"), ack.Value("ERR-8"))
		}
	}
	inst := &engine.Instance{
		Header: dicom.Header{
			SOPInstanceUID: "1.2.826.0.1.3680043.10.14.1.1.1", SOPClassUID: "1.2.840.10008.5.1.4.1.1.2",
			SeriesInstanceUID: "1.2.826.0.1.3680043.10.14.1.1", StudyInstanceUID: "1.2.826.0.1.3680043.10.14.1",
			TransferSyntaxUID: "1.2.840.10008.1.2.1", Modality: "CT", SeriesNumber: "1", InstanceNumber: "1",
			PatientID: "OC-5521", IssuerOfPatientID: "OUTSIDECT", PatientName: "DOE^J", PatientBirthDate: "19800102",
			PatientSex: "F", AccessionNumber: "ACC14", StudyDate: "20261127", StudyTime: "101500", StudyDescription: "CT HEAD",
			Size: 1,
		},
		Path: "x.dcm", SHA256: "00", ReceivedAt: time.Now(),
	}
	if _, err := st.PutInstance(ctx, inst); err != nil {
		t.Fatal(err)
	}
	return &engine.Linker{Resources: st, Links: st, Match: engine.MatchConfig{Identifiers: []*patientid.Rules{{
		Authorities: []patientid.Authority{{Name: "St Mary's MRN", System: workMRN,
			Issuers: []string{"STMARYS"}, Steps: []patientid.Step{{DropLeadingZeros: true}}}}}}}}
}

// TestConsoleWorkAccess: each page and form of the deliveries, reconciliation and turnaround asks
// who is calling — no session: the sign-in page; a physician: 403, audited; an analyst's form
// without its CSRF token: 403.
func TestConsoleWorkAccess(t *testing.T) {
	ctx := context.Background()
	st := accesstest.SQLiteStore(t)
	svc := &access.Service{Store: st}
	trail := &audit.Recorder{Begin: st.Begin}
	e, err := httpapi.New(httpapi.Options{Messages: st, Access: svc, SessionCookie: web.SessionCookie, Audit: trail})
	if err != nil {
		t.Fatal(err)
	}
	if err := web.Register(e, web.Options{Access: svc, Audit: trail, Console: &web.Console{Messages: st,
		Deliveries: &web.ConsoleDeliveries{Log: st}, Studies: &web.ConsoleStudies{Store: st},
		Turnaround: &web.ConsoleTurnaround{Clocks: st, Orders: st}}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	sessions := map[string]string{}
	for _, u := range []*access.User{{Name: "ana", Role: access.RoleAnalyst},
		{Name: "doc", Role: access.RolePhysician, Practitioners: []access.Practitioner{{Value: "1234"}}}} {
		if err := svc.AddUser(ctx, u, "correct horse battery staple"); err != nil {
			t.Fatal(err)
		}
		id, _, _, err := svc.Login(ctx, u.Name, "correct horse battery staple", "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		sessions[u.Name] = id
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	routes := []struct{ method, path string }{
		{"GET", "/console/deliveries"}, {"GET", "/console/deliveries/1"}, {"POST", "/console/deliveries/1/replay"},
		{"POST", "/console/deliveries/replay"}, {"GET", "/console/reconciliation"}, {"GET", "/console/reconciliation/1.2.3"},
		{"POST", "/console/reconciliation/1.2.3/link"}, {"POST", "/console/reconciliation/1.2.3/unlink"}, {"GET", "/console/turnaround"},
	}
	for _, r := range routes {
		for _, who := range []string{"", "doc", "ana"} {
			if who == "ana" && r.method == "GET" {
				continue
			}
			req, _ := http.NewRequest(r.method, srv.URL+r.path, strings.NewReader("reason=x&patient_id=p1"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if who != "" {
				req.AddCookie(&http.Cookie{Name: web.SessionCookie, Value: sessions[who]})
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := http.StatusForbidden
			if who == "" {
				want = http.StatusSeeOther
			}
			if resp.StatusCode != want || (who == "" && !strings.HasPrefix(resp.Header.Get("Location"), "/login")) {
				t.Errorf("%s %s as %q: %d (to %q), want %d", r.method, r.path, who, resp.StatusCode, resp.Header.Get("Location"), want)
			}
		}
	}
	evs, err := st.AuditEvents(ctx, audit.Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var refusals int
	for _, e := range evs {
		if e.Agent == "doc" && e.Outcome == audit.OutcomeMinor {
			refusals++
		}
	}
	if refusals != len(routes) {
		t.Errorf("%d refusals of the physician audited, want %d", refusals, len(routes))
	}
}
