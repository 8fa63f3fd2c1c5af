package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/dicom/dicomtest"
)

// TestServeAnswersCEcho: `ferry serve` answers dcmtk's echoscu on its DICOM listener with AE
// title FERRY, rejects an unknown called AE title, and keeps serving.
func TestServeAnswersCEcho(t *testing.T) {
	t.Parallel()
	echoscu := requirePeer(t, "echoscu", "dcmtk")
	dir := t.TempDir()
	p := startFerry(t, "sqlite:"+filepath.Join(dir, "ferry.db"), dir, serveOptions{})
	host, port, err := net.SplitHostPort(p.DICOMAddr)
	if err != nil {
		t.Fatalf("DICOM address %q: %v", p.DICOMAddr, err)
	}
	echo := func(called string) (string, error) {
		out, err := exec.Command(echoscu, "-aec", called, "-aet", "FERRYTEST", host, port).CombinedOutput()
		return string(out), err
	}
	if out, err := echo("FERRY"); err != nil {
		t.Fatalf("echoscu to FERRY: %v\n%s", err, out)
	}
	out, err := echo("WRONG")
	if err == nil || !strings.Contains(out, "Called AE Title Not Recognized") {
		t.Errorf("echoscu to WRONG: err %v, output %q; want the association rejected", err, out)
	}
	if out, err := echo("FERRY"); err != nil {
		t.Fatalf("echoscu after a rejection: %v\n%s", err, out)
	}
}

// TestServeStoresInstances: dcmtk's storescu sends Ferry's own instances to `ferry serve`; each is
// kept as a Part 10 file under the DICOM data directory (STUDY/SERIES/SOP.dcm), a second copy
// is accepted and not stored again, and only the configured calling AE titles may associate.
func TestServeStoresInstances(t *testing.T) {
	t.Parallel()
	storescu := requirePeer(t, "storescu", "dcmtk")
	// Three of Ferry's own instances: two series of one study and another study.
	src := t.TempDir()
	files := []struct{ path, study, series, sop string }{}
	for i, uids := range [][3]string{
		{"1.2.826.0.1.3680043.8.498.4.1", "1.2.826.0.1.3680043.8.498.4.1.1", "1.2.826.0.1.3680043.8.498.4.1.1.1"},
		{"1.2.826.0.1.3680043.8.498.4.1", "1.2.826.0.1.3680043.8.498.4.1.2", "1.2.826.0.1.3680043.8.498.4.1.2.1"},
		{"1.2.826.0.1.3680043.8.498.4.2", "1.2.826.0.1.3680043.8.498.4.2.1", "1.2.826.0.1.3680043.8.498.4.2.1.1"},
	} {
		ds := dicomtest.Instance(dicomtest.CTImageStorage, uids[2], 32*32*2)
		ds.Set(dicom.NewString(dicom.TagStudyInstanceUID, dicom.VRUI, uids[0]))
		ds.Set(dicom.NewString(dicom.TagSeriesInstanceUID, dicom.VRUI, uids[1]))
		path := dicomtest.WriteInstance(t, src, fmt.Sprintf("i%d.dcm", i), ds)
		files = append(files, struct{ path, study, series, sop string }{path, uids[0], uids[1], uids[2]})
	}
	dir := t.TempDir()
	p := startFerry(t, "sqlite:"+filepath.Join(dir, "ferry.db"), dir,
		serveOptions{Config: "dicom:\n  accept_calling_ae_titles: [MODALITY1]\n"})
	host, port, _ := net.SplitHostPort(p.DICOMAddr)
	send := func(aet string, paths ...string) ([]byte, error) {
		args := append([]string{"-aet", aet, "-aec", "FERRY", host, port}, paths...)
		return exec.Command(storescu, args...).CombinedOutput()
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, f.path)
	}
	for round := range 2 { // the second round sends the same instances again
		if out, err := send("MODALITY1", paths...); err != nil {
			t.Fatalf("storescu round %d: %v\n%s", round, err, out)
		}
	}
	for _, f := range files {
		stored := filepath.Join(dir, "ferry-data", "dicom", f.study, f.series, f.sop+".dcm")
		b, err := os.ReadFile(stored)
		if err != nil {
			t.Errorf("%s not stored: %v", f.path, err)
			continue
		}
		if len(b) < 132 || string(b[128:132]) != "DICM" {
			t.Errorf("%s is not a DICOM Part 10 file", stored)
		}
	}
	if out, err := send("STRANGER", paths[0]); err == nil || !strings.Contains(string(out), "Calling AE Title Not Recognized") {
		t.Errorf("storescu from an unlisted AE title: err %v\n%s", err, out)
	}
	if out, err := send("MODALITY1", paths[0]); err != nil {
		t.Fatalf("storescu after a rejection: %v\n%s", err, out)
	}
}

