package sqlstore

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/ferryhealth/ferry/engine"
)

// The checks and text rules both stores apply before they write, so that they accept, store and
// match the same values.

// ValidateBatch rejects a batch of inbound messages that no correct caller sends, before anything
// is written; a time the dialect cannot hold included.
func (s *Store) ValidateBatch(msgs []*engine.InboundMessage) error {
	for i, m := range msgs {
		switch {
		case m == nil:
			return fmt.Errorf("message %d of the batch is nil", i)
		case !m.Status.Valid():
			return fmt.Errorf("message %d of the batch: invalid status %q", i, m.Status)
		case m.ReceivedAt.IsZero():
			return fmt.Errorf("message %d of the batch: ReceivedAt is not set", i)
		case (m.Status == engine.StatusDuplicate) != (m.DuplicateOf != 0):
			return fmt.Errorf("message %d of the batch: DuplicateOf must be set exactly when Status is duplicate", i)
		}
		if err := s.checkTime(m.ReceivedAt); err != nil {
			return fmt.Errorf("message %d of the batch: ReceivedAt: %w", i, err)
		}
	}
	return nil
}

// ValidateResource rejects a resource no correct caller writes, before anything is written; a
// LastUpdated the dialect cannot hold included.
func (s *Store) ValidateResource(r *engine.Resource) error {
	switch {
	case r == nil:
		return errors.New("storing resource: nil")
	case !ValidType(r.Type):
		return fmt.Errorf("storing resource: invalid type %q", r.Type)
	case !ValidID(r.ID):
		return fmt.Errorf("storing %s: invalid id %q", r.Type, r.ID)
	case r.VersionID < 1:
		return fmt.Errorf("storing %s/%s: version %d, want 1 or more", r.Type, r.ID, r.VersionID)
	case r.LastUpdated.IsZero():
		return fmt.Errorf("storing %s/%s: LastUpdated is not set", r.Type, r.ID)
	case len(r.JSON) == 0:
		return fmt.Errorf("storing %s/%s: no JSON", r.Type, r.ID)
	}
	if err := s.checkTime(r.LastUpdated); err != nil {
		return fmt.Errorf("storing %s/%s: LastUpdated: %w", r.Type, r.ID, err)
	}
	return nil
}

// TimeChecker is implemented by a Dialect whose time columns hold a narrower range than Go's
// (SQLite's Unix nanoseconds: the years 1678 to 2261).
type TimeChecker interface {
	// CheckTime returns an error when a time column cannot hold t.
	CheckTime(t time.Time) error
}

// checkTime is the dialect's CheckTime, if it has one: on the inbound hot path, without the
// allocation of Dialect.Time's result.
func (s *Store) checkTime(t time.Time) error {
	if tc, ok := s.d.(TimeChecker); ok {
		return tc.CheckTime(t)
	}
	return nil
}

// ValidType reports whether typ can be a FHIR resource type name: letters only.
func ValidType(typ string) bool {
	if len(typ) == 0 || len(typ) > 64 {
		return false
	}
	for i := 0; i < len(typ); i++ {
		if c := typ[i] | 0x20; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// ValidID reports whether id is a FHIR logical id: [A-Za-z0-9\-\.]{1,64}.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c|0x20 && c|0x20 <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// MaxIndexText is the most bytes of a search index entry's param, system or value that the stores
// keep and compare: a longer btree entry fails on PostgreSQL, so a longer text is cut, and both
// stores find a resource by the same first 512 bytes.
const MaxIndexText = 512

// IndexText returns s as resource_index keeps it: storable (engine.StorableText) and cut to
// MaxIndexText bytes at a UTF-8 boundary. Search values go through it too, so that a value
// compares with what was stored of it.
func IndexText(s string) string {
	s = engine.StorableText(s)
	if len(s) <= MaxIndexText {
		return s
	}
	n := MaxIndexText
	for n > 0 && !utf8.RuneStart(s[n]) {
		n-- // s[n] continues the rune that starts before it: cut before that rune
	}
	return s[:n]
}

// Limit applies the default (100) and cap (1000) of a list's Limit.
func Limit(n int) int {
	switch {
	case n <= 0:
		return 100
	case n > 1000:
		return 1000
	}
	return n
}

// NonNil returns b, or an empty slice for nil: raw messages, ACKs and payloads are NOT NULL, and
// nil binds as NULL.
func NonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
