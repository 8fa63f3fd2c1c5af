package httpapi_test

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ferryhealth/ferry/adapters/httpapi"
	"github.com/ferryhealth/ferry/mappings"
)

func TestMappingsTestEndpoint(t *testing.T) {
	t.Parallel()
	set, err := mappings.Load(mappings.Source{Base: []fs.FS{mappings.Shipped()}})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	api, err := httpapi.New(httpapi.Options{Messages: f.store, AdminToken: token,
		Mappings: func() httpapi.MappingTester { return set }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	post := func(body, auth string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/mappings/test", strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out map[string]any
		_ = json.Unmarshal(b, &out)
		return resp.StatusCode, out
	}
	const msh = "MSH|^~\\&|RIS|STMARYS|FERRY|FERRY|20261127083000-0500||ORM^O01|T1|P|2.3.1\n"
	ok := msh + "PID|1||000123^^^STMARYS^MR||DOE^JANE||19800102|F\nORC|NW|PL1^RIS\nOBR|1|PL1^RIS||71260^CT CHEST^C4\n"

	code, out := post(ok, token)
	if code != 200 || !strings.HasPrefix(out["mapping"].(string), "orm_o01@1+") || out["output"] == nil || out["error"] != nil {
		t.Fatalf("valid order: %d %v", code, out)
	}
	code, out = post(msh+"PID|1||000123^^^STMARYS^MR\nORC|NW|PL1\nOBR|1|PL1||\n", token)
	e, _ := out["error"].(map[string]any)
	if code != 200 || e == nil || e["code"] != float64(101) || e["field"] != "OBR-4" || !strings.Contains(e["where"].(string), "order.yaml") {
		t.Errorf("order without OBR-4: %d %v", code, out)
	}
	if code, out = post("not hl7", token); code != 422 {
		t.Errorf("garbage: %d %v", code, out)
	}
	if code, _ = post(ok, ""); code != 401 {
		t.Errorf("without the token: %d", code)
	}
}
