package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/hl7"
)

// ehrReceiver is a hospital EHR's MLLP listener: testdata/ehr_receiver.py on python3-hl7's
// asyncio MLLP server, recording every message it receives.
type ehrReceiver struct {
	Addr string
	log  string
	cmd  *exec.Cmd
}

// startEHR starts the receiver on a free port; answers, if any, are the ACK codes of its first
// messages in turn (AA, AE, AR, none).
func startEHR(t *testing.T, dir string, answers ...string) *ehrReceiver {
	t.Helper()
	requirePeer(t, "mllp_send", "python3-hl7") // the package that brings hl7.mllp
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := &ehrReceiver{Addr: "127.0.0.1:" + strconv.Itoa(port)}
	startEHROn(t, dir, r, strconv.Itoa(port), answers...)
	return r
}

// startEHROn starts r's listener on port.
func startEHROn(t *testing.T, dir string, r *ehrReceiver, port string, answers ...string) {
	t.Helper()
	requirePeer(t, "mllp_send", "python3-hl7")
	r.log = filepath.Join(dir, "ehr-"+port+".log")
	r.cmd = exec.Command("/usr/bin/python3", "testdata/ehr_receiver.py", port, r.log, strings.Join(answers, ","))
	out, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	r.cmd.Stderr = os.Stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("starting the EHR receiver: %v", err)
	}
	t.Cleanup(r.stop)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "listening") {
		t.Fatalf("the EHR receiver did not start: %q %v", line, err)
	}
	go io.Copy(io.Discard, out)
}

func (r *ehrReceiver) stop() {
	if r.cmd.Process != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
}

// messages returns every message received so far, parsed.
func (r *ehrReceiver) messages(t *testing.T) []*hl7.Message {
	t.Helper()
	b, err := os.ReadFile(r.log)
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		t.Fatal(err)
	}
	var out []*hl7.Message
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		m, err := hl7.Parse([]byte(strings.ReplaceAll(line, `\r`, "\r")))
		if err != nil {
			t.Fatalf("the EHR got a message that does not parse: %v\n%s", err, line)
		}
		out = append(out, m)
	}
	return out
}

