package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ferryhealth/ferry/adapters/web"
	"github.com/ferryhealth/ferry/engine/access"
)

// SessionsConfig tunes web sessions (docs/security.md, "Web sessions").
type SessionsConfig struct {
	// IdleTimeout ends a session unused this long (default 30m); AbsoluteTimeout this long after
	// sign-in (default 12h).
	IdleTimeout     time.Duration `yaml:"idle_timeout"`
	AbsoluteTimeout time.Duration `yaml:"absolute_timeout"`
}

// SSOConfig is single sign-on through the hospital's OpenID Connect provider (docs/security.md,
// "Single sign-on"): web.SSOConfig, with the client secret from a file or the environment.
type SSOConfig struct {
	web.SSOConfig `yaml:",inline"`
	// ClientSecretFile holds Ferry's client secret at the provider; env: FERRY_SSO_CLIENT_SECRET
	// (the secret) or FERRY_SSO_CLIENT_SECRET_FILE. Never in the config file itself.
	ClientSecretFile string `yaml:"client_secret_file"`
}

// validateAccess checks sessions and reads the single sign-on secret.
func (c *Config) validateAccess() []error {
	var errs []error
	if c.BreakGlassFor < 0 {
		errs = append(errs, errors.New("break_glass_for: must not be negative"))
	}
	if c.Sessions.IdleTimeout < 0 || c.Sessions.AbsoluteTimeout < 0 {
		errs = append(errs, errors.New("sessions: timeouts must not be negative"))
	}
	if c.Sessions.IdleTimeout > 0 && c.Sessions.AbsoluteTimeout > 0 && c.Sessions.IdleTimeout > c.Sessions.AbsoluteTimeout {
		errs = append(errs, errors.New("sessions.idle_timeout: longer than absolute_timeout"))
	}
	if c.SSO == nil {
		return errs
	}
	if f := os.Getenv("FERRY_SSO_CLIENT_SECRET_FILE"); f != "" {
		c.SSO.ClientSecretFile = f
	}
	switch {
	case os.Getenv("FERRY_SSO_CLIENT_SECRET") != "":
		c.SSO.ClientSecret = os.Getenv("FERRY_SSO_CLIENT_SECRET")
	case c.SSO.ClientSecretFile != "":
		b, err := os.ReadFile(c.SSO.ClientSecretFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("sso.client_secret_file: %w", err))
		}
		c.SSO.ClientSecret = strings.TrimSpace(string(b))
	}
	if err := c.SSO.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// accessService is the people-and-access service of cfg on st, with the bootstrap token.
func (c *Config) accessService(st store, bootstrapToken string) *access.Service {
	return &access.Service{Store: st, BootstrapToken: bootstrapToken,
		IdleTimeout: c.Sessions.IdleTimeout, AbsoluteTimeout: c.Sessions.AbsoluteTimeout}
}

// patients is who reaches which patient: physicians their own, radiologists their facilities'
// (facilities[].id → the sending facility its orders carry), break-glass for BreakGlassFor.
func (c *Config) patients(st store) *access.Patients {
	sending := map[string]string{}
	for _, f := range c.Facilities {
		if f.ID != "" && f.SendingFacility != "" {
			sending[f.ID] = f.SendingFacility
		}
	}
	return &access.Patients{Store: st, Resources: st, SendingFacilities: sending, BreakGlassFor: c.BreakGlassFor}
}

// sso returns the configured single sign-on, nil for none.
func (c *Config) sso() (*web.SSO, error) {
	if c.SSO == nil {
		return nil, nil
	}
	return web.NewSSO(c.SSO.SSOConfig)
}
