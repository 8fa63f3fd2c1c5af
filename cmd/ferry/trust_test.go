package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Issue "Trust at every door", items 1 and 2: the attacks as they were reported, on both stores.

// trustConfig: St Mary's with an EHR for its reports, its RIS allowed orders and ADT from this
// machine only; St John's allowed merges of its own patients; a dictation system allowed results.
func trustConfig(ehrAddr string) string {
	return `
facilities:
  - id: stmarys
    sending_facility: STMARYS
    senders:
      - application: RIS
        messages: [orders, adt]
        addresses: [127.0.0.1/32, "::1"]
    results:
      - {name: epic, kind: mllp, address: "` + ehrAddr + `"}
  - id: stjohns
    sending_facility: STJOHNS
    allow_merges: true
  - id: faraway
    sending_facility: FARAWAY
    senders:
      - {application: RIS, addresses: [10.0.0.0/8]}
  - id: dictation
    sending_facility: RADGROUP
    senders:
      - {application: PSCRIBE, messages: [results]}
`
}

// trustedORM is an order from St Mary's RIS: patient MRN<id> DOE^JANE, born 1980-01-02, F.
func trustedORM(app, facility, id string) string {
	return strings.Join([]string{
		`MSH|^~\&|` + app + `|` + facility + `|FERRY|FERRY|20261127083000||ORM^O01|` + id + `|P|2.3`,
		`PID|1||MRN` + id + `^^^` + facility + `^MR||DOE^JANE||19800102|F`,
		`ORC|NW|PO` + id + `|||SC`,
		`OBR|1|PO` + id + `||71046^XR CHEST 2V^CPT||||||||||||||ACC` + id,
	}, "\r") + "\r"
}

// oruFor is a final report from the dictation system for accession acc, naming the patient pid
// (a PID segment's fields after PID|1|).
func oruFor(app, facility, id, acc, pid string) string {
	return strings.Join([]string{
		`MSH|^~\&|` + app + `|` + facility + `|FERRY|FERRY|20261127104215||ORU^R01|` + id + `|P|2.5.1`,
		`PID|1|` + pid,
		`OBR|1|||71046^XR CHEST 2V^CPT|||20261127090000|||||||||||ACC` + acc + `||||20261127104210||CR|F`,
		`OBX|1|TX|18782-3^Radiology Study observation^LN|1|IMPRESSION: normal.||||||F`,
	}, "\r") + "\r"
}

