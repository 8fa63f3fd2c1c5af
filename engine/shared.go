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
// The keys known to exist are kept (up to sharedRecordsSize), so an order naming a known
// physician costs no statement here. Records are never deleted, so a key once known stays so;
// were it not, the order's transaction would create the record as before.
type sharedRecords struct {
	mu    sync.Mutex
	known map[string]struct{}
}

// sharedRecordsSize bounds the keys kept; when full the set starts over (a cheap, safe eviction).
const sharedRecordsSize = 16384

// create makes sure the ordering practitioner of every order of msgs exists.
func (s *sharedRecords) create(ctx context.Context, b txBeginner, msgs []*InboundMessage) error {
	for _, m := range msgs {
		pl := m.effects
		if pl == nil || pl.err != nil || pl.patient == nil {
			continue
		}
		for _, o := range pl.orders {
			if o.requester == nil {
				continue
			}
			keys := requesterKeys(pl.facility, o.requester)
			if s.has(keys[0]) {
				continue
			}
			if err := createShared(ctx, b, pl, "Practitioner", keys, o.requester); err != nil {
				return err
			}
			s.add(keys[0])
		}
	}
	return nil
}

// createShared creates typ with content unless a resource of typ holds one of keys, in a
// transaction of its own. Another transaction creating it at the same time is not an error.
func createShared(ctx context.Context, b txBeginner, pl *plan, typ string, keys []string, content map[string]any) (err error) {
	tx, err := b.Begin(ctx)
	if err != nil {
		return fmt.Errorf("creating a shared %s: %w", typ, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	w := &writer{tx: tx, pl: pl}
	cur, err := w.find(ctx, typ, keys)
	if err != nil || cur != nil {
		if err == nil {
			err = tx.Rollback()
		}
		return err
	}
	if err := w.put(ctx, typ, newID(), 1, keys, content); err != nil {
		if errors.Is(err, ErrConflict) {
			_ = tx.Rollback()
			return nil // created by another transaction meanwhile
		}
		return err
	}
	return tx.Commit()
}

func (s *sharedRecords) has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.known[key]
	return ok
}

func (s *sharedRecords) add(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.known == nil || len(s.known) >= sharedRecordsSize {
		s.known = make(map[string]struct{}, 64)
	}
	s.known[key] = struct{}{}
}