// request sends body to path with the admin token and returns the status and the body.
func (p *ferryProcess) request(t *testing.T, method, path, contentType string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+p.HTTPAddr+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	req.Header.Set("Content-Type", contentType)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// orderAll sends msgs over MLLP (mllp_send, one connection) and fails unless each is answered AA.
func (p *ferryProcess) orderAll(t *testing.T, msgs ...string) {
	t.Helper()
	for i, code := range mllpSendAll(t, p.MLLPAddr, msgs...) {
		if code != "AA" {
			t.Fatalf("order %d: %s, want AA", i+1, code)
		}
	}
}

// postReport posts the reading platform's DiagnosticReport (reportBody) and fails unless it is
// answered with the HTTP status want.
func (p *ferryProcess) postReport(t *testing.T, status, accession, text string, want int) {
	t.Helper()
	if code, body := p.request(t, http.MethodPost, "/fhir/r4/DiagnosticReport", "application/fhir+json", reportBody(status, accession, text)); code != want {
		t.Fatalf("POST %s report for %s: HTTP %d, want %d: %s", status, accession, code, want, body)
	}
}

// reportBody is the reading platform's DiagnosticReport for an order by its accession.
func reportBody(status, accession, text string) []byte {
	return []byte(`{"resourceType":"DiagnosticReport","status":"` + status + `",
		"identifier":[{"system":"urn:oid:1.2.3.4.5","value":"RPT-` + accession + `"}],
		"basedOn":[{"identifier":{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"ACSN"}]},"value":"` + accession + `"}}],
		"code":{"text":"CT chest"},"conclusion":"` + strings.ReplaceAll(text, "\n", `\n`) + `",
		"presentedForm":[{"contentType":"text/plain","data":"` + base64.StdEncoding.EncodeToString([]byte(text)) + `"}]}`)
}

// TestReportsReachTheEHR: an order over MLLP, then its preliminary, final and amended reports by
// FHIR, reach the hospital's EHR (a real MLLP listener) as ORU^R01 in order — OBR-25 P, F, C —
// for the hospital's patient and order, with the text; the first preliminary is answered AE and
// retried with the same MSH-10.
func TestReportsReachTheEHR(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ehr := startEHR(t, dir, "AE")
	p := startFerry(t, freshPostgresSchema(t, dir), dir, serveOptions{Config: `
facilities:
  - id: stmarys
    sending_facility: STMARYS
    results:
      - name: epic
        kind: mllp
        address: ` + ehr.Addr + `
        receiving_application: EPIC
delivery:
  retry_first: 200ms
  retry_max: 1s
`})
	p.orderAll(t, ordersORM("R1", "NW", "PLR1", "SC", "ACCR1", "71260", "CT", "20261127", "000777"))
	steps := []struct{ status, text, obr25 string }{
		{"preliminary", "No acute cardiopulmonary process.", "P"},
		{"final", "No acute cardiopulmonary process.\nHeart size normal.", "F"},
		{"amended", "Addendum: 4 mm nodule in the right upper lobe | follow up in 12 months.", "C"},
	}
	var controlIDs []string
	for i, s := range steps {
		code, body := p.request(t, http.MethodPost, "/fhir/r4/DiagnosticReport", "application/fhir+json", reportBody(s.status, "ACCR1", s.text))
		if want := map[bool]int{true: 201, false: 200}[i == 0]; code != want {
			t.Fatalf("POST %s report: HTTP %d, want %d: %s", s.status, code, want, body)
		}
		want := i + 2 // the first preliminary was answered AE and came again
		waitFor(t, s.status+" report at the EHR", func() bool { return len(ehr.messages(t)) >= want })
	}
	got := ehr.messages(t)
	if len(got) != 4 {
		t.Fatalf("the EHR got %d messages, want 4", len(got))
	}
	if got[0].Value("MSH-10") != got[1].Value("MSH-10") {
		t.Errorf("the retry of the preliminary has MSH-10 %q, the first attempt %q", got[1].Value("MSH-10"), got[0].Value("MSH-10"))
	}
	for i, m := range got[1:] {
		s := steps[i]
		controlIDs = append(controlIDs, m.Value("MSH-10"))
		checks := map[string]string{
			"MSH-9.1": "ORU", "MSH-9.2": "R01", "MSH-5": "EPIC", "MSH-6": "STMARYS",
			"PID-3.1": "000777", "PID-3.4": "STMARYS", "ORC-1": "RE", "ORC-2.1": "PLR1", "OBR-2.1": "PLR1",
			"OBR-4.1": "71260", "OBR-24": "RAD", "OBR-25": s.obr25, "OBX-11": s.obr25,
		}
		for path, want := range checks {
			if v := m.Value(path); v != want {
				t.Errorf("%s ORU: %s = %q, want %q", s.status, path, v, want)
			}
		}
		if text := strings.Join(obxTexts(m), "\n"); !strings.Contains(text, strings.Split(s.text, "\n")[0]) {
			t.Errorf("%s ORU: the OBX text %q lacks the report text", s.status, text)
		}
	}
	if controlIDs[0] == controlIDs[1] || controlIDs[1] == controlIDs[2] {
		t.Errorf("report versions share an MSH-10: %v", controlIDs)
	}
	// The log of deliveries: all delivered, none dead. The EHR has the last ORU before Ferry has
	// its ACK and records the outcome: wait until no delivery is pending.
	var list struct {
		Deliveries []struct {
			Status   string `json:"status"`
			Attempts int    `json:"attempts"`
		} `json:"deliveries"`
	}
	waitFor(t, "the three deliveries' outcomes", func() bool {
		if code := p.get(t, "/api/v1/deliveries", &list); code != 200 || len(list.Deliveries) != 3 {
			t.Fatalf("GET /api/v1/deliveries: HTTP %d, %d deliveries", code, len(list.Deliveries))
		}
		for _, d := range list.Deliveries {
			if d.Status == "pending" {
				return false
			}
		}
		return true
	})
	for _, d := range list.Deliveries {
		if d.Status != "delivered" {
			t.Errorf("delivery %+v", d)
		}
	}
	// A preliminary after the final is refused.
	if code, _ := p.request(t, http.MethodPost, "/fhir/r4/DiagnosticReport", "application/fhir+json", reportBody("preliminary", "ACCR1", "x")); code != 409 {
		t.Errorf("preliminary after final: HTTP %d, want 409", code)
	}
	if code, _ := p.request(t, http.MethodPost, "/fhir/r4/DiagnosticReport", "application/fhir+json", reportBody("final", "NOSUCH", "x")); code != 422 {
		t.Errorf("report for an unknown order: HTTP %d, want 422", code)
	}
	// Nothing more can arrive: the refused reports made no deliveries (the outbox is what the
	// deliverer sends from), and the EHR has the four it was sent.
	if code := p.get(t, "/api/v1/deliveries", &list); code != 200 || len(list.Deliveries) != 3 {
		t.Errorf("after the refused reports: HTTP %d, %d deliveries, want the 3 of before", code, len(list.Deliveries))
	}
	if n := len(ehr.messages(t)); n != 4 {
		t.Errorf("the EHR got %d messages after the refused reports, want 4", n)
	}
}

// obxTexts returns OBX-5 of every OBX of m.
func obxTexts(m *hl7.Message) []string {
	var out []string
	for i := 1; i <= m.Count("OBX"); i++ {
		out = append(out, m.Value("OBX["+strconv.Itoa(i)+"]-5"))
	}
	return out
}

// TestReportsSurviveCrashAndOutage: the EHR is down while the preliminary and final are
// reported, and Ferry is killed (-9) between them and restarted; once the EHR is back, both
// arrive, in order, each version's retries with one MSH-10.
func TestReportsSurviveCrashAndOutage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ehrAddr := downAddr(t)
	config := epicConfig(ehrAddr, "delivery: {retry_first: 100ms, retry_max: 300ms, timeout: 2s}")
	db := freshPostgresSchema(t, dir)
	p := startFerry(t, db, dir, serveOptions{Config: config})
	p.orderAll(t, ordersORM("K1", "NW", "PLK1", "SC", "ACCK1", "71260", "CT", "20261127", "000888"))
	p.postReport(t, "preliminary", "ACCK1", "Preliminary read.", 201)
	// A failed attempt, logged once its outcome is committed: the EHR is down, probed since.
	awaitOutput(t, p.stderr, p.exited, "the EHR found down", func(log string) bool {
		return strings.Contains(log, `msg="report delivery failed; will retry"`) &&
			strings.Contains(log, `msg="destination down; its deliveries wait until it answers a probe"`)
	})
	p.Kill()

	p = startFerry(t, db, dir, serveOptions{Config: config})
	p.postReport(t, "final", "ACCK1", "Final read.", 200)
	var pending struct {
		Deliveries []struct {
			Attempts  int    `json:"attempts"`
			LastError string `json:"last_error"`
		} `json:"deliveries"`
	}
	if code := p.get(t, "/api/v1/deliveries?status=pending", &pending); code != 200 || len(pending.Deliveries) != 2 {
		t.Fatalf("pending deliveries while the EHR is down: HTTP %d, %+v", code, pending)
	}

	_, port, _ := net.SplitHostPort(ehrAddr)
	ehr := &ehrReceiver{Addr: ehrAddr}
	startEHROn(t, dir, ehr, port)
	waitFor(t, "both reports at the EHR", func() bool { return len(ehr.messages(t)) >= 2 })
	got := ehr.messages(t)
	if len(got) != 2 || got[0].Value("OBR-25") != "P" || got[1].Value("OBR-25") != "F" {
		var seen []string
		for _, m := range got {
			seen = append(seen, m.Value("OBR-25")+" "+m.Value("MSH-10"))
		}
		t.Fatalf("the EHR got %v, want the preliminary then the final", seen)
	}
}