// TestReportForAnotherPatientIsRefused: a report whose patient contradicts its order's patient
// — over MLLP (ORU PID) or FHIR (subject) — is refused (AE with ERR at the PID field, 422),
// kept in the message log for an analyst, and never delivered; one that agrees is delivered.
func TestReportForAnotherPatientIsRefused(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, db, dir string) {
		ehr := startEHR(t, dir)
		p := startFerry(t, db, dir, serveOptions{Config: trustConfig(ehr.Addr)})
		roundTrip := dialMLLP(t, p.MLLPAddr).sender(t)
		for _, id := range []string{"T1", "T2"} {
			if a := roundTrip(trustedORM("RIS", "STMARYS", id)); a.Code != "AA" {
				t.Fatalf("order %s: %s, want AA", id, a)
			}
		}

		// The reported attack: PID 99999^^^OTHER, NOBODY^NOT, born 1901, OBR-18 = T1's accession.
		a := roundTrip(oruFor("PSCRIBE", "RADGROUP", "R1", "T1", `|99999^^^OTHER^MR||NOBODY^NOT||19010101|M`))
		if a.Code != "AE" || !strings.Contains(a.ERR, "PID^1^7") {
			t.Errorf("ORU naming another patient: %s, want AE with ERR at PID-7 (the birth date)", a)
		}
		// St Mary's own number of another patient: the identifier contradicts.
		a = roundTrip(oruFor("PSCRIBE", "RADGROUP", "R2", "T1", `|MRNT2^^^STMARYS^MR||DOE^JANE||19800102|F`))
		if a.Code != "AE" || !strings.Contains(a.ERR, "PID^1^3") {
			t.Errorf("ORU with another St Mary's MRN: %s, want AE with ERR at PID-3", a)
		}
		// Over FHIR: a contained Patient born 1901, and a subject identifier of another patient.
		for name, subject := range map[string]string{
			"contained":  `"contained":[{"resourceType":"Patient","id":"p","name":[{"family":"NOBODY","given":["NOT"]}],"birthDate":"1901-01-01","gender":"male"}],"subject":{"reference":"#p"},`,
			"identifier": `"subject":{"identifier":{"system":"urn:oid:2.16.840.1.113883.3.9999.1","value":"MRNT2"}},`,
		} {
			body := `{"resourceType":"DiagnosticReport","status":"final",` + subject + `
				"basedOn":[{"identifier":{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"ACSN"}]},"value":"ACCT1"}}],
				"code":{"text":"XR chest"},"conclusion":"normal"}`
			if code, resp := p.request(t, http.MethodPost, "/fhir/r4/DiagnosticReport", "application/fhir+json", []byte(body)); code != 422 || !strings.Contains(string(resp), "order") {
				t.Errorf("FHIR report, %s subject of another patient: HTTP %d %s, want 422", name, code, resp)
			}
		}
		// Shown to an analyst: the refused reports are in the message log with their reason.
		refused := p.messages(t, url.Values{"status": {"error"}})
		if len(refused) != 4 {
			t.Errorf("message log has %d reports in error, want 4 (2 ORU, 2 FHIR): %+v", len(refused), refused)
		}
		for _, m := range refused {
			if !strings.Contains(m.Error, "patient") {
				t.Errorf("message %d (%s %s): error %q does not say the patient contradicts", m.ID, m.Channel, m.MessageType, m.Error)
			}
		}

		// The same report naming the order's patient (a typo in the given name, the MRN without
		// its leading letters' case) is filed and delivered: the only delivery there is.
		if a := roundTrip(oruFor("PSCRIBE", "RADGROUP", "R3", "T1", `|mrnt1^^^STMARYS^MR||DOE^JAINE||19800102|F`)); a.Code != "AA" {
			t.Fatalf("ORU naming the order's patient: %s, want AA", a)
		}
		waitFor(t, "the report at the EHR", func() bool { return len(ehr.messages(t)) > 0 })
		var list struct {
			Deliveries []struct {
				Status string `json:"status"`
			} `json:"deliveries"`
		}
		if code := p.get(t, "/api/v1/deliveries", &list); code != 200 || len(list.Deliveries) != 1 {
			t.Errorf("deliveries: HTTP %d, %d deliveries, want the good report's alone", code, len(list.Deliveries))
		}
		if got := ehr.messages(t); len(got) != 1 || got[0].Value("PID-3.1") != "MRNT1" {
			t.Errorf("the EHR got %d messages, want 1 for MRNT1", len(got))
		}
	})
}

