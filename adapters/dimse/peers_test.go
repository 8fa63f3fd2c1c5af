package dimse

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/dicom"
)

// testPKI is a CA with a server certificate for localhost and client certificates it signs.
type testPKI struct {
	caCert *x509.Certificate
	caKey  *rsa.PrivateKey
	pool   *x509.CertPool
	server tls.Certificate
}

var (
	pkiOnce sync.Once
	pki     *testPKI
)

// sharedPKI makes the RSA keys once (dcmtk's BCP 195 profile wants RSA or ECDSA with its
// suites; RSA suits every profile).
func sharedPKI(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Ferry test CA"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
			BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		ca, _ := x509.ParseCertificate(der)
		p := &testPKI{caCert: ca, caKey: key, pool: x509.NewCertPool()}
		p.pool.AddCert(ca)
		p.server = p.issue("localhost", x509.ExtKeyUsageServerAuth, "localhost")
		pki = p
	})
	return pki
}

// issue signs a certificate for cn with the given DNS names.
func (p *testPKI) issue(cn string, usage x509.ExtKeyUsage, dns ...string) tls.Certificate {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn, Organization: []string{"Test Hospital"}},
		DNSNames: dns, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		panic(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// serverTLS is the server's TLS: client certificates verified when given (required ones are
// the peers' business: Peers bound to a certificate need one).
func (p *testPKI) serverTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.server}, ClientCAs: p.pool,
		ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}
}

func (p *testPKI) clientTLS(certs ...tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: p.pool, ServerName: "localhost", Certificates: certs}
}

