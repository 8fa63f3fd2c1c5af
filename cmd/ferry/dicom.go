package main

// The dicom: section's doors: TLS, the peers and what unknown callers may do, and the limits
// of the DICOM listener (docs/dicom.md, "Who may call"). config.go holds the fields; this file
// gives them their defaults, checks them and builds the dimse.Server.

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ferryhealth/ferry/adapters/dimse"
	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/internal/tlsconfig"
)

// DefaultDICOMTLSAddr is where DICOM TLS listens when dicom.tls is set and listen.dicom_tls is
// not: 2762, the port IANA registered for DICOM over TLS (dicom-tls), which dcmtk users expect.
const DefaultDICOMTLSAddr = ":2762"

// DICOMTLS is DICOM TLS (PS3.15 B.1): the server's certificate and key, and the CA that signs
// the callers' client certificates.
type DICOMTLS struct {
	TLSFiles `yaml:",inline"`
	// ClientCertificates says whether a caller must present a certificate signed by client_ca:
	// "required" (the default when client_ca is set) or "optional" (verified when presented;
	// peers bound to a certificate still need theirs).
	ClientCertificates string `yaml:"client_certificates"`
}

// DICOMPeer is a known DICOM caller: its AE title bound to addresses and/or its client
// certificate, with the operations it may perform.
type DICOMPeer struct {
	AETitle string `yaml:"ae_title"`
	// Addresses it may call from: addresses or CIDR prefixes. Empty: any.
	Addresses []string `yaml:"addresses"`
	// CertificateSubject requires a client certificate with exactly this subject (as Go writes
	// it, e.g. "CN=ct1.example.org,O=St Mary's").
	CertificateSubject string `yaml:"certificate_subject"`
	// SAN requires a client certificate naming one of these (DNS name, e-mail, URI, IP).
	SAN []string `yaml:"san"`
	// Operations: store, find_worklist, echo. Empty: all.
	Operations []string `yaml:"operations"`
}

// DICOMUnknownCallers says what callers that are not among dicom.peers may do: allow or refuse
// per operation.
type DICOMUnknownCallers struct {
	Echo         string `yaml:"echo"`
	FindWorklist string `yaml:"find_worklist"`
	Store        string `yaml:"store"`
}

// setDefaults fills the dicom: section's unset doors and limits. With peers configured,
// unknown callers may only echo (C-ECHO reveals nothing; Orthanc's DicomAlwaysAllowEcho does
// the same); with the older accept_calling_ae_titles, they are rejected as they always were;
// with neither, Ferry is a demo that lets every caller do everything, and serve says so.
func (c *DICOMConfig) setDefaults() {
	def := func(v *string, demo, withPeers string) {
		switch {
		case *v != "":
		case len(c.Peers) > 0:
			*v = withPeers
		case len(c.AcceptCallingAETitles) > 0:
			*v = "refuse"
		default:
			*v = demo
		}
	}
	def(&c.UnknownCallers.Echo, "allow", "allow")
	def(&c.UnknownCallers.FindWorklist, "allow", "refuse")
	def(&c.UnknownCallers.Store, "allow", "refuse")
	if c.TLS.ClientCA != "" && c.TLS.ClientCertificates == "" {
		c.TLS.ClientCertificates = "required"
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = dimse.DefaultMaxConns
	}
	if c.MaxConnectionsPerAddress == 0 {
		c.MaxConnectionsPerAddress = dimse.DefaultMaxConnsPerAddr
	}
	if c.MaxPDULength == 0 {
		c.MaxPDULength = dimse.DefaultMaxPDULength
	}
	if c.MaxHeaderSize == 0 {
		c.MaxHeaderSize = dicom.DefaultMaxHeaderSize
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.ARTIMTimeout, dimse.DefaultARTIMTimeout}, {&c.IdleTimeout, dimse.DefaultIdleTimeout},
		{&c.ReadTimeout, dimse.DefaultReadTimeout}, {&c.HandshakeTimeout, dimse.DefaultHandshakeTimeout}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
}