// TestUntrustedSendersAreRefused: messages from senders a hospital did not configure — another
// facility, another application, another address, a merge not allowed, a merge of another
// hospital's patient — are answered AR with ERR 207 (the merge of a foreign patient AE), stored
// as refused, and change nothing.
func TestUntrustedSendersAreRefused(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, db, dir string) {
		ehr := startEHR(t, dir)
		p := startFerry(t, db, dir, serveOptions{Config: trustConfig(ehr.Addr)})
		send := dialMLLP(t, p.MLLPAddr).sender(t)
		if a := send(trustedORM("RIS", "STMARYS", "U1")); a.Code != "AA" {
			t.Fatalf("St Mary's RIS order: %s, want AA", a)
		}
		if a := send(trustedORM("RIS", "STJOHNS", "J1")); a.Code != "AA" {
			t.Fatalf("St John's order: %s, want AA", a)
		}
		a40 := func(app, facility, id, survivor, prior string) string {
			return strings.Join([]string{
				`MSH|^~\&|` + app + `|` + facility + `|FERRY|FERRY|20261127090000||ADT^A40^ADT_A39|` + id + `|P|2.5.1`,
				`EVN|A40|20261127090000`,
				`PID|1||` + survivor + `||DOE^JANE||19800102|F`,
				`MRG|` + prior,
			}, "\r") + "\r"
		}
		cases := []struct {
			name, msg, ack, errAt string
		}{
			{"ADT^A40 from an unknown facility", a40("X", "EVILCORP", "E1", "EVIL1^^^EVILCORP^MR", "MRNU1^^^STMARYS^MR"), "AR", "MSH^1^4"},
			{"ORU from an unknown facility", oruFor("EVILAPP", "EVILCORP", "E2", "U1", `|MRNU1^^^STMARYS^MR||DOE^JANE||19800102|F`), "AR", "MSH^1^4"},
			{"an application St Mary's did not list", trustedORM("OTHERAPP", "STMARYS", "E3"), "AR", "MSH^1^3"},
			{"a merge from St Mary's, which may not merge", a40("RIS", "STMARYS", "E4", "MRNU1^^^STMARYS^MR", "MRNJ1^^^STJOHNS^MR"), "AR", "MSH^1^9"},
			{"results from St Mary's RIS, allowed orders and ADT only", oruFor("RIS", "STMARYS", "E5", "U1", `|MRNU1^^^STMARYS^MR||DOE^JANE||19800102|F`), "AR", "MSH^1^9"},
			{"an order from an address Faraway does not send from", trustedORM("RIS", "FARAWAY", "E6"), "AR", "MSH^1^4"},
			{"St John's merging St Mary's patient into its own", a40("ADT", "STJOHNS", "E7", "MRNJ1^^^STJOHNS^MR", "MRNU1^^^STMARYS^MR"), "AE", "MRG^1^1"},
		}
		for _, c := range cases {
			a := send(c.msg)
			if a.Code != c.ack || !a.hasERRCode("207") || !strings.Contains(a.ERR, c.errAt) {
				t.Errorf("%s: %s, want %s with ERR 207 at %s", c.name, a, c.ack, c.errAt)
			}
		}
		// Nothing changed: St Mary's patient is active and unlinked, no report was filed.
		for _, pt := range p.fhirSearch(t, "Patient", url.Values{"identifier": {"MRNU1"}}) {
			if pt["active"] != true || pt["link"] != nil {
				t.Errorf("St Mary's patient after the refused merges: active=%v link=%v", pt["active"], pt["link"])
			}
		}
		if got := p.fhirSearch(t, "DiagnosticReport", url.Values{}); len(got) != 0 {
			t.Errorf("%d reports filed from refused senders", len(got))
		}
		if rejected := p.messages(t, url.Values{"status": {"rejected"}}); len(rejected) != 6 {
			t.Errorf("%d messages stored as rejected, want the 6 refused senders'", len(rejected))
		}
		// St John's may merge its own patients.
		if a := send(trustedORM("RIS", "STJOHNS", "J2")); a.Code != "AA" {
			t.Fatalf("St John's second order: %s", a)
		}
		if a := send(a40("ADT", "STJOHNS", "M1", "MRNJ1^^^STJOHNS^MR", "MRNJ2^^^STJOHNS^MR")); a.Code != "AA" {
			t.Errorf("St John's merging its own patients: %s, want AA", a)
		}
	})
}

// TestDemoModeListensOnLoopback: with no facility configured Ferry trusts every sender, and with
// no DICOM peer every caller, so its MLLP and DICOM listeners take the loopback interface
// whatever address they were given, and say so.
func TestDemoModeListensOnLoopback(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startFerry(t, "sqlite:"+dir+"/ferry.db", dir, serveOptions{MLLP: "0.0.0.0:0", DICOM: "0.0.0.0:0"})
	if host, _, _ := strings.Cut(p.MLLPAddr, ":"); host != "127.0.0.1" {
		t.Errorf("demo mode MLLP listens on %s, want 127.0.0.1", p.MLLPAddr)
	}
	if host, _, _ := strings.Cut(p.DICOMAddr, ":"); host != "127.0.0.1" {
		t.Errorf("demo mode DICOM listens on %s, want 127.0.0.1", p.DICOMAddr)
	}
	// Logged before the serving line, but on stderr, which the test reads through another pipe
	// than stdout's: wait for it rather than read it at once.
	awaitOutput(t, p.stderr, p.exited, "the demo mode warning", func(log string) bool { return strings.Contains(log, "demo mode") })
}