func mustPrefixes(t testing.TB, s ...string) []netip.Prefix {
	t.Helper()
	p, err := ParsePrefixes(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	echoAndWorklist = []ProposedContext{{SOPClass: VerificationSOPClass}, {SOPClass: ModalityWorklistFindSOPClass}}
	universalQuery  = &dicom.DataSet{}
)

// TestPeersBindAETitles reproduces issue 17's findscu -aet ATTACKER (the worklist answered
// anyone) and a spoofed listed AE title from another address, and checks what each caller gets.
func TestPeersBindAETitles(t *testing.T) {
	t.Parallel()
	logs := &bytes.Buffer{}
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{w: logs, mu: &logMu}, nil))
	obs := &countingObserver{}
	addr := startServer(t, &Server{
		Peers: []Peer{
			{AETitle: "MODALITY1", Addresses: mustPrefixes(t, "127.0.0.0/8")},
			{AETitle: "FARAWAY", Addresses: mustPrefixes(t, "10.9.9.0/24")},
			{AETitle: "STOREONLY", Addresses: mustPrefixes(t, "127.0.0.1"), Operations: []Operation{OpStore, OpEcho}},
		},
		UnknownCallers: CallerPolicy{Echo: true},
		Services:       []Service{WorklistService(&memoryWorklist{items: testWorklist()}, nil)},
		Metrics:        obs, Logger: logger,
	})

	tests := []struct {
		name       string
		calling    string
		wantReject bool // A-ASSOCIATE-RJ, calling AE title not recognized
		wantEcho   bool
		wantFind   bool // the worklist context accepted and the query answered
	}{
		{"listed peer from its address", "MODALITY1", false, true, true},
		{"unknown caller: echo only (findscu -aet ATTACKER)", "ATTACKER", false, true, false},
		{"listed title from an address not bound to it (spoofed)", "FARAWAY", true, false, false},
		{"peer allowed to store only", "STOREONLY", false, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Dial(testCtx(t), addr, ClientConfig{CallingAETitle: tc.calling, Contexts: echoAndWorklist})
			var rj *AssociateRejectError
			if tc.wantReject {
				if !errors.As(err, &rj) || rj.RJ.Reason != ReasonCallingAETitleNotRecognized {
					t.Fatalf("Dial: %v, want A-ASSOCIATE-RJ calling AE title not recognized", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			if st, err := c.Echo(testCtx(t)); (err == nil && st == dicom.StatusSuccess) != tc.wantEcho {
				t.Errorf("echo: %v %v, want success %v", st, err, tc.wantEcho)
			}
			matches := 0
			final, err := c.Find(testCtx(t), ModalityWorklistFindSOPClass, universalQuery, func(*Command, *dicom.DataSet) bool { matches++; return true })
			gotFind := err == nil && final.Status == dicom.StatusSuccess
			if gotFind != tc.wantFind {
				t.Errorf("worklist query answered = %v (%d matches, err %v), want %v", gotFind, matches, err, tc.wantFind)
			}
			if !tc.wantFind {
				if matches != 0 {
					t.Errorf("a refused caller got %d worklist entries", matches)
				}
				if pc := c.AssociateAC().PresentationContexts[1]; pc.Result != PresentationUserRejection {
					t.Errorf("worklist context result = %v, want user-rejection", pc.Result)
				}
			}
			if err := c.Release(testCtx(t)); err != nil {
				t.Error(err)
			}
		})
	}
	logMu.Lock()
	defer logMu.Unlock()
	for _, want := range []string{`calling_ae=FARAWAY`, `refused_because="address not bound to this AE title"`,
		`msg="DICOM operations refused to this caller" remote=127.0.0.1`, `operations=find_worklist`,
		`msg="DICOM operation complete" remote=127.0.0.1`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	// The C-FIND caller is logged at info level with its AE title.
	if !strings.Contains(logs.String(), "level=INFO msg=\"DICOM operation complete\"") || !strings.Contains(logs.String(), "command=C-FIND-RQ") {
		t.Errorf("the C-FIND is not logged at info level:\n%s", logs.String())
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestUnknownCallersRefused: with peers listed and nothing allowed to unknown callers, an
// unknown AE title is rejected at A-ASSOCIATE-RQ; the old CallingAETitles list keeps working.
func TestUnknownCallersRefused(t *testing.T) {
	t.Parallel()
	for name, s := range map[string]*Server{
		"peers":             {Peers: []Peer{{AETitle: "MODALITY1"}}},
		"calling AE titles": {CallingAETitles: []string{"MODALITY1"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			addr := startServer(t, s)
			var rj *AssociateRejectError
			if _, err := Dial(testCtx(t), addr, ClientConfig{CallingAETitle: "ATTACKER"}); !errors.As(err, &rj) || rj.RJ.Reason != ReasonCallingAETitleNotRecognized {
				t.Errorf("unknown caller: %v, want calling AE title not recognized", err)
			}
			c := dial(t, addr, ClientConfig{CallingAETitle: "MODALITY1"})
			if st, err := c.Echo(testCtx(t)); err != nil || st != dicom.StatusSuccess {
				t.Errorf("listed caller: %v %v", st, err)
			}
		})
	}
}

// TestPeersBoundToCertificates: over DICOM TLS, an AE title bound to a certificate's SAN or
// subject is believed only with that certificate.
func TestPeersBoundToCertificates(t *testing.T) {
	t.Parallel()
	p := sharedPKI(t)
	ct1 := p.issue("ct1.radiology.test", x509.ExtKeyUsageClientAuth, "ct1.radiology.test")
	other := p.issue("laptop.test", x509.ExtKeyUsageClientAuth, "laptop.test")
	addr := startServer(t, &Server{TLSConfig: p.serverTLS(), Peers: []Peer{
		{AETitle: "CT1", SANs: []string{"ct1.radiology.test"}},
		{AETitle: "CT1SUBJ", CertificateSubject: "CN=ct1.radiology.test,O=Test Hospital"},
	}})
	tests := []struct {
		name    string
		calling string
		certs   []tls.Certificate
		wantOK  bool
	}{
		{"SAN bound, right certificate", "CT1", []tls.Certificate{ct1}, true},
		{"subject bound, right certificate", "CT1SUBJ", []tls.Certificate{ct1}, true},
		{"SAN bound, another certificate", "CT1", []tls.Certificate{other}, false},
		{"subject bound, another certificate", "CT1SUBJ", []tls.Certificate{other}, false},
		{"SAN bound, no certificate", "CT1", nil, false},
		{"unknown caller with a valid certificate", "ATTACKER", []tls.Certificate{ct1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Dial(testCtx(t), addr, ClientConfig{CallingAETitle: tc.calling, TLSConfig: p.clientTLS(tc.certs...)})
			if !tc.wantOK {
				var rj *AssociateRejectError
				if !errors.As(err, &rj) || rj.RJ.Reason != ReasonCallingAETitleNotRecognized {
					t.Fatalf("Dial: %v, want calling AE title not recognized", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			if st, err := c.Echo(testCtx(t)); err != nil || st != dicom.StatusSuccess {
				t.Errorf("echo: %v %v", st, err)
			}
		})
	}
}

// idleConnsFrom opens n TCP connections from the local address ip that send nothing.
func idleConnsFrom(t *testing.T, addr, ip string, n int) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connecting from %s: %v", ip, err)
		}
		t.Cleanup(func() { c.Close() })
	}
}

func (o *countingObserver) counts() (rejected, handshakeAborts int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.rejected, o.aborts[AbortHandshake]
}

// TestIdleConnectionsDoNotLockOut reproduces "200 idle DICOM associations locked out
// everyone": many connections from one address that never associate leave the others' slots
// free.
func TestIdleConnectionsDoNotLockOut(t *testing.T) {
	t.Parallel()
	obs := &countingObserver{}
	addr := startServer(t, &Server{MaxConns: 8, MaxConnsPerAddr: 4, ARTIMTimeout: time.Hour, Metrics: obs})
	// 200 silent connections from 127.0.0.2: 4 are kept, 196 refused.
	idleConnsFrom(t, addr, "127.0.0.2", 200)
	changes.For(t, "196 connections refused", func() bool { r, _ := obs.counts(); return r >= 196 })
	// A behaving caller from another address still gets in, again and again.
	for i := range 10 {
		c := dial(t, addr, ClientConfig{CallingAETitle: "MODALITY"})
		if st, err := c.Echo(testCtx(t)); err != nil || st != dicom.StatusSuccess {
			t.Fatalf("echo %d while 127.0.0.2 holds its connections: %v %v", i, st, err)
		}
		if err := c.Release(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	if r, _ := obs.counts(); r != 196 {
		t.Errorf("%d connections refused, want 196 (200 less the 4 allowed from one address)", r)
	}
}

// TestTLSHandshakeTakesNoSlot: connections that never finish a TLS handshake hold no slot, and
// the handshake is bounded by HandshakeTimeout.
func TestTLSHandshakeTakesNoSlot(t *testing.T) {
	t.Parallel()
	p := sharedPKI(t)
	obs := &countingObserver{}
	addr := startServer(t, &Server{TLSConfig: p.serverTLS(), MaxConns: 2, MaxConnsPerAddr: 50,
		HandshakeTimeout: time.Hour, ARTIMTimeout: time.Hour, Metrics: obs})
	// 20 connections that never handshake, more than MaxConns: none may hold a slot.
	idleConnsFrom(t, addr, "127.0.0.3", 20)
	for i := range 3 {
		c := dial(t, addr, ClientConfig{CallingAETitle: "MODALITY", TLSConfig: p.clientTLS()})
		if st, err := c.Echo(testCtx(t)); err != nil || st != dicom.StatusSuccess {
			t.Fatalf("echo %d over TLS while 20 handshakes hang: %v %v", i, st, err)
		}
		if err := c.Release(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	if r, _ := obs.counts(); r != 0 {
		t.Errorf("%d connections refused, want 0", r)
	}
}

// TestTLSHandshakeTimeout: a connection that never finishes its handshake is closed after
// HandshakeTimeout.
func TestTLSHandshakeTimeout(t *testing.T) {
	t.Parallel()
	obs := &countingObserver{}
	addr := startServer(t, &Server{TLSConfig: sharedPKI(t).serverTLS(), HandshakeTimeout: 200 * time.Millisecond, Metrics: obs})
	idleConnsFrom(t, addr, "127.0.0.4", 5)
	changes.For(t, "5 handshakes timed out", func() bool { _, h := obs.counts(); return h >= 5 })
}

// writePEMs writes the CA, and a certificate and its key, as PEM files for dcmtk.
func writePEMs(t *testing.T, p *testPKI, name string, cert tls.Certificate) (ca, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	ca = filepath.Join(dir, "ca.pem")
	certFile = filepath.Join(dir, name+".pem")
	keyFile = filepath.Join(dir, name+".key")
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.caCert.Raw}), 0o600))
	must(os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600))
	kb, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	must(err)
	must(os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600))
	return ca, certFile, keyFile
}

// TestDcmtkPeersAndTLS runs issue 17's attacks with dcmtk: findscu -aet ATTACKER against the
// worklist, a listed AE title from an address not bound to it, and DICOM TLS with client
// certificates (echoscu/findscu/storescu +tls).
func TestDcmtkPeersAndTLS(t *testing.T) {
	t.Parallel()
	findscu := requirePeer(t, "findscu", "dcmtk")
	echoscu := requirePeer(t, "echoscu", "dcmtk")
	p := sharedPKI(t)
	ct1 := p.issue("ct1.radiology.test", x509.ExtKeyUsageClientAuth, "ct1.radiology.test")
	s := &Server{TLSConfig: p.serverTLS(),
		Peers: []Peer{
			{AETitle: "MODALITY1", Addresses: mustPrefixes(t, "127.0.0.1")},
			{AETitle: "FARAWAY", Addresses: mustPrefixes(t, "10.9.9.9")},
			{AETitle: "CT1", SANs: []string{"ct1.radiology.test"}},
		},
		UnknownCallers: CallerPolicy{Echo: true},
		Services:       []Service{WorklistService(&memoryWorklist{items: testWorklist()}, testLogger(t))},
	}
	plainAddr, tlsAddr := startPlainAndTLS(t, s)
	host, port := hostPort(t, plainAddr)
	_, tlsPort := hostPort(t, tlsAddr)
	ca, certFile, keyFile := writePEMs(t, p, "ct1", ct1)

	tests := []struct {
		name    string
		prog    string
		args    []string
		wantOK  bool
		wantOut string // in the output when it fails, case-insensitive
	}{
		{"findscu -aet ATTACKER", findscu, []string{"-W", "-k", "0010,0010", "-aet", "ATTACKER", "-aec", "FERRY", host, port}, false, "no acceptable presentation contexts"},
		{"echoscu -aet ATTACKER (echo allowed)", echoscu, []string{"-aet", "ATTACKER", "-aec", "FERRY", host, port}, true, ""},
		{"findscu -aet FARAWAY from the wrong address", findscu, []string{"-W", "-k", "0010,0010", "-aet", "FARAWAY", "-aec", "FERRY", host, port}, false, "calling ae title not recognized"},
		{"findscu -aet MODALITY1", findscu, []string{"-W", "-k", "0010,0010", "-aet", "MODALITY1", "-aec", "FERRY", host, port}, true, ""},
		{"findscu +tls with CT1's certificate", findscu, []string{"+tls", keyFile, certFile, "+cf", ca, "-W", "-k", "0010,0010", "-aet", "CT1", "-aec", "FERRY", host, tlsPort}, true, ""},
		{"echoscu +tls claiming CT1 without a certificate", echoscu, []string{"+tla", "+cf", ca, "-aet", "CT1", "-aec", "FERRY", host, tlsPort}, false, "calling ae title not recognized"},
		{"findscu -aet CT1 over plain TCP", findscu, []string{"-W", "-k", "0010,0010", "-aet", "CT1", "-aec", "FERRY", host, port}, false, "calling ae title not recognized"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runPeer(t, tc.prog, tc.args...)
			if tc.wantOK {
				if err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
				return
			}
			if err == nil || !strings.Contains(strings.ToLower(out), tc.wantOut) {
				t.Fatalf("err %v, want a failure saying %q:\n%s", err, tc.wantOut, out)
			}
		})
	}
}

// startPlainAndTLS serves s on a plain and a TLS listener, as ferry serve does with
// listen.dicom and listen.dicom_tls.
func startPlainAndTLS(t testing.TB, s *Server) (plainAddr, tlsAddr string) {
	t.Helper()
	if s.Logger == nil {
		s.Logger = testLogger(t)
	}
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	secure, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 2)
	go func() { served <- s.Serve(plain) }()
	go func() { served <- s.ServeTLS(secure) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		for range 2 {
			if err := <-served; !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		}
	})
	return plain.Addr().String(), secure.Addr().String()
}
