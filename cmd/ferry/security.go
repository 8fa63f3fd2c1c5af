package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// trustedProxies parses http.trusted_proxies: CIDRs, or single addresses taken as /32 or /128.
func (h HTTPConfig) trustedProxies() ([]*net.IPNet, error) {
	var out []*net.IPNet
	for i, s := range h.TrustedProxies {
		s = strings.TrimSpace(s)
		if !strings.Contains(s, "/") {
			if ip := net.ParseIP(s); ip != nil {
				bits := 128
				if ip.To4() != nil {
					ip, bits = ip.To4(), 32
				}
				out = append(out, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
				continue
			}
		}
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			return nil, fmt.Errorf("http.trusted_proxies[%d]: %q is not a CIDR or an IP address", i, s)
		}
		out = append(out, n)
	}
	return out, nil
}

// minAdminTokenLen is the shortest admin token accepted: 43 characters of base64url carry 256
// bits (32 random bytes); a token of hex digits alone needs minHexAdminTokenLen (64).
const (
	minAdminTokenLen    = 43
	minHexAdminTokenLen = 64
	// minAdminTokenDistinct rejects long tokens made of a few repeated characters
	// ("change-me-change-me-…"); 32 random bytes in hex or base64url have far more.
	minAdminTokenDistinct = 10
)

// checkAdminToken refuses a token with less than 32 random bytes' worth of characters (issue
// 17 item 10): at least 43 characters, at least 64 when they are all hex digits, and at least
// 10 distinct characters. The error never contains the token.
func checkAdminToken(token string) error {
	hexOnly := token != "" && strings.Trim(token, "0123456789abcdefABCDEF") == ""
	distinct := map[rune]bool{}
	for _, r := range token {
		distinct[r] = true
	}
	switch {
	case hexOnly && len(token) < minHexAdminTokenLen:
		return fmt.Errorf("a hex token of %d digits is shorter than 32 random bytes: use at least %d hex digits (openssl rand -hex 32)", len(token), minHexAdminTokenLen)
	case len(token) < minAdminTokenLen:
		return fmt.Errorf("a token of %d characters is shorter than 32 random bytes: use at least %d base64url characters (openssl rand -base64 32) or %d hex digits", len(token), minAdminTokenLen, minHexAdminTokenLen)
	case len(distinct) < minAdminTokenDistinct:
		return fmt.Errorf("the token repeats %d characters: it is not random; generate one (openssl rand -hex 32)", len(distinct))
	}
	return nil
}

// resolveSecrets reads the secrets that may come from files or the environment instead of the
// config file or the command line (where `ps` and shell history show them), merges the
// database password into the PostgreSQL URL, and checks the admin token's strength. Sources:
//   - admin token: admin_token, FERRY_ADMIN_TOKEN, or the file admin_token_file /
//     FERRY_ADMIN_TOKEN_FILE (one of them; empty: generated in DATA_DIR/admin-token);
//   - database password: FERRY_DATABASE_PASSWORD, else the file FERRY_DATABASE_PASSWORD_FILE,
//     else the file database_password_file — not together with a password in the URL.
//
// Errors name the key, never the secret.
func (c *Config) resolveSecrets() []error {
	var errs []error
	if f := os.Getenv("FERRY_ADMIN_TOKEN_FILE"); f != "" {
		c.AdminTokenFile = f
	}
	if c.AdminTokenFile != "" {
		b, err := os.ReadFile(c.AdminTokenFile)
		switch fromFile := strings.TrimSpace(string(b)); {
		case err != nil:
			errs = append(errs, fmt.Errorf("admin_token_file: %w", err))
		case c.AdminToken != "" && c.AdminToken != fromFile: // equal: read by an earlier call
			errs = append(errs, errors.New("admin_token_file: admin_token (or FERRY_ADMIN_TOKEN) is set too; keep one"))
		default:
			c.AdminToken = fromFile
		}
	}
	if c.AdminToken != "" {
		if err := checkAdminToken(c.AdminToken); err != nil {
			errs = append(errs, fmt.Errorf("admin_token: %w", err))
		}
	}

	password, source := os.Getenv("FERRY_DATABASE_PASSWORD"), "FERRY_DATABASE_PASSWORD"
	if password == "" {
		file, key := os.Getenv("FERRY_DATABASE_PASSWORD_FILE"), "FERRY_DATABASE_PASSWORD_FILE"
		if file == "" {
			file, key = c.DatabasePasswordFile, "database_password_file"
		}
		if file != "" {
			b, err := os.ReadFile(file)
			if err != nil {
				return append(errs, fmt.Errorf("%s: %w", key, err))
			}
			password, source = strings.TrimRight(string(b), "\r\n"), key
			if password == "" {
				return append(errs, fmt.Errorf("%s: %s is empty", key, file))
			}
		}
	}
	if password == "" {
		return errs
	}
	kind, _, err := storeKind(c.Database)
	if err != nil || kind != "postgres" {
		return append(errs, fmt.Errorf("%s: a database password is for a postgres:// database", source))
	}
	u, err := url.Parse(c.Database)
	if err != nil {
		return append(errs, fmt.Errorf("database: %q is not a URL", redactURL(c.Database)))
	}
	if got, has := u.User.Password(); has && got == password {
		return errs // merged by an earlier call
	} else if has {
		return append(errs, fmt.Errorf("%s: the database URL carries a password too; keep one (the file or the environment)", source))
	}
	u.User = url.UserPassword(u.User.Username(), password)
	c.Database = u.String()
	return errs
}

// probeTLS connects to the listener at addr (loopback when it listens on every address) and
// completes a TLS handshake, so that `http_tls=true` is logged only once the listener really
// answers TLS with the configured certificate (issue 17 item 10). It returns the negotiated
// version's name. The server certificate is compared with the configured one, not verified
// against a CA: the probe asks "is it our TLS listener", not "is it trusted".
func probeTLS(addr net.Addr, cfg *tls.Config, timeout time.Duration) (string, error) {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	ours := map[string]bool{}
	for _, c := range cfg.Certificates {
		if len(c.Certificate) > 0 {
			ours[string(c.Certificate[0])] = true
		}
	}
	probe := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // the certificate is compared with ours below instead
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !ours[string(cs.PeerCertificates[0].Raw)] {
				return errors.New("the listener presented another certificate")
			}
			return nil
		},
	}
	d := &net.Dialer{Timeout: timeout}
	conn, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort(host, port), probe)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return tls.VersionName(conn.ConnectionState().Version), nil
}
