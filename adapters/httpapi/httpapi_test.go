package httpapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferryhealth/ferry/adapters/httpapi"
	"github.com/ferryhealth/ferry/adapters/httpapi/accesstest"
	"github.com/ferryhealth/ferry/adapters/sqlite"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/hl7"
)

const token = "test-admin-token"

// t0 is when the first seeded message was received; the others follow a minute apart.
var t0 = time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)

// seed is the message log the tests read, in commit order (IDs ascending). Messages are
// synthetic: no real patient data.
type seed struct {
	name string
	msg  engine.InboundMessage
}

func seeds() []seed {
	msg := func(app, fac, typ, id, ver string, st engine.Status, ackCode string, raw string) engine.InboundMessage {
		return engine.InboundMessage{
			Channel: "mllp", PeerAddr: "127.0.0.1:40000", Raw: []byte(raw),
			SendingApplication: app, SendingFacility: fac, MessageType: typ, ControlID: id, Version: ver,
			Status: st, ACKCode: ackCode,
			ACK: []byte("MSH|^~\\&|FERRY|FERRY|" + app + "|" + fac + "|20261127080000||ACK|A" + id + "|P|" + ver + "\rMSA|" + ackCode + "|" + id + "\r"),
		}
	}
	orm := func(fac, id string) string {
		return "MSH|^~\\&|RIS|" + fac + "|FERRY|FERRY|20261127080000||ORM^O01|" + id + "|P|2.3\r" +
			"PID|1||MRN1^^^" + fac + "^MR||TEST^PATIENT||19800101|F\rORC|NW|PO" + id + "\rOBR|1|PO" + id + "||71046^XR CHEST 2V^CPT\r"
	}
	rejected := msg("", "", "", "", "", engine.StatusRejected, "AR", "\x00\xff\xfegarbage\x1b")
	rejected.Error = "empty message: no MSH segment"
	errored := msg("LIS", "STJUDE", "ORU^R01", "C6", "2.5.1", engine.StatusError, "AE",
		"MSH|^~\\&|LIS|STJUDE|FERRY|FERRY|20261127080500||ORU^R01^ORU_R01|C6|P|2.5.1\rPID|1||MRN6^^^STJUDE^MR\r")
	errored.Error = "could not process"
	return []seed{
		{"orm 1", msg("RIS", "STMARYS", "ORM^O01", "C1", "2.3", engine.StatusAccepted, "AA", orm("STMARYS", "C1"))},
		{"orm 2", msg("RIS", "STMARYS", "ORM^O01", "C2", "2.3", engine.StatusAccepted, "AA", orm("STMARYS", "C2"))},
		// ISO-8859-1 bytes (Ü = 0xDC) and a NUL: not UTF-8; raw must be omitted, raw_base64 exact.
		{"latin1 with NUL", msg("ADM", "STJUDE", "ADT^A08", "C3", "2.3", engine.StatusAccepted, "AA",
			"MSH|^~\\&|ADM|STJUDE|FERRY|FERRY|20261127080200||ADT^A08|C3|P|2.3\rPID|1||MRN3^^^STJUDE^MR||M\xDCLLER^J\x00RG\rPV1|1|O\r")},
		{"rejected garbage", rejected},
		// Same MSH-3/4/10 as "orm 1": the store records it as a duplicate of it.
		{"duplicate of orm 1", msg("RIS", "STMARYS", "ORM^O01", "C1", "2.3", engine.StatusAccepted, "AA", orm("STMARYS", "C1"))},
		{"oru error", errored},
		// Valid UTF-8 with a NUL: raw is given, NUL included.
		{"omi utf8 with NUL", msg("EHR", "STMARYS", "OMI^O23^OMI_O23", "C7", "2.5.1", engine.StatusAccepted, "AA",
			"MSH|^~\\&|EHR|STMARYS|FERRY|FERRY|20261127080600||OMI^O23^OMI_O23|C7|P|2.5.1\rPID|1||MRN7^^^STMARYS^MR||M\u00dcLLER^J\u00d6RG\x00\r")},
	}
}

