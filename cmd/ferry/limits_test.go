package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// startLimitedHTTP serves handler as serve does: HTTPConfig.server on HTTPConfig.limitListener.
func startLimitedHTTP(t *testing.T, c HTTPConfig, handler http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := c.server(handler)
	go func() { _ = srv.Serve(c.limitListener(ln, slog.New(slog.DiscardHandler))) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// get sends GET path on c and returns the status code.
func get(c net.Conn, path string) (int, error) {
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: ferry\r\n\r\n", path); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func closedByServer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second)) // guards against hanging only
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// Issue 17: HTTP had no idle timeout and no connection cap. Idle connections from one address
// take at most max_connections_per_address; a client elsewhere is served; a connection that
// sends no request is closed after read_header_timeout.
func TestHTTPConnectionLimits(t *testing.T) {
	t.Parallel()
	cfg := Config{}
	cfg.setLimitDefaults()
	c := cfg.HTTP
	c.MaxConnectionsPerAddress = 5
	c.ReadHeaderTimeout = 300 * time.Millisecond
	addr := startLimitedHTTP(t, c, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))

	var idle []net.Conn
	for range 50 {
		idle = append(idle, dialFrom(t, "127.0.0.1", addr))
	}
	refused := 0
	for _, conn := range idle[5:] {
		if closedByServer(conn) {
			refused++
		}
	}
	if refused != 45 {
		t.Errorf("%d of 45 connections over the per-address cap were closed", refused)
	}
	if code, err := get(dialFrom(t, "127.0.0.2", addr), "/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("a client from another address: %d, %v", code, err)
	}
	// The five that got in but send nothing are closed by read_header_timeout.
	for i, conn := range idle[:5] {
		if !closedByServer(conn) {
			t.Errorf("idle connection %d was not closed", i)
		}
	}
}

// write_timeout bounds ordinary routes; DICOMweb routes get dicomweb_timeout instead, so a large
// study can be fetched over a slow link.
func TestHTTPDICOMwebDeadline(t *testing.T) {
	t.Parallel()
	cfg := Config{}
	cfg.setLimitDefaults()
	c := cfg.HTTP
	c.WriteTimeout = 50 * time.Millisecond
	addr := startLimitedHTTP(t, c, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		<-time.After(300 * time.Millisecond) // a handler slower than write_timeout
		_, _ = io.WriteString(w, "study")
	}))
	if code, err := get(dialFrom(t, "127.0.0.1", addr), "/dicomweb/studies"); err != nil || code != http.StatusOK {
		t.Errorf("a slow DICOMweb answer: %d, %v; want 200 within dicomweb_timeout", code, err)
	}
	if code, err := get(dialFrom(t, "127.0.0.1", addr), "/fhir/r4/Patient"); err == nil {
		t.Errorf("a FHIR answer slower than write_timeout got %d, want the connection cut", code)
	}
}
