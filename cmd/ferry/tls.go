package main

import (
	"crypto/tls"

	"github.com/ferryhealth/ferry/adapters/mllp"
)

// clientTLSConfig builds the TLS settings for ferry send: trust caFile (system roots when empty)
// and present certFile/keyFile for mutual TLS when both are given (mllp.ClientTLSConfig: TLS 1.2+
// with AEAD suites only).
func clientTLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	return mllp.ClientTLSConfig(caFile, certFile, keyFile, "")
}