// fixture is an API over a real, migrated SQLite store holding the seeds.
type fixture struct {
	store *sqlite.Store
	srv   *httptest.Server
	reg   *prometheus.Registry
	msgs  []*engine.InboundMessage // the seeds as committed (IDs set)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	st := accesstest.SQLiteStore(t)
	f := &fixture{store: st, reg: prometheus.NewRegistry()}
	for i, s := range seeds() {
		m := s.msg
		m.ReceivedAt = t0.Add(time.Duration(i) * time.Minute)
		if parsed, err := hl7.Parse(m.Raw); err == nil {
			m.SearchKeys = engine.SearchKeysOf(parsed) // as the intake keys what parses
		}
		// One transaction per message, so IDs follow the seeds' order.
		if err := st.CommitInbound(ctx, []*engine.InboundMessage{&m}); err != nil {
			t.Fatalf("seeding %s: %v", s.name, err)
		}
		f.msgs = append(f.msgs, &m)
	}
	if f.msgs[4].Status != engine.StatusDuplicate || f.msgs[4].DuplicateOf != f.msgs[0].ID {
		t.Fatalf("seed: the store did not record a duplicate: %+v", f.msgs[4])
	}
	api, err := httpapi.New(httpapi.Options{Messages: st, AdminToken: token, Gatherer: f.reg})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(api)
	t.Cleanup(f.srv.Close)
	return f
}

// get requests path with the given Authorization header value ("" for none).
func (f *fixture) get(t *testing.T, path, auth string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

// getJSON requests path with the admin token, wants want, and decodes the body into out.
func (f *fixture) getJSON(t *testing.T, path string, want int, out any) {
	t.Helper()
	code, h, body := f.get(t, path, "Bearer "+token)
	if code != want {
		t.Fatalf("GET %s: status %d, want %d; body %s", path, code, want, body)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("GET %s: Content-Type %q, want JSON", path, ct)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("GET %s: decoding %s: %v", path, body, err)
		}
	}
}

type summary struct {
	ID                 int64     `json:"id"`
	Channel            string    `json:"channel"`
	ReceivedAt         time.Time `json:"received_at"`
	PeerAddr           string    `json:"peer_addr"`
	SendingApplication string    `json:"sending_application"`
	SendingFacility    string    `json:"sending_facility"`
	MessageType        string    `json:"message_type"`
	ControlID          string    `json:"control_id"`
	Version            string    `json:"version"`
	Status             string    `json:"status"`
	ACKCode            string    `json:"ack_code"`
	Error              string    `json:"error"`
	DuplicateOf        int64     `json:"duplicate_of"`
	Size               int       `json:"size"`
}

type list struct {
	Messages []summary `json:"messages"`
	Next     string    `json:"next"`
}

type detail struct {
	summary
	Raw        *string         `json:"raw"`
	RawBase64  *string         `json:"raw_base64"`
	Parsed     json.RawMessage `json:"parsed"`
	ParseError string          `json:"parse_error"`
	ACK        *string         `json:"ack"`
}

type apiError struct {
	Error string `json:"error"`
}

func ids(ms []summary) []int64 {
	out := make([]int64, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

// idsOf returns the IDs of the seeds with these indexes, newest first (the API's order).
func (f *fixture) idsOf(idx ...int) []int64 {
	out := make([]int64, 0, len(idx))
	for _, i := range idx {
		out = append(out, f.msgs[i].ID)
	}
	slices.Sort(out)
	slices.Reverse(out)
	return out
}

func TestHealthNeedsNoTokenMetricsNeedAdmin(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	requests := prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_test_marker_total", Help: "a series only this registry has"})
	f.reg.MustRegister(requests)
	requests.Add(3)

	t.Run("healthz", func(t *testing.T) {
		t.Parallel()
		code, _, body := f.get(t, "/healthz", "")
		if code != http.StatusOK || !strings.Contains(string(body), `"ok"`) {
			t.Errorf("/healthz: %d %s, want 200 ok", code, body)
		}
	})
	t.Run("readyz", func(t *testing.T) {
		t.Parallel()
		if code, _, body := f.get(t, "/readyz", ""); code != http.StatusOK {
			t.Errorf("/readyz: %d %s, want 200", code, body)
		}
	})
	t.Run("metrics serves the registry given", func(t *testing.T) {
		t.Parallel()
		if code, _, _ := f.get(t, "/metrics", ""); code != http.StatusUnauthorized {
			t.Errorf("/metrics without a token: %d, want 401", code)
		}
		code, _, body := f.get(t, "/metrics", "Bearer "+token)
		if code != http.StatusOK || !strings.Contains(string(body), "ferry_test_marker_total 3") {
			t.Errorf("/metrics: %d, want 200 with ferry_test_marker_total 3:\n%s", code, body)
		}
		// Not the default registry: its Go collector is not in the one given.
		if strings.Contains(string(body), "go_goroutines") {
			t.Errorf("/metrics serves the default registry, not the one given")
		}
	})
}

func TestReadyzFailsWhenStoreClosed(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if err := f.store.Close(); err != nil {
		t.Fatal(err)
	}
	code, _, body := f.get(t, "/readyz", "")
	if code != http.StatusServiceUnavailable {
		t.Errorf("/readyz after the store closed: %d %s, want 503", code, body)
	}
	var e apiError
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Errorf("/readyz body %s, want JSON {\"error\": …}", body)
	}
	if code, _, _ := f.get(t, "/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz after the store closed: %d, want 200 (the process still serves)", code)
	}
}

