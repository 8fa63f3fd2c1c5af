package web_test

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/ferryhealth/ferry/adapters/dicomweb"
	"github.com/ferryhealth/ferry/adapters/httpapi"
	"github.com/ferryhealth/ferry/adapters/httpapi/accesstest"
	"github.com/ferryhealth/ferry/adapters/postgres"
	"github.com/ferryhealth/ferry/adapters/web"
	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/dicom/dicomtest"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
	"github.com/ferryhealth/ferry/engine/turnaround"
	"github.com/ferryhealth/ferry/fhir"
)

// physStore is what the physician's pages' fixture needs of a store.
type physStore interface {
	accesstest.Store
	turnaround.Reader
}

// The fixture's study (a CT series whose first instance WADO-RS renders as a thumbnail).
const (
	physStudy    = "1.2.826.0.1.3680043.10.1081.13.1"
	physSeries   = physStudy + ".1"
	physInstance = physSeries + ".1"
	physPassword = "correct horse battery staple"
)

var docNPI = access.Practitioner{System: "http://hl7.org/fhir/sid/us-npi", Value: "1234567893"}

// physFixture is Ferry's HTTP edge with the pages over a real store, holding:
//
//   - Patient/p1 DOE, JANE (MRN 000123 at STMARYS), doc's patient: order s1 (CT chest, reason
//     "Cough, rule out mass", accession ACC3001), its study linked with one CT series, report r1
//     preliminary then final with a critical finding, and turnaround clocks;
//   - Patient/p0, merged into p1, with an older report r0 from another hospital: r1's prior;
//   - Patient/px, doc's too, whose name (PID-5) and report text (OBX-5) carry markup;
//   - Patient/p2, another physician's (other), with report r2.
type physFixture struct {
	st       physStore
	svc      *access.Service
	patients *access.Patients
	srv      *httptest.Server
	acks     *acks
}

// acks is the critical acknowledgements as t13-viewer's store keeps them: here, what the test
// says (the POST handler is theirs).
type acks struct {
	mu sync.Mutex
	by map[string]string
}

func (a *acks) Acknowledge(_ context.Context, id *access.Identity, reportID, _ string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.by == nil {
		a.by = map[string]string{}
	}
	a.by[reportID] = id.User
	return nil
}

func (a *acks) Acknowledgement(_ context.Context, id string) (string, time.Time, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	by, ok := a.by[id]
	return by, time.Date(2026, 11, 27, 16, 0, 0, 0, time.UTC), ok, nil
}

func newPhysFixture(t testing.TB, st physStore) *physFixture {
	t.Helper()
	ctx := context.Background()
	f := &physFixture{st: st, svc: &access.Service{Store: st}, acks: &acks{by: map[string]string{}}}
	f.patients = &access.Patients{Store: st, Resources: st, SendingFacilities: map[string]string{"stmarys": "STMARYS"}}
	seedPhysician(t, st)
	for _, u := range []*access.User{
		{Name: "doc", Role: access.RolePhysician, Practitioners: []access.Practitioner{docNPI}},
		{Name: "other", Role: access.RolePhysician, Practitioners: []access.Practitioner{{Value: "9999999991"}}},
		{Name: "ana", Role: access.RoleAnalyst},
	} {
		if err := f.svc.AddUser(ctx, u, physPassword); err != nil {
			t.Fatal(err)
		}
	}
	stow := physDICOMweb(t, st, f.patients)
	trail := &audit.Recorder{Begin: st.Begin}
	e, err := httpapi.New(httpapi.Options{Messages: st, Resources: st, Access: f.svc, SessionCookie: web.SessionCookie,
		Audit: trail, AuditEvents: st, Patients: f.patients, DICOMweb: stow})
	if err != nil {
		t.Fatal(err)
	}
	if err := web.Register(e, web.Options{Access: f.svc, Audit: trail, Critical: f.acks,
		Physician: &web.Physician{Patients: f.patients, Resources: st, Reads: st, Turnaround: st}}); err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(e)
	t.Cleanup(f.srv.Close)
	return f
}

