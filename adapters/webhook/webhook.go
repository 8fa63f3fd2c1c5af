// Package webhook posts Ferry's alerts to a URL as JSON: an unacknowledged critical result
// (engine/critical's Notifier), so that a paging system or a chat channel calls a person. The
// body carries ids and times only, never patient data beyond Ferry's ids (docs/reports.md).
package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/ferryhealth/ferry/engine/critical"
	"github.com/ferryhealth/ferry/internal/tlsconfig"
)

// DefaultTimeout bounds one attempt.
const DefaultTimeout = 10 * time.Second

// maxResponse is what is read of an answer (to reuse the connection); the rest is dropped.
const maxResponse = 4 << 10

// Notifier posts each alert to URL; a 2xx answer accepts it.
type Notifier struct {
	url    string
	client *http.Client
}

var _ critical.Notifier = (*Notifier)(nil)

// Validate checks a webhook URL: absolute http or https, with a host.
func Validate(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("webhook URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("webhook URL: want an absolute http:// or https:// URL")
	}
	return nil
}

// New returns a Notifier posting to rawURL, each attempt bounded by timeout (DefaultTimeout
// when 0), over TLS 1.2+ with AEAD suites for https.
func New(rawURL string, timeout time.Duration) (*Notifier, error) {
	if err := Validate(rawURL); err != nil {
		return nil, err
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: tlsconfig.AEADCipherSuites()}
	return &Notifier{url: rawURL, client: &http.Client{Timeout: timeout, Transport: tr,
		// A redirect could carry the alert somewhere not configured: refused.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

// Notify posts a as JSON; an answer other than 2xx is an error (the Alerter tries again later).
func (n *Notifier) Notify(ctx context.Context, a *critical.Alert) error {
	body, err := json.Marshal(a)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ferry")
	// The same alert sent twice (an answer lost on the way back) carries the same key.
	req.Header.Set("Idempotency-Key", a.Report+"/critical-unacknowledged")
	resp, err := n.client.Do(req)
	if err != nil {
		return fmt.Errorf("posting the alert: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("posting the alert: answered %s", resp.Status)
	}
	return nil
}
