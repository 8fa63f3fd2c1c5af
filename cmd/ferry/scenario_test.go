package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/hl7"
	"github.com/ferryhealth/ferry/internal/peers"
)

// TestReportScenario is the teleradiology round trip on PostgreSQL, each step through the real
// peer that makes it in the field: an order over MLLP (python3-hl7's mllp_send), its study by
// dcmtk's storescu, then the radiologist's preliminary, final and amended reports by FHIR POST.
// Each reaches the hospital twice — as ORU^R01 at its MLLP listener (python3-hl7's asyncio
// server) and as a transaction Bundle at its FHIR server (hospitalFHIR) — in order, checked field
// by field. The first attempts are refused (AE; HTTP 503) and retried; before the amendment both
// hospital systems go down and Ferry is killed (-9) and restarted: once they are back, the
// amendment arrives, with the MSH-10 its attempts share.
func TestReportScenario(t *testing.T) {
	t.Parallel()
	requirePeer(t, "storescu", "dcmtk") // before Ferry starts: skipped at once without them
	requirePeer(t, "dcmodify", "dcmtk")
	dir := t.TempDir()
	ehr := startEHR(t, dir, "AE")
	hospital := startHospitalFHIR(t, dir, http.StatusServiceUnavailable)
	config := `
reading_group:
  name: Northside Teleradiology
  system: http://hl7.org/fhir/sid/us-npi
  value: "1999999984"
linking:
  study_settle: 200ms
facilities:
  - id: stmarys
    sending_facility: STMARYS
    timezone: America/Chicago
    results:
      - name: epic
        kind: mllp
        address: ` + ehr.Addr + `
        receiving_application: EPIC
      - name: fhir
        kind: fhir
        base_url: ` + hospital.URL + `
delivery:
  retry_first: 200ms
  retry_max: 1s
  timeout: 2s
`
	db := freshPostgresSchema(t, dir)
	p := startFerry(t, db, dir, serveOptions{Config: config})

	// The order.
	p.orderAll(t, ordersORM("S1", "NW", "PLS9", "SC", "ACCS9", "71260", "CT", "20261127", "000779"))
	// Its study, linked by its accession number and published as an ImagingStudy.
	file := studyFile(t, dir)
	const studyUID = "1.2.826.0.1.3680043.10.77.9"
	p.storeModified(t, file, "-m", "(0008,0050)=ACCS9", "-m", "(0010,0020)=000779", "-m", "(0010,0010)=DOE^JANE",
		"-m", "(0020,000d)="+studyUID, "-m", "(0020,000e)="+studyUID+".1", "-m", "(0008,0018)="+studyUID+".1.1",
		"-m", "(0008,0020)=20040826", "-m", "(0008,0030)=185059") // a study time in daylight saving time
	waitFor(t, "the ImagingStudy", func() bool {
		return len(p.fhirSearch(t, "ImagingStudy", url.Values{"identifier": {"urn:dicom:uid|urn:oid:" + studyUID}})) == 1
	})

	steps := []struct{ status, text, obr25, orc5 string }{
		{"preliminary", "No acute cardiopulmonary process.", "P", "IP"},
		{"final", "No acute cardiopulmonary process.\nHeart size normal.", "F", "CM"},
		{"amended", "Addendum: 4 mm nodule in the right upper lobe | follow up in 12 months.", "C", "CM"},
	}
	var reportID string
	post := func(i int) {
		t.Helper()
		s := steps[i]
		code, body := p.request(t, http.MethodPost, "/fhir/r4/DiagnosticReport", "application/fhir+json", reportBody(s.status, "ACCS9", s.text))
		if want := map[bool]int{true: 201, false: 200}[i == 0]; code != want {
			t.Fatalf("POST %s report: HTTP %d, want %d: %s", s.status, code, want, body)
		}
		var r struct{ ID string }
		json.Unmarshal(body, &r)
		reportID = r.ID
	}
	// MLLP: the preliminary is answered AE, then taken (2 messages); FHIR: 503, then taken (2).
	post(0)
	waitFor(t, "the preliminary at the EHR", func() bool { return len(ehr.messages(t)) >= 2 && len(hospital.resources("DiagnosticReport")) == 1 })
	post(1)
	waitFor(t, "the final at the EHR", func() bool {
		return len(ehr.messages(t)) >= 3 && len(hospital.resources("DiagnosticReport")) == 1 &&
			len(hospital.versions(hospital.resources("DiagnosticReport")[0])) == 2
	})

	// Both hospital systems go down; the amendment is taken by Ferry, which is then killed.
	ehr.stop()
	hospital.setDown(true)
	const failed = `msg="report delivery failed; will retry"`
	before := strings.Count(p.stderr.String(), failed)
	post(2)
	// A few failed attempts, each logged once its outcome is committed.
	awaitOutput(t, p.stderr, p.exited, "failed attempts of the amendment", func(log string) bool {
		return strings.Count(log, failed) >= before+2
	})
	p.Kill()
	p = startFerry(t, db, dir, serveOptions{Config: config})
	_, ehrPort, _ := net.SplitHostPort(ehr.Addr)
	startEHROn(t, dir, ehr, ehrPort)
	hospital.setDown(false)
	waitFor(t, "the amendment at the EHR and the FHIR server", func() bool {
		drs := hospital.resources("DiagnosticReport")
		return len(ehr.messages(t)) >= 4 && len(drs) == 1 && len(hospital.versions(drs[0])) == 3
	})

	// The ORUs, field by field.
	got := ehr.messages(t)
	if len(got) != 4 {
		t.Fatalf("the EHR got %d messages, want 4 (the preliminary twice, the final, the amendment)", len(got))
	}
	if got[0].Value("MSH-10") != got[1].Value("MSH-10") {
		t.Errorf("the preliminary's retry has MSH-10 %q, its first attempt %q", got[1].Value("MSH-10"), got[0].Value("MSH-10"))
	}
	chicago, err := time.LoadLocation("America/Chicago")
	if err != nil {
		t.Fatal(err)
	}
	chicagoNow := time.Now().In(chicago).Format("-0700")
	seen := map[string]bool{}
	for i, m := range got[1:] {
		s := steps[i]
		if seen[m.Value("MSH-10")] {
			t.Errorf("%s ORU: MSH-10 %q used by an earlier version", s.status, m.Value("MSH-10"))
		}
		seen[m.Value("MSH-10")] = true
		checkFields(t, s.status+" ORU", m, map[string]string{
			"MSH-3": "FERRY", "MSH-5": "EPIC", "MSH-6": "STMARYS", "MSH-9.1": "ORU", "MSH-9.2": "R01", "MSH-9.3": "ORU_R01",
			"MSH-11": "P", "MSH-12": "2.5.1",
			"PID-3.1": "000779", "PID-3.4": "STMARYS", "PID-3.5": "MR", "PID-5.1": "DOE", "PID-5.2": "JANE",
			"PID-7": "19800102", "PID-8": "F", "PV1-2": "U",
			"ORC-1": "RE", "ORC-2.1": "PLS9", "ORC-2.2": "RIS", "ORC-5": s.orc5, "ORC-12.1": "1234", "ORC-12.2": "SMITH",
			"OBR-2.1": "PLS9", "OBR-2.2": "RIS", "OBR-4.1": "71260", "OBR-4.3": "C4", "OBR-18": "ACCS9",
			// The study's time (2004-08-26 18:50:59, no offset in the DICOM: UTC) in the
			// hospital's time zone (Chicago, daylight saving time then).
			"OBR-7": "20040826135059-0500", "OBR-24": "RAD", "OBR-25": s.obr25,
			"OBX-2": "TX", "OBX-3.1": "18782-3", "OBX-3.3": "LN", "OBX-11": s.obr25,
		})
		if text := strings.Join(obxTexts(m), "\n"); text != s.text {
			t.Errorf("%s ORU: the OBX lines say %q, want %q", s.status, text, s.text)
		}
		// Issued and sent just now: Chicago's offset today (-0600, or -0500 in summer).
		if issued := m.Value("OBR-22"); len(issued) < 19 || !strings.HasSuffix(issued, chicagoNow) {
			t.Errorf("%s ORU: OBR-22 %q, want the issue time at Chicago's offset %s", s.status, issued, chicagoNow)
		}
		if at := m.Value("MSH-7"); !strings.HasSuffix(at, chicagoNow) {
			t.Errorf("%s ORU: MSH-7 %q, want the hospital's time zone (%s)", s.status, at, chicagoNow)
		}
	}

	// The hospital's FHIR server: one patient, one order, one report with three versions, each
	// filed under the hospital's own ids.
	patients, orders, reports := hospital.resources("Patient"), hospital.resources("ServiceRequest"), hospital.resources("DiagnosticReport")
	if len(patients) != 1 || len(orders) != 1 || len(reports) != 1 {
		t.Fatalf("the hospital's FHIR server holds %v %v %v, want one patient, order and report", patients, orders, reports)
	}
	mrn := hospital.versions(patients[0])[0]["identifier"].([]any)[0].(map[string]any)
	if mrn["system"] != ordersMRN || mrn["value"] != "000779" {
		t.Errorf("the hospital's patient has identifier %v, want its MRN", mrn)
	}
	for i, v := range hospital.versions(reports[0]) {
		s := steps[i]
		if v["status"] != s.status {
			t.Errorf("version %d of the hospital's report: status %v, want %s", i+1, v["status"], s.status)
		}
		if ref := v["subject"].(map[string]any)["reference"]; ref != patients[0] {
			t.Errorf("version %d: subject %v, want the hospital's %s", i+1, ref, patients[0])
		}
		if ref := v["basedOn"].([]any)[0].(map[string]any)["reference"]; ref != orders[0] {
			t.Errorf("version %d: basedOn %v, want the hospital's %s", i+1, ref, orders[0])
		}
		if v["conclusion"] != s.text || v["effectiveDateTime"] == nil || v["issued"] == nil {
			t.Errorf("version %d: conclusion %q, effective %v, issued %v", i+1, v["conclusion"], v["effectiveDateTime"], v["issued"])
		}
		if perf := v["performer"].([]any)[0].(map[string]any); perf["display"] != "Northside Teleradiology" {
			t.Errorf("version %d: performer %v, want the reading group", i+1, perf)
		}
		if cat := v["category"].([]any)[0].(map[string]any)["coding"].([]any)[0].(map[string]any); cat["code"] != "RAD" {
			t.Errorf("version %d: category %v", i+1, cat)
		}
	}
	// Five Bundles: the preliminary's 503, then each version; and whatever the outage refused.
	bundles := hospital.bundles()
	if len(bundles) < 4 {
		t.Errorf("the FHIR server got %d Bundles, want at least 4", len(bundles))
	}
	peers.ValidateFHIR(t, bundles)

	// Ferry's own record: the report's three versions, every delivery delivered.
	var history struct {
		Total int `json:"total"`
	}
	if code := p.get(t, "/fhir/r4/DiagnosticReport/"+reportID+"/_history", &history); code != 200 || history.Total != 3 {
		t.Errorf("the report's history: HTTP %d, %d versions", code, history.Total)
	}
	var list struct {
		Deliveries []struct {
			Destination string `json:"destination"`
			Status      string `json:"status"`
		} `json:"deliveries"`
	}
	if code := p.get(t, "/api/v1/deliveries?status=delivered", &list); code != 200 || len(list.Deliveries) != 6 {
		t.Errorf("delivered: HTTP %d, %+v; want 3 versions × 2 destinations", code, list.Deliveries)
	}
}

// checkFields reports every field of m whose value is not the one wanted.
func checkFields(t *testing.T, what string, m *hl7.Message, want map[string]string) {
	t.Helper()
	for path, w := range want {
		if v := m.Value(path); v != w {
			t.Errorf("%s: %s = %q, want %q", what, path, v, w)
		}
	}
}
