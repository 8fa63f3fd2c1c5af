package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/ferryhealth/ferry/fhir"
)

// hospitalFHIR is a hospital EHR's FHIR R4 server, as far as Ferry's report deliveries need
// one: it takes transaction Bundles at its base URL, validates each with google/fhir's R4
// validator, and processes them as FHIR's RESTful API says (http.html#transaction): conditional
// updates by identifier (no match: create; one: update, a new version; more: 412), creates, and
// the entries' urn:uuid fullUrls resolved to the ids it assigned. It keeps every version it
// stores, so a test can read what the hospital's records hold.
type hospitalFHIR struct {
	t         *testing.T
	URL       string // the FHIR base URL
	dir       string // each Bundle received is written here, for a second validator
	validator *fhir.Validator

	mu       sync.Mutex
	down     bool  // answer 503 to everything
	answers  []int // HTTP statuses for the next Bundles, in turn (then the Bundle is processed)
	received int
	stored   map[string][]map[string]any // "Type/id" → its versions
	ids      map[string]string           // "Type|system|value" → "Type/id"
	next     int
}

func startHospitalFHIR(t *testing.T, dir string, answers ...int) *hospitalFHIR {
	t.Helper()
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	h := &hospitalFHIR{t: t, dir: filepath.Join(dir, "hospital-fhir"), validator: v, answers: answers,
		stored: map[string][]map[string]any{}, ids: map[string]string{}}
	if err := os.MkdirAll(h.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(srv.Close)
	h.URL = srv.URL + "/fhir/R4"
	return h
}

// setDown makes the server answer 503 to everything (true) or serve again (false).
func (h *hospitalFHIR) setDown(down bool) {
	h.mu.Lock()
	h.down = down
	h.mu.Unlock()
}

// outcome answers status with an OperationOutcome.
func outcome(w http.ResponseWriter, status int, code, text string) {
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{"resourceType": "OperationOutcome", "issue": []any{
		map[string]any{"severity": "error", "code": code, "diagnostics": text}}})
	w.Write(b)
}

