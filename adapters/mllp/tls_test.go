package mllp

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ferryhealth/ferry/internal/tlsconfig"
)

// The server config from files refuses a client that offers only CBC suites over TLS 1.2, or
// only TLS 1.1, and serves one that offers an AEAD suite (issue 17 item 10).
func TestTLSConfigRefusesCBCAndOldVersions(t *testing.T) {
	t.Parallel()
	pki := testPKI(t)
	dir := t.TempDir()
	write := func(name string, blk *pem.Block) string {
		var b bytes.Buffer
		pem.Encode(&b, blk)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(pki.server.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := tlsconfig.Server(write("server.pem", &pem.Block{Type: "CERTIFICATE", Bytes: pki.server.Certificate[0]}),
		write("server.key", &pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range cfg.CipherSuites {
		if !slices.Contains(tlsconfig.AEADCipherSuites(), s) {
			t.Errorf("server offers %s, not an AEAD suite", tls.CipherSuiteName(s))
		}
	}
	ts := startServer(t, func(s *Server) { s.TLSConfig = cfg })

	for _, tc := range []struct {
		name   string
		client func(*tls.Config)
		ok     bool
	}{
		{"TLS 1.2 with AES-GCM", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
		}, true},
		{"TLS 1.2 with ChaCha20-Poly1305", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}
		}, true},
		{"TLS 1.3", func(c *tls.Config) { c.MinVersion = tls.VersionTLS13 }, true},
		{"TLS 1.2 with CBC suites only", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_RSA_WITH_AES_128_CBC_SHA}
		}, false},
		{"TLS 1.1", func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS11, tls.VersionTLS11 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := pki.clientConfig(false)
			c.MinVersion = 0
			tc.client(c)
			conn, err := tls.Dial("tcp", ts.addr, c)
			if !tc.ok {
				if err == nil {
					conn.Close()
					t.Fatalf("handshake succeeded with %s, want it refused", tls.CipherSuiteName(conn.ConnectionState().CipherSuite))
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake refused: %v", err)
			}
			defer conn.Close()
			cl := &client{Conn: conn, r: NewReader(conn, 0), w: NewWriter(conn)}
			if ack, err := cl.roundTrip("aead"); err != nil || ack != "ACK|aead" {
				t.Fatalf("answer %q, %v", ack, err)
			}
		})
	}
}
