package httpapi_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/adapters/httpapi"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/fhir"
)

// memResources is an in-memory httpapi.FHIRResources, the unit boundary of these tests: it
// follows the contract of engine.ResourceReader (the real stores are run against this API in
// the end-to-end tests).
type memResources struct {
	mu       sync.Mutex
	versions map[string][]*engine.Resource // "Type/id" → versions, oldest first
	fail     error                         // when set, every call returns it
}

func newMemResources() *memResources {
	return &memResources{versions: map[string][]*engine.Resource{}}
}

// put adds a version of a resource built from fields: id, meta and resourceType are set here.
func (m *memResources) put(t testing.TB, typ, id string, lastUpdated time.Time, fields map[string]any) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	key := typ + "/" + id
	r := &engine.Resource{Type: typ, ID: id, VersionID: int64(len(m.versions[key]) + 1), LastUpdated: lastUpdated}
	doc := map[string]any{"resourceType": typ, "id": id, "meta": map[string]any{
		"versionId": fmt.Sprint(r.VersionID), "lastUpdated": lastUpdated.UTC().Format(time.RFC3339Nano)}}
	for k, v := range fields {
		doc[k] = v
	}
	var err error
	if r.JSON, err = json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	if err := fhirValidator(t).Validate(r.JSON); err != nil {
		t.Fatalf("fixture %s is not valid FHIR: %v", key, err)
	}
	if r.Index, err = fhir.Index(typ, r.JSON); err != nil {
		t.Fatal(err)
	}
	m.versions[key] = append(m.versions[key], r)
}

func (m *memResources) Resource(_ context.Context, typ, id string) (*engine.Resource, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	vs := m.versions[typ+"/"+id]
	if len(vs) == 0 {
		return nil, engine.ErrNotFound
	}
	return vs[len(vs)-1], nil
}

func (m *memResources) ResourceVersion(_ context.Context, typ, id string, version int64) (*engine.Resource, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	vs := m.versions[typ+"/"+id]
	if version < 1 || version > int64(len(vs)) {
		return nil, engine.ErrNotFound
	}
	return vs[version-1], nil
}

func (m *memResources) ResourceHistory(_ context.Context, typ, id string) ([]*engine.Resource, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	vs := slices.Clone(m.versions[typ+"/"+id])
	if len(vs) == 0 {
		return nil, engine.ErrNotFound
	}
	slices.Reverse(vs)
	return vs, nil
}

var _ httpapi.FHIRResources = (*memResources)(nil)

func (m *memResources) SearchResources(_ context.Context, q engine.ResourceQuery) ([]*engine.Resource, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	var out []*engine.Resource
	for _, vs := range m.versions {
		r := vs[len(vs)-1]
		if r.Type != q.Type {
			continue
		}
		ok := true
		for _, f := range q.Filters {
			ok = ok && slices.ContainsFunc(r.Index, func(e fhir.IndexEntry) bool { return e.Param == f.Param && matches(e, f) })
		}
		if ok {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b *engine.Resource) int {
		return cmp.Or(b.LastUpdated.Compare(a.LastUpdated), strings.Compare(a.ID, b.ID))
	})
	count := q.Count
	if count == 0 {
		count = 100
	}
	count = min(count, 1000)
	if q.Offset >= len(out) {
		return nil, nil
	}
	out = out[q.Offset:]
	return out[:min(count, len(out))], nil
}

// matches is the contract of engine.SearchFilter for one entry.
func matches(e fhir.IndexEntry, f engine.SearchFilter) bool {
	for _, v := range f.Values {
		if v.System != "" && v.System != e.System {
			continue
		}
		var ok bool
		switch f.Op {
		case engine.SearchEq:
			ok = e.Value == v.Value
		case engine.SearchPrefix:
			ok = strings.HasPrefix(e.Value, v.Value)
		case engine.SearchGe:
			ok = e.Value >= v.Value
		case engine.SearchGt:
			ok = e.Value > v.Value
		case engine.SearchLe:
			ok = e.Value <= v.Value
		case engine.SearchLt:
			ok = e.Value < v.Value
		default:
			panic("unknown op " + f.Op)
		}
		if ok {
			return true
		}
	}
	return false
}

// noMessages is an empty message log: these tests are about FHIR.
type noMessages struct{}

func (noMessages) Message(context.Context, int64) (*engine.InboundMessage, error) {
	return nil, engine.ErrNotFound
}
func (noMessages) Messages(context.Context, engine.MessageFilter) ([]*engine.InboundMessage, error) {
	return nil, nil
}
func (noMessages) Ping(context.Context) error { return nil }

var (
	fhirValidatorOnce sync.Once
	fhirValidatorV    *fhir.Validator
	fhirValidatorErr  error
)

func fhirValidator(t testing.TB) *fhir.Validator {
	fhirValidatorOnce.Do(func() { fhirValidatorV, fhirValidatorErr = fhir.NewValidator() })
	if fhirValidatorErr != nil {
		t.Fatal(fhirValidatorErr)
	}
	return fhirValidatorV
}