func TestAdminAPIAuth(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cases := []struct {
		name string
		auth string
		want int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong token", "Bearer not-the-token", http.StatusUnauthorized},
		{"token prefix", "Bearer " + token[:len(token)-1], http.StatusUnauthorized},
		{"token with suffix", "Bearer " + token + "x", http.StatusUnauthorized},
		{"basic scheme", "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+token)), http.StatusUnauthorized},
		{"bare token", token, http.StatusUnauthorized},
		{"right token", "Bearer " + token, http.StatusOK},
	}
	for _, path := range []string{"/api/v1/messages", "/api/v1/messages/1", "/api/v1/messages/999999"} {
		for _, tc := range cases {
			t.Run(path+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				want := tc.want
				if want == http.StatusOK && strings.HasSuffix(path, "999999") {
					want = http.StatusNotFound
				}
				code, h, body := f.get(t, path, tc.auth)
				if code != want {
					t.Fatalf("status %d, want %d; body %s", code, want, body)
				}
				if code == http.StatusUnauthorized {
					if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
						t.Errorf("WWW-Authenticate %q, want a Bearer challenge", h.Get("WWW-Authenticate"))
					}
					var e apiError
					if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
						t.Errorf("401 body %s, want JSON {\"error\": …}", body)
					}
					if strings.Contains(string(body), "C1") || strings.Contains(string(body), "STMARYS") {
						t.Errorf("401 body leaks data: %s", body)
					}
				}
			})
		}
	}
}

