// Package delivery is the report outbox's transports: what engine/outbox's Deliverer is given
// as Transport and Probe. MLLP goes through a few connections per destination, each an MLLP
// client the composition root supplies (adapters/mllp's Sender: an adapter never imports
// another), one message at a time as MLLP requires; FHIR goes by HTTP. Each destination may have
// its own TLS and, for FHIR, its own credentials (security.go).
package delivery

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferryhealth/ferry/engine/outbox"
)

// MLLPClient sends one message over MLLP and returns the receiver's ACK: adapters/mllp's
// Sender. Send is called one message at a time per client; an ACK other than AA or CA comes
// back with an error that has ACKCode (MSA-1), and a connection that cannot be opened with
// the *net.OpError of the dial.
type MLLPClient interface {
	Send(ctx context.Context, msg []byte) (ack []byte, err error)
	Close() error
}

// negativeACK is an MLLPClient's error for an ACK other than AA or CA.
type negativeACK interface {
	error
	ACKCode() string
}

// Transports sends deliveries. Create it with New; Secure the destinations that have TLS or
// credentials before the first Send.
type Transports struct {
	conns   int           // MLLP connections per destination
	timeout time.Duration // one attempt
	dial    func(addr string, tc *tls.Config, timeout time.Duration) MLLPClient
	http    *http.Client

	// secured holds the destinations with TLS or authentication, by "FACILITY/NAME" (Secure);
	// the others share http and plain MLLP clients.
	secured map[string]*secured

	mu     sync.Mutex
	mllp   map[string][]MLLPClient // by destination address (and name, when it has TLS)
	cursor map[string]int
}

// New returns transports that give each MLLP destination conns connections, made by dial, and
// bound each attempt by timeout.
func New(conns int, timeout time.Duration, dial func(addr string, tc *tls.Config, timeout time.Duration) MLLPClient) *Transports {
	return &Transports{conns: max(conns, 1), timeout: timeout, dial: dial, secured: map[string]*secured{},
		http: &http.Client{Timeout: timeout}, mllp: map[string][]MLLPClient{}, cursor: map[string]int{}}
}

// Send delivers d to dest, as outbox.Deliverer.Transport; an error opening the connection is
// outbox.ErrUnreachable (the deliverer probes the destination until it answers).
func (t *Transports) Send(ctx context.Context, dest outbox.Destination, d *outbox.Delivery) (string, error) {
	response, err := t.sendKind(ctx, dest, d)
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		err = fmt.Errorf("%w: %w", outbox.ErrUnreachable, err)
	}
	return response, err
}

// sendKind sends d by its kind's transport.
func (t *Transports) sendKind(ctx context.Context, dest outbox.Destination, d *outbox.Delivery) (string, error) {
	switch d.Kind {
	case outbox.MLLP:
		ack, err := t.client(dest.Address, t.secured[d.Destination], d.Destination).Send(ctx, d.Payload)
		var nak negativeACK
		if errors.As(err, &nak) {
			// AR/CR: rejected, sending it again changes nothing; AE/CE: an error the receiver
			// may get over.
			code := nak.ACKCode()
			return string(ack), &outbox.Refusal{Code: code, Permanent: code == "AR" || code == "CR"}
		}
		return string(ack), err
	case outbox.FHIR:
		return t.sendFHIR(ctx, dest, d)
	}
	return "", fmt.Errorf("unknown delivery kind %q", d.Kind)
}

// Probe opens a TCP connection to dest and closes it, as outbox.Deliverer.Probe: nil when the
// destination answers. It says nothing of whether the receiver will accept a message; the
// delivery that follows does.
func (t *Transports) Probe(ctx context.Context, dest outbox.Destination) error {
	addr := dest.Address
	if dest.Kind == outbox.FHIR {
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

// client returns the next of the destination's MLLP clients, opening them on first use. Plain
// destinations at one address share clients; a TLS destination has its own.
func (t *Transports) client(addr string, s *secured, name string) MLLPClient {
	key := addr
	var tc *tls.Config
	if s != nil && s.tls != nil {
		key, tc = addr+"|"+name, s.tls
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	pool := t.mllp[key]
	if pool == nil {
		for range t.conns {
			pool = append(pool, t.dial(addr, tc, t.timeout))
		}
		t.mllp[key] = pool
	}
	i := t.cursor[key] % len(pool)
	t.cursor[key] = i + 1
	return pool[i]
}

// sendFHIR posts the delivery's transaction Bundle to the destination's FHIR base: 2xx is
// delivered, 4xx refused for good (the OperationOutcome kept), anything else retried.
func (t *Transports) sendFHIR(ctx context.Context, dest outbox.Destination, d *outbox.Delivery) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(dest.BaseURL, "/"), bytes.NewReader(d.Payload))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("X-Request-Id", d.ControlID)
	client := t.http
	if s := t.secured[d.Destination]; s != nil && s.client != nil {
		client = s.client
		if err := s.authorize(req); err != nil {
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
		return string(body), &outbox.Refusal{Code: "HTTP " + strconv.Itoa(resp.StatusCode), Permanent: true}
	}
	return string(body), &outbox.Refusal{Code: "HTTP " + strconv.Itoa(resp.StatusCode)}
}

// Close closes every MLLP connection.
func (t *Transports) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, pool := range t.mllp {
		for _, c := range pool {
			c.Close()
		}
	}
}
