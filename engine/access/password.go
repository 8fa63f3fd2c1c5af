package access

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters (RFC 9106 §4, the second recommended option: 64 MiB, 3 passes, 4 lanes).
// They are written into each hash, so raising them later leaves old hashes checkable.
const (
	argonTime    = 3
	argonMemory  = 64 * 1024 // KiB
	argonThreads = 4
	argonKeyLen  = 32
	argonSaltLen = 16
	// maxPasswordLen bounds what one login costs to hash.
	maxPasswordLen = 1024
	// minPasswordLen is the shortest password accepted (NIST SP 800-63B §5.1.1.2: at least 8).
	minPasswordLen = 12
)

// ErrPasswordPolicy is returned for a password too short or too long to set.
var ErrPasswordPolicy = fmt.Errorf("a password needs %d to %d characters", minPasswordLen, maxPasswordLen)

// HashPassword returns password's argon2id hash in PHC string form
// ($argon2id$v=19$m=…,t=…,p=…$salt$key).
func HashPassword(password string) (string, error) {
	if n := len([]rune(password)); n < minPasswordLen || len(password) > maxPasswordLen {
		return "", ErrPasswordPolicy
	}
	salt := make([]byte, argonSaltLen)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime,
		argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// errBadHash is a stored hash Ferry cannot read; a login against it fails.
var errBadHash = errors.New("stored password hash is not an argon2id PHC string")

// checkPassword reports whether password matches hash (from HashPassword), in time that does not
// depend on where they differ. An empty hash matches nothing.
func checkPassword(hash, password string) (bool, error) {
	if hash == "" || len(password) > maxPasswordLen {
		return false, nil
	}
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errBadHash
	}
	var version int
	var memory, time uint32
	var threads uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, errBadHash
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &memory, &time, &threads); err != nil ||
		memory == 0 || memory > 1<<21 || time == 0 || time > 16 || threads == 0 {
		return false, errBadHash
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return false, errBadHash
	}
	key, err := b64.DecodeString(parts[5])
	if err != nil || len(key) == 0 || len(key) > 64 {
		return false, errBadHash
	}
	got := argon2.IDKey([]byte(password), salt, time, memory, threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// dummyHash is checked against when a login names no user, so that an unknown name costs as much
// as a wrong password and the answer's timing does not tell them apart.
var dummyHash = func() string {
	h, err := HashPassword("not a password of anyone's")
	if err != nil {
		panic(err)
	}
	return h
}()