// TestReportsRetryDeadLetterReplay: an EHR that answers AE, then AR, then not at all: the AE is
// retried, the AR goes to the dead letters (the next report still goes), the silence is retried
// after the timeout; the dead letter is listed, and replayed by a person with the same MSH-10.
func TestReportsRetryDeadLetterReplay(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ehr := startEHR(t, dir, "AE", "AR", "none")
	p := startFerry(t, "sqlite:"+filepath.Join(dir, "ferry.db"), dir, serveOptions{Config: epicConfig(ehr.Addr,
		"delivery: {retry_first: 100ms, retry_max: 200ms, timeout: 1s}")})
	p.orderAll(t, ordersORM("D1", "NW", "PLD1", "SC", "ACCD1", "71260", "CT", "20261127", "000901"),
		ordersORM("D2", "NW", "PLD2", "SC", "ACCD2", "71260", "CT", "20261127", "000902"))
	// Patient 901's preliminary: AE (retried), then AR (dead).
	p.postReport(t, "preliminary", "ACCD1", "First read.", 201)
	type listed struct {
		Deliveries []struct {
			ID        int64  `json:"id"`
			Status    string `json:"status"`
			ControlID string `json:"control_id"`
			Attempts  int    `json:"attempts"`
			Response  string `json:"response"`
		} `json:"deliveries"`
	}
	var dead listed
	waitFor(t, "the dead letter", func() bool {
		return p.get(t, "/api/v1/deliveries?status=dead", &dead) == 200 && len(dead.Deliveries) == 1
	})
	if d := dead.Deliveries[0]; d.Attempts != 2 || !strings.Contains(d.Response, "MSA|AR") {
		t.Errorf("dead letter: %+v, want 2 attempts and the AR kept", d)
	}
	// Patient 902's final: the EHR says nothing; after the timeout it is sent again and taken.
	p.postReport(t, "final", "ACCD2", "Final read.", 201)
	waitFor(t, "the unanswered final sent again", func() bool { return len(ehr.messages(t)) >= 4 })
	// The analyst replays the dead letter.
	if code := p.post(t, "/api/v1/deliveries/"+strconv.FormatInt(dead.Deliveries[0].ID, 10)+"/replay",
		map[string]string{"user": "ana.analyst", "reason": "EHR team fixed the AR cause"}); code != 200 {
		t.Fatalf("replay: HTTP %d", code)
	}
	waitFor(t, "the replayed preliminary", func() bool { return len(ehr.messages(t)) >= 5 })
	got := ehr.messages(t)
	ids := make([]string, len(got))
	for i, m := range got {
		ids[i] = m.Value("MSH-10")
	}
	// AE'd and AR'd attempts of the preliminary, the final twice, the replay: one MSH-10 per report.
	if ids[0] != ids[1] || ids[2] != ids[3] || ids[4] != ids[0] || ids[0] == ids[2] {
		t.Errorf("MSH-10s at the EHR: %v", ids)
	}
	// Built again at the replay with the same mappings: the same bytes as the first attempts.
	if !bytes.Equal(got[4].Bytes(), got[0].Bytes()) {
		t.Errorf("the replay differs from the first attempt:\n%s\n%s", got[0].Bytes(), got[4].Bytes())
	}
	var delivered listed
	waitFor(t, "both delivered", func() bool {
		return p.get(t, "/api/v1/deliveries?status=delivered", &delivered) == 200 && len(delivered.Deliveries) == 2
	})
	if !strings.Contains(p.stderr.String(), `msg="audit: delivery replayed"`) {
		t.Errorf("no audit line for the replay")
	}
}

