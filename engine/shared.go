package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// sharedRecords creates the reference records many orders name — ordering practitioners — before
// the transactions of the orders that name them, each in a short transaction of its own that the
// unique resource key makes race-free (the insert of a key another transaction holds waits for
// it, then fails with ErrConflict, and the record is there). The orders' transactions then only
// find them: a practitioner is not one of the records a transaction waits for (plan.recordKeys),
// so orders naming one physician commit side by side instead of one at a time (issue 18 item 1).
// A practitioner whose content a message changes is still written in the order's transaction; two
// such changes at once conflict and are retried (commitWithEffects).
//
// The records known to exist are kept (up to sharedRecordsSize) with their id and a digest of
// the content last seen stored: an order naming a known physician as stored costs no statement
// at all, here or in its transaction (writer.order). An order that changes the content forgets
// it, so the next one reads the record again. Records are never deleted, so an id once known
// stays right; were it not, the order's transaction would create the record as before.
type sharedRecords struct {
	mu    sync.Mutex
	known map[string]sharedRecord
}

// sharedRecord is a shared record as last seen stored.
type sharedRecord struct {
	id      string
	content [32]byte // validKey of its content
}

// sharedRecordsSize bounds the records kept; when full the set starts over (a cheap, safe
// eviction).
const sharedRecordsSize = 16384

// create makes sure the ordering practitioner of every order of msgs exists, and gives each
// plan the records (writer.order reads them).
func (s *sharedRecords) create(ctx context.Context, b txBeginner, msgs []*InboundMessage) error {
	for _, m := range msgs {
		pl := m.effects
		if pl == nil || pl.err != nil || pl.patient == nil {
			continue
		}
		pl.shared = s
		for _, o := range pl.orders {
			if o.requester == nil {
				continue
			}
			keys := requesterKeys(pl.facility, o.requester)
			if _, ok := s.lookup(keys[0]); ok {
				continue
			}
			rec, err := createShared(ctx, b, pl, "Practitioner", keys, o.requester)
			if err != nil {
				return err
			}
			if rec.id != "" {
				s.remember(keys[0], rec)
			}
		}
	}
	return nil
}

// createShared creates typ with content unless a resource of typ holds one of keys, in a
// transaction of its own, and returns the record as stored. Another transaction creating it at
// the same time is not an error (the record returned is then zero).
func createShared(ctx context.Context, b txBeginner, pl *plan, typ string, keys []string, content map[string]any) (rec sharedRecord, err error) {
	tx, err := b.Begin(ctx)
	if err != nil {
		return rec, fmt.Errorf("creating a shared %s: %w", typ, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	w := &writer{tx: tx, pl: pl}
	cur, err := w.find(ctx, typ, keys)
	if err != nil {
		return rec, err
	}
	if cur != nil {
		if rec.content, err = storedDigest(typ, cur.JSON); err != nil {
			return rec, err
		}
		rec.id = cur.ID
		return rec, tx.Rollback()
	}
	if rec.content, err = contentDigest(typ, content); err != nil {
		return rec, err
	}
	rec.id = newID()
	if err := w.put(ctx, typ, rec.id, 1, keys, content); err != nil {
		if errors.Is(err, ErrConflict) {
			_ = tx.Rollback()
			return sharedRecord{}, nil // created by another transaction meanwhile
		}
		return rec, err
	}
	return rec, tx.Commit()
}

// contentDigest is the validKey of a resource's content as writer.upsert compares it.
func contentDigest(typ string, content map[string]any) ([32]byte, error) {
	b, err := marshalJSON(content)
	if err != nil {
		return [32]byte{}, err
	}
	return validKey(typ, b), nil
}

// storedDigest is contentDigest of a stored resource.
func storedDigest(typ string, body []byte) ([32]byte, error) {
	content, err := contentOf(body)
	if err != nil {
		return [32]byte{}, err
	}
	return contentDigest(typ, content)
}

// lookup returns the record holding key as last seen stored.
func (s *sharedRecords) lookup(key string) (sharedRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.known[key]
	return r, ok
}

func (s *sharedRecords) remember(key string, r sharedRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.known == nil || len(s.known) >= sharedRecordsSize {
		s.known = make(map[string]sharedRecord, 64)
	}
	s.known[key] = r
}

// forget drops key: an order is about to change its record.
func (s *sharedRecords) forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.known, key)
}
