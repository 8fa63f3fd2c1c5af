package delivery

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

	"github.com/ferryhealth/ferry/engine/outbox"
	"github.com/ferryhealth/ferry/internal/tlsconfig"
)

// TLS makes an outbound connection (an MLLP or FHIR destination) TLS: the server is verified
// against CA (the system roots when empty) under ServerName (the host of the address or URL
// when empty); Cert and Key are presented for mutual TLS. TLS 1.2+ with AEAD suites only.
type TLS struct {
	CA         string `yaml:"ca"`
	Cert       string `yaml:"cert"`
	Key        string `yaml:"key"`
	ServerName string `yaml:"server_name"`
}

// Auth authenticates Ferry to a FHIR destination: one of a bearer token (read from a file,
// re-read at each request so it can be rotated, or from an environment variable) or OAuth 2.0
// client credentials (RFC 6749 §4.4). Secrets never sit in the YAML itself.
type Auth struct {
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

// Validate checks a destination's tls and auth (either may be nil), reading the files they
// name. Each error starts with the key it is about ("tls: …", "auth.oauth2.client_id: …").
func Validate(kind, baseURL string, t *TLS, a *Auth) []error {
	var errs []error
	if t != nil {
		if _, err := tlsconfig.Client(t.CA, t.Cert, t.Key, t.ServerName); err != nil {
			errs = append(errs, fmt.Errorf("tls: %w", err))
		}
		if u, err := url.Parse(baseURL); kind == outbox.FHIR && err == nil && u.Scheme != "https" {
			errs = append(errs, errors.New("tls: base_url must be https://"))
		}
	}
	if a == nil {
		return errs
	}
	if kind != outbox.FHIR {
		return append(errs, errors.New("auth: only for kind fhir (an MLLP destination authenticates by tls.cert)"))
	}
	if u, err := url.Parse(baseURL); err != nil || u.Scheme != "https" {
		errs = append(errs, errors.New("auth: base_url must be https:// (a credential is never sent in the clear)"))
	}
	n := 0
	for _, set := range []bool{a.BearerTokenFile != "", a.BearerTokenEnv != "", a.OAuth2 != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return append(errs, errors.New("auth: give one of bearer_token_file, bearer_token_env or oauth2"))
	}
	if _, err := a.bearer(); a.OAuth2 == nil && err != nil {
		errs = append(errs, fmt.Errorf("auth: %w", err))
	}
	if o := a.OAuth2; o != nil {
		if u, err := url.Parse(o.TokenURL); err != nil || u.Scheme != "https" || u.Host == "" {
			errs = append(errs, fmt.Errorf("auth.oauth2.token_url: %q is not an https:// URL", o.TokenURL))
		}
		if o.ClientID == "" {
			errs = append(errs, errors.New("auth.oauth2.client_id: required"))
		}
		if _, err := secret(o.ClientSecretFile, o.ClientSecretEnv, "client_secret_file", "client_secret_env"); err != nil {
			errs = append(errs, fmt.Errorf("auth.oauth2: %w", err))
		}
	}
	return errs
}

// bearer reads the bearer token now (a file is read at each call, so it can be rotated).
func (a *Auth) bearer() (string, error) {
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

// secured is what one destination needs beyond its address: TLS, and for FHIR an HTTP client
// that authenticates.
type secured struct {
	tls    *tls.Config
	client *http.Client // nil: the shared client
	auth   *Auth        // bearer token source, when set
}

// Secure prepares the destination whose deliveries carry name ("FACILITY/NAME") with its tls
// and auth (checked by Validate; either may be nil). Call it before the first Send.
func (t *Transports) Secure(name, kind string, tc *TLS, auth *Auth) error {
	if tc == nil && auth == nil {
		return nil
	}
	s := &secured{}
	if tc != nil {
		c, err := tlsconfig.Client(tc.CA, tc.Cert, tc.Key, tc.ServerName)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		s.tls = c
	}
	if kind == outbox.FHIR {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if s.tls != nil {
			tr.TLSClientConfig = s.tls
		} else {
			tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: tlsconfig.AEADCipherSuites()}
		}
		s.client = &http.Client{Timeout: t.timeout, Transport: tr}
		if auth != nil && auth.OAuth2 != nil {
			g := auth.OAuth2
			sec, err := secret(g.ClientSecretFile, g.ClientSecretEnv, "client_secret_file", "client_secret_env")
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			cc := &clientcredentials.Config{ClientID: g.ClientID, ClientSecret: sec, TokenURL: g.TokenURL, Scopes: g.Scopes}
			// The token endpoint is reached with the destination's TLS settings too.
			ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Timeout: t.timeout, Transport: tr})
			s.client = cc.Client(ctx)
			s.client.Timeout = t.timeout
		} else {
			s.auth = auth
		}
	}
	t.secured[name] = s
	return nil
}

// authorize sets the destination's bearer token on req; errors name the key, not the token.
func (s *secured) authorize(req *http.Request) error {
	if s == nil || s.auth == nil {
		return nil
	}
	tok, err := s.auth.bearer()
	if err != nil {
		return errors.New("reading the destination's bearer token: " + err.Error())
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return nil
}