// lockedBuffer collects the server's log lines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fhirT0 is when the first ServiceRequest was last updated; sr-i follows i minutes later.
var fhirT0 = time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)

const numServiceRequests = 45

type fhirFixture struct {
	store *memResources
	srv   *httptest.Server
	log   *lockedBuffer
}

// newFHIRFixture serves the FHIR API over a store holding synthetic resources (no real patient
// data): three patients (p1 in two versions), a practitioner, two encounters, an organization
// and numServiceRequests ServiceRequests whose fields follow their number (see srFields).
func newFHIRFixture(t testing.TB) *fhirFixture {
	t.Helper()
	st := newMemResources()
	at := func(min int) time.Time { return time.Date(2026, 11, 27, 9, min, 0, 0, time.UTC) }
	mrn := func(system, value string) map[string]any { return map[string]any{"system": system, "value": value} }

	st.put(t, "Patient", "p1", at(0).Add(-time.Hour), map[string]any{
		"identifier": []any{mrn("urn:oid:1.2.3", "MRN1")}, "name": []any{map[string]any{"family": "Muller", "given": []string{"Jorg"}}},
		"gender": "unknown", "birthDate": "1980-01-02"})
	st.put(t, "Patient", "p1", at(0), map[string]any{
		"identifier": []any{mrn("urn:oid:1.2.3", "MRN1")}, "name": []any{map[string]any{"family": "Müller", "given": []string{"Jörg"}}},
		"gender": "male", "birthDate": "1980-01-02", "active": true})
	st.put(t, "Patient", "p2", at(1), map[string]any{
		"identifier": []any{mrn("urn:oid:1.2.3", "MRN2"), mrn("urn:oid:9.9", "X2")},
		"name":       []any{map[string]any{"family": "Smith", "given": []string{"Anna", "Marie"}}},
		"gender":     "female", "birthDate": "1980-06-15"})
	st.put(t, "Patient", "p3", at(2), map[string]any{
		"identifier": []any{mrn("urn:oid:9.9", "MRN1")}, "name": []any{map[string]any{"family": "Smithers", "given": []string{"Bob"}}},
		"gender": "male", "birthDate": "1975-12-31", "link": []any{map[string]any{"other": map[string]any{"reference": "Patient/p1"}, "type": "seealso"}}})
	st.put(t, "Practitioner", "pr1", at(3), map[string]any{
		"identifier": []any{mrn("http://hl7.org/fhir/sid/us-npi", "1234567893")},
		"name":       []any{map[string]any{"family": "Referring", "given": []string{"Rita"}}}})
	st.put(t, "Encounter", "e1", at(4), map[string]any{
		"identifier": []any{mrn("urn:oid:1.2.3.5", "V1")}, "status": "in-progress",
		"class":   map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
		"subject": map[string]any{"reference": "Patient/p2"}, "period": map[string]any{"start": "2026-11-27T07:30:00Z"}})
	st.put(t, "Encounter", "e2", at(5), map[string]any{
		"status":  "finished",
		"class":   map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
		"subject": map[string]any{"reference": "Patient/p1"}, "period": map[string]any{"start": "2026-10-01T07:30:00Z", "end": "2026-10-05T12:00:00Z"}})
	st.put(t, "Organization", "org1", at(6), map[string]any{
		"identifier": []any{mrn("urn:ferry:facility", "STMARYS")}, "name": "St Mary's Hospital"})
	for i := range numServiceRequests {
		st.put(t, "ServiceRequest", srID(i), fhirT0.Add(time.Duration(i)*time.Minute), srFields(i))
	}

	logs := &lockedBuffer{}
	api, err := httpapi.New(httpapi.Options{
		Messages: noMessages{}, Resources: st, AdminToken: token,
		Logger: slog.New(slog.NewJSONHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &fhirFixture{store: st, srv: httptest.NewServer(api), log: logs}
	t.Cleanup(f.srv.Close)
	return f
}

func srID(i int) string { return fmt.Sprintf("sr-%02d", i) }

// srFields makes ServiceRequest i: subject Patient/p1 (i%3==0), Patient/p2 (1) or Group/g1 (2);
// status active (even) or completed (odd); LOINC 36643-5 below 10, 24627-2 from 10; authored
// on day 1+i%28 of November 2026; requester Practitioner/pr1 when i%5==0; encounter e1, priority
// stat and an occurrence for i==7.
func srFields(i int) map[string]any {
	subject := []string{"Patient/p1", "Patient/p2", "Group/g1"}[i%3]
	status := map[bool]string{true: "active", false: "completed"}[i%2 == 0]
	code := "24627-2"
	if i < 10 {
		code = "36643-5"
	}
	f := map[string]any{
		"identifier": []any{map[string]any{"system": "urn:oid:1.2.3.4", "value": fmt.Sprintf("ORD%d", i)}},
		"status":     status, "intent": "order",
		"code":       map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": code}}},
		"subject":    map[string]any{"reference": subject},
		"authoredOn": fmt.Sprintf("2026-11-%02dT10:00:00Z", 1+i%28),
	}
	if i%5 == 0 {
		f["requester"] = map[string]any{"reference": "Practitioner/pr1"}
	}
	if i == 7 {
		f["encounter"] = map[string]any{"reference": "Encounter/e1"}
		f["priority"] = "stat"
		f["occurrenceDateTime"] = "2026-12-01T09:00:00+01:00"
	}
	return f
}

// srsWhere lists the ids of the ServiceRequests for which keep holds, newest first.
func srsWhere(keep func(i int) bool) []string {
	var out []string
	for i := numServiceRequests - 1; i >= 0; i-- {
		if keep(i) {
			out = append(out, srID(i))
		}
	}
	return out
}

type fhirResponse struct {
	code   int
	header http.Header
	body   []byte
}

// do sends a request with the admin token (unless auth says otherwise) and checks what every
// FHIR answer must be: FHIR JSON that passes the Validator.
func (f *fhirFixture) do(t *testing.T, method, path string, header map[string]string, body io.Reader) fhirResponse {
	t.Helper()
	u := path
	if !strings.HasPrefix(u, "http") {
		u = f.srv.URL + path
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/fhir+json; charset=utf-8" {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	if err := fhirValidator(t).Validate(b); err != nil {
		t.Errorf("%s %s: the answer is not valid FHIR: %v\n%s", method, path, err, b)
	}
	return fhirResponse{resp.StatusCode, resp.Header, b}
}

func (f *fhirFixture) get(t *testing.T, path string) fhirResponse {
	t.Helper()
	return f.do(t, http.MethodGet, path, nil, nil)
}

type outcome struct {
	ResourceType string
	Issue        []struct {
		Severity, Code, Diagnostics string
		Expression                  []string
	}
}

// wantOutcome checks that r is an OperationOutcome error with status and issue code.
func wantOutcome(t *testing.T, r fhirResponse, status int, code string) outcome {
	t.Helper()
	var oo outcome
	if err := json.Unmarshal(r.body, &oo); err != nil {
		t.Fatal(err)
	}
	if r.code != status || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 || oo.Issue[0].Code != code || oo.Issue[0].Severity != "error" {
		t.Errorf("got %d %s, want %d OperationOutcome with code %s", r.code, r.body, status, code)
	}
	return oo
}

type bundle struct {
	ResourceType string
	Type         string
	Total        *int
	Link         []struct{ Relation, URL string }
	Entry        []struct {
		FullURL  string
		Resource struct {
			ResourceType string
			ID           string
			Meta         struct{ VersionID string }
		}
		Search   *struct{ Mode string }
		Request  *struct{ Method, URL string }
		Response *struct{ Status, Etag string }
	}
}

func decodeBundle(t *testing.T, r fhirResponse) bundle {
	t.Helper()
	if r.code != http.StatusOK {
		t.Fatalf("status %d: %s", r.code, r.body)
	}
	var b bundle
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b bundle) ids() []string {
	out := []string{}
	for _, e := range b.Entry {
		out = append(out, e.Resource.ID)
	}
	return out
}

func (b bundle) link(rel string) string {
	for _, l := range b.Link {
		if l.Relation == rel {
			return l.URL
		}
	}
	return ""
}

func TestFHIRMetadata(t *testing.T) {
	t.Parallel()
	f := newFHIRFixture(t)
	// Issue 12: every route but health, readiness and login needs an identity, metadata too.
	if r := f.do(t, http.MethodGet, "/fhir/r4/metadata", map[string]string{"Authorization": ""}, nil); r.code != http.StatusUnauthorized {
		t.Errorf("metadata without a token: %d, want 401", r.code)
	}
	r := f.do(t, http.MethodGet, "/fhir/r4/metadata", nil, nil)
	var cs struct {
		ResourceType, FHIRVersion string
		Implementation            struct{ URL string }
		Rest                      []struct{ Resource []struct{ Type string } }
	}
	if err := json.Unmarshal(r.body, &cs); err != nil || r.code != http.StatusOK {
		t.Fatalf("%d %s %v", r.code, r.body, err)
	}
	if cs.ResourceType != "CapabilityStatement" || cs.FHIRVersion != "4.0.1" || cs.Implementation.URL != f.srv.URL+"/fhir/r4" {
		t.Errorf("statement %s", r.body)
	}
	var types []string
	for _, res := range cs.Rest[0].Resource {
		types = append(types, res.Type)
	}
	if want := []string{"DiagnosticReport", "Encounter", "Endpoint", "ImagingStudy", "Organization", "Patient", "Practitioner", "ServiceRequest"}; !slices.Equal(types, want) {
		t.Errorf("types %v, want %v", types, want)
	}
}

func TestFHIRAuth(t *testing.T) {
	t.Parallel()
	f := newFHIRFixture(t)
	for _, path := range []string{"/fhir/r4/Patient/p1", "/fhir/r4/Patient?name=smith", "/fhir/r4/Patient/p1/_history", "/fhir/r4/Patient/p1/_history/1", "/fhir/r4/Nope/x"} {
		for name, auth := range map[string]string{"no token": "", "wrong token": "Bearer nope", "basic": "Basic " + token} {
			r := f.do(t, http.MethodGet, path, map[string]string{"Authorization": auth}, nil)
			wantOutcome(t, r, http.StatusUnauthorized, "login")
			if r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s: no WWW-Authenticate", name, path)
			}
		}
	}
	r := f.do(t, http.MethodPost, "/fhir/r4/Patient/_search", map[string]string{"Authorization": "", "Content-Type": "application/x-www-form-urlencoded"}, strings.NewReader("name=smith"))
	wantOutcome(t, r, http.StatusUnauthorized, "login")
	if strings.Contains(f.log.String(), "audit") {
		t.Errorf("unauthenticated requests were audited as reads:\n%s", f.log)
	}
}

func TestFHIRRead(t *testing.T) {
	t.Parallel()
	f := newFHIRFixture(t)
	r := f.get(t, "/fhir/r4/Patient/p1")
	if r.code != http.StatusOK {
		t.Fatalf("%d %s", r.code, r.body)
	}
	stored, _ := f.store.Resource(context.Background(), "Patient", "p1")
	if !bytes.Equal(r.body, stored.JSON) {
		t.Errorf("body is not the stored resource:\n%s\n%s", r.body, stored.JSON)
	}
	if got := r.header.Get("ETag"); got != `W/"2"` {
		t.Errorf("ETag %q", got)
	}
	if got := r.header.Get("Last-Modified"); got != "Fri, 27 Nov 2026 09:00:00 GMT" {
		t.Errorf("Last-Modified %q", got)
	}

	cases := []struct {
		path   string
		status int
		code   string
	}{
		{"/fhir/r4/Patient/nobody", http.StatusNotFound, "not-found"},
		{"/fhir/r4/Patient/bad%20id", http.StatusBadRequest, "invalid"},
		{"/fhir/r4/Observation/o1", http.StatusNotFound, "not-supported"},
		{"/fhir/r4/patient/p1", http.StatusNotFound, "not-supported"},
		{"/fhir/r4/Patient/p1/_history/3", http.StatusNotFound, "not-found"},
		{"/fhir/r4/Patient/p1/_history/x", http.StatusBadRequest, "invalid"},
		{"/fhir/r4/Patient/p1/_history/0", http.StatusBadRequest, "invalid"},
		{"/fhir/r4/Patient/nobody/_history", http.StatusNotFound, "not-found"},
		{"/fhir/r4/Patient/p1/_history/1/more", http.StatusNotFound, "not-found"},
		{"/fhir/r4", http.StatusNotFound, "not-found"},
	}
	for _, tc := range cases {
		wantOutcome(t, f.get(t, tc.path), tc.status, tc.code)
	}
}

func TestFHIRVreadAndHistory(t *testing.T) {
	t.Parallel()
	f := newFHIRFixture(t)
	for v, family := range map[int]string{1: "Muller", 2: "Müller"} {
		r := f.get(t, fmt.Sprintf("/fhir/r4/Patient/p1/_history/%d", v))
		var p struct {
			Meta struct{ VersionID string }
			Name []struct{ Family string }
		}
		if err := json.Unmarshal(r.body, &p); err != nil || r.code != http.StatusOK {
			t.Fatalf("%d %s", r.code, r.body)
		}
		if p.Meta.VersionID != fmt.Sprint(v) || p.Name[0].Family != family || r.header.Get("ETag") != fmt.Sprintf(`W/"%d"`, v) {
			t.Errorf("version %d: %s, ETag %s", v, r.body, r.header.Get("ETag"))
		}
	}

	b := decodeBundle(t, f.get(t, "/fhir/r4/Patient/p1/_history"))
	if b.Type != "history" || b.Total == nil || *b.Total != 2 || len(b.Entry) != 2 {
		t.Fatalf("history %+v", b)
	}
	for i, want := range []struct{ version, method, url, status string }{
		{"2", "PUT", "Patient/p1", "200 OK"},
		{"1", "POST", "Patient", "201 Created"},
	} {
		e := b.Entry[i]
		if e.Resource.Meta.VersionID != want.version || e.Request == nil || e.Request.Method != want.method || e.Request.URL != want.url ||
			e.Response == nil || e.Response.Status != want.status || e.Response.Etag != `W/"`+want.version+`"` || e.Search != nil ||
			e.FullURL != f.srv.URL+"/fhir/r4/Patient/p1" {
			t.Errorf("entry %d: %+v", i, e)
		}
	}
}

func TestFHIRSearch(t *testing.T) {
	t.Parallel()
	f := newFHIRFixture(t)
	all := func(int) bool { return true }
	cases := []struct {
		query string
		want  []string
	}{
		// Patient (p3 is the newest, then p2, then p1)
		{"Patient?identifier=urn:oid:1.2.3|MRN1", []string{"p1"}},
		{"Patient?identifier=MRN1", []string{"p3", "p1"}},
		{"Patient?identifier=|MRN1", []string{"p3", "p1"}},
		{"Patient?identifier=urn:oid:1.2.3|MRN1,urn:oid:1.2.3|MRN2", []string{"p2", "p1"}},
		{"Patient?identifier=urn:oid:9.9|MRN2", []string{}},
		{"Patient?name=smith", []string{"p3", "p2"}},
		{"Patient?name=MULLER", []string{"p1"}},
		{"Patient?name=j%C3%B6rg", []string{"p1"}},
		{"Patient?name=bob,anna", []string{"p3", "p2"}},
		{"Patient?name=nobody", []string{}},
		{"Patient?family=smith&given=bob", []string{"p3"}},
		{"Patient?family=smithers", []string{"p3"}},
		{"Patient?given=marie", []string{"p2"}},
		{"Patient?birthdate=1980", []string{"p2", "p1"}},
		{"Patient?birthdate=1980-01-02", []string{"p1"}},
		{"Patient?birthdate=eq1980-06", []string{"p2"}},
		{"Patient?birthdate=ge1980-06", []string{"p2"}},
		{"Patient?birthdate=lt1980", []string{"p3"}},
		{"Patient?birthdate=le1980-01-02", []string{"p3", "p1"}},
		{"Patient?birthdate=gt1980-01-02", []string{"p2"}},
		{"Patient?birthdate=ge1976&birthdate=le1980-01-31", []string{"p1"}},
		{"Patient?gender=male", []string{"p3", "p1"}},
		{"Patient?gender=http://hl7.org/fhir/administrative-gender|female", []string{"p2"}},
		{"Patient?active=true", []string{"p1"}},
		{"Patient?link=Patient/p1", []string{"p3"}},
		{"Patient?link=p1", []string{"p3"}},
		{"Patient?_id=p2", []string{"p2"}},
		{"Patient?_id=p1,p3", []string{"p3", "p1"}},
		{"Patient?_lastUpdated=ge2026-11-27T09:01:00Z", []string{"p3", "p2"}},
		{"Patient?_lastUpdated=le2026-11-27T10:01:00%2B01:00", []string{"p2", "p1"}},
		{"Patient?gender=male&name=", []string{"p3", "p1"}}, // an empty value is ignored
		{"Patient", []string{"p3", "p2", "p1"}},
		// ServiceRequest
		{"ServiceRequest?identifier=urn:oid:1.2.3.4|ORD7", []string{"sr-07"}},
		{"ServiceRequest?patient=p1", srsWhere(func(i int) bool { return i%3 == 0 })},
		{"ServiceRequest?patient=Patient/p2", srsWhere(func(i int) bool { return i%3 == 1 })},
		{"ServiceRequest?subject=Group/g1", srsWhere(func(i int) bool { return i%3 == 2 })},
		{"ServiceRequest?subject=p1", srsWhere(func(i int) bool { return i%3 == 0 })},
		{"ServiceRequest?subject:Patient=p2", srsWhere(func(i int) bool { return i%3 == 1 })},
		{"ServiceRequest?subject=" + url.QueryEscape("http://elsewhere.example/fhir/Patient/p2"), srsWhere(func(i int) bool { return i%3 == 1 })},
		{"ServiceRequest?status=active", srsWhere(func(i int) bool { return i%2 == 0 })},
		{"ServiceRequest?status=active,completed", srsWhere(all)},
		{"ServiceRequest?status=http://hl7.org/fhir/request-status|completed", srsWhere(func(i int) bool { return i%2 == 1 })},
		{"ServiceRequest?status=active&patient=p1", srsWhere(func(i int) bool { return i%2 == 0 && i%3 == 0 })},
		{"ServiceRequest?intent=order", srsWhere(all)},
		{"ServiceRequest?priority=stat", []string{"sr-07"}},
		{"ServiceRequest?code=http://loinc.org|36643-5", srsWhere(func(i int) bool { return i < 10 })},
		{"ServiceRequest?code=24627-2", srsWhere(func(i int) bool { return i >= 10 })},
		{"ServiceRequest?authored=2026-11-05", srsWhere(func(i int) bool { return i%28 == 4 })},
		{"ServiceRequest?authored=ge2026-11-27", srsWhere(func(i int) bool { return i%28 >= 26 })},
		{"ServiceRequest?authored=lt2026-11-02T10:00:00Z", srsWhere(func(i int) bool { return i%28 == 0 })},
		{"ServiceRequest?occurrence=2026-12-01", []string{"sr-07"}},
		{"ServiceRequest?occurrence=gt2026-11", []string{"sr-07"}},
		{"ServiceRequest?requester=Practitioner/pr1", srsWhere(func(i int) bool { return i%5 == 0 })},
		{"ServiceRequest?requester=pr1", srsWhere(func(i int) bool { return i%5 == 0 })},
		{"ServiceRequest?encounter=e1", []string{"sr-07"}},
		{"ServiceRequest?encounter=Encounter/e1", []string{"sr-07"}},
		{"ServiceRequest?_lastUpdated=ge2026-11-27T08:40:00Z", srsWhere(func(i int) bool { return i >= 40 })},
		{"ServiceRequest?_lastUpdated=gt2026-11-27T08:40Z", srsWhere(func(i int) bool { return i > 40 })},
		{"ServiceRequest?_lastUpdated=lt2026-11-27T08:02Z", srsWhere(func(i int) bool { return i < 2 })},
		{"ServiceRequest?_lastUpdated=le2026-11-27", srsWhere(all)},
		{"ServiceRequest?_lastUpdated=le2026-11-26", []string{}},
		{"ServiceRequest?_lastUpdated=2026-11-27T08:05", []string{"sr-05"}},
		// Practitioner, Encounter, Organization
		{"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|1234567893", []string{"pr1"}},
		{"Practitioner?name=rit", []string{"pr1"}},
		{"Practitioner?family=referring&given=rita", []string{"pr1"}},
		{"Encounter?identifier=V1", []string{"e1"}},
		{"Encounter?patient=p2", []string{"e1"}},
		{"Encounter?subject=Patient/p1", []string{"e2"}},
		{"Encounter?status=finished", []string{"e2"}},
		{"Encounter?class=AMB", []string{"e1"}},
		{"Encounter?date=2026-11-27", []string{"e1"}},
		{"Encounter?date=ge2026-10-03&date=le2026-10-04", []string{"e2"}},
		{"Organization?name=st%20mary", []string{"org1"}},
		{"Organization?identifier=urn:ferry:facility|STMARYS", []string{"org1"}},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			t.Parallel()
			sep := "?"
			if strings.Contains(tc.query, "?") {
				sep = "&"
			}
			b := decodeBundle(t, f.get(t, "/fhir/r4/"+tc.query+sep+"_count=100"))
			if got := b.ids(); !slices.Equal(got, tc.want) {
				t.Errorf("ids %v, want %v", got, tc.want)
			}
			if b.Type != "searchset" || b.Total == nil || *b.Total != len(tc.want) {
				t.Errorf("type %q total %v, want searchset with total %d", b.Type, b.Total, len(tc.want))
			}
			for _, e := range b.Entry {
				if e.Search == nil || e.Search.Mode != "match" || e.FullURL != f.srv.URL+"/fhir/r4/"+e.Resource.ResourceType+"/"+e.Resource.ID {
					t.Errorf("entry %+v", e)
				}
			}
			// POST _search with the same parameters in a form body finds the same.
			typ, query, _ := strings.Cut(tc.query, "?")
			r := f.do(t, http.MethodPost, "/fhir/r4/"+typ+"/_search?_count=100",
				map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, strings.NewReader(query))
			if got := decodeBundle(t, r).ids(); !slices.Equal(got, tc.want) {
				t.Errorf("POST _search: ids %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFHIRPaging(t *testing.T) {
	t.Parallel()
	f := newFHIRFixture(t)
	next := "/fhir/r4/ServiceRequest?_count=20&intent=order"
	var got []string
	var pages []bundle
	for next != "" && len(pages) < 10 {
		b := decodeBundle(t, f.get(t, next))
		pages = append(pages, b)
		got = append(got, b.ids()...)
		next = b.link("next")
		if b.link("self") == "" {
			t.Errorf("page %d has no self link", len(pages))
		}
	}
	if len(pages) != 3 {
		t.Fatalf("%d pages, want 3", len(pages))
	}
	if want := srsWhere(func(int) bool { return true }); !slices.Equal(got, want) {
		t.Errorf("pages hold %v, want %v", got, want)
	}
	// Page sizes 20, 20, 5; the total is known on the last page only; previous from page 2.
	for i, want := range []struct {
		n        int
		total    bool
		previous bool
	}{{20, false, false}, {20, false, true}, {5, true, true}} {
		p := pages[i]
		if len(p.Entry) != want.n || (p.Total != nil) != want.total || (p.link("previous") != "") != want.previous {
			t.Errorf("page %d: %d entries, total %v, previous %q", i+1, len(p.Entry), p.Total, p.link("previous"))
		}
	}
	if *pages[2].Total != numServiceRequests {
		t.Errorf("total %d", *pages[2].Total)
	}
	// The links keep the search, and previous leads back to the page before.
	if self := pages[1].link("self"); !strings.Contains(self, "intent=order") || !strings.Contains(self, "_offset=20") {
		t.Errorf("self link %q", self)
	}
	back := decodeBundle(t, f.get(t, pages[2].link("previous")))
	if !slices.Equal(back.ids(), pages[1].ids()) {
		t.Errorf("previous of page 3 holds %v, want page 2's %v", back.ids(), pages[1].ids())
	}
	// The default page is 20; a page past the end is empty, with no total claimed.
	if b := decodeBundle(t, f.get(t, "/fhir/r4/ServiceRequest")); len(b.Entry) != 20 || b.link("next") == "" {
		t.Errorf("default page: %d entries, next %q", len(b.Entry), b.link("next"))
	}
	if b := decodeBundle(t, f.get(t, "/fhir/r4/ServiceRequest?_offset=100")); len(b.Entry) != 0 || b.Total != nil || b.link("next") != "" {
		t.Errorf("past the end: %+v", b)
	}
	if b := decodeBundle(t, f.get(t, "/fhir/r4/ServiceRequest?_count=5000")); len(b.Entry) != numServiceRequests {
		t.Errorf("_count above the cap: %d entries", len(b.Entry))
	}
}

func TestFHIRSearchErrors(t *testing.T) {
	t.Parallel()
	f := newFHIRFixture(t)
	cases := []struct {
		query, code string
	}{
		{"Patient?nickname=bob", "not-supported"},
		{"Patient?_sort=family", "not-supported"},
		{"Patient?subject=p1", "not-supported"},
		{"Patient?name:exact=Smith", "invalid"},
		{"Patient?name:contains=mit", "invalid"},
		{"Patient?birthdate=02/01/1980", "invalid"},
		{"Patient?birthdate=ne1980", "invalid"},
		{"Patient?birthdate=ge1980,lt1970", "invalid"},
		{"Patient?identifier=urn:oid:1.2.3|", "invalid"},
		{"Patient?identifier=a|b|c", "invalid"},
		{"ServiceRequest?patient=Group/g1", "invalid"},
		{"ServiceRequest?subject:Practitioner=pr1", "invalid"},
		{"ServiceRequest?patient=not%20an%20id", "invalid"},
		{"Patient?_count=0", "invalid"},
		{"Patient?_count=x", "invalid"},
		{"Patient?_offset=-1", "invalid"},
	}
	for _, tc := range cases {
		oo := wantOutcome(t, f.get(t, "/fhir/r4/"+tc.query), http.StatusBadRequest, tc.code)
		if len(oo.Issue) > 0 && len(oo.Issue[0].Expression) == 0 {
			t.Errorf("%s: no expression naming the parameter", tc.query)
		}
	}
	// Prefer: handling=lenient ignores unknown parameters (and leaves them out of the links).
	r := f.do(t, http.MethodGet, "/fhir/r4/Patient?nickname=bob&gender=female", map[string]string{"Prefer": "handling=lenient"}, nil)
	b := decodeBundle(t, r)
	if !slices.Equal(b.ids(), []string{"p2"}) || strings.Contains(b.link("self"), "nickname") {
		t.Errorf("lenient: %v, self %q", b.ids(), b.link("self"))
	}
}

func TestFHIRMethodsAndFormats(t *testing.T) {
	t.Parallel()
	f := newFHIRFixture(t)
	for _, c := range []struct{ method, path string }{
		{http.MethodPost, "/fhir/r4/Patient"},
		{http.MethodPut, "/fhir/r4/Patient/p1"},
		{http.MethodDelete, "/fhir/r4/Patient/p1"},
		{http.MethodPatch, "/fhir/r4/Patient/p1"},
		{http.MethodPost, "/fhir/r4/metadata"},
		{http.MethodDelete, "/fhir/r4/Patient/p1/_history/1"},
	} {
		r := f.do(t, c.method, c.path, nil, strings.NewReader(`{"resourceType":"Patient"}`))
		wantOutcome(t, r, http.StatusMethodNotAllowed, "not-supported")
		if r.header.Get("Allow") != "GET" {
			t.Errorf("%s %s: Allow %q", c.method, c.path, r.header.Get("Allow"))
		}
	}
	for _, c := range []struct {
		path, accept string
		status       int
	}{
		{"/fhir/r4/Patient/p1?_format=json", "", http.StatusOK},
		{"/fhir/r4/Patient/p1?_format=application/fhir%2Bjson", "", http.StatusOK},
		{"/fhir/r4/Patient/p1", "application/json", http.StatusOK},
		{"/fhir/r4/Patient/p1", "application/fhir+json;q=0.9, text/html", http.StatusOK},
		{"/fhir/r4/Patient/p1", "*/*", http.StatusOK},
		{"/fhir/r4/Patient/p1?_format=xml", "", http.StatusNotAcceptable},
		{"/fhir/r4/Patient/p1?_format=application/fhir%2Bxml", "", http.StatusNotAcceptable},
		{"/fhir/r4/Patient/p1", "application/fhir+xml", http.StatusNotAcceptable},
		{"/fhir/r4/metadata", "application/xml", http.StatusNotAcceptable},
		{"/fhir/r4/Patient?_format=xml", "", http.StatusNotAcceptable},
	} {
		r := f.do(t, http.MethodGet, c.path, map[string]string{"Accept": c.accept}, nil)
		if r.code != c.status {
			t.Errorf("%s Accept %q: %d %s, want %d", c.path, c.accept, r.code, r.body, c.status)
		}
		if c.status == http.StatusNotAcceptable {
			wantOutcome(t, r, c.status, "not-supported")
		}
	}
}

func TestFHIRInternalError(t *testing.T) {
	t.Parallel()
	f := newFHIRFixture(t)
	f.store.mu.Lock()
	f.store.fail = errors.New("disk on fire: SMITH")
	f.store.mu.Unlock()
	for _, path := range []string{"/fhir/r4/Patient/p1", "/fhir/r4/Patient?name=smith", "/fhir/r4/Patient/p1/_history", "/fhir/r4/Patient/p1/_history/1"} {
		oo := wantOutcome(t, f.get(t, path), http.StatusInternalServerError, "exception")
		if len(oo.Issue) > 0 && strings.Contains(oo.Issue[0].Diagnostics, "fire") {
			t.Errorf("%s: internal detail answered: %s", path, oo.Issue[0].Diagnostics)
		}
	}
	if !strings.Contains(f.log.String(), "disk on fire") {
		t.Errorf("the internal error was not logged:\n%s", f.log)
	}
}

// TestFHIRAudit: each read and search is logged with who and what (type, ids), never with the
// search values or the content.
func TestFHIRAudit(t *testing.T) {
	t.Parallel()
	f := newFHIRFixture(t)
	f.get(t, "/fhir/r4/Patient/p2")
	f.get(t, "/fhir/r4/Patient/p1/_history/1")
	f.get(t, "/fhir/r4/Patient/p1/_history")
	f.get(t, "/fhir/r4/Patient?name=smith&birthdate=1980")
	f.get(t, "/fhir/r4/ServiceRequest?identifier=urn:oid:1.2.3.4|ORD7")

	type line struct {
		Msg    string
		Type   string
		IDs    []string `json:"ids"`
		Params []string
		Remote string
		Time   time.Time
	}
	var got []line
	for l := range strings.Lines(f.log.String()) {
		var a line
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(a.Msg, "audit: ") {
			got = append(got, a)
		}
	}
	want := []line{
		{Msg: "audit: FHIR read", Type: "Patient", IDs: []string{"p2"}},
		{Msg: "audit: FHIR vread", Type: "Patient", IDs: []string{"p1"}},
		{Msg: "audit: FHIR history", Type: "Patient", IDs: []string{"p1"}},
		{Msg: "audit: FHIR search", Type: "Patient", IDs: []string{"p2"}, Params: []string{"birthdate", "name"}},
		{Msg: "audit: FHIR search", Type: "ServiceRequest", IDs: []string{"sr-07"}, Params: []string{"identifier"}},
	}
	if len(got) != len(want) {
		t.Fatalf("audit lines %+v, want %d", got, len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Msg != w.Msg || g.Type != w.Type || !slices.Equal(g.IDs, w.IDs) || !slices.Equal(g.Params, w.Params) || g.Remote == "" || g.Time.IsZero() {
			t.Errorf("audit line %d: %+v, want %+v", i, g, w)
		}
	}
	for _, phi := range []string{"smith", "Smith", "1980", "ORD7", "Müller"} {
		if strings.Contains(f.log.String(), phi) {
			t.Errorf("the log holds %q:\n%s", phi, f.log)
		}
	}
}

// FuzzFHIRSearch: no query string makes a search fail inside Ferry. Every answer is 200 with a
// searchset or 400/406 with an OperationOutcome, valid FHIR either way.
func FuzzFHIRSearch(f *testing.F) {
	fx := newFHIRFixture(f)
	for _, q := range []string{"name=smith", "birthdate=ge1980-01&birthdate=lt1990", "identifier=a|b", "subject:Patient=p1",
		"_lastUpdated=gt2026-11-27T08:00:00.123%2B01:00", "status=active,completed&_count=2&_offset=1", "name=%5C,x", "code=%7C", "_count=99999999999"} {
		f.Add("Patient", q)
		f.Add("ServiceRequest", q)
	}
	f.Fuzz(func(t *testing.T, typ, query string) {
		params, err := url.ParseQuery(query)
		if !validFuzzType(typ) || err != nil {
			return
		}
		// Re-encoded: what reaches Ferry is any parameter names and values, in a request line
		// Go's HTTP server accepts.
		u := &url.URL{Scheme: "http", Host: fx.srv.Listener.Addr().String(), Path: "/fhir/r4/" + typ, RawQuery: params.Encode()}
		resp, err := fx.srv.Client().Do(&http.Request{Method: http.MethodGet, URL: u, Header: http.Header{"Authorization": {"Bearer " + token}}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		defer fx.log.Reset() // a long fuzzing run must not pile up audit lines
		body, _ := io.ReadAll(resp.Body)
		switch resp.StatusCode {
		case http.StatusOK, http.StatusBadRequest, http.StatusNotAcceptable, http.StatusNotFound:
		default:
			t.Fatalf("%s?%s: %d %s", typ, query, resp.StatusCode, body)
		}
		if err := fhirValidator(t).Validate(body); err != nil {
			t.Fatalf("%s?%s: invalid answer %v\n%s", typ, query, err, body)
		}
	})
}

func validFuzzType(typ string) bool {
	return slices.Contains([]string{"Patient", "ServiceRequest", "Practitioner", "Encounter", "Organization"}, typ)
}