// storeModified gives file the DICOM attributes args say (dcmtk's dcmodify: "-m"/"-i" and
// "(gggg,eeee)=value" pairs, changed in place) and sends it to p with dcmtk's storescu.
func (p *ferryProcess) storeModified(t *testing.T, file string, args ...string) {
	t.Helper()
	dcmodify, storescu := requirePeer(t, "dcmodify", "dcmtk"), requirePeer(t, "storescu", "dcmtk")
	if out, err := exec.Command(dcmodify, append(append([]string{"-nb"}, args...), file)...).CombinedOutput(); err != nil {
		t.Fatalf("dcmodify: %v\n%s", err, out)
	}
	host, port, _ := net.SplitHostPort(p.DICOMAddr)
	if out, err := exec.Command(storescu, "-aec", "FERRY", host, port, file).CombinedOutput(); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
}

// studyFile writes Ferry's own small CT instance (dicom/dicomtest) into dir as study.dcm, for
// dcmodify to change before it is sent, and returns its path. Its patient is as a modality
// often sends one: name, ID and sex, no birth date or issuer, no accession number, so that the
// tests give it what they link by.
func studyFile(t *testing.T, dir string) string {
	t.Helper()
	ds := dicomtest.Instance(dicomtest.CTImageStorage, "1.2.826.0.1.3680043.8.498.6.1", 16*16*2)
	ds.Set(dicom.NewString(dicom.TagPatientName, dicom.VRPN, "Test^Modality"))
	ds.Set(dicom.NewString(dicom.TagPatientID, dicom.VRLO, "4CT1"))
	ds.Set(dicom.NewString(dicomtest.TagPatientSex, dicom.VRCS, "F"))
	for _, tag := range []dicom.Tag{dicomtest.TagPatientBirthDate, dicomtest.TagIssuerOfPatientID, dicom.TagAccessionNumber, dicomtest.TagReferringPhysicianName} {
		ds.Set(dicom.NewString(tag, dicom.VRLO, ""))
	}
	return dicomtest.WriteInstance(t, dir, "study.dcm", ds)
}