// validate reports every problem of the dicom: section's doors and limits.
func (c *DICOMConfig) validate(listenTLS string) []error {
	var errs []error
	if c.TLS.Enabled() && (c.TLS.Cert == "" || c.TLS.Key == "") {
		errs = append(errs, errors.New("dicom.tls: cert and key must both be set"))
	}
	if c.TLS.ClientCA != "" && !c.TLS.Enabled() {
		errs = append(errs, errors.New("dicom.tls.client_ca: needs cert and key"))
	}
	switch c.TLS.ClientCertificates {
	case "", "required", "optional":
	default:
		errs = append(errs, fmt.Errorf("dicom.tls.client_certificates: want required or optional, got %q", c.TLS.ClientCertificates))
	}
	if c.TLS.ClientCertificates != "" && c.TLS.ClientCA == "" {
		errs = append(errs, errors.New("dicom.tls.client_certificates: needs client_ca"))
	}
	if listenTLS != "" && !c.TLS.Enabled() {
		errs = append(errs, errors.New("listen.dicom_tls: needs dicom.tls (cert and key)"))
	}
	if len(c.Peers) > 0 && len(c.AcceptCallingAETitles) > 0 {
		errs = append(errs, errors.New("dicom.accept_calling_ae_titles: replaced by dicom.peers; list each title as a peer (- ae_title: MODALITY1) and remove accept_calling_ae_titles"))
	}
	for name, v := range map[string]string{"echo": c.UnknownCallers.Echo, "find_worklist": c.UnknownCallers.FindWorklist, "store": c.UnknownCallers.Store} {
		if v != "" && v != "allow" && v != "refuse" {
			errs = append(errs, fmt.Errorf("dicom.unknown_callers.%s: want allow or refuse, got %q", name, v))
		}
	}
	for i, p := range c.Peers {
		if _, err := dimse.ParsePrefixes(p.Addresses); err != nil {
			errs = append(errs, fmt.Errorf("dicom.peers[%d] (%s).addresses: %w", i, p.AETitle, err))
		}
		if (p.CertificateSubject != "" || len(p.SAN) > 0) && c.TLS.ClientCA == "" {
			errs = append(errs, fmt.Errorf("dicom.peers[%d] (%s): bound to a certificate, so dicom.tls.client_ca is needed", i, p.AETitle))
		}
	}
	if c.MaxConnections < 0 || c.MaxPDULength < 0 || c.MaxHeaderSize < 0 || c.ARTIMTimeout < 0 || c.IdleTimeout < 0 || c.ReadTimeout < 0 || c.HandshakeTimeout < 0 {
		errs = append(errs, errors.New("dicom: max_connections, max_pdu_length, max_header_size and the timeouts must not be negative"))
	}
	if c.MaxPDULength != 0 && c.MaxPDULength < dimse.MinMaxPDULength {
		errs = append(errs, fmt.Errorf("dicom.max_pdu_length: at least %d", dimse.MinMaxPDULength))
	}
	return errs
}

// demo reports whether every DICOM caller may do everything: no peers listed and unknown
// callers allowed every operation.
func (c *DICOMConfig) demo() bool {
	u := c.UnknownCallers
	return len(c.Peers) == 0 && len(c.AcceptCallingAETitles) == 0 && u.Echo == "allow" && u.FindWorklist == "allow" && u.Store == "allow"
}

// dicomServer builds the DICOM listener from the configuration: its AE title, doors and limits.
func (cfg *Config) dicomServer(logger *slog.Logger, services []dimse.Service) (*dimse.Server, error) {
	c := &cfg.DICOM
	s := &dimse.Server{AETitle: cfg.Listen.DICOMAETitle, CallingAETitles: c.AcceptCallingAETitles, Logger: logger, Services: services,
		MaxConns: c.MaxConnections, MaxConnsPerAddr: c.MaxConnectionsPerAddress, MaxPDULength: uint32(c.MaxPDULength),
		ARTIMTimeout: c.ARTIMTimeout, IdleTimeout: c.IdleTimeout, ReadTimeout: c.ReadTimeout, HandshakeTimeout: c.HandshakeTimeout,
		UnknownCallers: dimse.CallerPolicy{Echo: c.UnknownCallers.Echo == "allow", FindWorklist: c.UnknownCallers.FindWorklist == "allow",
			Store: c.UnknownCallers.Store == "allow"}, Restricted: !c.demo()}
	for _, p := range c.Peers {
		addrs, err := dimse.ParsePrefixes(p.Addresses)
		if err != nil {
			return nil, fmt.Errorf("dicom.peers (%s): %w", p.AETitle, err)
		}
		peer := dimse.Peer{AETitle: p.AETitle, Addresses: addrs, CertificateSubject: p.CertificateSubject, SANs: p.SAN}
		for _, op := range p.Operations {
			peer.Operations = append(peer.Operations, dimse.Operation(op))
		}
		s.Peers = append(s.Peers, peer)
	}
	if c.TLS.Enabled() {
		tc, err := tlsconfig.Server(c.TLS.Cert, c.TLS.Key, c.TLS.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("dicom.tls: %w", err)
		}
		if c.TLS.ClientCertificates == "optional" {
			tc.ClientAuth = tls.VerifyClientCertIfGiven
		}
		s.TLSConfig = tc
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("dicom: %w", err)
	}
	return s, nil
}

// dicomTLSAddr is where the DICOM TLS listener listens when dicom.tls is configured ("" otherwise).
func (cfg *Config) dicomTLSAddr() string {
	if !cfg.DICOM.TLS.Enabled() {
		return ""
	}
	addr := cfg.Listen.DICOMTLS
	if addr == "" {
		addr = DefaultDICOMTLSAddr
	}
	if cfg.DICOM.demo() {
		addr = loopback(addr) // every caller may do everything: this machine only
	}
	return addr
}
