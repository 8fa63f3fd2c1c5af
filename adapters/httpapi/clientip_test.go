package httpapi_test

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/ferryhealth/ferry/adapters/httpapi"
)

// The audited client address is the TCP peer; X-Forwarded-For and X-Real-IP count only from a
// configured trusted proxy (issue 17 item 8). The test server's peer is 127.0.0.1.
func TestAuditedAddressIgnoresSpoofedForwardedFor(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cidr := func(s string) *net.IPNet {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, tc := range []struct {
		name    string
		trusted []*net.IPNet
		headers map[string]string
		want    string
	}{
		{"no proxy configured: XFF ignored", nil, map[string]string{"X-Forwarded-For": "203.0.113.9"}, "127.0.0.1"},
		{"no proxy configured: X-Real-IP ignored", nil, map[string]string{"X-Real-IP": "203.0.113.9"}, "127.0.0.1"},
		{"peer not among the trusted (loopback is not trusted by default)", []*net.IPNet{cidr("10.0.0.0/8")},
			map[string]string{"X-Forwarded-For": "203.0.113.9"}, "127.0.0.1"},
		{"trusted proxy: XFF used", []*net.IPNet{cidr("127.0.0.1/32")}, map[string]string{"X-Forwarded-For": "203.0.113.9"}, "203.0.113.9"},
		{"trusted proxy: a forged hop before the real client is not believed", []*net.IPNet{cidr("127.0.0.1/32")},
			map[string]string{"X-Forwarded-For": "198.51.100.1, 203.0.113.9"}, "203.0.113.9"},
		{"trusted proxy: X-Real-IP used", []*net.IPNet{cidr("127.0.0.0/8")}, map[string]string{"X-Real-IP": "203.0.113.7"}, "203.0.113.7"},
		{"trusted proxy without a header: the peer", []*net.IPNet{cidr("127.0.0.0/8")}, nil, "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs lockedBuffer
			api, err := httpapi.New(httpapi.Options{Messages: f.store, AdminToken: token, Gatherer: f.reg,
				Logger: slog.New(slog.NewTextHandler(&logs, nil)), TrustedProxies: tc.trusted})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(api)
			defer srv.Close()
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/messages/"+strconv.FormatInt(f.msgs[0].ID, 10), nil)
			req.Header.Set("Authorization", "Bearer "+token)
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			var audit string
			for line := range strings.Lines(logs.String()) {
				if strings.Contains(line, "audit: message read") {
					audit = line
				}
			}
			if !strings.Contains(audit, "remote="+tc.want+"\n") && !strings.Contains(audit, "remote="+tc.want+" ") {
				t.Fatalf("audit line %q, want remote=%s", audit, tc.want)
			}
		})
	}
}