// TestReplayAfterTheCauseIsFixed: the two kinds of dead letter an analyst meets and their fix.
// A facility's edited result_status table lacks "final": the final's ORU cannot be built, so its
// delivery is dead at once (the report itself is kept); a replay while the table is still
// wrong is refused (422) and changes nothing; once the table is corrected, the replay builds
// the ORU with the corrected mapping and it is delivered, OBR-25 F. The hospital's FHIR server
// refuses the Bundle (422): dead, with its OperationOutcome kept; replayed, it is delivered.
func TestReplayAfterTheCauseIsFixed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ehr := startEHR(t, dir)
	hospital := startHospitalFHIR(t, dir, http.StatusUnprocessableEntity)
	tables := filepath.Join(dir, "stmarys", "tables")
	if err := os.MkdirAll(tables, 0o755); err != nil {
		t.Fatal(err)
	}
	statusTable := func(rows string) {
		t.Helper()
		path := filepath.Join(tables, "result_status.yaml")
		body := "table: result_status\nmissing: error\nrows:\n  preliminary: {obr25: P, obx11: P, orc5: IP}\n" + rows
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		later := time.Now().Add(time.Duration(len(body)) * time.Second) // coarse file-system clocks
		_ = os.Chtimes(path, later, later)
	}
	statusTable("")
	p := startFerry(t, "sqlite:"+filepath.Join(dir, "ferry.db"), dir, serveOptions{Config: `
mappings:
  reload_interval: 50ms
facilities:
  - id: stmarys
    sending_facility: STMARYS
    mappings: ` + filepath.Join(dir, "stmarys") + `
    results:
      - name: epic
        kind: mllp
        address: ` + ehr.Addr + `
      - name: fhir
        kind: fhir
        base_url: ` + hospital.URL + `
delivery:
  retry_first: 100ms
  retry_max: 200ms
`})
	p.orderAll(t, ordersORM("X1", "NW", "PLX1", "SC", "ACCX1", "71260", "CT", "20261127", "000931"))
	p.postReport(t, "final", "ACCX1", "Final read.", 201)
	type listed struct {
		Deliveries []struct {
			ID             int64  `json:"id"`
			Destination    string `json:"destination"`
			LastError      string `json:"last_error"`
			Response       string `json:"response"`
			MappingVersion string `json:"mapping_version"`
		} `json:"deliveries"`
	}
	var dead listed
	waitFor(t, "both dead letters", func() bool {
		dead = listed{}
		return p.get(t, "/api/v1/deliveries?status=dead", &dead) == 200 && len(dead.Deliveries) == 2
	})
	ids, failedMapping := map[string]int64{}, ""
	for _, d := range dead.Deliveries {
		ids[d.Destination] = d.ID
		switch d.Destination {
		case "STMARYS/epic":
			if !strings.Contains(d.LastError, "rendering the ORU") || !strings.Contains(d.LastError, "table result_status") {
				t.Errorf("the ORU's dead letter says %q, want the mapping's error", d.LastError)
			}
			if failedMapping = d.MappingVersion; !strings.HasPrefix(failedMapping, "oru_r01@1+") {
				t.Errorf("the ORU's dead letter names mapping %q, want oru_r01's version", failedMapping)
			}
		case "STMARYS/fhir":
			if !strings.Contains(d.Response, `"OperationOutcome"`) || !strings.Contains(d.LastError, "HTTP 422") {
				t.Errorf("the Bundle's dead letter: %+v, want the OperationOutcome kept", d)
			}
		}
	}
	replay := func(dest string) int {
		return p.post(t, "/api/v1/deliveries/"+strconv.FormatInt(ids[dest], 10)+"/replay",
			map[string]string{"user": "ana.analyst", "reason": "fixed"})
	}
	if code := replay("STMARYS/epic"); code != http.StatusUnprocessableEntity {
		t.Errorf("replaying while the table still lacks final: HTTP %d, want 422", code)
	}
	statusTable("  final: {obr25: F, obx11: F, orc5: CM}\n")
	awaitOutput(t, p.stderr, p.exited, "the corrected table", func(log string) bool { return strings.Contains(log, `msg="mappings reloaded"`) })
	for _, dest := range []string{"STMARYS/epic", "STMARYS/fhir"} {
		if code := replay(dest); code != 200 {
			t.Fatalf("replaying %s: HTTP %d", dest, code)
		}
	}
	waitFor(t, "the ORU and the Bundle", func() bool {
		return len(ehr.messages(t)) == 1 && len(hospital.resources("DiagnosticReport")) == 1
	})
	if m := ehr.messages(t)[0]; m.Value("OBR-25") != "F" || m.Value("OBX-11") != "F" || m.Value("ORC-5") != "CM" {
		t.Errorf("the replayed ORU: OBR-25 %q OBX-11 %q ORC-5 %q", m.Value("OBR-25"), m.Value("OBX-11"), m.Value("ORC-5"))
	}
	var delivered listed
	waitFor(t, "both delivered", func() bool {
		delivered = listed{} // decoding into the last answer would keep its fields the new one omits
		return p.get(t, "/api/v1/deliveries?status=delivered", &delivered) == 200 && len(delivered.Deliveries) == 2
	})
	for _, d := range delivered.Deliveries {
		// The ORU was built by the corrected mapping (its table's digest is in the version);
		// the Bundle needs no mapping.
		if want := map[bool]string{true: "oru_r01@1+", false: ""}[d.Destination == "STMARYS/epic"]; !strings.HasPrefix(d.MappingVersion, want) ||
			d.MappingVersion == failedMapping || (want == "" && d.MappingVersion != "") {
			t.Errorf("%s delivered by mapping %q (the failing one was %q)", d.Destination, d.MappingVersion, failedMapping)
		}
	}
}

