package access

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
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