func TestListMessagesFilters(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	all := f.idsOf(0, 1, 2, 3, 4, 5, 6)
	at := func(i int) string { return t0.Add(time.Duration(i) * time.Minute).Format(time.RFC3339Nano) }
	cases := []struct {
		name  string
		query url.Values
		want  []int64
	}{
		{"no filter: newest first", nil, all},
		{"control_id", url.Values{"control_id": {"C1"}}, f.idsOf(0, 4)},
		{"control_id none", url.Values{"control_id": {"NOPE"}}, nil},
		{"type prefix code", url.Values{"type": {"ORM"}}, f.idsOf(0, 1, 4)},
		{"type prefix code^trigger", url.Values{"type": {"OMI^O23"}}, f.idsOf(6)},
		{"type is a prefix, not a pattern", url.Values{"type": {"%"}}, nil},
		{"type prefix is not a substring", url.Values{"type": {"O01"}}, nil},
		{"status accepted", url.Values{"status": {"accepted"}}, f.idsOf(0, 1, 2, 6)},
		{"status duplicate", url.Values{"status": {"duplicate"}}, f.idsOf(4)},
		{"status rejected", url.Values{"status": {"rejected"}}, f.idsOf(3)},
		{"status error", url.Values{"status": {"error"}}, f.idsOf(5)},
		{"sending_facility", url.Values{"sending_facility": {"STJUDE"}}, f.idsOf(2, 5)},
		{"since is inclusive", url.Values{"since": {at(4)}}, f.idsOf(4, 5, 6)},
		{"until is exclusive", url.Values{"until": {at(2)}}, f.idsOf(0, 1)},
		{"since and until", url.Values{"since": {at(1)}, "until": {at(3)}}, f.idsOf(1, 2)},
		{"since with offset", url.Values{"since": {t0.Add(5 * time.Minute).In(time.FixedZone("CET", 3600)).Format(time.RFC3339)}}, f.idsOf(5, 6)},
		{"combined", url.Values{"sending_facility": {"STMARYS"}, "status": {"accepted"}, "type": {"ORM"}}, f.idsOf(0, 1)},
		{"before_id", url.Values{"before_id": {strconv.FormatInt(f.msgs[3].ID, 10)}}, f.idsOf(0, 1, 2)},
		{"limit", url.Values{"limit": {"2"}}, all[:2]},
		{"mrn", url.Values{"mrn": {"mrn1"}}, f.idsOf(0, 1, 4)},
		{"mrn and facility", url.Values{"mrn": {"MRN6"}, "sending_facility": {"STJUDE"}}, f.idsOf(5)},
		{"accession (placer number)", url.Values{"accession": {"POC2"}}, f.idsOf(1)},
		{"name in any order, accents aside", url.Values{"name": {"jorg muller"}}, f.idsOf(6)},
		{"study_uid none", url.Values{"study_uid": {"1.2.3"}}, nil},
		{"free text", url.Values{"text": {"XR CHEST"}}, f.idsOf(0, 1, 4)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got list
			f.getJSON(t, "/api/v1/messages?"+tc.query.Encode(), http.StatusOK, &got)
			if g := ids(got.Messages); !slices.Equal(g, tc.want) && !(len(g) == 0 && len(tc.want) == 0) {
				t.Errorf("IDs %v, want %v", g, tc.want)
			}
			if got.Messages == nil {
				t.Errorf("messages is null, want [] when nothing matches")
			}
		})
	}

	t.Run("summary fields", func(t *testing.T) {
		t.Parallel()
		var got list
		f.getJSON(t, "/api/v1/messages?control_id=C1", http.StatusOK, &got)
		if len(got.Messages) != 2 {
			t.Fatalf("got %d messages, want 2", len(got.Messages))
		}
		dup, orig := got.Messages[0], got.Messages[1]
		want := summary{
			ID: f.msgs[0].ID, Channel: "mllp", ReceivedAt: t0, PeerAddr: "127.0.0.1:40000",
			SendingApplication: "RIS", SendingFacility: "STMARYS", MessageType: "ORM^O01", ControlID: "C1",
			Version: "2.3", Status: "accepted", ACKCode: "AA", Size: len(f.msgs[0].Raw),
		}
		if !orig.ReceivedAt.Equal(want.ReceivedAt) {
			t.Errorf("received_at %v, want %v", orig.ReceivedAt, want.ReceivedAt)
		}
		orig.ReceivedAt = want.ReceivedAt
		if orig != want {
			t.Errorf("original:\n%+v\nwant\n%+v", orig, want)
		}
		if dup.Status != "duplicate" || dup.DuplicateOf != f.msgs[0].ID {
			t.Errorf("duplicate: %+v, want status duplicate, duplicate_of %d", dup, f.msgs[0].ID)
		}
		var rej list
		f.getJSON(t, "/api/v1/messages?status=rejected", http.StatusOK, &rej)
		if len(rej.Messages) != 1 || rej.Messages[0].Error == "" || rej.Messages[0].ACKCode != "AR" {
			t.Errorf("rejected: %+v, want one with its reason and AR", rej.Messages)
		}
	})
}

func TestListMessagesPaging(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, tc := range []struct {
		name  string
		query string
		want  []int64
	}{
		{"all by 2", "limit=2", f.idsOf(0, 1, 2, 3, 4, 5, 6)},
		{"all by 1", "limit=1", f.idsOf(0, 1, 2, 3, 4, 5, 6)},
		{"filtered by 1", "limit=1&sending_facility=STMARYS", f.idsOf(0, 1, 4, 6)},
		{"exact fit", "limit=7", f.idsOf(0, 1, 2, 3, 4, 5, 6)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []int64
			path := "/api/v1/messages?" + tc.query
			for pages := 0; path != ""; pages++ {
				if pages > 20 {
					t.Fatal("paging does not end")
				}
				var page list
				f.getJSON(t, path, http.StatusOK, &page)
				got = append(got, ids(page.Messages)...)
				if page.Next != "" {
					u, err := url.Parse(page.Next)
					if err != nil || u.Path != "/api/v1/messages" || u.Query().Get("before_id") == "" {
						t.Fatalf("next %q: want /api/v1/messages?…before_id=…", page.Next)
					}
					// The filters carry over to the next page.
					q, _ := url.ParseQuery(tc.query)
					for k := range q {
						if u.Query().Get(k) != q.Get(k) {
							t.Errorf("next %q lost %s=%s", page.Next, k, q.Get(k))
						}
					}
				}
				path = page.Next
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("pages hold %v, want %v (each once, newest first)", got, tc.want)
			}
		})
	}
}

