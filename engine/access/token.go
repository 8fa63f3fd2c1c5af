package access

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Token is an API token of a user. The token itself ("ferry_<ID>_<secret>") is shown once, when
// it is created; Ferry keeps only SecretHash.
type Token struct {
	ID         string // public: in the token, in listings, in ferry tokens revoke
	User       string
	Scopes     []Permission // a system user's token: what it may do
	SecretHash []byte       // SHA-256 of the whole token
	CreatedAt  time.Time
	ExpiresAt  time.Time // zero: never
	RevokedAt  time.Time // zero: not revoked
}

// tokenPrefix marks Ferry's tokens, so that secret scanners and people recognise one.
const tokenPrefix = "ferry_"

// newToken returns a fresh token's text and its record. The secret is 32 random bytes (256
// bits), so a fast hash (SHA-256) is enough to keep a stolen table useless.
func newToken(user string, scopes []Permission, now, expires time.Time) (string, *Token) {
	id := make([]byte, 8)
	rand.Read(id)
	secret := make([]byte, 32)
	rand.Read(secret)
	t := &Token{ID: hex.EncodeToString(id), User: user, Scopes: scopes, CreatedAt: now, ExpiresAt: expires}
	text := tokenPrefix + t.ID + "_" + base64.RawURLEncoding.EncodeToString(secret)
	t.SecretHash = hashSecret(text)
	return text, t
}

// tokenID returns the ID a token's text carries, false when it is not a Ferry API token.
func tokenID(text string) (string, bool) {
	rest, ok := strings.CutPrefix(text, tokenPrefix)
	if !ok {
		return "", false
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 16 || len(secret) != 43 {
		return "", false
	}
	if _, err := hex.DecodeString(id); err != nil {
		return "", false
	}
	return id, true
}

// hashSecret is how tokens and session IDs are kept: their SHA-256.
func hashSecret(text string) []byte {
	h := sha256.Sum256([]byte(text))
	return h[:]
}

// Usable reports whether t may be used at now: not revoked, not expired.
func (t *Token) Usable(now time.Time) bool {
	return t.RevokedAt.IsZero() && (t.ExpiresAt.IsZero() || now.Before(t.ExpiresAt))
}

// Session is a web session: the browser holds its ID in a cookie; the store keeps its hash, so a
// copy of the table opens no session.
type Session struct {
	IDHash    []byte
	User      string
	CSRFToken string // the token every form of the session carries
	CreatedAt time.Time
	SeenAt    time.Time // the last request, to the minute (Service.Session)
	ExpiresAt time.Time // the absolute timeout
}

// DefaultTokenLifetime is how long a token lives when its creator names no lifetime.
const DefaultTokenLifetime = 90 * 24 * time.Hour

// ParseLifetime reads a token's lifetime: a number of days ("90d") or a Go duration ("12h");
// "" is DefaultTokenLifetime and "0" no expiry.
func ParseLifetime(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "":
		return DefaultTokenLifetime, nil
	case "0", "never":
		return 0, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 3650 {
			return 0, fmt.Errorf("lifetime %q: want 1d to 3650d, a duration such as 12h, or 0 for none", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("lifetime %q: want a number of days (90d), a duration such as 12h, or 0 for none", s)
	}
	return d, nil
}

// ParseScopes reads scope names (ParseScope), each once.
func ParseScopes(names []string) ([]Permission, error) {
	var out []Permission
	for _, n := range names {
		for _, part := range strings.FieldsFunc(n, func(r rune) bool { return r == ',' || r == ' ' }) {
			p, err := ParseScope(part)
			if err != nil {
				return nil, err
			}
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out, nil
}
