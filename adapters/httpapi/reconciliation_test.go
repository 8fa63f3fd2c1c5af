package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/adapters/httpapi"
	"github.com/ferryhealth/ferry/adapters/httpapi/accesstest"
	"github.com/ferryhealth/ferry/adapters/sqlite"
	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/fhir"
)

// The stores satisfy the API's consumer-side interface (cmd/ferry passes them as they are).
var _ httpapi.StudyLog = (*sqlite.Store)(nil)

// reconT0 is when the linker decided the seeded studies: well before the tests' own decisions,
// which are made now, so that the worklist's order (oldest decision first) is known.
var reconT0 = time.Date(2024, 3, 1, 8, 0, 0, 0, time.UTC)

// Seeded studies (synthetic: no real patient data).
const (
	studyReview        = "1.2.826.0.1.3680043.10.9.1" // review: candidates p1, p2 and p9 (no such Patient)
	studyContradiction = "1.2.826.0.1.3680043.10.9.2" // contradiction: accession says p1/sr1, no candidates
	studyLinked        = "1.2.826.0.1.3680043.10.9.3" // linked by accession: not on the worklist
	studyUnknown       = "1.2.826.0.1.3680043.10.9.99"
)

type reconFixture struct {
	store *sqlite.Store
	srv   *httptest.Server
	log   *lockedBuffer
}

