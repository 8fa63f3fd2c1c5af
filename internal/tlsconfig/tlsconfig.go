// Package tlsconfig builds the TLS settings of every door Ferry opens or dials — the MLLP, DICOM
// and HTTP listeners (Server) and the outbound MLLP and FHIR connections and `ferry send`
// (Client) — from PEM files, with one policy: TLS 1.2 or later, AEAD cipher suites only.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// AEADCipherSuites are the TLS 1.2 cipher suites Ferry offers and accepts: forward-secret
// (ECDHE) with an AEAD cipher (AES-GCM, ChaCha20-Poly1305) only — no CBC (Lucky13 and its
// padding-oracle kin), no RSA key exchange, no 3DES or RC4 (Mozilla "intermediate", BSI
// TR-02102-2). TLS 1.3 suites are all AEAD and not configurable in Go. Every TLS config Ferry
// builds, server or client, uses this list; the minimum version is TLS 1.2.
func AEADCipherSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}

// Server builds a listener's TLS settings: the server certificate chain and its key, and, when
// clientCAFile is not empty, the CA bundle that client certificates must chain to — then the
// config requires and verifies a client certificate (mutual TLS). The serve command builds one
// per listener at start; an error names the file that could not be used.
func Server(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, CipherSuites: AEADCipherSuites()}
	if clientCAFile != "" {
		pool, err := loadPool(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("reading client CA file: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Client builds the TLS settings of an outbound connection (an MLLP destination, a FHIR
// destination, `ferry send`): trust the PEM bundle caFile (the system roots when empty),
// present certFile/keyFile for mutual TLS when both are given, and verify serverName (the
// dialled host when empty). An error names the file that could not be used.
func Client(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: AEADCipherSuites(), ServerName: serverName}
	if caFile != "" {
		pool, err := loadPool(caFile)
		if err != nil {
			return nil, fmt.Errorf("reading CA file: %w", err)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("a client certificate and its key go together: give both or neither")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("loading client certificate %s and key %s: %w", certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// loadPool reads a PEM bundle of CA certificates.
func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", file)
	}
	return pool, nil
}
