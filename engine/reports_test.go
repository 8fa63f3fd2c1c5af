package engine_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/outbox"
	"github.com/ferryhealth/ferry/engine/turnaround"
	"github.com/ferryhealth/ferry/fhir"
	"github.com/ferryhealth/ferry/internal/peers"
)

// reportJSON is a DiagnosticReport as a reading platform sends it: the order by accession, the
// text as text/plain.
func reportJSON(status, accession, text string, extra ...string) []byte {
	s := `{"resourceType":"DiagnosticReport","status":"` + status + `",
		"identifier":[{"system":"urn:oid:1.2.3.4.5","value":"RPT-` + accession + `"}],
		"basedOn":[{"identifier":{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"ACSN"}]},"value":"` + accession + `"}}],
		"code":{"text":"CT chest"},
		"conclusion":"` + text + `",
		"presentedForm":[{"contentType":"text/plain","data":"` + base64.StdEncoding.EncodeToString([]byte(text)) + `"}]`
	for _, e := range extra {
		s += "," + e
	}
	return []byte(s + "}")
}

// TestReportLifecycle: a report is taken for a known order, completed with Ferry's patient,
// order and category, kept as versions through its lifecycle (preliminary → final → amended),
// each version with one delivery per destination in its queue; a repeat stores nothing, a final
// does not go back to preliminary, and a report for an unknown order or with an invalid status
// is refused with an OperationOutcome.
func TestReportLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newOrderHarness(t)
	h.mustAccept(mshORM, pidFor("000123", "DOE^JANE"), orc("NW", "PLR1", "SC"), obr("PLR1", "ACCR1"))
	order := h.search("ServiceRequest", eq("identifier", "PLR1"))[0]
	patient := h.search("Patient", eq("identifier", mrn+"|000123"))[0]["id"].(string)
	if engine.SendingFacility(fhir.ServiceRequestOf(order)) != "STMARYS" {
		t.Fatalf("the order does not say which facility sent it: %v", order["extension"])
	}
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	rendered := 0
	rs := &engine.Reports{Store: h.st, Validator: v,
		Destinations: func(facility string) []outbox.Destination {
			if facility != "STMARYS" {
				return nil
			}
			return []outbox.Destination{{Name: "ehr", Kind: outbox.MLLP, Address: "127.0.0.1:1"},
				{Name: "fhir", Kind: outbox.FHIR, BaseURL: "http://127.0.0.1:1/fhir"}}
		},
		Render: func(facility string, d outbox.Destination, r *engine.ReportVersion) ([]byte, string, error) {
			rendered++
			status, _ := r.Content["status"].(string)
			return []byte("MSH|^~\\&|FERRY||||||ORU^R01|" + r.ControlID + "|P|2.5.1\rOBR|1|||||||||||||||||||||||||" + status + "\r"), "test@1", nil
		},
	}
	submit := func(body []byte, id string) (*engine.Resource, bool, error) {
		t.Helper()
		return rs.Submit(ctx, body, id)
	}

	prelim, created, err := submit(reportJSON("preliminary", "ACCR1", "No acute finding."), "")
	if err != nil || !created || prelim.VersionID != 1 {
		t.Fatalf("preliminary: %v, created %v, version %v", err, created, prelim)
	}
	var dr map[string]any
	if err := json.Unmarshal(prelim.JSON, &dr); err != nil {
		t.Fatal(err)
	}
	if dr["subject"].(map[string]any)["reference"] != "Patient/"+patient ||
		dr["basedOn"].([]any)[0].(map[string]any)["reference"] != "ServiceRequest/"+order["id"].(string) ||
		!strings.Contains(string(prelim.JSON), `"code":"RAD"`) || !strings.Contains(string(prelim.JSON), `"text/html; charset=utf-8"`) {
		t.Errorf("the stored report is not completed: %s", prelim.JSON)
	}
	deliveries := func() []*outbox.Delivery {
		t.Helper()
		d, err := h.st.Deliveries(ctx, outbox.Filter{ReportID: prelim.ID})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := deliveries(); len(d) != 2 || d[0].QueueKey != d[0].Destination+"|"+patient || d[0].Status != outbox.Pending {
		t.Fatalf("deliveries of the preliminary: %+v", d)
	}

	final, created, err := submit(reportJSON("final", "ACCR1", "No acute finding. Final."), "")
	if err != nil || created || final.ID != prelim.ID || final.VersionID != 2 {
		t.Fatalf("final: %v, created %v, %+v", err, created, final)
	}
	again, _, err := submit(reportJSON("final", "ACCR1", "No acute finding. Final."), final.ID)
	if err != nil || again.VersionID != 2 {
		t.Errorf("the final sent twice: %v, version %d; want version 2 unchanged", err, again.VersionID)
	}
	if d := deliveries(); len(d) != 4 || rendered != 2 {
		t.Errorf("after prelim, final and a repeat: %d deliveries, %d rendered; want 4 and 2", len(d), rendered)
	}

	var re *engine.ReportError
	if _, _, err := submit(reportJSON("preliminary", "ACCR1", "Changed my mind."), ""); !errors.As(err, &re) || re.Status != 409 {
		t.Errorf("preliminary after final: %v, want a 409 ReportError", err)
	}
	if _, _, err := submit(reportJSON("final", "NOSUCHACC", "x"), ""); !errors.As(err, &re) || re.Status != 422 {
		t.Errorf("unknown order: %v, want 422", err)
	}
	if _, _, err := submit(reportJSON("done", "ACCR1", "x"), ""); !errors.As(err, &re) || re.Status != 422 {
		t.Errorf("invalid status: %v, want 422", err)
	}
	empty := []byte(`{"resourceType":"DiagnosticReport","status":"final","code":{"text":"CT chest"},
		"basedOn":[{"identifier":{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"ACSN"}]},"value":"ACCR1"}}]}`)
	if _, _, err := submit(empty, ""); !errors.As(err, &re) || re.Status != 422 || !strings.Contains(err.Error(), "carries its text") {
		t.Errorf("a final report with no text: %v, want 422", err)
	}
	if _, _, err := submit(reportJSON("final", "ACCR1", "x"), "no-such-report"); !errors.As(err, &re) || re.Status != 404 {
		t.Errorf("PUT of an unknown id: %v, want 404", err)
	}

	amended, _, err := submit(reportJSON("amended", "ACCR1", "Small nodule, see addendum.",
		`"extension":[{"url":"`+engine.CriticalFindingURL+`","valueBoolean":true}]`), "")
	if err != nil || amended.VersionID != 3 {
		t.Fatalf("amended: %v, %+v", err, amended)
	}
	d := deliveries()
	if len(d) != 6 {
		t.Fatalf("%d deliveries, want 6", len(d))
	}
	// Newest first: the amendment's, then the final's, then the preliminary's; control ids
	// differ per version and destination.
	seen := map[string]bool{}
	for i, dl := range d {
		if want := int64(3 - i/2); dl.ReportVersion != want {
			t.Errorf("delivery %d is of version %d, want %d", i, dl.ReportVersion, want)
		}
		if seen[dl.ControlID] || len(dl.ControlID) > 20 {
			t.Errorf("control id %q repeated or too long", dl.ControlID)
		}
		seen[dl.ControlID] = true
		if dl.Kind == outbox.MLLP && !strings.Contains(string(dl.Payload), "|"+dl.ControlID+"|") {
			t.Errorf("the ORU does not carry its control id: %q", dl.Payload)
		}
		if dl.Kind == outbox.FHIR {
			// A transaction Bundle the hospital's server can take: valid, conditional updates by
			// identifier, no reference to Ferry's ids.
			if err := v.Validate(dl.Payload); err != nil {
				t.Errorf("the FHIR payload is not valid: %v\n%s", err, dl.Payload)
			}
			p := string(dl.Payload)
			if !strings.Contains(p, `"url":"Patient?identifier=`+strings.ReplaceAll(url.QueryEscape(mrn+"|000123"), "%", "%")) ||
				!strings.Contains(p, `"type":"transaction"`) || strings.Contains(p, "Patient/"+patient) {
				t.Errorf("the FHIR payload: %s", p)
			}
		}
	}
	// The amendment brought a critical finding: it now awaits its physician's acknowledgement,
	// recorded in the version's transaction (engine/critical.go).
	if cr, err := h.st.CriticalResult(ctx, prelim.ID); err != nil || cr.Version != 3 || cr.PatientID != patient || cr.Acknowledged() {
		t.Errorf("critical result of the amended report: %+v, %v; want version 3 of patient %s, unacknowledged", cr, err, patient)
	}
	history, err := h.st.ResourceHistory(ctx, "DiagnosticReport", prelim.ID)
	if err != nil || len(history) != 3 {
		t.Errorf("history: %d versions, %v", len(history), err)
	}
	out := t.TempDir()
	var files []string
	for _, r := range history {
		if err := v.Validate(r.JSON); err != nil {
			t.Errorf("version %d is not valid: %v", r.VersionID, err)
		}
		files = append(files, filepath.Join(out, fmt.Sprintf("report-%d.json", r.VersionID)))
		if err := os.WriteFile(files[len(files)-1], r.JSON, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, dl := range d {
		if dl.Kind == outbox.FHIR {
			files = append(files, filepath.Join(out, fmt.Sprintf("bundle-%d.json", dl.ID)))
			if err := os.WriteFile(files[len(files)-1], dl.Payload, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	peers.ValidateFHIR(t, files) // every version and every Bundle sent, by a second validator
	if found, _ := h.st.SearchResources(ctx, engine.ResourceQuery{Type: "DiagnosticReport", Filters: []engine.SearchFilter{eq("based-on", fmt.Sprintf("ServiceRequest/%s", order["id"]))}}); len(found) != 1 {
		t.Errorf("DiagnosticReport?based-on=: %d", len(found))
	}
}

// TestDelivererOrderRetryDeadLetter: the deliverer sends a patient's report versions in order —
// the final waits while the preliminary is retried after an AE — sends an AR to the dead letters
// without holding the queue, and a replayed dead letter goes again with the same control id.
func TestDelivererOrderRetryDeadLetter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newOrderHarness(t)
	h.mustAccept(mshORM, pidFor("000123", "DOE^JANE"), orc("NW", "PLD1", "SC"), obr("PLD1", "ACCD1"))
	h.mustAccept(mshORM, pidFor("000456", "ROE^RITA"), orc("NW", "PLD2", "SC"), obr("PLD2", "ACCD2"))
	rita := h.search("Patient", eq("identifier", mrn+"|000456"))[0]["id"].(string)
	dest := outbox.Destination{Name: "ehr", Kind: outbox.MLLP, Address: "127.0.0.1:1"}
	rs := &engine.Reports{Store: h.st,
		Destinations: func(string) []outbox.Destination { return []outbox.Destination{dest} },
		Render: func(_ string, _ outbox.Destination, r *engine.ReportVersion) ([]byte, string, error) {
			return []byte(r.Content["status"].(string) + "|" + r.ControlID), "test@1", nil
		}}
	for _, body := range [][]byte{reportJSON("preliminary", "ACCD1", "a"), reportJSON("final", "ACCD1", "b"), reportJSON("final", "ACCD2", "c")} {
		if _, _, err := rs.Submit(ctx, body, ""); err != nil {
			t.Fatal(err)
		}
	}
	clock := time.Now()
	var sent []string
	answers := map[string][]error{ // by payload prefix: what the receiver answers, in turn
		"preliminary": {&outbox.Refusal{Code: "AE"}, nil},
		"final":       {nil},
	}
	answered := map[string]int{}
	var mu sync.Mutex // the deliverer's workers send at once
	dl := &outbox.Deliverer{Store: h.st, Now: func() time.Time { return clock },
		Destination: func(string) (outbox.Destination, bool) { return dest, true },
		Retry:       outbox.RetryPolicy{First: time.Minute},
		Transport: func(_ context.Context, _ outbox.Destination, d *outbox.Delivery) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			p := string(d.Payload)
			sent = append(sent, p)
			kind, _, _ := strings.Cut(p, "|")
			if strings.HasSuffix(d.QueueKey, "|"+rita) && answered["rita"] == 0 {
				answered["rita"]++ // Rita's final: refused for good
				return "MSA|AR", &outbox.Refusal{Code: "AR", Permanent: true}
			}
			i := answered[kind]
			answered[kind]++
			return "MSA|AA", answers[kind][min(i, len(answers[kind])-1)]
		}}
	deliver := func() {
		t.Helper()
		if _, err := dl.DeliverDue(ctx); err != nil {
			t.Fatal(err)
		}
	}
	deliver() // Jane's preliminary (AE) and Rita's final (AR): Jane's final waits
	if len(sent) != 2 {
		t.Errorf("first pass sent %v, want Jane's preliminary and Rita's final only", sent)
	}
	byStatus := func(s outbox.Status) []*outbox.Delivery {
		t.Helper()
		d, err := h.st.Deliveries(ctx, outbox.Filter{Status: s})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if dead := byStatus(outbox.Dead); len(dead) != 1 {
		t.Fatalf("dead letters after the AR: %d, want 1 (sent %v)", len(dead), sent)
	}
	deliver() // nothing is due before the retry time
	if len(sent) != 2 {
		t.Errorf("sent again before the retry time: %v", sent)
	}
	clock = clock.Add(2 * time.Minute)
	deliver() // the preliminary again (AA)
	deliver() // then the final
	if got := byStatus(outbox.Delivered); len(got) != 2 {
		t.Fatalf("delivered: %d, want 2 (sent %v)", len(got), sent)
	}
	if !(strings.HasPrefix(sent[len(sent)-2], "preliminary") && strings.HasPrefix(sent[len(sent)-1], "final")) {
		t.Errorf("order sent: %v, want the preliminary's retry, then the final", sent)
	}
	dead := byStatus(outbox.Dead)[0]
	if err := h.st.ReplayDelivery(ctx, dead.ID, nil, "", clock); err != nil {
		t.Fatal(err)
	}
	deliver()
	if last := sent[len(sent)-1]; !strings.HasSuffix(last, "|"+dead.ControlID) {
		t.Errorf("the replay sent %q, want the same control id %s", last, dead.ControlID)
	}
	if d, _ := h.st.Delivery(ctx, dead.ID); d.Status != outbox.Delivered {
		t.Errorf("replayed delivery: %s", d.Status)
	}
}

// TestReportByORU: a dictation system's ORU^R01 is stored as the order's report in the message's
// transaction — AA when it is; the lifecycle holds (a preliminary after the final is AE at
// OBR-25), an unknown order is AE 204, an ORU without OBR is AE 101. Once each version has
// committed, the deliverer is nudged and the turnaround milestone it reached is observed.
func TestReportByORU(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newOrderHarness(t)
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	var nudges atomic.Int32
	var observed []turnaround.Stage
	var mu sync.Mutex
	h.in.Processor.Reports = &engine.Reports{Store: h.st, Validator: v, Nudge: func() { nudges.Add(1) },
		ObserveTurnaround: func(_ *turnaround.Clocks, s turnaround.Stage) {
			mu.Lock()
			observed = append(observed, s)
			mu.Unlock()
		}}
	h.mustAccept(mshORM, pidFor("000123", "DOE^JANE"), orc("NW", "PLU1", "SC"), obr("PLU1", "ACCU1"))
	const msh = `MSH|^~\&|PSCRIBE|RADGROUP|FERRY|FERRY|20261127104215-0500||ORU^R01^ORU_R01|CTRL|P|2.5.1`
	oru := func(status, acc string, lines ...string) []string {
		obr := make([]string, 26)
		obr[0], obr[1], obr[2], obr[4] = "OBR", "1", "PLU1^RIS", "71260^CT CHEST W/O CONTRAST^C4"
		obr[7], obr[18], obr[22], obr[24], obr[25] = "20261127090533-0500", acc, "20261127104210-0500", "CT", status
		segs := []string{pidFor("000123", "DOE^JANE"), "ORC|RE|PLU1^RIS||||CM", strings.Join(obr, "|")}
		for i, l := range lines {
			segs = append(segs, fmt.Sprintf("OBX|%d|TX|18782-3^Radiology Study observation (narrative)^LN|1|%s||||||%s", i+1, l, status))
		}
		return segs
	}
	h.mustAccept(msh, oru("P", "ACCU1", "Preliminary: no acute findings.")...)
	h.mustAccept(msh, oru("F", "ACCU1", "No acute findings.", "Heart size normal.")...)
	reports := h.search("DiagnosticReport")
	if len(reports) != 1 || reports[0]["status"] != "final" || reports[0]["meta"].(map[string]any)["versionId"] != "2" ||
		!strings.Contains(reports[0]["conclusion"].(string), "Heart size normal.") {
		t.Fatalf("reports after a preliminary and a final ORU: %v", reports)
	}
	mu.Lock()
	if n := nudges.Load(); n != 2 || !slices.Equal(observed, []turnaround.Stage{turnaround.Preliminary, turnaround.Final}) {
		t.Errorf("after the two ORUs: %d nudges, observed %v; want 2 and preliminary, final", n, observed)
	}
	mu.Unlock()
	code, ack := h.send(msh, oru("P", "ACCU1", "Back to preliminary?")...)
	if code != "AE" || ack.Value("ERR-2.1") != "OBR" || ack.Value("ERR-2.3") != "25" {
		t.Errorf("preliminary after final: %s, ERR-2 %s-%s", code, ack.Value("ERR-2.1"), ack.Value("ERR-2.3"))
	}
	// The placer number is unknown here, the accession too: no order.
	code, _ = h.send(msh, strings.Replace(strings.Join(oru("F", "NOSUCH", "x"), "\r"), "PLU1", "PLZZ", -1))
	if code != "AE" {
		t.Errorf("ORU for an unknown order: %s, want AE", code)
	}
	if code, ack := h.send(msh, pidFor("000123", "DOE^JANE"), "OBX|1|TX|x^y^LN|1|text||||||F"); code != "AE" || ack.Value("ERR-3.1") != "101" {
		t.Errorf("ORU without OBR: %s, ERR-3 %s", code, ack.Value("ERR-3.1"))
	}
	if d, _ := h.st.Deliveries(ctx, outbox.Filter{}); len(d) != 0 {
		t.Errorf("deliveries without destinations: %d", len(d))
	}
}

// TestDeliveryToADownDestination: one of a facility's two destinations does not answer. It
// takes at most PerDestination workers, and once an attempt finds it down its other deliveries
// wait in the store (not attempted, no attempts counted) until its retry time, later after each
// failure in a row (the attempts in flight when it was found down count as one), while every
// delivery to the other destination goes in the same pass. When it answers again, all its
// deliveries go.
func TestDeliveryToADownDestination(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newOrderHarness(t)
	const n = 6
	for i := range n {
		id := fmt.Sprintf("%d", i)
		h.mustAccept(mshORM, pidFor("00070"+id, "DOE^JANE"), orc("NW", "PLH"+id, "SC"), obr("PLH"+id, "ACCH"+id))
	}
	up := outbox.Destination{Name: "up", Kind: outbox.MLLP, Address: "127.0.0.1:1"}
	down := outbox.Destination{Name: "down", Kind: outbox.MLLP, Address: "127.0.0.1:2"}
	rs := &engine.Reports{Store: h.st,
		Destinations: func(string) []outbox.Destination { return []outbox.Destination{up, down} },
		Render: func(_ string, _ outbox.Destination, r *engine.ReportVersion) ([]byte, string, error) {
			return []byte(r.ControlID), "test@1", nil
		}}
	for i := range n {
		if _, _, err := rs.Submit(ctx, reportJSON("final", fmt.Sprintf("ACCH%d", i), "x"), ""); err != nil {
			t.Fatal(err)
		}
	}
	clock := time.Now()
	var (
		mu       sync.Mutex
		isDown   = true
		attempts = map[string]int{}
		inFlight = map[string]int{}
		most     = map[string]int{}
		// upDone closes when every delivery to the destination that is up has been answered:
		// until then an attempt to the one that is down hangs, as one waiting for an ACK that
		// never comes, so the first pass shows the down destination holding workers while the
		// other's deliveries all go. Counted, not timed.
		upDone   = make(chan struct{})
		answered int
	)
	dl := &outbox.Deliverer{Store: h.st, Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }, Workers: 4,
		Destination: func(name string) (outbox.Destination, bool) {
			if strings.HasSuffix(name, "/down") {
				return down, true
			}
			return up, true
		},
		Retry: outbox.RetryPolicy{First: time.Minute, Max: time.Hour},
		Transport: func(_ context.Context, dest outbox.Destination, d *outbox.Delivery) (string, error) {
			mu.Lock()
			attempts[dest.Name]++
			inFlight[dest.Name]++
			most[dest.Name] = max(most[dest.Name], inFlight[dest.Name])
			hung := dest.Name == "down" && isDown
			mu.Unlock()
			defer func() { mu.Lock(); inFlight[dest.Name]--; mu.Unlock() }()
			if hung {
				<-upDone // waits for an ACK that never comes, until the transport's timeout
				return "", errors.New("no ACK within the timeout")
			}
			if dest.Name == "up" {
				mu.Lock()
				if answered++; answered == n {
					close(upDone)
				}
				mu.Unlock()
			}
			return "MSA|AA", nil
		}}
	pending := func(dest string) (out []*outbox.Delivery) {
		t.Helper()
		ds, err := h.st.Deliveries(ctx, outbox.Filter{Status: outbox.Pending, Destination: "STMARYS/" + dest})
		if err != nil {
			t.Fatal(err)
		}
		return ds
	}
	if _, err := dl.DeliverDue(ctx); err != nil {
		t.Fatal(err)
	}
	if len(pending("up")) != 0 || attempts["up"] != n {
		t.Errorf("first pass: %d attempts to the destination that is up, %d still pending; want all %d delivered", attempts["up"], len(pending("up")), n)
	}
	if most["down"] > 2 || attempts["down"] > 2 {
		t.Errorf("first pass: %d attempts to the destination that is down, %d at once; want at most PerDestination (2)", attempts["down"], most["down"])
	}
	retryAt := clock.Add(time.Minute)
	for _, d := range pending("down") {
		if d.NextAttemptAt.Before(retryAt) {
			t.Errorf("delivery %d to the destination that is down is due at %s, before its retry time %s", d.ID, d.NextAttemptAt, retryAt)
		}
	}
	tried := attempts["down"]
	if _, err := dl.DeliverDue(ctx); err != nil {
		t.Fatal(err)
	}
	if attempts["down"] != tried {
		t.Errorf("the destination that is down was tried again before its retry time")
	}
	// At the retry time it is still down: the next wait is longer (2 minutes).
	mu.Lock()
	clock = retryAt
	mu.Unlock()
	if _, err := dl.DeliverDue(ctx); err != nil {
		t.Fatal(err)
	}
	if attempts["down"] == tried {
		t.Errorf("the destination that is down was not tried again at its retry time")
	}
	for _, d := range pending("down") {
		if d.NextAttemptAt.Before(retryAt.Add(2 * time.Minute)) {
			t.Errorf("after a second failure, delivery %d is due at %s; want 2 minutes after %s", d.ID, d.NextAttemptAt, retryAt)
		}
	}
	// It is back.
	mu.Lock()
	isDown, clock = false, retryAt.Add(2*time.Minute)
	mu.Unlock()
	for range n {
		if _, err := dl.DeliverDue(ctx); err != nil {
			t.Fatal(err)
		}
		if len(pending("down")) == 0 {
			break
		}
	}
	if p := pending("down"); len(p) != 0 {
		t.Errorf("%d deliveries still pending once the destination is back", len(p))
	}
}

// TestDownDestinationProbed (issue 18, item 6): with Probe set, a destination found down is
// probed on its own every ProbeEvery, its deliveries wait for the first probe it answers
// without a backoff of their own (no attempt counted meanwhile), and then all of them go in one
// pass. The schedule runs on an injected clock; passes are counted, not timed.
func TestDownDestinationProbed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newOrderHarness(t)
	const n = 12
	ehr := finalsToOneDestination(t, h, "P", n)
	var (
		mu               sync.Mutex
		clock            = time.Now()
		up               bool
		attempts, probes int
		errRefused       = fmt.Errorf("%w: connection refused", outbox.ErrUnreachable)
		retryMax         = 10 * time.Minute
		probeEvery       = 3 * time.Second
		advance          = func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
		setUp            = func() { mu.Lock(); up = true; mu.Unlock() }
		counts           = func() (int, int) { mu.Lock(); defer mu.Unlock(); return attempts, probes }
	)
	dl := &outbox.Deliverer{Store: h.st, Workers: 4, ProbeEvery: probeEvery,
		Now:         func() time.Time { mu.Lock(); defer mu.Unlock(); return clock },
		Destination: func(string) (outbox.Destination, bool) { return ehr, true },
		Retry:       outbox.RetryPolicy{First: time.Minute, Max: retryMax},
		Transport: func(context.Context, outbox.Destination, *outbox.Delivery) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			attempts++
			if !up {
				return "", errRefused
			}
			return "MSA|AA", nil
		},
		Probe: func(context.Context, outbox.Destination) error {
			mu.Lock()
			defer mu.Unlock()
			probes++
			if !up {
				return errRefused
			}
			return nil
		}}
	deliverDue := func() {
		t.Helper()
		if _, err := dl.DeliverDue(ctx); err != nil {
			t.Fatal(err)
		}
	}
	pending := func() []*outbox.Delivery {
		t.Helper()
		ds, err := h.st.Deliveries(ctx, outbox.Filter{Status: outbox.Pending})
		if err != nil {
			t.Fatal(err)
		}
		return ds
	}
	deliverDue() // finds it down
	firstAttempts, _ := counts()
	if firstAttempts == 0 || firstAttempts > 2 {
		t.Fatalf("first pass: %d attempts, want 1 or 2 (PerDestination)", firstAttempts)
	}
	for _, d := range pending() {
		if d.NextAttemptAt.After(clock) {
			t.Errorf("delivery %d waits until %s: a backoff of its own (want it to wait only for the probe)", d.ID, d.NextAttemptAt)
		}
	}
	// Down for a long while: one probe every probeEvery, no attempts.
	for i := 1; i <= 5; i++ {
		deliverDue() // not due a probe yet
		advance(probeEvery)
		deliverDue()
		if a, p := counts(); a != firstAttempts || p != i {
			t.Fatalf("after %d probe intervals down: %d attempts, %d probes; want %d (no more) and %d", i, a, p, firstAttempts, i)
		}
	}
	// It is back: the next probe finds it, and the same pass delivers every report.
	setUp()
	advance(probeEvery)
	deliverDue()
	if p := pending(); len(p) != 0 {
		t.Errorf("%d deliveries still pending after the pass whose probe found the destination back; want all %d delivered in it", len(p), n)
	}
}

// TestHungDestinationWaitsItsRetryTime: a destination that takes the connection and never
// answers (a hung interface engine) is not probed back — a probe would connect and say it is
// up — but waits its retry time, as without Probe.
func TestHungDestinationWaitsItsRetryTime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newOrderHarness(t)
	const n = 3
	ehr := finalsToOneDestination(t, h, "G", n)
	var mu sync.Mutex
	clock, attempts, probes := time.Now(), 0, 0
	dl := &outbox.Deliverer{Store: h.st, Workers: 2, PerDestination: 1, ProbeEvery: time.Second,
		Now:         func() time.Time { mu.Lock(); defer mu.Unlock(); return clock },
		Destination: func(string) (outbox.Destination, bool) { return ehr, true },
		Retry:       outbox.RetryPolicy{First: time.Minute, Max: time.Hour},
		Transport: func(context.Context, outbox.Destination, *outbox.Delivery) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			attempts++
			return "", errors.New("no ACK within the timeout")
		},
		Probe: func(context.Context, outbox.Destination) error {
			mu.Lock()
			defer mu.Unlock()
			probes++
			return nil
		}}
	for range 5 {
		if _, err := dl.DeliverDue(ctx); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		clock = clock.Add(time.Second)
		mu.Unlock()
	}
	mu.Lock()
	defer mu.Unlock()
	if attempts != 1 || probes != 0 {
		t.Errorf("%d attempts and %d probes within 5 s of a hung EHR; want 1 and none (it waits its retry time, 1m)", attempts, probes)
	}
}