// TestDownHospitalHoldsUpNoOther: St Mary's EHR takes the connection and never answers (a hung
// interface engine); St John's answers. With two senders, St Mary's ten reports, sent first —
// more than the deliverer looks at in one go — take at most one sender and, once its attempt
// fails, wait in the outbox; St John's three reports reach its EHR meanwhile, while St Mary's
// attempt still hangs.
func TestDownHospitalHoldsUpNoOther(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hung.Close() })
	go func() { // accepts, reads, never answers
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, c)
		}
	}()
	stjohns := startEHR(t, dir)
	p := startFerry(t, "sqlite:"+filepath.Join(dir, "ferry.db"), dir, serveOptions{Config: `
facilities:
  - id: stmarys
    sending_facility: STMARYS
    results: [{name: epic, kind: mllp, address: "` + hung.Addr().String() + `"}]
  - id: stjohns
    sending_facility: STJOHNS
    results: [{name: cerner, kind: mllp, address: "` + stjohns.Addr + `"}]
delivery:
  workers: 2
  timeout: 20s
  retry_first: 1m
`})
	var orders []string
	const stmarys, all = 10, 13
	for i := range all {
		n := strconv.Itoa(i)
		m := ordersORM("H"+n, "NW", "PLH"+n, "SC", "ACCH"+n, "71260", "CT", "20261127", "0008"+fmt.Sprintf("%02d", i))
		if i >= stmarys {
			// St John's own orders, for its own patients (its register: docs/security.md).
			m = strings.ReplaceAll(strings.Replace(m, "|RIS|STMARYS|", "|RIS|STJOHNS|", 1), "^^^STMARYS^MR", "^^^STJOHNS^MR")
		}
		orders = append(orders, m)
	}
	p.orderAll(t, orders...)
	for i := range all {
		p.postReport(t, "final", "ACCH"+strconv.Itoa(i), "Final read.", 201)
	}
	// St John's three arrive while St Mary's attempt still waits for its answer. Only the
	// transport's timeout ends that attempt (the sender reconnects until then), so the timeout is
	// the subject here: 20 s, some hundred times what St John's deliveries take on an idle
	// machine, so that a loaded one still sees the order of events the test asserts.
	waitFor(t, "St John's reports", func() bool { return len(stjohns.messages(t)) == 3 })
	if strings.Contains(p.stderr.String(), `msg="destination down; its deliveries wait" destination=STMARYS/epic`) {
		t.Errorf("St Mary's attempt ended before St John's reports arrived; want them delivered while it hangs")
	}
	// Once its attempt times out, St Mary's deliveries wait for its retry time, no attempt
	// counted for those never tried.
	var pending struct {
		Deliveries []struct {
			Attempts int `json:"attempts"`
		} `json:"deliveries"`
	}
	awaitOutput(t, p.stderr, p.exited, "St Mary's first attempt to fail", func(log string) bool {
		return strings.Contains(log, `msg="destination down; its deliveries wait" destination=STMARYS/epic`)
	})
	if code := p.get(t, "/api/v1/deliveries?status=pending&destination=STMARYS/epic", &pending); code != 200 || len(pending.Deliveries) != stmarys {
		t.Fatalf("St Mary's pending deliveries: HTTP %d, %d", code, len(pending.Deliveries))
	}
	tried := 0
	for _, d := range pending.Deliveries {
		tried += d.Attempts
	}
	if tried > 1 {
		t.Errorf("%d attempts at St Mary's hung EHR; want at most one, half the two senders", tried)
	}
}

// downAddr is a loopback address where nothing listens (an EHR that is down), free for the
// test to start one on later.
func downAddr(t *testing.T) string {
	t.Helper()
	return "127.0.0.1:" + freePort(t)
}

// epicConfig is a config with one facility, STMARYS, whose reports go to the MLLP destination
// epic at addr, and the config lines extra (say a delivery: block).
func epicConfig(addr, extra string) string {
	return `
facilities:
  - id: stmarys
    sending_facility: STMARYS
    results:
      - name: epic
        kind: mllp
        address: ` + addr + "\n" + extra + "\n"
}