// TestStudyLinkedToItsOrder: an order over MLLP, then a study from storescu that dcmodify gave
// the order's accession number and patient ID: Ferry links the study to that order (issue 4,
// rule 1), and says so in its log.
func TestStudyLinkedToItsOrder(t *testing.T) {
	t.Parallel()
	requirePeer(t, "storescu", "dcmtk") // before Ferry starts: skipped at once without them
	requirePeer(t, "dcmodify", "dcmtk")
	dir := t.TempDir()
	p := startFerry(t, "sqlite:"+filepath.Join(dir, "ferry.db"), dir, serveOptions{Config: `
linking:
  study_settle: 200ms
  issuers:
    - issuer: STMARYS
      system: urn:oid:2.16.840.1.113883.3.9999.1
      ignore_leading_zeros: true
`})
	if codes := mllpSendAll(t, p.MLLPAddr, ordersORM("L1", "NW", "PLS1", "SC", "ACCS1", "71260", "CT", "20261127", "000777")); codes[0] != "AA" {
		t.Fatalf("order: %v", codes)
	}
	file := studyFile(t, dir)
	// A new study for the order: its accession, its patient, and a Study UID of its own.
	p.storeModified(t, file, "-m", "(0008,0050)=ACCS1", "-m", "(0010,0020)=000777", "-m", "(0010,0010)=DOE^JANE",
		"-m", "(0010,0030)=19800102", "-m", "(0010,0040)=F", "-m", "(0020,000d)=1.2.826.0.1.3680043.10.77.1",
		"-m", "(0020,000e)=1.2.826.0.1.3680043.10.77.1.1", "-m", "(0008,0018)=1.2.826.0.1.3680043.10.77.1.1.1")
	waitFor(t, "the study to be linked", func() bool {
		log := p.stderr.String()
		return strings.Contains(log, `msg="study linked" study_uid=1.2.826.0.1.3680043.10.77.1 status=linked rule=accession`)
	})
	// The analyst sees the study and the decision, with the fields compared.
	var view struct {
		Study struct {
			AccessionNumber   string `json:"accession_number"`
			NumberOfInstances int    `json:"number_of_instances"`
		} `json:"study"`
		Link struct {
			Status, Rule     string
			ServiceRequestID string `json:"service_request_id"`
			Evidence         map[string]string
		} `json:"link"`
	}
	if code := p.get(t, "/api/v1/studies/1.2.826.0.1.3680043.10.77.1", &view); code != 200 {
		t.Fatalf("GET /api/v1/studies/{uid}: HTTP %d", code)
	}
	orders := p.fhirSearch(t, "ServiceRequest", url.Values{"identifier": {"PLS1"}})
	if view.Study.AccessionNumber != "ACCS1" || view.Study.NumberOfInstances != 1 || view.Link.Status != "linked" ||
		view.Link.Rule != "accession" || len(orders) != 1 || view.Link.ServiceRequestID != orders[0]["id"] ||
		!strings.Contains(view.Link.Evidence["patient_id"], "agrees") {
		t.Errorf("study view: %+v", view)
	}
	if code := p.get(t, "/api/v1/studies/1.2.3.4.5.6.7", nil); code != 404 {
		t.Errorf("unknown study: HTTP %d, want 404", code)
	}

	// Published as an ImagingStudy on the order's patient, found under the patient's MRN.
	var studies []map[string]any
	waitFor(t, "the ImagingStudy", func() bool {
		studies = p.fhirSearch(t, "ImagingStudy", url.Values{"patient:identifier": {"urn:oid:2.16.840.1.113883.3.9999.1|000777"}})
		return len(studies) == 1
	})
	if basedOn := studies[0]["basedOn"].([]any)[0].(map[string]any)["reference"]; basedOn != "ServiceRequest/"+orders[0]["id"].(string) ||
		studies[0]["id"] != "1.2.826.0.1.3680043.10.77.1" || studies[0]["numberOfInstances"] != 1.0 {
		t.Errorf("ImagingStudy: %v", studies[0])
	}
	if found := p.fhirSearch(t, "ImagingStudy", url.Values{"basedon": {"ServiceRequest/" + orders[0]["id"].(string)}}); len(found) != 1 {
		t.Errorf("ImagingStudy?basedon=: %d studies", len(found))
	}

	// A second study of the patient, without an accession, its MRN written without zeros and
	// the name as the console typed it: linked by patient ID; QIDO-RS finds both under the MRN
	// and answers with the patient as Ferry knows her.
	p.storeModified(t, file, "-i", "(0008,0050)=", "-i", "(0010,0020)=777", "-i", "(0010,0021)=STMARYS",
		"-i", "(0010,0010)=Doe, Jane", "-i", "(0020,000d)=1.2.826.0.1.3680043.10.77.2",
		"-i", "(0020,000e)=1.2.826.0.1.3680043.10.77.2.1", "-i", "(0008,0018)=1.2.826.0.1.3680043.10.77.2.1.1")
	waitFor(t, "the second study to be linked", func() bool {
		return strings.Contains(p.stderr.String(), `msg="study linked" study_uid=1.2.826.0.1.3680043.10.77.2 status=linked rule=patient-id`)
	})
	var qido []map[string]struct {
		Value []any `json:"Value"`
	}
	if code := p.get(t, "/dicomweb/studies?PatientID=000777", &qido); code != 200 || len(qido) != 2 {
		t.Fatalf("QIDO-RS PatientID=000777: HTTP %d, %d studies", code, len(qido))
	}
	for _, st := range qido {
		name := st["00100010"].Value[0].(map[string]any)["Alphabetic"]
		if st["00100020"].Value[0] != "000777" || name != "DOE^JANE" {
			t.Errorf("QIDO-RS identity: PatientID %v, name %v; want the linked patient's", st["00100020"].Value, name)
		}
	}

	// A study of someone Ferry does not know is held for a person, who links it; then it is
	// published like the others.
	p.storeModified(t, file, "-i", "(0010,0020)=X-1", "-i", "(0010,0021)=", "-i", "(0010,0010)=NOBODY^KNOWN",
		"-i", "(0010,0030)=19011231", "-i", "(0020,000d)=1.2.826.0.1.3680043.10.77.3",
		"-i", "(0020,000e)=1.2.826.0.1.3680043.10.77.3.1", "-i", "(0008,0018)=1.2.826.0.1.3680043.10.77.3.1.1")
	var open struct {
		Items []struct {
			Study struct {
				UID string `json:"study_instance_uid"`
			} `json:"study"`
			Link struct{ Status string } `json:"link"`
		} `json:"items"`
	}
	waitFor(t, "the unknown study in the reconciliation worklist", func() bool {
		return p.get(t, "/api/v1/reconciliation", &open) == 200 && len(open.Items) == 1
	})
	if open.Items[0].Study.UID != "1.2.826.0.1.3680043.10.77.3" || open.Items[0].Link.Status != "unmatched" {
		t.Errorf("reconciliation worklist: %+v", open)
	}
	patient := studies[0]["subject"].(map[string]any)["reference"].(string)
	if code := p.post(t, "/api/v1/studies/1.2.826.0.1.3680043.10.77.3/link", map[string]string{
		"patient_id": strings.TrimPrefix(patient, "Patient/"), "user": "ana.analyst", "reason": "outside study, confirmed by phone"}); code != 200 {
		t.Fatalf("linking by hand: HTTP %d", code)
	}
	waitFor(t, "the hand-linked study's ImagingStudy", func() bool {
		return len(p.fhirSearch(t, "ImagingStudy", url.Values{"patient": {patient}})) == 3
	})
	if !strings.Contains(p.stderr.String(), `msg="audit: study linked" study_uid=1.2.826.0.1.3680043.10.77.3`) {
		t.Errorf("no audit line for the hand link")
	}
}