// finalsToOneDestination orders n studies for n patients (placer numbers PL<tag>NN,
// accessions ACC<tag>NN) and reports each final, to the one MLLP destination it returns: n
// deliveries, each the head of its own queue.
func finalsToOneDestination(t *testing.T, h *orderHarness, tag string, n int) outbox.Destination {
	t.Helper()
	for i := range n {
		id := fmt.Sprintf("%02d", i)
		h.mustAccept(mshORM, pidFor("0008"+tag+id, "DOE^JANE"), orc("NW", "PL"+tag+id, "SC"), obr("PL"+tag+id, "ACC"+tag+id))
	}
	ehr := outbox.Destination{Name: "ehr", Kind: outbox.MLLP, Address: "127.0.0.1:1"}
	rs := &engine.Reports{Store: h.st,
		Destinations: func(string) []outbox.Destination { return []outbox.Destination{ehr} },
		Render: func(_ string, _ outbox.Destination, r *engine.ReportVersion) ([]byte, string, error) {
			return []byte(r.ControlID), "test@1", nil
		}}
	for i := range n {
		if _, _, err := rs.Submit(context.Background(), reportJSON("final", fmt.Sprintf("ACC%s%02d", tag, i), "x"), ""); err != nil {
			t.Fatal(err)
		}
	}
	return ehr
}