// newReconFixture serves the admin API over a real, migrated SQLite store holding:
//
//	Patient p1  MRN1, Muller^Jorg, 1980-01-02, male
//	Patient p2  MRN2, Mueller^Joerg, 1980-01-02, male
//	Patient p3  MRN3, merged into p2 (replaced-by)
//	ServiceRequest sr1 of p1 (accession ACC1), sr2 of p2, sr3 of p3
//
// and the three studies above with the linker's decisions; the derivation queue is emptied, so
// that what the tests find queued, their requests queued.
func newReconFixture(t *testing.T) *reconFixture {
	t.Helper()
	ctx := context.Background()
	st := accesstest.SQLiteStore(t)

	id := func(system, value string) map[string]any { return map[string]any{"system": system, "value": value} }
	ref := func(r string) map[string]any { return map[string]any{"reference": r} }
	name := func(family, given string) []any {
		return []any{map[string]any{"use": "official", "family": family, "given": []string{given}}}
	}
	order := func(subject, acc, code string) map[string]any {
		return map[string]any{
			"identifier": []any{map[string]any{"system": "urn:oid:1.2.3.4", "value": acc,
				"type": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}}}}},
			"status": "active", "intent": "order", "subject": ref(subject),
			"code":               map[string]any{"text": code},
			"occurrenceDateTime": "2024-03-01T09:00:00Z",
		}
	}
	tx, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, r := range []struct {
		typ, id string
		fields  map[string]any
	}{
		{"Patient", "p1", map[string]any{"identifier": []any{id("urn:oid:1.2.3", "MRN1")}, "name": name("Muller", "Jorg"),
			"birthDate": "1980-01-02", "gender": "male"}},
		{"Patient", "p2", map[string]any{"identifier": []any{id("urn:oid:1.2.3", "MRN2")}, "name": name("Mueller", "Joerg"),
			"birthDate": "1980-01-02", "gender": "male"}},
		{"Patient", "p3", map[string]any{"identifier": []any{id("urn:oid:1.2.3", "MRN3")}, "active": false,
			"link": []any{map[string]any{"other": ref("Patient/p2"), "type": "replaced-by"}}}},
		{"ServiceRequest", "sr1", order("Patient/p1", "ACC1", "CT HEAD")},
		{"ServiceRequest", "sr2", order("Patient/p2", "ACC2", "MR KNEE")},
		{"ServiceRequest", "sr3", order("Patient/p3", "ACC3", "XR CHEST")},
	} {
		if err := tx.PutResource(ctx, reconResource(t, r.typ, r.id, r.fields)); err != nil {
			t.Fatalf("seeding %s/%s: %v", r.typ, r.id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	for i, uid := range []string{studyReview, studyContradiction, studyLinked} {
		inst := &engine.Instance{
			Header: dicom.Header{
				SOPInstanceUID:    uid + ".1.1",
				SOPClassUID:       "1.2.840.10008.5.1.4.1.1.2",
				SeriesInstanceUID: uid + ".1",
				StudyInstanceUID:  uid,
				TransferSyntaxUID: "1.2.840.10008.1.2.1",
				Modality:          "CT",
				SeriesNumber:      "1",
				InstanceNumber:    "1",
				PatientID:         "MRN1",
				IssuerOfPatientID: "STMARYS",
				PatientName:       "MULLER^JORG",
				PatientBirthDate:  "19800102",
				PatientSex:        "M",
				AccessionNumber:   fmt.Sprintf("ACC%d", i+1),
				StudyDate:         "20240301",
				StudyTime:         "090000",
				StudyDescription:  "CT HEAD",
				Size:              1,
			},
			Path:       "x.dcm",
			SHA256:     "00",
			ReceivedAt: reconT0,
		}
		if _, err := st.PutInstance(ctx, inst); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []*engine.StudyLink{
		{StudyInstanceUID: studyContradiction, Status: engine.LinkContradiction, Rule: engine.RuleAccession,
			PatientID: "p1", ServiceRequestID: "sr1", Evidence: map[string]string{"patient_id": "MRN1 | MRN9 | contradicts"},
			DecidedAt: reconT0, DecidedBy: engine.DecidedByLinker},
		{StudyInstanceUID: studyReview, Status: engine.LinkReview, Rule: engine.RuleDemographics, Score: 18,
			Evidence: map[string]string{"demographics": "3 candidate(s)"},
			Candidates: []engine.LinkCandidate{
				{PatientID: "p1", ServiceRequestID: "sr1", Score: 18, Evidence: map[string]string{"birth_date": "agrees"}},
				{PatientID: "p2", Score: 15, Evidence: map[string]string{"birth_date": "agrees"}},
				{PatientID: "p9", Score: 11},
			},
			DecidedAt: reconT0.Add(time.Minute), DecidedBy: engine.DecidedByLinker},
		{StudyInstanceUID: studyLinked, Status: engine.LinkLinked, Rule: engine.RuleAccession, Score: 1,
			PatientID: "p1", ServiceRequestID: "sr1", Evidence: map[string]string{}, DecidedAt: reconT0.Add(2 * time.Minute)},
	} {
		if err := st.PutStudyLink(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	f := &reconFixture{store: st, log: &lockedBuffer{}}
	f.drainDerivations(t)

	linker := &engine.Linker{Resources: st, Links: st}
	api, err := httpapi.New(httpapi.Options{Messages: st, Studies: st, Resources: st, CrossReference: linker, Unlearner: linker,
		AdminToken: token, Logger: slog.New(slog.NewJSONHandler(f.log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(api)
	t.Cleanup(f.srv.Close)
	return f
}

// reconResource is version 1 of typ/id with fields, checked to be valid FHIR R4.
func reconResource(t *testing.T, typ, id string, fields map[string]any) *engine.Resource {
	t.Helper()
	doc := map[string]any{"resourceType": typ, "id": id,
		"meta": map[string]any{"versionId": "1", "lastUpdated": reconT0.Format(time.RFC3339Nano)}}
	for k, v := range fields {
		doc[k] = v
	}
	body, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := fhirValidator(t).Validate(body); err != nil {
		t.Fatalf("fixture %s/%s is not valid FHIR: %v", typ, id, err)
	}
	index, err := fhir.Index(typ, body)
	if err != nil {
		t.Fatal(err)
	}
	return &engine.Resource{Type: typ, ID: id, VersionID: 1, LastUpdated: reconT0, JSON: body, Index: index}
}

// queued lists the studies waiting for their ImagingStudy to be derived again.
func (f *reconFixture) queued(t *testing.T) []string {
	t.Helper()
	due, err := f.store.DueStudyDerivations(context.Background(), time.Now().Add(time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	var uids []string
	for _, d := range due {
		uids = append(uids, d.StudyInstanceUID)
	}
	slices.Sort(uids)
	return uids
}

// drainDerivations takes every study off the derivation queue, as the deriver does.
func (f *reconFixture) drainDerivations(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	due, err := f.store.DueStudyDerivations(ctx, time.Now().Add(time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := f.store.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, d := range due {
		if err := tx.FinishStudyDerivation(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if q := f.queued(t); len(q) != 0 {
		t.Fatalf("derivation queue not empty after draining: %v", q)
	}
}

// call sends method path with body and the admin token, wants status want, and decodes the
// answer into out (if not nil).
func (f *reconFixture) call(t *testing.T, method, path string, body any, want int, out any) []byte {
	t.Helper()
	return f.send(t, method, path, body, "Bearer "+token, want, out)
}

// send is call with the Authorization header auth ("" for none); a string body is sent as it
// is, another non-nil body JSON-encoded.
func (f *reconFixture) send(t *testing.T, method, path string, body any, auth string, want int, out any) []byte {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d; body %s", method, path, resp.StatusCode, want, got)
	}
	if out != nil {
		if err := json.Unmarshal(got, out); err != nil {
			t.Fatalf("%s %s: decoding %s: %v", method, path, got, err)
		}
	}
	return got
}

// The API's JSON, as a client reads it.
type (
	apiPatient struct {
		ID          string   `json:"id"`
		Unavailable string   `json:"unavailable"`
		ReplacedBy  string   `json:"replaced_by"`
		Identifiers []string `json:"identifiers"`
		Name        *struct {
			Family string   `json:"family"`
			Given  []string `json:"given"`
		} `json:"name"`
		BirthDate string `json:"birth_date"`
		Gender    string `json:"gender"`
	}
	apiOrder struct {
		ID          string   `json:"id"`
		Unavailable string   `json:"unavailable"`
		Identifiers []string `json:"identifiers"`
		Code        string   `json:"code"`
		Status      string   `json:"status"`
		Occurrence  string   `json:"occurrence"`
		Subject     string   `json:"subject"`
	}
	apiCandidate struct {
		PatientID        string            `json:"patient_id"`
		ServiceRequestID string            `json:"service_request_id"`
		Score            float64           `json:"score"`
		Evidence         map[string]string `json:"evidence"`
		Patient          *apiPatient       `json:"patient"`
		ServiceRequest   *apiOrder         `json:"service_request"`
	}
	apiDecision struct {
		Status           engine.LinkStatus `json:"status"`
		Rule             string            `json:"rule"`
		Score            float64           `json:"score"`
		PatientID        string            `json:"patient_id"`
		ServiceRequestID string            `json:"service_request_id"`
		Evidence         map[string]string `json:"evidence"`
		Candidates       []apiCandidate    `json:"candidates"`
		DecidedAt        time.Time         `json:"decided_at"`
		DecidedBy        string            `json:"decided_by"`
		Reason           string            `json:"reason"`
		Patient          *apiPatient       `json:"patient"`
		ServiceRequest   *apiOrder         `json:"service_request"`
	}
	apiWorklist struct {
		Items []struct {
			Study struct {
				StudyInstanceUID  string   `json:"study_instance_uid"`
				PatientName       string   `json:"patient_name"`
				PatientID         string   `json:"patient_id"`
				IssuerOfPatientID string   `json:"issuer_of_patient_id"`
				PatientBirthDate  string   `json:"patient_birth_date"`
				PatientSex        string   `json:"patient_sex"`
				AccessionNumber   string   `json:"accession_number"`
				StudyDate         string   `json:"study_date"`
				StudyDescription  string   `json:"study_description"`
				ModalitiesInStudy []string `json:"modalities_in_study"`
				NumberOfSeries    int      `json:"number_of_series"`
				NumberOfInstances int      `json:"number_of_instances"`
			} `json:"study"`
			Link apiDecision `json:"link"`
		} `json:"items"`
		Next int `json:"next"`
	}
)

func (w apiWorklist) uids() []string {
	var out []string
	for _, it := range w.Items {
		out = append(out, it.Study.StudyInstanceUID)
	}
	return out
}

// auditLines returns the log records with message msg.
func (f *reconFixture) auditLines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(f.log.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

func TestReconciliationWorklist(t *testing.T) {
	t.Parallel()
	f := newReconFixture(t)

	var w apiWorklist
	f.call(t, http.MethodGet, "/api/v1/reconciliation", nil, http.StatusOK, &w)
	if got, want := w.uids(), []string{studyContradiction, studyReview}; !slices.Equal(got, want) {
		t.Fatalf("worklist = %v, want %v (open only, oldest decision first)", got, want)
	}
	if w.Next != 0 {
		t.Errorf("next = %d on the only page, want none", w.Next)
	}

	// The contradiction: no candidates, so the decision's own patient and order are shown.
	c := w.Items[0]
	if c.Study.PatientName != "MULLER^JORG" || c.Study.PatientID != "MRN1" || c.Study.IssuerOfPatientID != "STMARYS" ||
		c.Study.PatientBirthDate != "19800102" || c.Study.PatientSex != "M" || c.Study.AccessionNumber != "ACC2" ||
		c.Study.StudyDate != "20240301" || c.Study.StudyDescription != "CT HEAD" ||
		!slices.Equal(c.Study.ModalitiesInStudy, []string{"CT"}) || c.Study.NumberOfSeries != 1 || c.Study.NumberOfInstances != 1 {
		t.Errorf("study summary = %+v", c.Study)
	}
	if c.Link.Status != engine.LinkContradiction || c.Link.Rule != engine.RuleAccession || c.Link.DecidedBy != engine.DecidedByLinker ||
		c.Link.Evidence["patient_id"] != "MRN1 | MRN9 | contradicts" {
		t.Errorf("contradiction decision = %+v", c.Link)
	}
	if p := c.Link.Patient; p == nil || p.ID != "p1" || p.Name == nil || p.Name.Family != "Muller" {
		t.Errorf("contradiction's patient = %+v", p)
	}
	if o := c.Link.ServiceRequest; o == nil || o.ID != "sr1" || o.Code != "CT HEAD" || o.Status != "active" ||
		o.Occurrence != "2024-03-01T09:00:00Z" || o.Subject != "Patient/p1" || !slices.Equal(o.Identifiers, []string{"urn:oid:1.2.3.4|ACC1"}) {
		t.Errorf("contradiction's order = %+v", o)
	}

	// The review: ranked candidates, each with its Patient; one that cannot be read is marked.
	r := w.Items[1].Link
	if r.Status != engine.LinkReview || r.Score != 18 || len(r.Candidates) != 3 {
		t.Fatalf("review decision = %+v", r)
	}
	p1 := r.Candidates[0]
	if p1.PatientID != "p1" || p1.Score != 18 || p1.Evidence["birth_date"] != "agrees" || p1.Patient == nil ||
		!slices.Equal(p1.Patient.Identifiers, []string{"urn:oid:1.2.3|MRN1"}) || p1.Patient.Name == nil ||
		p1.Patient.Name.Family != "Muller" || !slices.Equal(p1.Patient.Name.Given, []string{"Jorg"}) ||
		p1.Patient.BirthDate != "1980-01-02" || p1.Patient.Gender != "male" || p1.Patient.Unavailable != "" ||
		p1.ServiceRequest == nil || p1.ServiceRequest.ID != "sr1" {
		t.Errorf("candidate 1 = %+v (patient %+v)", p1, p1.Patient)
	}
	if p2 := r.Candidates[1]; p2.PatientID != "p2" || p2.Patient == nil || p2.Patient.Name.Family != "Mueller" || p2.ServiceRequest != nil {
		t.Errorf("candidate 2 = %+v", p2)
	}
	if p9 := r.Candidates[2]; p9.Patient == nil || p9.Patient.ID != "p9" || p9.Patient.Unavailable != "not found" {
		t.Errorf("candidate 3 (no such Patient) = %+v, want marked unavailable", p9.Patient)
	}

	// Paging.
	var page1, page2 apiWorklist
	f.call(t, http.MethodGet, "/api/v1/reconciliation?limit=1", nil, http.StatusOK, &page1)
	if got := page1.uids(); !slices.Equal(got, []string{studyContradiction}) || page1.Next != 1 {
		t.Errorf("page 1 = %v next %d, want [%s] next 1", got, page1.Next, studyContradiction)
	}
	f.call(t, http.MethodGet, fmt.Sprintf("/api/v1/reconciliation?limit=1&offset=%d", page1.Next), nil, http.StatusOK, &page2)
	if got := page2.uids(); !slices.Equal(got, []string{studyReview}) || page2.Next != 0 {
		t.Errorf("page 2 = %v next %d, want [%s] and no next", got, page2.Next, studyReview)
	}

	lines := f.auditLines(t, "audit: reconciliation list read")
	if len(lines) != 3 || lines[0]["count"] != float64(2) || lines[0]["remote"] == "" {
		t.Errorf("audit lines = %v, want 3, the first with count 2 and the remote address", lines)
	}
	if logs := f.log.String(); strings.Contains(logs, "Muller") || strings.Contains(logs, "MULLER") || strings.Contains(logs, "1980") {
		t.Errorf("the log holds patient data:\n%s", logs)
	}
}

// TestReconciliationDecisions links a study under review, relinks it to another patient and
// unlinks it, checking each decision as stored, the history, the worklist, the derivation queue
// and the audit log.
func TestReconciliationDecisions(t *testing.T) {
	t.Parallel()
	f := newReconFixture(t)
	ctx := context.Background()
	base := "/api/v1/studies/" + studyReview

	// Link to p2 with sr3, an order of p3, which was merged into p2.
	var linked apiDecision
	f.call(t, http.MethodPost, base+"/link", map[string]string{"patient_id": "p2", "service_request_id": "sr3",
		"user": "dr.rivera", "reason": "checked with the ward"}, http.StatusOK, &linked)
	if linked.Status != engine.LinkLinked || linked.Rule != engine.RuleManual || linked.PatientID != "p2" ||
		linked.ServiceRequestID != "sr3" || linked.Score != 15 || linked.DecidedBy != "dr.rivera" ||
		linked.Reason != "checked with the ward" || linked.Evidence["previous"] != "review" ||
		linked.Evidence["demographics"] != "3 candidate(s)" || len(linked.Candidates) != 3 {
		t.Errorf("link answered %+v", linked)
	}
	stored, err := f.store.StudyLink(ctx, studyReview)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Status != engine.LinkLinked || stored.Rule != engine.RuleManual || stored.PatientID != "p2" ||
		stored.ServiceRequestID != "sr3" || stored.DecidedBy != "dr.rivera" || stored.Reason != "checked with the ward" ||
		len(stored.Candidates) != 3 || !stored.DecidedAt.Equal(linked.DecidedAt) {
		t.Errorf("stored decision = %+v", stored)
	}
	if got := f.queued(t); !slices.Equal(got, []string{studyReview}) {
		t.Errorf("derivation queue = %v, want the linked study (its ImagingStudy is derived again)", got)
	}
	var w apiWorklist
	f.call(t, http.MethodGet, "/api/v1/reconciliation", nil, http.StatusOK, &w)
	if got := w.uids(); !slices.Equal(got, []string{studyContradiction}) {
		t.Errorf("worklist after link = %v, want only the contradiction", got)
	}

	// Relink to p1, without an order.
	f.drainDerivations(t)
	var relinked apiDecision
	f.call(t, http.MethodPost, base+"/link", map[string]string{"patient_id": "p1",
		"user": "dr.chen", "reason": "second look: the birth date on the order"}, http.StatusOK, &relinked)
	if relinked.Status != engine.LinkLinked || relinked.PatientID != "p1" || relinked.ServiceRequestID != "" ||
		relinked.Score != 18 || relinked.DecidedBy != "dr.chen" || relinked.Evidence["previous"] != "linked Patient/p2 ServiceRequest/sr3" {
		t.Errorf("relink answered %+v", relinked)
	}
	if got := f.queued(t); !slices.Equal(got, []string{studyReview}) {
		t.Errorf("derivation queue after relink = %v, want the study", got)
	}

	// Unlink: back on the worklist, candidates kept.
	f.drainDerivations(t)
	var unlinked apiDecision
	f.call(t, http.MethodPost, base+"/unlink", map[string]string{"user": "dr.chen", "reason": "wrong patient after all"},
		http.StatusOK, &unlinked)
	if unlinked.Status != engine.LinkUnmatched || unlinked.Rule != engine.RuleManual || unlinked.PatientID != "" ||
		unlinked.ServiceRequestID != "" || unlinked.Score != 0 || len(unlinked.Candidates) != 3 ||
		unlinked.Evidence["previous"] != "linked Patient/p1" || unlinked.Reason != "wrong patient after all" {
		t.Errorf("unlink answered %+v", unlinked)
	}
	if got := f.queued(t); !slices.Equal(got, []string{studyReview}) {
		t.Errorf("derivation queue after unlink = %v, want the study", got)
	}
	f.call(t, http.MethodGet, "/api/v1/reconciliation", nil, http.StatusOK, &w)
	if got := w.uids(); !slices.Equal(got, []string{studyContradiction, studyReview}) {
		t.Errorf("worklist after unlink = %v, want the study back, after the older contradiction", got)
	}

	// History: every decision, oldest first.
	var hist struct {
		StudyInstanceUID string        `json:"study_instance_uid"`
		Decisions        []apiDecision `json:"decisions"`
	}
	f.call(t, http.MethodGet, base+"/history", nil, http.StatusOK, &hist)
	type step struct {
		status           engine.LinkStatus
		rule, by, reason string
		patient          string
	}
	want := []step{
		{engine.LinkReview, engine.RuleDemographics, engine.DecidedByLinker, "", ""},
		{engine.LinkLinked, engine.RuleManual, "dr.rivera", "checked with the ward", "p2"},
		{engine.LinkLinked, engine.RuleManual, "dr.chen", "second look: the birth date on the order", "p1"},
		{engine.LinkUnmatched, engine.RuleManual, "dr.chen", "wrong patient after all", ""},
	}
	var got []step
	for _, d := range hist.Decisions {
		got = append(got, step{d.Status, d.Rule, d.DecidedBy, d.Reason, d.PatientID})
	}
	if hist.StudyInstanceUID != studyReview || !slices.Equal(got, want) {
		t.Errorf("history = %+v\nwant %+v", got, want)
	}
	storedHist, err := f.store.StudyLinkHistory(ctx, studyReview)
	if err != nil {
		t.Fatal(err)
	}
	if len(storedHist) != len(want) {
		t.Errorf("stored history has %d decisions, want %d", len(storedHist), len(want))
	}

	// The study view shows the current decision with its candidates, who and why.
	var sv struct {
		Link apiDecision `json:"link"`
	}
	f.call(t, http.MethodGet, base, nil, http.StatusOK, &sv)
	if sv.Link.Status != engine.LinkUnmatched || sv.Link.DecidedBy != "dr.chen" || sv.Link.Reason != "wrong patient after all" ||
		len(sv.Link.Candidates) != 3 || sv.Link.Candidates[0].PatientID != "p1" || sv.Link.Candidates[0].Score != 18 {
		t.Errorf("study view link = %+v", sv.Link)
	}

	// Audit: who, which study, which patient and order, from where; never the reason or names.
	links := f.auditLines(t, "audit: study linked")
	if len(links) != 2 {
		t.Fatalf("%d 'audit: study linked' lines, want 2", len(links))
	}
	first := links[0]
	if first["study_uid"] != studyReview || first["patient"] != "p2" || first["service_request"] != "sr3" ||
		first["user"] != "dr.rivera" || first["remote"] == "" || first["remote"] == nil {
		t.Errorf("audit line = %v", first)
	}
	unlinks := f.auditLines(t, "audit: study unlinked")
	if len(unlinks) != 1 || unlinks[0]["study_uid"] != studyReview || unlinks[0]["user"] != "dr.chen" {
		t.Errorf("unlink audit lines = %v", unlinks)
	}
	logs := f.log.String()
	for _, phi := range []string{"checked with the ward", "birth date on the order", "wrong patient", "Muller", "Mueller", "1980"} {
		if strings.Contains(logs, phi) {
			t.Errorf("the log holds %q:\n%s", phi, logs)
		}
	}
}

// TestReconciliationErrors: refused requests answer why and change nothing.
func TestReconciliationErrors(t *testing.T) {
	t.Parallel()
	f := newReconFixture(t)
	link := "/api/v1/studies/" + studyReview + "/link"
	unlink := "/api/v1/studies/" + studyReview + "/unlink"
	ok := map[string]string{"patient_id": "p1", "user": "dr.chen", "reason": "checked"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for k, v := range ok {
			m[k] = v
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	for _, tt := range []struct {
		name         string
		method, path string
		body         any
		want         int
		wantErr      []string // in the error message
	}{
		{name: "no token", method: http.MethodPost, path: link, body: ok, want: http.StatusUnauthorized},
		{name: "no token on the worklist", method: http.MethodGet, path: "/api/v1/reconciliation", want: http.StatusUnauthorized},
		{name: "missing user", method: http.MethodPost, path: link, body: with("user", ""), want: http.StatusBadRequest,
			wantErr: []string{"user: required"}},
		{name: "missing reason", method: http.MethodPost, path: link, body: with("reason", ""), want: http.StatusBadRequest,
			wantErr: []string{"reason: required"}},
		{name: "blank user and reason, both reported", method: http.MethodPost, path: link,
			body: map[string]string{"patient_id": "p1", "user": " ", "reason": "\t"}, want: http.StatusBadRequest,
			wantErr: []string{"user: required", "reason: required"}},
		{name: "the linker is not a person", method: http.MethodPost, path: link, body: with("user", "linker"),
			want: http.StatusBadRequest, wantErr: []string{"user: linker"}},
		{name: "missing patient", method: http.MethodPost, path: link, body: with("patient_id", ""),
			want: http.StatusBadRequest, wantErr: []string{"patient_id: required"}},
		{name: "patient id not an id", method: http.MethodPost, path: link, body: with("patient_id", "Patient/p1"),
			want: http.StatusBadRequest, wantErr: []string{"patient_id: want a Patient id"}},
		{name: "misspelt member", method: http.MethodPost, path: link,
			body: map[string]string{"patient_id": "p1", "serviceRequestId": "sr1", "user": "u", "reason": "r"},
			want: http.StatusBadRequest, wantErr: []string{"serviceRequestId"}},
		{name: "not JSON", method: http.MethodPost, path: link, body: "patient_id=p1", want: http.StatusBadRequest},
		{name: "unknown study", method: http.MethodPost, path: "/api/v1/studies/" + studyUnknown + "/link", body: ok,
			want: http.StatusNotFound},
		{name: "unknown patient", method: http.MethodPost, path: link, body: with("patient_id", "p9"),
			want: http.StatusUnprocessableEntity, wantErr: []string{"Patient/p9 not found"}},
		{name: "merged-away patient", method: http.MethodPost, path: link, body: with("patient_id", "p3"),
			want: http.StatusUnprocessableEntity, wantErr: []string{"merged into Patient/p2", "link the study to Patient/p2"}},
		{name: "order of another patient", method: http.MethodPost, path: link, body: with("service_request_id", "sr2"),
			want: http.StatusUnprocessableEntity, wantErr: []string{"ServiceRequest/sr2 is an order of Patient/p2"}},
		{name: "unknown order", method: http.MethodPost, path: link, body: with("service_request_id", "sr9"),
			want: http.StatusUnprocessableEntity, wantErr: []string{"ServiceRequest/sr9 not found"}},
		{name: "unlink without reason", method: http.MethodPost, path: unlink, body: map[string]string{"user": "dr.chen"},
			want: http.StatusBadRequest, wantErr: []string{"reason: required"}},
		{name: "unlink names no patient", method: http.MethodPost, path: unlink, body: ok, want: http.StatusBadRequest,
			wantErr: []string{"patient_id"}},
		{name: "unlink unknown study", method: http.MethodPost, path: "/api/v1/studies/" + studyUnknown + "/unlink",
			body: map[string]string{"user": "u", "reason": "r"}, want: http.StatusNotFound},
		{name: "history of unknown study", method: http.MethodGet, path: "/api/v1/studies/" + studyUnknown + "/history",
			want: http.StatusNotFound},
		{name: "worklist limit too large", method: http.MethodGet, path: "/api/v1/reconciliation?limit=1001",
			want: http.StatusBadRequest, wantErr: []string{"limit"}},
		{name: "worklist offset negative", method: http.MethodGet, path: "/api/v1/reconciliation?offset=-1",
			want: http.StatusBadRequest, wantErr: []string{"offset"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			auth := "Bearer " + token
			if tt.want == http.StatusUnauthorized {
				auth = ""
			}
			var e struct {
				Error string `json:"error"`
			}
			f.send(t, tt.method, tt.path, tt.body, auth, tt.want, &e)
			for _, w := range tt.wantErr {
				if !strings.Contains(e.Error, w) {
					t.Errorf("error %q does not say %q", e.Error, w)
				}
			}
		})
	}

	hist, err := f.store.StudyLinkHistory(context.Background(), studyReview)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 1 || hist[0].Status != engine.LinkReview {
		t.Errorf("history after refused requests = %d decisions, want the linker's one", len(hist))
	}
	if q := f.queued(t); len(q) != 0 {
		t.Errorf("refused requests queued derivations: %v", q)
	}
	if lines := f.auditLines(t, "audit: study linked"); len(lines) != 0 {
		t.Errorf("refused requests were audited as links: %v", lines)
	}
}

// TestReconciliationTeaches: a person links a study whose identifier nobody holds (an outside
// centre's number); the identity cross-reference then finds the person by it —
// Patient?identifier= and Patient/$ihe-pix, with the Patient's own MRN — and forgets it when the
// person unlinks the study.
func TestReconciliationTeaches(t *testing.T) {
	t.Parallel()
	f := newReconFixture(t)
	ctx := context.Background()
	const outside = "urn:ferry:issuer:OUTSIDE"
	prev, err := f.store.StudyLink(ctx, studyReview)
	if err != nil {
		t.Fatal(err)
	}
	prev.Identifier = engine.LinkIdentifier{System: outside, Value: "OC-1"}
	if err := f.store.PutStudyLink(ctx, prev); err != nil {
		t.Fatal(err)
	}
	pix := "/fhir/r4/Patient/$ihe-pix?sourceIdentifier=" + url.QueryEscape(outside+"|OC-1")
	f.call(t, "GET", pix, nil, http.StatusNotFound, nil)

	body := f.call(t, "POST", "/api/v1/studies/"+studyReview+"/link", map[string]any{"patient_id": "p2", "user": "dr.rivera", "reason": "outside films"}, http.StatusOK, nil)
	if want := `"identifier":{"system":"urn:ferry:issuer:OUTSIDE","value":"OC-1"}`; !strings.Contains(string(body), want) {
		t.Errorf("the person's decision does not show the identifier it teaches (%s): %s", want, body)
	}
	var bundle struct {
		Entry []struct {
			Resource struct{ ID string } `json:"resource"`
		} `json:"entry"`
	}
	f.call(t, "GET", "/fhir/r4/Patient?identifier="+url.QueryEscape(outside+"|OC-1"), nil, http.StatusOK, &bundle)
	if len(bundle.Entry) != 1 || bundle.Entry[0].Resource.ID != "p2" {
		t.Errorf("Patient?identifier=OUTSIDE|OC-1 after the person linked its study to p2: %+v", bundle.Entry)
	}
	var params struct {
		Parameter []struct {
			Name            string
			ValueIdentifier struct{ System, Value string }
			ValueReference  struct{ Reference string }
		} `json:"parameter"`
	}
	f.call(t, "GET", pix, nil, http.StatusOK, &params)
	var got []string
	for _, p := range params.Parameter {
		got = append(got, p.Name+" "+p.ValueIdentifier.System+"|"+p.ValueIdentifier.Value+p.ValueReference.Reference)
	}
	if want := []string{"targetIdentifier urn:oid:1.2.3|MRN2", "targetId |Patient/p2"}; !slices.Equal(got, want) {
		t.Errorf("$ihe-pix = %q, want %q", got, want)
	}

	f.call(t, "POST", "/api/v1/studies/"+studyReview+"/unlink", map[string]any{"user": "dr.rivera", "reason": "not ours"}, http.StatusOK, nil)
	f.call(t, "GET", pix, nil, http.StatusNotFound, nil)
	bundle.Entry = nil
	f.call(t, "GET", "/fhir/r4/Patient?identifier="+url.QueryEscape(outside+"|OC-1"), nil, http.StatusOK, &bundle)
	if len(bundle.Entry) != 0 {
		t.Errorf("Patient?identifier=OUTSIDE|OC-1 after the study was unlinked: %+v", bundle.Entry)
	}
}