// seedPhysician writes the fixture's records as the engine stores them (the shapes of the
// shipped mappings' output and of engine.Reports' versions).
func seedPhysician(t testing.TB, st physStore) {
	t.Helper()
	ctx := context.Background()
	tx, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 27, 14, 0, 0, 0, time.UTC)
	html := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	put := func(typ, id string, version int64, when time.Time, body string) {
		t.Helper()
		doc := fmt.Sprintf(`{"resourceType":%q,"id":%q,"meta":{"versionId":"%d","lastUpdated":%q},%s}`, typ, id, version, fhir.FormatInstant(when), body)
		index, err := fhir.Index(typ, []byte(doc))
		if err != nil {
			t.Fatalf("%s/%s: %v", typ, id, err)
		}
		if err := tx.PutResource(ctx, &engine.Resource{Type: typ, ID: id, VersionID: version, LastUpdated: when, JSON: []byte(doc), Index: index}); err != nil {
			t.Fatalf("%s/%s: %v", typ, id, err)
		}
	}
	mr := func(v string) string {
		return `{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},"system":"urn:oid:2.16.840.1.113883.3.9999.1","value":"` + v + `","assigner":{"display":"STMARYS"}}`
	}
	acsn := func(v string) string {
		return `{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"ACSN"}]},"value":"` + v + `"}`
	}
	facility := func(f string) string {
		return `"extension":[{"url":"` + engine.SendingFacilityURL + `","valueString":"` + f + `"}]`
	}
	crit := `"extension":[{"url":"` + engine.CriticalFindingURL + `","valueBoolean":true}]`
	put("Patient", "p1", 1, at.Add(-72*time.Hour), `"identifier":[`+mr("000123")+`],"name":[{"family":"DOE","given":["JANE","Q"]}],"gender":"female","birthDate":"1980-01-02","link":[{"other":{"reference":"Patient/p0"},"type":"replaces"}]`)
	put("Patient", "p0", 1, at.Add(-72*time.Hour), `"identifier":[`+mr("OH-77")+`],"name":[{"family":"DOE","given":["JANE"]}],"gender":"female","birthDate":"1980-01-02","active":false,"link":[{"other":{"reference":"Patient/p1"},"type":"replaced-by"}]`)
	put("Patient", "px", 1, at.Add(-72*time.Hour), `"identifier":[`+mr("000999")+`],"name":[{"family":"<script>alert(1)</script>","given":["JAVASCRIPT:ALERT(2)"]}],"gender":"male","birthDate":"1970-05-06"`)
	put("Patient", "p2", 1, at.Add(-72*time.Hour), `"identifier":[`+mr("000222")+`],"name":[{"family":"ROE","given":["RICHARD"]}],"gender":"male","birthDate":"1965-12-31"`)
	put("Practitioner", "pr1", 1, at.Add(-72*time.Hour), `"identifier":[{"system":"`+docNPI.System+`","value":"`+docNPI.Value+`"}],"name":[{"family":"SMITH","given":["ROBERT","J"]}]`)
	put("ServiceRequest", "s1", 1, at.Add(-6*time.Hour), `"status":"active","intent":"order","priority":"stat",`+facility("STMARYS")+`,"identifier":[`+acsn("ACC3001")+`],"code":{"coding":[{"system":"http://loinc.org","code":"24627-2","display":"CT Chest"}],"text":"CT CHEST W/O CONTRAST"},"subject":{"reference":"Patient/p1"},"requester":{"reference":"Practitioner/pr1"},"reasonCode":[{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10","code":"R05"}],"text":"Cough, rule out mass"}],"authoredOn":"2026-11-27T08:25:00-05:00"`)
	put("ServiceRequest", "s0", 1, at.Add(-400*24*time.Hour), `"status":"completed","intent":"order","priority":"routine",`+facility("OTHERH")+`,"identifier":[`+acsn("OH-1")+`],"code":{"text":"XR CHEST 2 VIEWS"},"subject":{"reference":"Patient/p0"}`)
	put("ServiceRequest", "sx", 1, at.Add(-5*time.Hour), `"status":"active","intent":"order","priority":"routine",`+facility("STMARYS")+`,"identifier":[`+acsn("ACC3009")+`],"code":{"text":"MR BRAIN"},"subject":{"reference":"Patient/px"}`)
	put("ServiceRequest", "s2", 1, at.Add(-5*time.Hour), `"status":"active","intent":"order","priority":"routine",`+facility("OTHERH")+`,"identifier":[`+acsn("OH-2")+`],"code":{"text":"MR KNEE"},"subject":{"reference":"Patient/p2"}`)
	put("ImagingStudy", "i1", 1, at.Add(-4*time.Hour), `"status":"available","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:`+physStudy+`"},`+acsn("ACC3001")+`],"subject":{"reference":"Patient/p1"},"basedOn":[{"reference":"ServiceRequest/s1"}],"started":"2026-11-27T09:30:00-05:00","modality":[{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"}],"description":"CT CHEST","referrer":{"reference":"Practitioner/pr1"},"numberOfSeries":1,"series":[{"uid":"`+physSeries+`","number":1,"modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"},"description":"AXIAL 5mm"}]`)
	prelim := "EXAM: CT CHEST WITHOUT CONTRAST\n\nFINDINGS: 8 mm nodule in the right upper lobe.\nIMPRESSION: Nodule, follow-up advised."
	final := "EXAM: CT CHEST WITHOUT CONTRAST\n\nFINDINGS: 8 mm spiculated nodule in the right upper lobe. Pulmonary embolism in the right lower lobe artery.\nIMPRESSION: Acute pulmonary embolism."
	report := func(status, ext, text string) string {
		if ext != "" {
			ext += ","
		}
		return `"status":"` + status + `",` + ext + `"basedOn":[{"reference":"ServiceRequest/s1"}],"subject":{"reference":"Patient/p1"},"imagingStudy":[{"reference":"ImagingStudy/i1"}],"code":{"text":"CT CHEST W/O CONTRAST"},"effectiveDateTime":"2026-11-27T09:30:00-05:00","issued":"2026-11-27T10:42:10-05:00","resultsInterpreter":[{"display":"NAKAMURA, KEIKO A"}],"conclusion":` + jsonString(text)
	}
	put("DiagnosticReport", "r1", 1, at.Add(-3*time.Hour), report("preliminary", "", prelim))
	put("DiagnosticReport", "r1", 2, at.Add(-2*time.Hour), report("final", crit, final))
	put("DiagnosticReport", "r0", 1, at.Add(-399*24*time.Hour), `"status":"final","basedOn":[{"reference":"ServiceRequest/s0"}],"subject":{"reference":"Patient/p0"},"code":{"text":"XR CHEST 2 VIEWS"},"effectiveDateTime":"2025-10-24","conclusion":"No acute cardiopulmonary abnormality."`)
	// OBX-5 with markup: kept as text in the conclusion, and an HTML form that was stored before
	// it was sanitised (the page sanitises again).
	put("DiagnosticReport", "rx", 1, at.Add(-90*time.Minute), `"status":"preliminary","basedOn":[{"reference":"ServiceRequest/sx"}],"subject":{"reference":"Patient/px"},"code":{"text":"MR BRAIN"},"conclusion":"<script>alert(3)</script> <img src=x onerror=alert(4)>"`)
	put("DiagnosticReport", "rx", 2, at.Add(-time.Hour), `"status":"final","basedOn":[{"reference":"ServiceRequest/sx"}],"subject":{"reference":"Patient/px"},"code":{"text":"MR BRAIN"},"presentedForm":[{"contentType":"text/html","data":"`+html(`<p>Normal <script>alert(5)</script><a href="javascript:alert(6)">link</a><img src="x" onerror="alert(7)"></p>`)+`"}]`)
	put("DiagnosticReport", "r2", 1, at.Add(-time.Hour), `"status":"final","basedOn":[{"reference":"ServiceRequest/s2"}],"subject":{"reference":"Patient/p2"},"code":{"text":"MR KNEE"},"conclusion":"Meniscal tear."`)
	if err := tx.AddPatientAccess(ctx, []engine.PatientAccess{
		{PatientID: "p1", Facility: "STMARYS", System: docNPI.System, Value: docNPI.Value},
		{PatientID: "px", Facility: "STMARYS", System: docNPI.System, Value: docNPI.Value},
		{PatientID: "p0", Facility: "OTHERH", System: "urn:oid:9.9", Value: "OTHERDOC"},
		{PatientID: "p2", Facility: "OTHERH", System: "urn:npi", Value: "9999999991"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := tx.SharePatientAccess(ctx, "p0", "p1"); err != nil {
		t.Fatal(err)
	}
	if err := tx.PutStudyLink(ctx, &engine.StudyLink{StudyInstanceUID: physStudy, Status: engine.LinkLinked, ServiceRequestID: "s1",
		PatientID: "p1", Rule: "accession", Score: 1, DecidedAt: at.Add(-4 * time.Hour), DecidedBy: engine.DecidedByLinker}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		stage turnaround.Stage
		at    time.Time
	}{{turnaround.Ordered, at.Add(-6 * time.Hour)}, {turnaround.Study, at.Add(-4 * time.Hour)},
		{turnaround.Preliminary, at.Add(-3 * time.Hour)}, {turnaround.Final, at.Add(-2 * time.Hour)}} {
		if _, err := tx.MarkTurnaround(ctx, "s1", "stat", m.stage, m.at); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// activeMarkup finds an element with an event handler or a javascript: link.
var activeMarkup = regexp.MustCompile(`(?i)<[a-z][^>]*\s(on[a-z]+\s*=|href\s*=\s*["']?\s*javascript:)`)

func jsonString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// physDICOMweb serves DICOMweb over st with the fixture's CT instance stored through the intake
// (a gradient, so its thumbnail shows something).
func physDICOMweb(t testing.TB, st physStore, patients *access.Patients) *dicomweb.STOW {
	t.Helper()
	data := t.TempDir()
	incoming := filepath.Join(data, ".incoming")
	if err := os.MkdirAll(incoming, 0o750); err != nil {
		t.Fatal(err)
	}
	intake := &engine.Intake{Store: st, Dir: data}
	ds := dicomtest.Instance(dicomtest.CTImageStorage, physInstance, 64*64*2)
	ds.Set(dicom.NewString(dicom.TagStudyInstanceUID, dicom.VRUI, physStudy))
	ds.Set(dicom.NewString(dicom.TagSeriesInstanceUID, dicom.VRUI, physSeries))
	ds.Set(dicom.NewString(dicom.TagAccessionNumber, dicom.VRSH, "ACC3001"))
	path := dicomtest.WriteInstance(t, incoming, "ct.dcm", ds)
	hdr, err := dicom.ReadInstance(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	inst := engine.NewInstance(hdr, path)
	inst.ReceivedAt, inst.SHA256 = time.Date(2026, 11, 27, 14, 0, 0, 0, time.UTC), "fixture"
	if _, err := intake.StoreInstance(context.Background(), inst, path); err != nil {
		t.Fatal(err)
	}
	stow, err := dicomweb.NewSTOW(intake, dicomweb.Config{IncomingDir: incoming, Studies: &access.Studies{Patients: patients, Studies: st},
		Instances: st, DataDir: data, AuditPatient: httpapi.SetAuditPatient})
	if err != nil {
		t.Fatal(err)
	}
	return stow
}

// signIn returns a client holding a session of user (the sign-in's own path is tested elsewhere).
func (f *physFixture) signIn(t testing.TB, user string) *http.Client {
	t.Helper()
	id, _, _, err := f.svc.Login(context.Background(), user, physPassword, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c := client(t.(*testing.T))
	u, _ := url.Parse(f.srv.URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: web.SessionCookie, Value: id, Path: "/"}})
	return c
}

func (f *physFixture) page(t *testing.T, c *http.Client, method, path string, form url.Values) (int, string) {
	t.Helper()
	var resp *http.Response
	var err error
	if method == http.MethodPost {
		resp, err = c.PostForm(f.srv.URL+path, form)
	} else {
		resp, err = c.Get(f.srv.URL + path)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// PostgreSQL for these tests: a schema of their own on TEST_DATABASE_URL (or the local server),
// dropped at the end.
var pgSchemaSeq atomic.Int64

func postgresStore(t testing.TB) *postgres.Store {
	t.Helper()
	dsn := os.Getenv("TEST_DATABASE_URL")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	ctx := context.Background()
	admin, err := sql.Open("postgres", dsn)
	if err == nil {
		err = admin.PingContext(ctx)
	}
	if err != nil {
		if os.Getenv("FERRY_REQUIRE_POSTGRES") == "1" {
			t.Fatalf("PostgreSQL unreachable and FERRY_REQUIRE_POSTGRES=1: %v", err)
		}
		t.Skipf("PostgreSQL unreachable (FERRY_REQUIRE_POSTGRES=1 fails instead): %v", err)
	}
	schema := fmt.Sprintf("ferry_web_%d_%d", os.Getpid(), pgSchemaSeq.Add(1))
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+pq.QuoteIdentifier(schema)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin.ExecContext(ctx, "DROP SCHEMA "+pq.QuoteIdentifier(schema)+" CASCADE")
		admin.Close()
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	st, err := postgres.Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

// eachStore runs fn on a fresh SQLite store and a fresh PostgreSQL one.
func eachStore(t *testing.T, fn func(t *testing.T, st physStore)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, accesstest.SQLiteStore(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, postgresStore(t)) })
}

// TestPhysicianPages (no JavaScript, both stores): a physician's home page lists only their
// patients' reports, the unread critical one first; the report page shows the patient, the
// order and its reason, the versions and what changed, the critical banner with the
// acknowledgement form, the turnaround, the prior of the merged record and the key image; a
// view is audited and makes the report read; another physician gets 404 and an audit row
// "refused" until they break the glass; the search keeps its terms out of the URL; markup in a
// name or a report stays text.
func TestPhysicianPages(t *testing.T) {
	eachStore(t, func(t *testing.T, st physStore) {
		f := newPhysFixture(t, st)
		doc := f.signIn(t, "doc")

		code, home := f.page(t, doc, http.MethodGet, "/", nil)
		if code != http.StatusOK {
			t.Fatalf("GET / as doc: %d", code)
		}
		i1, ix, i0 := strings.Index(home, `href="/reports/r1"`), strings.Index(home, `href="/reports/rx"`), strings.Index(home, `href="/reports/r0"`)
		if i1 < 0 || ix < 0 || i0 < 0 || strings.Contains(home, "/reports/r2") {
			t.Fatalf("home lists r1 %d, rx %d, r0 %d (and r2: %v): want doc's three, not r2", i1, ix, i0, strings.Contains(home, "/reports/r2"))
		}
		if !(i1 < ix && ix < i0) {
			t.Errorf("home order r1 %d, rx %d, r0 %d: want the unread critical r1 first, then newest", i1, ix, i0)
		}
		if strings.Count(home, "badge unread-badge") != 3 {
			t.Errorf("home: %d unread badges, want 3", strings.Count(home, "badge unread-badge"))
		}
		if strings.Contains(home, "<script>alert") || !strings.Contains(home, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Error("home: the name's markup is not shown as text")
		}

		code, page := f.page(t, doc, http.MethodGet, "/reports/r1", nil)
		if code != http.StatusOK {
			t.Fatalf("GET /reports/r1 as doc: %d", code)
		}
		for _, want := range []string{"DOE, JANE Q", "000123", "STMARYS", "female", "1980-01-02", "Cough, rule out mass", "stat",
			"SMITH, ROBERT J", "ACC3001", "NAKAMURA, KEIKO A", "Critical finding", `action="/reports/r1/acknowledge"`, "I have read this",
			`href="/reports/r0"`, "XR CHEST 2 VIEWS", "OTHERH", `src="/dicomweb/studies/` + physStudy + `/series/` + physSeries + `/thumbnail"`,
			`href="/studies/` + physStudy + `"`, "What changed from version 1 to 2", "<del>", "<ins>", "Pulmonary", `href="/reports/r1?version=1"`,
			"Study complete", "Final report", "preliminary within 30 minutes"} {
			if !strings.Contains(page, want) {
				t.Errorf("report page lacks %q", want)
			}
		}
		if m := formToken.FindStringSubmatch(page); m == nil {
			t.Error("report page: the acknowledgement form has no CSRF token")
		}
		code, v1 := f.page(t, doc, http.MethodGet, "/reports/r1?version=1", nil)
		if code != http.StatusOK || !strings.Contains(v1, "Nodule, follow-up advised.") || !strings.Contains(v1, "not the latest") {
			t.Errorf("version 1: %d, want the preliminary's text and a link to the latest", code)
		}
		// Acknowledged: who and when instead of the form.
		f.acks.mu.Lock()
		f.acks.by["r1"] = "doc"
		f.acks.mu.Unlock()
		if _, page := f.page(t, doc, http.MethodGet, "/reports/r1", nil); !strings.Contains(page, "Acknowledged by <strong>doc</strong> at 2026-11-27 16:00 UTC") || strings.Contains(page, "I have read this") {
			t.Error("acknowledged report: want who and when, and no form")
		}
		// Opened: no longer unread, and no longer first.
		_, home = f.page(t, doc, http.MethodGet, "/", nil)
		if n := strings.Count(home, "badge unread-badge"); n != 2 {
			t.Errorf("after opening r1: %d unread badges, want 2", n)
		}
		if strings.Index(home, `href="/reports/rx"`) > strings.Index(home, `href="/reports/r1"`) {
			t.Error("after opening r1: want the newest (rx) first")
		}

		// Markup in PID-5 and OBX-5 stays text; the HTML form is sanitised.
		for _, path := range []string{"/reports/rx", "/reports/rx?version=1"} {
			_, px := f.page(t, doc, http.MethodGet, path, nil)
			if strings.Contains(px, "<script") || activeMarkup.MatchString(px) {
				t.Errorf("%s renders markup that runs: %q", path, activeMarkup.FindString(px))
			}
			if !strings.Contains(px, "&lt;script&gt;alert(1)&lt;/script&gt;") {
				t.Errorf("%s: the patient's name is not shown as text", path)
			}
		}
		if _, v1 := f.page(t, doc, http.MethodGet, "/reports/rx?version=1", nil); !strings.Contains(v1, "&lt;script&gt;alert(3)&lt;/script&gt; &lt;img src=x onerror=alert(4)&gt;") {
			t.Error("rx version 1: OBX-5's markup is not shown as text")
		}

		// Search: POST, so its terms are in no URL; each kind finds doc's reports only.
		_, _, token := get(t, doc, f.srv.URL, "/")
		for _, s := range []struct{ by, q, want, not string }{
			{"name", "doe", "/reports/r1", "/reports/rx"},
			{"mrn", "000123", "/reports/r1", "/reports/rx"},
			{"accession", "ACC3001", "/reports/r1", "/reports/r0"},
			{"name", "roe", "", "/reports/r2"},
		} {
			code, res := f.page(t, doc, http.MethodPost, "/", url.Values{"csrf_token": {token}, "by": {s.by}, "q": {s.q}})
			if code != http.StatusOK || s.want != "" && !strings.Contains(res, s.want) || strings.Contains(res, s.not) {
				t.Errorf("search %s=%s: %d, want %q and not %q", s.by, s.q, code, s.want, s.not)
			}
		}
		if code, _ := f.page(t, doc, http.MethodPost, "/", url.Values{"by": {"name"}, "q": {"doe"}}); code != http.StatusForbidden {
			t.Errorf("search without the form's token: %d, want 403", code)
		}
		if code, res := f.page(t, doc, http.MethodGet, "/?status=preliminary", nil); code != http.StatusOK || strings.Contains(res, "/reports/r1") {
			t.Errorf("status filter preliminary: %d, want no final report", code)
		}
		if _, res := f.page(t, doc, http.MethodGet, "/?critical=1", nil); !strings.Contains(res, "/reports/r1") || strings.Contains(res, "/reports/rx") {
			t.Error("critical filter: want r1 only")
		}

		// Another physician's patient: 404 and an audit row "refused"; then break-glass.
		if code, _ := f.page(t, doc, http.MethodGet, "/reports/r2", nil); code != http.StatusNotFound {
			t.Errorf("doc at r2: %d, want 404", code)
		}
		other := f.signIn(t, "other")
		if code, _ := f.page(t, other, http.MethodGet, "/reports/r1", nil); code != http.StatusNotFound {
			t.Errorf("other at r1: %d, want 404", code)
		}
		if code, _ := f.page(t, other, http.MethodGet, "/reports/nope", nil); code != http.StatusNotFound {
			t.Errorf("other at an unknown report: %d, want 404", code)
		}
		var otherIdent = &access.Identity{User: "other", Role: access.RolePhysician}
		if _, err := f.patients.BreakGlass(context.Background(), otherIdent, "p1", "covering the ICU tonight"); err != nil {
			t.Fatal(err)
		}
		if code, page := f.page(t, other, http.MethodGet, "/reports/r1", nil); code != http.StatusOK || !strings.Contains(page, "covering the ICU tonight") {
			t.Errorf("other at r1 after breaking the glass: %d, want 200 and the reason shown", code)
		}
		// An analyst keeps the signed-in home page and has no report pages.
		ana := f.signIn(t, "ana")
		if code, page := f.page(t, ana, http.MethodGet, "/", nil); code != http.StatusOK || !strings.Contains(page, "Signed in") {
			t.Errorf("analyst's home: %d", code)
		}
		if code, _ := f.page(t, ana, http.MethodGet, "/reports/r1", nil); code != http.StatusForbidden {
			t.Errorf("analyst at r1: %d, want 403", code)
		}

		evs, err := st.AuditEvents(context.Background(), audit.Filter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var reads, refusedDoc, refusedOther, glass, anaRefused int
		for _, e := range evs {
			switch {
			case e.Agent == "doc" && e.Action == audit.ActionRead && e.Outcome == audit.OutcomeSuccess && e.Patient == "Patient/p1":
				reads++
			case e.Agent == "doc" && e.Outcome == audit.OutcomeMinor && e.Patient == "Patient/p2" && strings.HasPrefix(e.Detail, "refused"):
				refusedDoc++
			case e.Agent == "other" && e.Outcome == audit.OutcomeMinor && e.Patient == "Patient/p1":
				refusedOther++
			case e.Agent == "other" && e.Outcome == audit.OutcomeSuccess && e.Patient == "Patient/p1" && strings.Contains(e.Detail, "break-glass: covering the ICU tonight"):
				glass++
			case e.Agent == "ana" && e.Outcome == audit.OutcomeMinor && e.Detail == "forbidden":
				anaRefused++
			}
		}
		if reads < 3 || refusedDoc != 1 || refusedOther != 1 || glass != 1 || anaRefused != 1 {
			t.Errorf("audit: doc's reads of p1 %d (≥3), refusals doc %d other %d (1 each), break-glass reads %d (1), analyst refused %d (1)",
				reads, refusedDoc, refusedOther, glass, anaRefused)
		}
	})
}