func (h *hospitalFHIR) serve(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.Method != http.MethodPost || strings.TrimRight(r.URL.Path, "/") != "/fhir/R4" {
		outcome(w, http.StatusNotFound, "not-supported", "only transaction Bundles at the base URL")
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		outcome(w, http.StatusBadRequest, "structure", err.Error())
		return
	}
	h.received++
	if err := os.WriteFile(filepath.Join(h.dir, fmt.Sprintf("bundle-%03d.json", h.received)), body, 0o600); err != nil {
		h.t.Error(err)
	}
	if h.down {
		outcome(w, http.StatusServiceUnavailable, "transient", "down for maintenance")
		return
	}
	if len(h.answers) > 0 {
		status := h.answers[0]
		h.answers = h.answers[1:]
		outcome(w, status, "exception", "answered "+strconv.Itoa(status)+" by the test")
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		outcome(w, http.StatusUnsupportedMediaType, "not-supported", "Content-Type "+ct)
		return
	}
	if err := h.validator.Validate(body); err != nil {
		outcome(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	var bundle struct {
		Type  string `json:"type"`
		Entry []struct {
			FullURL  string         `json:"fullUrl"`
			Resource map[string]any `json:"resource"`
			Request  struct{ Method, URL string }
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &bundle); err != nil || bundle.Type != "transaction" {
		outcome(w, http.StatusBadRequest, "invalid", "want a transaction Bundle")
		return
	}
	// First find or assign every entry's id, so that references between entries resolve;
	// nothing is stored until every entry is known to succeed (a transaction is all or nothing).
	refs := map[string]string{}
	targets := make([]string, len(bundle.Entry))
	for i, e := range bundle.Entry {
		typ, _ := e.Resource["resourceType"].(string)
		switch e.Request.Method {
		case http.MethodPost:
		case http.MethodPut:
			path, query, ok := strings.Cut(e.Request.URL, "?")
			if !ok || path != typ {
				outcome(w, http.StatusBadRequest, "not-supported", "entry "+strconv.Itoa(i)+": want a conditional update Type?identifier=")
				return
			}
			q, err := url.ParseQuery(query)
			if err != nil || len(q["identifier"]) != 1 {
				outcome(w, http.StatusBadRequest, "invalid", "entry "+strconv.Itoa(i)+": want one identifier search")
				return
			}
			system, value, ok := splitToken(q.Get("identifier"))
			if !ok {
				outcome(w, http.StatusBadRequest, "invalid", "entry "+strconv.Itoa(i)+": want identifier=system|value")
				return
			}
			targets[i] = h.ids[typ+"|"+system+"|"+value]
		default:
			outcome(w, http.StatusBadRequest, "not-supported", "entry "+strconv.Itoa(i)+": method "+e.Request.Method)
			return
		}
		if targets[i] == "" {
			h.next++
			targets[i] = typ + "/h" + strconv.Itoa(h.next)
		}
		if e.FullURL != "" {
			refs[e.FullURL] = targets[i]
		}
	}
	var results []any
	for i, e := range bundle.Entry {
		res := resolveRefs(e.Resource, refs).(map[string]any)
		typ, id, _ := strings.Cut(targets[i], "/")
		res["id"] = id
		versions := h.stored[targets[i]]
		status := "201 Created"
		if len(versions) > 0 {
			status = "200 OK"
		}
		// An update that changes nothing keeps the current version, as HAPI's and most servers'
		// no-op updates do: a delivery retried after its answer was lost (a timeout on a busy
		// machine) is not a new version.
		if n := len(versions); n > 0 && sameContent(versions[n-1], res) {
			results = append(results, map[string]any{"response": map[string]any{
				"status": status, "location": targets[i] + "/_history/" + strconv.Itoa(n)}})
			continue
		}
		res["meta"] = map[string]any{"versionId": strconv.Itoa(len(versions) + 1)}
		h.stored[targets[i]] = append(versions, res)
		for _, x := range asSlice(res["identifier"]) {
			ident, _ := x.(map[string]any)
			system, _ := ident["system"].(string)
			value, _ := ident["value"].(string)
			if value != "" {
				h.ids[typ+"|"+system+"|"+value] = targets[i]
			}
		}
		results = append(results, map[string]any{"response": map[string]any{
			"status": status, "location": targets[i] + "/_history/" + strconv.Itoa(len(versions)+1)}})
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction-response", "entry": results})
	w.Write(b)
}

// sameContent reports whether two versions of a resource hold the same content (meta aside).
func sameContent(a, b map[string]any) bool {
	strip := func(m map[string]any) map[string]any {
		c := maps.Clone(m)
		delete(c, "meta")
		return c
	}
	return reflect.DeepEqual(strip(a), strip(b))
}

// splitToken splits a token search value system|value at its first unescaped |, unescaping
// both parts (FHIR search.html#escaping).
func splitToken(s string) (system, value string, ok bool) {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case s[i] == '|' && len(parts) == 0:
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	if len(parts) != 1 {
		return "", "", false
	}
	return parts[0], cur.String(), true
}

// resolveRefs returns v with every reference to one of refs' keys (an entry's fullUrl) replaced.
func resolveRefs(v any, refs map[string]string) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if s, ok := e.(string); ok && k == "reference" && refs[s] != "" {
				e = refs[s]
			}
			out[k] = resolveRefs(e, refs)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = resolveRefs(e, refs)
		}
		return out
	}
	return v
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

// resources returns the ids ("Type/id") of the stored resources of type typ.
func (h *hospitalFHIR) resources(typ string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for k := range h.stored {
		if strings.HasPrefix(k, typ+"/") {
			out = append(out, k)
		}
	}
	return out
}

// versions returns the stored versions of "Type/id".
func (h *hospitalFHIR) versions(ref string) []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.stored[ref]...)
}

// bundles returns the files of the Bundles received so far.
func (h *hospitalFHIR) bundles() []string {
	files, _ := filepath.Glob(filepath.Join(h.dir, "bundle-*.json"))
	return files
}
