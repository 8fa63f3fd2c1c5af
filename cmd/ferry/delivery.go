package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/ferryhealth/ferry/adapters/delivery"
	"github.com/ferryhealth/ferry/adapters/mllp"
)

// validateOutbound checks every destination's tls and auth, reading the files they name.
func (c *Config) validateOutbound() []error {
	var errs []error
	for i, f := range c.Facilities {
		for j, d := range f.Results {
			for _, err := range delivery.Validate(d.Kind, d.BaseURL, d.TLS, d.Auth) {
				errs = append(errs, fmt.Errorf("facilities[%d].results[%d].%w", i, j, err))
			}
		}
	}
	return errs
}

// deliveryTransports returns the transports of the configured destinations: delivery.connections
// MLLP connections each (adapters/mllp's Sender), every attempt bounded by delivery.timeout, and
// the destinations' TLS and authentication (checked by Validate).
func (c *Config) deliveryTransports(logger *slog.Logger) (*delivery.Transports, error) {
	t := delivery.New(c.Delivery.Connections, c.Delivery.Timeout, func(addr string, tc *tls.Config, timeout time.Duration) delivery.MLLPClient {
		return &mllp.Sender{Addr: addr, TLSConfig: tc, Timeout: timeout, Logger: logger}
	})
	for _, f := range c.Facilities {
		named := c.resultDestinations(f.SendingFacility) // in f.Results' order, with their names
		for i, d := range f.Results {
			if err := t.Secure(f.SendingFacility+"/"+named[i].Name, d.Kind, d.TLS, d.Auth); err != nil {
				t.Close()
				return nil, err
			}
		}
	}
	return t, nil
}