// TestStudyForAnotherPatientIsHeld: a study (C-STORE by storescu) that names an order by its
// accession but whose patient contradicts the order's — another name, born 1901 — is held for a
// person, never linked to the order (DESIGN.md rule 6), on both stores.
func TestStudyForAnotherPatientIsHeld(t *testing.T) {
	t.Parallel()
	requirePeer(t, "storescu", "dcmtk")
	requirePeer(t, "dcmodify", "dcmtk")
	requireCorpus(t)
	forEachStore(t, func(t *testing.T, db, dir string) {
		p := startFerry(t, db, dir, serveOptions{Config: "linking:\n  study_settle: 200ms\n"})
		if codes := mllpSendAll(t, p.MLLPAddr, trustedORM("RIS", "STMARYS", "S1")); codes[0] != "AA" {
			t.Fatalf("order: %v", codes)
		}
		const uid = "1.2.826.0.1.3680043.10.77.91"
		p.storeModified(t, corpusStudyCopy(t, dir), "-i", "(0008,0050)=ACCS1", "-i", "(0010,0020)=99999", "-i", "(0010,0021)=OTHER",
			"-i", "(0010,0010)=NOBODY^NOT", "-i", "(0010,0030)=19010101", "-i", "(0010,0040)=M", "-i", "(0020,000d)="+uid,
			"-i", "(0020,000e)="+uid+".1", "-i", "(0008,0018)="+uid+".1.1")
		var view struct {
			Link struct {
				Status string
			} `json:"link"`
		}
		waitFor(t, "the study's link decision", func() bool {
			return p.get(t, "/api/v1/studies/"+uid, &view) == 200 && view.Link.Status != ""
		})
		if view.Link.Status != "contradiction" {
			t.Errorf("a study contradicting its order's patient: %+v, want it held as a contradiction", view.Link)
		}
		var open struct {
			Items []struct {
				Study struct {
					UID string `json:"study_instance_uid"`
				} `json:"study"`
			} `json:"items"`
		}
		if p.get(t, "/api/v1/reconciliation", &open) != 200 || len(open.Items) != 1 || open.Items[0].Study.UID != uid {
			t.Errorf("reconciliation worklist: %+v, want the held study", open)
		}
	})
}

// TestSenderBoundToItsCertificate: under mutual TLS a facility's application may be bound to the
// name in its client certificate; a certificate from the same CA naming another system is
// refused AR 207, as is the right certificate sending for an application it was not given.
func TestSenderBoundToItsCertificate(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	dir := t.TempDir()
	p := startFerry(t, "sqlite:"+dir+"/ferry.db", dir, serveOptions{Config: `
mllp:
  tls: {cert: ` + ca.serverCert + `, key: ` + ca.serverKey + `, client_ca: ` + ca.caFile + `}
facilities:
  - id: stmarys
    sending_facility: STMARYS
    senders:
      - {application: RIS, certificates: [ferry]}
`})
	other, _, _ := ca.issue(9, "someone-else", x509.ExtKeyUsageClientAuth)
	send := func(cert tls.Certificate, msg string) *ackInfo {
		t.Helper()
		conn, err := tls.Dial("tcp", p.MLLPAddr, &tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatalf("TLS dial: %v", err)
		}
		defer conn.Close()
		return (&mllpPeer{conn: conn, r: bufio.NewReader(conn)}).sender(t)(msg)
	}
	if a := send(ca.client, trustedORM("RIS", "STMARYS", "C1")); a.Code != "AA" {
		t.Errorf("the RIS with its certificate: %s, want AA", a)
	}
	if a := send(other, trustedORM("RIS", "STMARYS", "C2")); a.Code != "AR" || !a.hasERRCode("207") || !strings.Contains(a.ERR, "MSH^1^4") {
		t.Errorf("the RIS's name with another system's certificate: %s, want AR 207 at MSH-4", a)
	}
	if a := send(ca.client, trustedORM("LAB", "STMARYS", "C3")); a.Code != "AR" || !strings.Contains(a.ERR, "MSH^1^3") {
		t.Errorf("the certificate sending for another application: %s, want AR at MSH-3", a)
	}
}

