package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/adapters/delivery"
	"github.com/ferryhealth/ferry/adapters/mllp"
	"github.com/ferryhealth/ferry/engine/outbox"
)

// testCA is a CA with a server certificate for 127.0.0.1 and a client certificate, as PEM
// files in a directory and as TLS configs for the test's listeners.
type testCA struct {
	dir                           string
	pool                          *x509.CertPool
	server, client                tls.Certificate
	caFile, clientCert, clientKey string
	serverCert, serverKey         string
	// issue makes another certificate signed by the CA.
	issue func(serial int64, cn string, usage x509.ExtKeyUsage) (tls.Certificate, []byte, []byte)
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	dir := t.TempDir()
	writePEM := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "EHR test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	c := &testCA{dir: dir, pool: x509.NewCertPool(), caFile: writePEM("ca.pem", "CERTIFICATE", caDER)}
	c.pool.AddCert(ca)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage) (tls.Certificate, []byte, []byte) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalPKCS8PrivateKey(k)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}, der, keyDER
	}
	c.issue = issue
	var der, keyDER []byte
	c.server, der, keyDER = issue(2, "ehr", x509.ExtKeyUsageServerAuth)
	c.serverCert, c.serverKey = writePEM("server.pem", "CERTIFICATE", der), writePEM("server.key", "PRIVATE KEY", keyDER)
	c.client, der, keyDER = issue(3, "ferry", x509.ExtKeyUsageClientAuth)
	c.clientCert, c.clientKey = writePEM("client.pem", "CERTIFICATE", der), writePEM("client.key", "PRIVATE KEY", keyDER)
	return c
}

// serverTLS is the EHR listener's TLS config; mutual requires Ferry's client certificate.
func (c *testCA) serverTLS(mutual bool) *tls.Config {
	cfg := &tls.Config{Certificates: []tls.Certificate{c.server}, MinVersion: tls.VersionTLS12}
	if mutual {
		cfg.ClientCAs, cfg.ClientAuth = c.pool, tls.RequireAndVerifyClientCert
	}
	return cfg
}

