package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// writeTestPKI writes a CA, a server certificate for localhost and a client certificate for
// ct1.radiology.test (RSA: every dcmtk TLS profile takes it) as PEM files in dir.
func writeTestPKI(t *testing.T, dir string) (ca, serverCert, serverKey, clientCert, clientKey string) {
	t.Helper()
	newKey := func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Ferry test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	issue := func(name, cn string, usage x509.ExtKeyUsage) (string, string) {
		k := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			DNSNames: []string{cn}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalPKCS8PrivateKey(k)
		return write(name+".pem", "CERTIFICATE", der), write(name+".key", "PRIVATE KEY", kb)
	}
	ca = write("ca.pem", "CERTIFICATE", caDER)
	serverCert, serverKey = issue("server", "localhost", x509.ExtKeyUsageServerAuth)
	clientCert, clientKey = issue("ct1", "ct1.radiology.test", x509.ExtKeyUsageClientAuth)
	return
}

var dicomTLSLine = regexp.MustCompile(`msg="DICOM TLS serving" dicom_tls=(\S+)`)

// TestServeDICOMDoors runs issue 17's DICOM attacks against `ferry serve` on both stores, with
// dcmtk: findscu -aet ATTACKER, a listed AE title claimed from an address not bound to it, a
// store from an unknown caller; and a modality bound to its certificate storing over DICOM TLS
// (storescu +tls), logged at info level with its AE title and certificate subject.
func TestServeDICOMDoors(t *testing.T) {
	t.Parallel()
	storescu := requirePeer(t, "storescu", "dcmtk")
	findscu := requirePeer(t, "findscu", "dcmtk")
	echoscu := requirePeer(t, "echoscu", "dcmtk")
	study := studyFile(t, t.TempDir())
	forEachStore(t, func(t *testing.T, db, dir string) {
		ca, cert, key, clientCert, clientKey := writeTestPKI(t, dir)
		p := startFerry(t, db, dir, serveOptions{Config: `listen: {dicom_tls: "127.0.0.1:0"}
dicom:
  tls: {cert: ` + cert + `, key: ` + key + `, client_ca: ` + ca + `}
  peers:
    - {ae_title: MODALITY1, addresses: [127.0.0.1]}
    - {ae_title: FARAWAY, addresses: [10.9.9.0/24]}
    - {ae_title: CT1, san: [ct1.radiology.test], operations: [store, echo]}
`})
		m := dicomTLSLine.FindStringSubmatch(waitForLog(t, p, dicomTLSLine))
		if m == nil {
			t.Fatalf("no DICOM TLS listener in the log:\n%s", p.stderr.tail(4<<10))
		}
		host, port, _ := net.SplitHostPort(p.DICOMAddr)
		_, tlsPort, _ := net.SplitHostPort(m[1])
		tlsArgs := []string{"+tls", clientKey, clientCert, "+cf", ca}
		tests := []struct {
			name    string
			prog    string
			args    []string
			wantOut string // "" when it must succeed; else what its failure says (case-insensitive)
		}{
			{"findscu -aet ATTACKER", findscu, []string{"-W", "-k", "0010,0010", "-aet", "ATTACKER", "-aec", "FERRY", host, port}, "no acceptable presentation contexts"},
			{"storescu -aet ATTACKER", storescu, []string{"-aet", "ATTACKER", "-aec", "FERRY", host, port, study}, "no acceptable presentation contexts"},
			{"findscu -aet FARAWAY from 127.0.0.1", findscu, []string{"-W", "-k", "0010,0010", "-aet", "FARAWAY", "-aec", "FERRY", host, port}, "calling ae title not recognized"},
			{"storescu -aet CT1 over plain TCP", storescu, []string{"-aet", "CT1", "-aec", "FERRY", host, port, study}, "calling ae title not recognized"},
			{"echoscu -aet ATTACKER", echoscu, []string{"-aet", "ATTACKER", "-aec", "FERRY", host, port}, ""},
			{"findscu -aet MODALITY1", findscu, []string{"-W", "-k", "0010,0010", "-aet", "MODALITY1", "-aec", "FERRY", host, port}, ""},
			{"storescu +tls -aet CT1", storescu, append(tlsArgs, "-aet", "CT1", "-aec", "FERRY", host, tlsPort, study), ""},
			{"findscu +tls -aet CT1 (not among its operations)", findscu, append(tlsArgs, "-W", "-k", "0010,0010", "-aet", "CT1", "-aec", "FERRY", host, tlsPort), "no acceptable presentation contexts"},
			{"echoscu without a client certificate on the TLS port", echoscu, []string{"+tla", "+cf", ca, "-aet", "MODALITY1", "-aec", "FERRY", host, tlsPort}, "association request failed"},
		}
		for _, tc := range tests {
			out, err := exec.Command(tc.prog, tc.args...).CombinedOutput()
			if tc.wantOut == "" && err != nil {
				t.Errorf("%s: %v\n%s", tc.name, err, out)
			}
			if tc.wantOut != "" && (err == nil || !strings.Contains(strings.ToLower(string(out)), tc.wantOut)) {
				t.Errorf("%s: err %v, want a failure saying %q:\n%s", tc.name, err, tc.wantOut, out)
			}
		}
		stored, _ := filepath.Glob(filepath.Join(dir, "ferry-data", "dicom", "*", "*", "*.dcm"))
		if len(stored) != 1 {
			t.Errorf("stored %d instances, want the one CT1 sent over TLS", len(stored))
		}
		// The server logs an operation after answering it, and stderr reaches the test through
		// a pipe: wait for the lines (the deadline only guards against hanging).
		for _, want := range []string{`cert_subject="CN=ct1.radiology.test" calling_ae=CT1`,
			`msg="DICOM operations refused to this caller" remote=127.0.0.1`, `refused_because="address not bound to this AE title"`,
			`level=INFO msg="DICOM operation complete".*calling_ae=CT1.*command=C-STORE-RQ`} {
			waitForLog(t, p, regexp.MustCompile(want))
		}
	})
}