// sender returns a function that sends one message on c and returns its ACK, failing the test
// when there is none.
func (c *mllpPeer) sender(t *testing.T) func(msg string) *ackInfo {
	return func(msg string) *ackInfo {
		t.Helper()
		a, err := c.roundTrip([]byte(msg), 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
}

// TestHospitalCannotTouchAnothersPatient: a configured hospital sending another's MRN — an
// update naming St Mary's number beside its own, then a merge of St Mary's patient into its
// own — changes nothing of St Mary's patient (the review's attack), on both stores; and a report
// version cannot move another order's report to its own order.
func TestHospitalCannotTouchAnothersPatient(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, db, dir string) {
		ehr := startEHR(t, dir)
		p := startFerry(t, db, dir, serveOptions{Config: trustConfig(ehr.Addr)})
		send := dialMLLP(t, p.MLLPAddr).sender(t)
		if a := send(trustedORM("RIS", "STMARYS", "V1")); a.Code != "AA" {
			t.Fatalf("St Mary's order: %s", a)
		}
		a08 := strings.Join([]string{
			`MSH|^~\&|ADT|STJOHNS|FERRY|FERRY|20261127090000||ADT^A08^ADT_A01|H1|P|2.5.1`,
			`EVN|A08|20261127090000`,
			`PID|1||MRNV1^^^STMARYS^MR~J9^^^STJOHNS^MR||EVIL^EVE||19900101|M`,
			`PV1|1|O`,
		}, "\r") + "\r"
		if a := send(a08); a.Code != "AA" {
			t.Fatalf("St John's update of its own patient: %s, want AA (St Mary's number left out)", a)
		}
		a40 := strings.Join([]string{
			`MSH|^~\&|ADT|STJOHNS|FERRY|FERRY|20261127090000||ADT^A40^ADT_A39|H2|P|2.5.1`,
			`EVN|A40|20261127090000`,
			`PID|1||J9^^^STJOHNS^MR||EVIL^EVE||19900101|M`,
			`MRG|MRNV1^^^STMARYS^MR`,
		}, "\r") + "\r"
		if a := send(a40); a.Code != "AE" || !strings.Contains(a.ERR, "MRG^1^1") {
			t.Errorf("St John's merging St Mary's patient by her MRN: %s, want AE at MRG-1", a)
		}
		found := p.fhirSearch(t, "Patient", url.Values{"identifier": {"MRNV1"}})
		if len(found) != 1 {
			t.Fatalf("%d patients carry St Mary's MRN, want her alone", len(found))
		}
		her := found[0]
		name := her["name"].([]any)[0].(map[string]any)
		if name["family"] != "DOE" || her["gender"] != "female" || her["active"] != true || len(her["identifier"].([]any)) != 1 {
			t.Errorf("St Mary's patient after St John's messages: %v", her)
		}

		// A report version naming order V2 cannot take over V1's report by its identifier.
		if a := send(trustedORM("RIS", "STMARYS", "V2")); a.Code != "AA" {
			t.Fatalf("second order: %s", a)
		}
		p.postReport(t, "final", "ACCV1", "first report", 201)
		body := strings.Replace(string(reportBody("corrected", "ACCV2", "moved")), `"RPT-ACCV2"`, `"RPT-ACCV1"`, 1)
		if code, resp := p.request(t, http.MethodPost, "/fhir/r4/DiagnosticReport", "application/fhir+json", []byte(body)); code != 409 {
			t.Errorf("a version of V1's report based on V2: HTTP %d %s, want 409", code, resp)
		}
	})
}
