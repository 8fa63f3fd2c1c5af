package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/ferryhealth/ferry/internal/tlsconfig"
)

// OutboundTLS makes an outbound connection (an MLLP or FHIR destination) TLS: the server is
// verified against CA (the system roots when empty) under ServerName (the host of the address
// or URL when empty); Cert and Key are presented for mutual TLS. TLS 1.2+ with AEAD suites only.
type OutboundTLS struct {
	CA         string `yaml:"ca"`
	Cert       string `yaml:"cert"`
	Key        string `yaml:"key"`
	ServerName string `yaml:"server_name"`
}

// OutboundAuth authenticates Ferry to a FHIR destination: one of a bearer token (read from a
// file, re-read at each request so it can be rotated, or from an environment variable) or
// OAuth 2.0 client credentials (RFC 6749 §4.4). Secrets never sit in the YAML itself.
type OutboundAuth struct {
	BearerTokenFile string       `yaml:"bearer_token_file"`
	BearerTokenEnv  string       `yaml:"bearer_token_env"`
	OAuth2          *OAuth2Grant `yaml:"oauth2"`
}

// OAuth2Grant is the client-credentials grant: the token is fetched from TokenURL with ClientID
// and the secret (from ClientSecretFile or the variable ClientSecretEnv), kept until it expires.
type OAuth2Grant struct {
	TokenURL         string   `yaml:"token_url"`
	ClientID         string   `yaml:"client_id"`
	ClientSecretFile string   `yaml:"client_secret_file"`
	ClientSecretEnv  string   `yaml:"client_secret_env"`
	Scopes           []string `yaml:"scopes"`
}

// validateOutbound checks every destination's tls and auth, reading the files they name.
func (c *Config) validateOutbound() []error {
	var errs []error
	for i, f := range c.Facilities {
		for j, d := range f.Results {
			key := fmt.Sprintf("facilities[%d].results[%d]", i, j)
			if d.TLS != nil {
				if _, err := tlsconfig.Client(d.TLS.CA, d.TLS.Cert, d.TLS.Key, d.TLS.ServerName); err != nil {
					errs = append(errs, fmt.Errorf("%s.tls: %w", key, err))
				}
				if u, err := url.Parse(d.BaseURL); d.Kind == "fhir" && err == nil && u.Scheme != "https" {
					errs = append(errs, fmt.Errorf("%s.tls: base_url must be https://", key))
				}
			}
			if d.Auth == nil {
				continue
			}
			if d.Kind != "fhir" {
				errs = append(errs, fmt.Errorf("%s.auth: only for kind fhir (an MLLP destination authenticates by tls.cert)", key))
				continue
			}
			if u, err := url.Parse(d.BaseURL); err != nil || u.Scheme != "https" {
				errs = append(errs, fmt.Errorf("%s.auth: base_url must be https:// (a credential is never sent in the clear)", key))
			}
			a := d.Auth
			n := 0
			for _, set := range []bool{a.BearerTokenFile != "", a.BearerTokenEnv != "", a.OAuth2 != nil} {
				if set {
					n++
				}
			}
			if n != 1 {
				errs = append(errs, fmt.Errorf("%s.auth: give one of bearer_token_file, bearer_token_env or oauth2", key))
				continue
			}
			if _, err := a.bearer(); a.OAuth2 == nil && err != nil {
				errs = append(errs, fmt.Errorf("%s.auth: %w", key, err))
			}
			if o := a.OAuth2; o != nil {
				if u, err := url.Parse(o.TokenURL); err != nil || u.Scheme != "https" || u.Host == "" {
					errs = append(errs, fmt.Errorf("%s.auth.oauth2.token_url: %q is not an https:// URL", key, o.TokenURL))
				}
				if o.ClientID == "" {
					errs = append(errs, fmt.Errorf("%s.auth.oauth2.client_id: required", key))
				}
				if _, err := secret(o.ClientSecretFile, o.ClientSecretEnv, "client_secret_file", "client_secret_env"); err != nil {
					errs = append(errs, fmt.Errorf("%s.auth.oauth2: %w", key, err))
				}
			}
		}
	}
	return errs
}

// bearer reads the bearer token now (a file is read at each call, so it can be rotated).
func (a *OutboundAuth) bearer() (string, error) {
	return secret(a.BearerTokenFile, a.BearerTokenEnv, "bearer_token_file", "bearer_token_env")
}

// secret reads a secret from a file or an environment variable (exactly one named).
func secret(file, env, fileKey, envKey string) (string, error) {
	switch {
	case file != "" && env != "":
		return "", fmt.Errorf("%s and %s: give one", fileKey, envKey)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", fileKey, err)
		}
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
		return "", fmt.Errorf("%s: %s is empty", fileKey, file)
	case env != "":
		if s := os.Getenv(env); s != "" {
			return s, nil
		}
		return "", fmt.Errorf("%s: the variable %s is not set", envKey, env)
	}
	return "", fmt.Errorf("%s or %s: required", fileKey, envKey)
}

// outbound is what one destination needs beyond its address: TLS, and for FHIR an HTTP client
// that authenticates.
type outbound struct {
	tls    *tls.Config
	client *http.Client  // nil: the shared client
	auth   *OutboundAuth // bearer token source, when set
}

// configure prepares the destinations that have tls or auth (checked by Validate), by the name
// their deliveries carry ("FACILITY/NAME").
func (t *transports) configure(cfg *Config) error {
	t.outbound = map[string]*outbound{}
	for _, f := range cfg.Facilities {
		named := cfg.resultDestinations(f.SendingFacility) // in f.Results' order, with their names
		for i, raw := range f.Results {
			if raw.TLS == nil && raw.Auth == nil {
				continue
			}
			d := named[i]
			o := &outbound{}
			if raw.TLS != nil {
				tc, err := tlsconfig.Client(raw.TLS.CA, raw.TLS.Cert, raw.TLS.Key, raw.TLS.ServerName)
				if err != nil {
					return fmt.Errorf("%s/%s: %w", f.SendingFacility, d.Name, err)
				}
				o.tls = tc
			}
			if d.Kind == "fhir" {
				tr := http.DefaultTransport.(*http.Transport).Clone()
				if o.tls != nil {
					tr.TLSClientConfig = o.tls
				} else {
					tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: tlsconfig.AEADCipherSuites()}
				}
				o.client = &http.Client{Timeout: t.timeout, Transport: tr}
				if raw.Auth != nil && raw.Auth.OAuth2 != nil {
					g := raw.Auth.OAuth2
					sec, err := secret(g.ClientSecretFile, g.ClientSecretEnv, "client_secret_file", "client_secret_env")
					if err != nil {
						return fmt.Errorf("%s/%s: %w", f.SendingFacility, d.Name, err)
					}
					cc := &clientcredentials.Config{ClientID: g.ClientID, ClientSecret: sec, TokenURL: g.TokenURL, Scopes: g.Scopes}
					// The token endpoint is reached with the destination's TLS settings too.
					ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Timeout: t.timeout, Transport: tr})
					o.client = cc.Client(ctx)
					o.client.Timeout = t.timeout
				} else {
					o.auth = raw.Auth
				}
			}
			t.outbound[f.SendingFacility+"/"+d.Name] = o
		}
	}
	return nil
}

// authorize sets the destination's bearer token on req; errors name the key, not the token.
func (o *outbound) authorize(req *http.Request) error {
	if o == nil || o.auth == nil {
		return nil
	}
	tok, err := o.auth.bearer()
	if err != nil {
		return errors.New("reading the destination's bearer token: " + err.Error())
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return nil
}