// outboundTransports loads a config with the facility STMARYS and its results, as serve does,
// with one connection per MLLP destination and attempts bounded by timeout.
func outboundTransports(t *testing.T, timeout time.Duration, results string) *delivery.Transports {
	t.Helper()
	cfg, err := loadTestConfig(t, "facilities:\n  - id: stmarys\n    sending_facility: STMARYS\n    results:\n"+results)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Delivery.Connections, cfg.Delivery.Timeout = 1, timeout
	tr, err := cfg.deliveryTransports(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return tr
}

// An MLLP destination with tls gets the ORU over mutual TLS; the same listener refuses a
// destination configured without TLS (issue 17 item 10).
func TestOutboundMLLPOverTLS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	var got atomic.Int32
	srv := &mllp.Server{TLSConfig: ca.serverTLS(true), Handler: mllp.HandlerFunc(func(_ context.Context, f *mllp.Frame) []byte {
		if f.TLS == nil || len(f.TLS.VerifiedChains) == 0 {
			return nil
		}
		got.Add(1)
		return []byte("MSH|^~\\&|EHR|STMARYS|FERRY|FERRY|20261127||ACK^R01|A1|P|2.5.1\rMSA|AA|ORU1\r")
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	addr := ln.Addr().String()

	oru := []byte("MSH|^~\\&|FERRY|FERRY|EHR|STMARYS|20261127||ORU^R01|ORU1|P|2.5.1\rPID|1\r")
	// 2s: the TLS receiver never answers a plain connection.
	tr := outboundTransports(t, 2*time.Second, fmt.Sprintf(`      - {name: tls, kind: mllp, address: %q, tls: {ca: %s, cert: %s, key: %s}}
      - {name: plain, kind: mllp, address: %q}
`, addr, ca.caFile, ca.clientCert, ca.clientKey, addr))
	if ack, err := sendToDest(t, tr, outbox.Destination{Name: "tls", Kind: outbox.MLLP, Address: addr}, oru); err != nil || !strings.Contains(ack, "MSA|AA|ORU1") {
		t.Fatalf("over TLS: %q, %v", ack, err)
	}
	if got.Load() != 1 {
		t.Fatalf("the receiver got %d ORUs over verified mutual TLS, want 1", got.Load())
	}
	if ack, err := sendToDest(t, tr, outbox.Destination{Name: "plain", Kind: outbox.MLLP, Address: addr}, oru); err == nil {
		t.Errorf("without TLS the TLS receiver answered %q", ack)
	}
	if got.Load() != 1 {
		t.Errorf("the receiver took an ORU sent without TLS")
	}
}

func sendToDest(t *testing.T, tr *delivery.Transports, dest outbox.Destination, payload []byte) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return tr.Send(ctx, dest, &outbox.Delivery{Destination: "STMARYS/" + dest.Name, Kind: dest.Kind, ControlID: "C1", Payload: payload})
}

// A FHIR destination that requires a bearer token, a client certificate, or an OAuth 2.0 token
// from its token endpoint gets the Bundle when Ferry is configured for it, and refuses it when
// Ferry is not (issue 17 item 10).
func TestOutboundFHIRAuthentication(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	const bundle = `{"resourceType":"Bundle","type":"transaction","entry":[]}`
	secretFile := func(name, s string) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(s+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// The OAuth token endpoint: client credentials in HTTP Basic (RFC 6749 §2.3.1).
	var tokensIssued atomic.Int32
	tokenSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, sec, ok := r.BasicAuth()
		if r.ParseForm() != nil || r.PostForm.Get("grant_type") != "client_credentials" || !ok || id != "ferry" || sec != "oauth-secret" {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		if r.PostForm.Get("scope") != "system/DiagnosticReport.write" {
			http.Error(w, `{"error":"invalid_scope"}`, http.StatusBadRequest)
			return
		}
		tokensIssued.Add(1)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": "oauth-token-1", "token_type": "Bearer", "expires_in": 3600})
	}))
	tokenSrv.TLS = ca.serverTLS(false)
	tokenSrv.StartTLS()
	t.Cleanup(tokenSrv.Close)
	t.Cleanup(func() { // after the parallel subtests
		if n := tokensIssued.Load(); n != 1 {
			t.Errorf("the token endpoint issued %d tokens for two sends, want 1 (kept until it expires)", n)
		}
	})

	for _, tc := range []struct {
		name      string
		mutual    bool
		wantToken string // the Authorization the receiver requires ("" for none)
		auth      string // the destination's tls/auth YAML
		noAuth    string // the same destination without what the receiver requires
	}{
		{name: "bearer", wantToken: "Bearer static-token-0001",
			auth:   fmt.Sprintf(`tls: {ca: %s}, auth: {bearer_token_file: %s}`, ca.caFile, secretFile("bearer", "static-token-0001")),
			noAuth: fmt.Sprintf(`tls: {ca: %s}`, ca.caFile)},
		{name: "mTLS", mutual: true,
			auth:   fmt.Sprintf(`tls: {ca: %s, cert: %s, key: %s}`, ca.caFile, ca.clientCert, ca.clientKey),
			noAuth: fmt.Sprintf(`tls: {ca: %s}`, ca.caFile)},
		{name: "OAuth client credentials", wantToken: "Bearer oauth-token-1",
			auth: fmt.Sprintf(`tls: {ca: %s}, auth: {oauth2: {token_url: %q, client_id: ferry, client_secret_file: %s, scopes: [system/DiagnosticReport.write]}}`,
				ca.caFile, tokenSrv.URL+"/token", secretFile("client-secret", "oauth-secret")),
			noAuth: fmt.Sprintf(`tls: {ca: %s}`, ca.caFile)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var received atomic.Int32
			ehr := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.wantToken != "" && r.Header.Get("Authorization") != tc.wantToken {
					w.Header().Set("WWW-Authenticate", "Bearer")
					http.Error(w, `{"resourceType":"OperationOutcome"}`, http.StatusUnauthorized)
					return
				}
				if b, _ := io.ReadAll(r.Body); string(b) != bundle {
					http.Error(w, "bad bundle", http.StatusBadRequest)
					return
				}
				received.Add(1)
				w.Write([]byte(`{"resourceType":"Bundle","type":"transaction-response"}`))
			}))
			ehr.TLS = ca.serverTLS(tc.mutual)
			ehr.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
			ehr.StartTLS()
			t.Cleanup(ehr.Close)
			tr := outboundTransports(t, 10*time.Second, fmt.Sprintf("      - {name: with, kind: fhir, base_url: %q, %s}\n      - {name: without, kind: fhir, base_url: %q, %s}\n",
				ehr.URL, tc.auth, ehr.URL, tc.noAuth))
			for range 2 {
				if _, err := sendToDest(t, tr, outbox.Destination{Name: "with", Kind: outbox.FHIR, BaseURL: ehr.URL}, []byte(bundle)); err != nil {
					t.Fatalf("with credentials: %v", err)
				}
			}
			if received.Load() != 2 {
				t.Fatalf("the receiver took %d Bundles, want 2", received.Load())
			}
			_, err := sendToDest(t, tr, outbox.Destination{Name: "without", Kind: outbox.FHIR, BaseURL: ehr.URL}, []byte(bundle))
			var refusal *outbox.Refusal
			switch {
			case err == nil:
				t.Errorf("without credentials the Bundle was delivered")
			case tc.wantToken != "" && (!errors.As(err, &refusal) || refusal.Code != "HTTP 401" || refusal.Permanent):
				t.Errorf("without a token: %v, want a 401 to retry (credentials may be fixed)", err)
			}
			if received.Load() != 2 {
				t.Errorf("the receiver took a Bundle sent without credentials")
			}
		})
	}
}