func TestGetMessage(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for i, s := range seeds() {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			m := f.msgs[i]
			var got detail
			f.getJSON(t, "/api/v1/messages/"+strconv.FormatInt(m.ID, 10), http.StatusOK, &got)
			if got.ID != m.ID || got.ControlID != m.ControlID || got.Status != string(m.Status) || got.Size != len(m.Raw) {
				t.Errorf("summary %+v, want the message stored as ID %d", got.summary, m.ID)
			}
			if got.RawBase64 == nil {
				t.Fatal("raw_base64 missing")
			}
			raw, err := base64.StdEncoding.DecodeString(*got.RawBase64)
			if err != nil || string(raw) != string(m.Raw) {
				t.Errorf("raw_base64 decodes to %q (%v), want the bytes stored %q", raw, err, m.Raw)
			}
			utf8Raw := strings.ToValidUTF8(string(m.Raw), "") == string(m.Raw)
			switch {
			case utf8Raw && (got.Raw == nil || *got.Raw != string(m.Raw)):
				t.Errorf("raw %v, want %q (valid UTF-8, NULs included)", got.Raw, m.Raw)
			case !utf8Raw && got.Raw != nil:
				t.Errorf("raw %q given for bytes that are not valid UTF-8; want it omitted", *got.Raw)
			}
			if got.ACK == nil || *got.ACK != string(m.ACK) {
				t.Errorf("ack %v, want %q", got.ACK, m.ACK)
			}
			if m.ControlID != "" {
				// A message with a header parses: the tree is given and holds MSH-10.
				if len(got.Parsed) == 0 || got.ParseError != "" {
					t.Fatalf("parsed %s, parse_error %q; want the tree", got.Parsed, got.ParseError)
				}
				var tree any
				if err := json.Unmarshal(got.Parsed, &tree); err != nil {
					t.Errorf("parsed is not JSON: %v", err)
				}
				if !strings.Contains(string(got.Parsed), `"`+m.ControlID+`"`) || !strings.Contains(string(got.Parsed), "PID") {
					t.Errorf("parsed tree lacks MSH-10 %q or PID: %s", m.ControlID, got.Parsed)
				}
			} else if got.ParseError == "" || len(got.Parsed) != 0 {
				t.Errorf("garbage: parsed %s, parse_error %q; want only a parse error", got.Parsed, got.ParseError)
			}
		})
	}
	t.Run("missing id", func(t *testing.T) {
		t.Parallel()
		var e apiError
		f.getJSON(t, "/api/v1/messages/999999", http.StatusNotFound, &e)
		if e.Error == "" {
			t.Error("404 without an error text")
		}
	})
}

func TestBadParams(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, path := range []string{
		"/api/v1/messages/abc",
		"/api/v1/messages/0",
		"/api/v1/messages/-1",
		"/api/v1/messages/1.5",
		"/api/v1/messages/99999999999999999999",
		"/api/v1/messages?status=bogus",
		"/api/v1/messages?status=ACCEPTED",
		"/api/v1/messages?since=yesterday",
		"/api/v1/messages?text=" + strings.Repeat("x", engine.MaxSearchText+1),
		"/api/v1/messages?until=2026-11-27",
		"/api/v1/messages?before_id=-1",
		"/api/v1/messages?before_id=x",
		"/api/v1/messages?limit=1001",
		"/api/v1/messages?limit=-5",
		"/api/v1/messages?limit=ten",
	} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			var e apiError
			f.getJSON(t, path, http.StatusBadRequest, &e)
			if e.Error == "" {
				t.Error("400 without an error text")
			}
		})
	}
}