// TestDICOMConfig: the dicom: section's defaults (demo without peers; with peers unknown
// callers may only echo; the older allow-list rejects them as before) and its refusals.
func TestDICOMConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, yaml string
		want       DICOMUnknownCallers // defaults, when no error is wanted
		wantErr    string
	}{
		{"no peers: demo", "", DICOMUnknownCallers{"allow", "allow", "allow"}, ""},
		{"peers", "dicom: {peers: [{ae_title: CT1, addresses: [10.0.0.0/24]}]}\n", DICOMUnknownCallers{"allow", "refuse", "refuse"}, ""},
		{"older allow-list", "dicom: {accept_calling_ae_titles: [CT1]}\n", DICOMUnknownCallers{"refuse", "refuse", "refuse"}, ""},
		{"explicit policy", "dicom: {peers: [{ae_title: CT1}], unknown_callers: {echo: refuse, store: allow}}\n", DICOMUnknownCallers{"refuse", "refuse", "allow"}, ""},
		{"both lists", "dicom: {peers: [{ae_title: CT1}], accept_calling_ae_titles: [CT1]}\n", DICOMUnknownCallers{}, "replaced by dicom.peers"},
		{"bad address", "dicom: {peers: [{ae_title: CT1, addresses: [10.0.0.300]}]}\n", DICOMUnknownCallers{}, `dicom.peers[0] (CT1).addresses: "10.0.0.300"`},
		{"certificate without client CA", "dicom: {peers: [{ae_title: CT1, san: [ct1.example]}]}\n", DICOMUnknownCallers{}, "dicom.tls.client_ca is needed"},
		{"unknown operation", "dicom: {peers: [{ae_title: CT1, operations: [move]}]}\n", DICOMUnknownCallers{}, `unknown operation "move"`},
		{"bad policy", "dicom: {unknown_callers: {store: maybe}}\n", DICOMUnknownCallers{}, "dicom.unknown_callers.store"},
		{"TLS port without TLS", "listen: {dicom_tls: ':2762'}\n", DICOMUnknownCallers{}, "listen.dicom_tls: needs dicom.tls"},
		{"optional client certificates without a CA", "dicom: {tls: {cert: a, key: b, client_certificates: optional}}\n", DICOMUnknownCallers{}, "client_certificates: needs client_ca"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadTestConfig(t, tc.yaml)
			if err == nil && tc.wantErr == "" {
				// Peers are checked by dimse.Server.Validate when the server is built.
				_, err = cfg.dicomServer(nil, nil)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					if err == nil && cfg != nil {
						_, err = cfg.dicomServer(nil, nil)
					}
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.DICOM.UnknownCallers != tc.want {
				t.Errorf("unknown callers %+v, want %+v", cfg.DICOM.UnknownCallers, tc.want)
			}
			if d := cfg.DICOM; d.MaxConnectionsPerAddress != 20 || d.MaxHeaderSize != 16<<20 || d.IdleTimeout != time.Minute || d.HandshakeTimeout != 10*time.Second {
				t.Errorf("limits %+v", d)
			}
		})
	}
}

// waitForLog waits until re matches ferry serve's stderr, looking again at each line it writes,
// and returns the log then; it fails the test if the line never comes (after hangGuard).
func waitForLog(t *testing.T, p *ferryProcess, re *regexp.Regexp) string {
	t.Helper()
	return awaitOutput(t, p.stderr, p.exited, "a log line matching "+re.String(), re.MatchString)
}