func TestOutboundConfigRefused(t *testing.T) {
	t.Parallel()
	const facility = "facilities:\n  - id: stmarys\n    sending_facility: STMARYS\n    results:\n"
	for _, tc := range []struct{ name, dest, wantErr string }{
		{"auth over http", `{kind: fhir, base_url: "http://ehr/fhir", auth: {bearer_token_env: X}}`, "facilities[0].results[0].auth: base_url must be https://"},
		{"auth on mllp", `{kind: mllp, address: "ehr:1", auth: {bearer_token_env: X}}`, "auth: only for kind fhir"},
		{"two auths", `{kind: fhir, base_url: "https://ehr/fhir", auth: {bearer_token_env: X, bearer_token_file: /x}}`, "give one of"},
		{"unset variable", `{kind: fhir, base_url: "https://ehr/fhir", auth: {bearer_token_env: FERRY_TEST_UNSET_VARIABLE}}`, "the variable FERRY_TEST_UNSET_VARIABLE is not set"},
		{"oauth without id", `{kind: fhir, base_url: "https://ehr/fhir", auth: {oauth2: {token_url: "https://idp/token", client_secret_env: PATH}}}`, "oauth2.client_id: required"},
		{"oauth over http", `{kind: fhir, base_url: "https://ehr/fhir", auth: {oauth2: {token_url: "http://idp/token", client_id: a, client_secret_env: PATH}}}`, "token_url: \"http://idp/token\" is not an https:// URL"},
		{"missing CA", `{kind: mllp, address: "ehr:1", tls: {ca: /nonexistent/ca.pem}}`, "results[0].tls: reading CA file"},
	} {
		if _, err := loadTestConfig(t, facility+"      - "+tc.dest+"\n"); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.wantErr)
		}
	}
}
