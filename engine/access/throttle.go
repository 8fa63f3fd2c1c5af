package access

import (
	"context"
	"fmt"
	"time"
)

// Login throttling: after maxAccountFailures failed logins of one account, or
// maxAddressFailures from one address, within throttleWindow, further attempts of that account
// or address are refused (without checking the password) until the window has passed since the
// first of them. A success clears the account's count. The counts live in the store
// (Store.CountLoginFailure), so every node sees every failure: N nodes give an attacker no more
// guesses than one.
const (
	maxAccountFailures = 5
	maxAddressFailures = 20
	throttleWindow     = 15 * time.Minute
)

// loginAllowed reports whether a login of account from address may be tried at now.
func (s *Service) loginAllowed(ctx context.Context, account, address string, now time.Time) (bool, error) {
	accountN, addressN, err := s.Store.LoginFailures(ctx, account, address, now.Add(-throttleWindow))
	if err != nil {
		return false, fmt.Errorf("checking the login throttle: %w", err)
	}
	return accountN < maxAccountFailures && addressN < maxAddressFailures, nil
}

// loginFailed counts a failed login and returns its Failure (or the store's error: a failure
// that cannot be counted is not answered as a mere wrong password).
func (s *Service) loginFailed(ctx context.Context, account, address string, now time.Time, reason string) error {
	if err := s.Store.CountLoginFailure(ctx, account, address, now, now.Add(-throttleWindow)); err != nil {
		return fmt.Errorf("counting a failed login: %w", err)
	}
	return &Failure{Reason: reason, User: account}
}
