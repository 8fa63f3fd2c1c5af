package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferryhealth/ferry/adapters/mllp"
	"github.com/ferryhealth/ferry/engine"
)

// transports sends deliveries: MLLP through a few connections per destination (each an
// mllp.Sender, one message at a time as MLLP requires), FHIR by HTTP.
type transports struct {
	conns   int           // MLLP connections per destination
	timeout time.Duration // one attempt
	logger  *slog.Logger
	http    *http.Client

	// outbound holds the destinations with TLS or authentication, by "FACILITY/NAME"
	// (outbound.go, configure); the others share http and plain MLLP senders.
	outbound map[string]*outbound

	mu     sync.Mutex
	mllp   map[string][]*mllp.Sender // by destination address (and name, when it has TLS)
	cursor map[string]int
}

func newTransports(conns int, timeout time.Duration, logger *slog.Logger) *transports {
	return &transports{conns: max(conns, 1), timeout: timeout, logger: logger,
		http: &http.Client{Timeout: timeout}, mllp: map[string][]*mllp.Sender{}, cursor: map[string]int{}}
}

// send delivers d to dest, as engine.Deliverer.Transport; an error opening the connection is
// engine.ErrUnreachable (the deliverer probes the destination until it answers).
func (t *transports) send(ctx context.Context, dest engine.ResultDestination, d *engine.Delivery) (string, error) {
	response, err := t.sendKind(ctx, dest, d)
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		err = fmt.Errorf("%w: %w", engine.ErrUnreachable, err)
	}
	return response, err
}

// sendKind sends d by its kind's transport.
func (t *transports) sendKind(ctx context.Context, dest engine.ResultDestination, d *engine.Delivery) (string, error) {
	switch d.Kind {
	case engine.DeliveryMLLP:
		ack, err := t.sender(dest.Address, t.outbound[d.Destination], d.Destination).Send(ctx, d.Payload)
		var nak *mllp.NAKError
		if errors.As(err, &nak) {
			// AR/CR: rejected, sending it again changes nothing; AE/CE: an error the receiver
			// may get over.
			return string(ack), &engine.DeliveryRefusal{Code: nak.Code, Permanent: nak.Code == "AR" || nak.Code == "CR"}
		}
		return string(ack), err
	case engine.DeliveryFHIR:
		return t.sendFHIR(ctx, dest, d)
	}
	return "", fmt.Errorf("unknown delivery kind %q", d.Kind)
}

// probe opens a TCP connection to dest and closes it, as engine.Deliverer.Probe: nil when the
// destination answers. It says nothing of whether the receiver will accept a message; the
// delivery that follows does.
func (t *transports) probe(ctx context.Context, dest engine.ResultDestination) error {
	addr := dest.Address
	if dest.Kind == engine.DeliveryFHIR {
		u, err := url.Parse(dest.BaseURL)
		if err != nil {
			return err
		}
		addr = u.Host
		if u.Port() == "" {
			addr = net.JoinHostPort(u.Hostname(), map[bool]string{true: "443", false: "80"}[u.Scheme == "https"])
		}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

// sender returns the next of the destination's MLLP senders, opening them on first use. Plain
// destinations at one address share senders; a TLS destination has its own.
func (t *transports) sender(addr string, o *outbound, name string) *mllp.Sender {
	key := addr
	var tc *tls.Config
	if o != nil && o.tls != nil {
		key, tc = addr+"|"+name, o.tls
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	pool := t.mllp[key]
	if pool == nil {
		for range t.conns {
			pool = append(pool, &mllp.Sender{Addr: addr, TLSConfig: tc, Timeout: t.timeout, Logger: t.logger})
		}
		t.mllp[key] = pool
	}
	i := t.cursor[key] % len(pool)
	t.cursor[key] = i + 1
	return pool[i]
}

// sendFHIR posts the delivery's transaction Bundle to the destination's FHIR base: 2xx is
// delivered, 4xx refused for good (the OperationOutcome kept), anything else retried.
func (t *transports) sendFHIR(ctx context.Context, dest engine.ResultDestination, d *engine.Delivery) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(dest.BaseURL, "/"), bytes.NewReader(d.Payload))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("X-Request-Id", d.ControlID)
	client := t.http
	if o := t.outbound[d.Destination]; o != nil && o.client != nil {
		client = o.client
		if err := o.authorize(req); err != nil {
			return "", err
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return string(body), nil
	// 401: the credential may be renewed or fixed (a rotated token file, an expired OAuth token):
	// retried like 408 and 429, not dead-lettered.
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusUnauthorized:
		return string(body), &engine.DeliveryRefusal{Code: "HTTP " + strconv.Itoa(resp.StatusCode), Permanent: true}
	}
	return string(body), &engine.DeliveryRefusal{Code: "HTTP " + strconv.Itoa(resp.StatusCode)}
}

// close closes every MLLP connection.
func (t *transports) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, pool := range t.mllp {
		for _, s := range pool {
			s.Close()
		}
	}
}
