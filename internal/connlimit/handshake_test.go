package connlimit

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// selfSigned returns a server certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "connlimit test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// deadlineConn records the deadlines set on a connection.
type deadlineConn struct {
	net.Conn
	mu   sync.Mutex
	last time.Time
	sets int
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.last, c.sets = t, c.sets+1
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

// No more than Max places are taken at once; a place given back is usable again; Max 0 is no
// cap.
func TestHandshakesBegin(t *testing.T) {
	t.Parallel()
	h := &Handshakes{Max: 3}
	for i := range 3 {
		if !h.Begin() {
			t.Fatalf("Begin %d refused under Max 3", i+1)
		}
	}
	if h.Begin() {
		t.Fatalf("a fourth Begin was allowed with Max 3")
	}
	if n := h.InProgress(); n != 3 {
		t.Fatalf("%d in progress after a refused Begin, want 3", n)
	}
	h.End()
	if !h.Begin() {
		t.Fatalf("a place given back by End was not usable again")
	}
	unlimited := &Handshakes{}
	for i := range 1000 {
		if !unlimited.Begin() {
			t.Fatalf("Max 0: Begin %d refused, want no cap", i+1)
		}
	}
}

// A completed handshake returns the TLS connection, gives its place back and leaves no deadline
// on the connection.
func TestHandshakeCompletes(t *testing.T) {
	t.Parallel()
	cert, pool := selfSigned(t)
	srvSide, cliSide := net.Pipe()
	defer srvSide.Close()
	defer cliSide.Close()
	go func() {
		c := tls.Client(cliSide, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if c.Handshake() == nil {
			_, _ = c.Write([]byte("hello"))
		}
	}()

	h := &Handshakes{Max: 1, Timeout: time.Minute}
	if !h.Begin() {
		t.Fatal("Begin refused")
	}
	dc := &deadlineConn{Conn: srvSide}
	tc, err := h.Handshake(context.Background(), dc, &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if n := h.InProgress(); n != 0 {
		t.Errorf("%d handshakes in progress after it completed, want 0", n)
	}
	dc.mu.Lock()
	last, sets := dc.last, dc.sets
	dc.mu.Unlock()
	if sets < 2 || !last.IsZero() {
		t.Errorf("deadline after the handshake: %v (%d set), want cleared after the timeout's", last, sets)
	}
	buf := make([]byte, 5)
	if _, err := tc.Read(buf); err != nil || string(buf) != "hello" {
		t.Errorf("read over TLS: %q, %v", buf, err)
	}
}

// A peer that connects and says nothing is cut off at Timeout, not before, and its place is
// given back; the connection is left for the caller to close.
func TestHandshakeTimeout(t *testing.T) {
	t.Parallel()
	cert, _ := selfSigned(t)
	synctest.Test(t, func(t *testing.T) {
		srvSide, cliSide := net.Pipe()
		defer cliSide.Close()
		h := &Handshakes{Max: 1, Timeout: 10 * time.Second}
		h.Begin()
		done := make(chan error, 1)
		go func() {
			_, err := h.Handshake(context.Background(), srvSide, &tls.Config{Certificates: []tls.Certificate{cert}})
			done <- err
		}()
		time.Sleep(9 * time.Second)
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("handshake ended before Timeout: %v", err)
		default:
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("a silent peer's handshake succeeded")
			}
		default:
			t.Fatalf("a silent peer's handshake still runs after Timeout")
		}
		if n := h.InProgress(); n != 0 {
			t.Errorf("%d handshakes in progress after the timeout, want 0", n)
		}
		srvSide.Close()
	})
}

// A handshake ends when its context does, as a server's does at the end of its shutdown.
func TestHandshakeContextCancelled(t *testing.T) {
	t.Parallel()
	cert, _ := selfSigned(t)
	synctest.Test(t, func(t *testing.T) {
		srvSide, cliSide := net.Pipe()
		defer srvSide.Close()
		defer cliSide.Close()
		h := &Handshakes{}
		h.Begin()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := h.Handshake(ctx, srvSide, &tls.Config{Certificates: []tls.Certificate{cert}})
			done <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-done; err == nil {
			t.Fatalf("a handshake outlived its context")
		}
		if n := h.InProgress(); n != 0 {
			t.Errorf("%d handshakes in progress after cancel, want 0", n)
		}
	})
}
