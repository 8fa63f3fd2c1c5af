package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ferryhealth/ferry/engine/outbox"
)

// DeliveryReplay sends dead letters again (docs/reports.md, "Dead letters"): one, or every dead
// letter a filter selects, oldest first. The admin API and the console both replay through it.
type DeliveryReplay struct {
	Log DeliveryLog
	// Render, if set, builds a replayed delivery's message again with the mappings in force
	// (*Reports), so that a corrected mapping takes effect; nil: the stored bytes are sent.
	Render DeliveryRenderer
	Now    func() time.Time // default time.Now
}

// DeliveryLog is what a replay reads and changes of the outbox (outbox.Store's part).
type DeliveryLog interface {
	// Deliveries lists the deliveries f selects, newest first.
	Deliveries(ctx context.Context, f outbox.Filter) ([]*outbox.Delivery, error)
	// Delivery returns one delivery with its payload, or ErrNotFound.
	Delivery(ctx context.Context, id int64) (*outbox.Delivery, error)
	// ReplayDelivery makes a dead delivery pending again (its payload replaced when payload is
	// not nil); ErrNotFound when it is not dead.
	ReplayDelivery(ctx context.Context, id int64, payload []byte, mappingVersion string, now time.Time) error
}

// DeliveryRenderer builds a delivery's message again with the mappings in force (Reports.Rerender).
type DeliveryRenderer interface {
	Rerender(ctx context.Context, d *outbox.Delivery) (payload []byte, mappingVersion string, err error)
}

// ErrNotDead is a replay of a delivery that is not (or no longer) a dead letter, or none at all.
var ErrNotDead = errors.New("not a dead letter")

// A RebuildError is a dead letter whose message cannot be built again: it stays dead.
type RebuildError struct{ Err error }

func (e *RebuildError) Error() string { return "the message cannot be built: " + e.Err.Error() }
func (e *RebuildError) Unwrap() error { return e.Err }

// MaxBulkReplay caps the dead letters one bulk replay takes: the oldest that many.
const MaxBulkReplay = 10000

// Replay sends dead letter id again, first in its queue's order, with the same control ID, its
// message built again when there is a Render, and returns it as it now stands. ErrNotDead when
// it is not a dead letter; a *RebuildError when its message cannot be built.
func (r *DeliveryReplay) Replay(ctx context.Context, id int64) (*outbox.Delivery, error) {
	d, err := r.Log.Delivery(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, ErrNotDead
	case err != nil:
		return nil, err
	case d.Status != outbox.Dead:
		return nil, ErrNotDead
	}
	return r.replay(ctx, d)
}

func (r *DeliveryReplay) replay(ctx context.Context, d *outbox.Delivery) (*outbox.Delivery, error) {
	var (
		payload []byte
		version string
		err     error
	)
	if r.Render != nil {
		if payload, version, err = r.Render.Rerender(ctx, d); err != nil {
			return nil, &RebuildError{err}
		}
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	switch err := r.Log.ReplayDelivery(ctx, d.ID, payload, version, now()); {
	case errors.Is(err, ErrNotFound):
		return nil, ErrNotDead
	case err != nil:
		return nil, err
	}
	return r.Log.Delivery(ctx, d.ID)
}

// DeadLetters returns the dead letters of destination and report (each "" for all), oldest
// first — the order a bulk replay takes them in — at most MaxBulkReplay.
func (r *DeliveryReplay) DeadLetters(ctx context.Context, destination, report string) ([]*outbox.Delivery, error) {
	// The list is newest first: read it all, then take the oldest.
	var dead []*outbox.Delivery
	f := outbox.Filter{Status: outbox.Dead, Destination: destination, ReportID: report, Limit: 1000}
	for {
		page, err := r.Log.Deliveries(ctx, f)
		if err != nil {
			return nil, err
		}
		dead = append(dead, page...)
		if len(page) < f.Limit {
			break
		}
		f.Offset += f.Limit
	}
	slices.SortFunc(dead, func(x, y *outbox.Delivery) int { return cmp.Compare(x.ID, y.ID) })
	return dead[:min(len(dead), MaxBulkReplay)], nil
}

// ReplayFailure is a dead letter a bulk replay left dead, and why.
type ReplayFailure struct {
	ID    int64  `json:"id"`
	Error string `json:"error"`
}

// ReplayAll replays every dead letter of destination and report (each "" for all) as Replay
// does, oldest first — in the order the deliveries were created, so each patient's reports
// reach the hospital in their order again (a queue sends its deliveries in ID order once they
// are all pending; replayed newest first, a later report would go before an earlier one still
// dead). At most MaxBulkReplay, the oldest. A store error stops it (what was replayed stays
// replayed); a delivery that cannot be replayed is listed with why. each, if not nil, gives the
// context each delivery's replay runs in (the API's: an audit event of its own, committed with
// that replay).
func (r *DeliveryReplay) ReplayAll(ctx context.Context, destination, report string, each func(*outbox.Delivery) context.Context) (replayed []int64, failed []ReplayFailure, err error) {
	dead, err := r.DeadLetters(ctx, destination, report)
	if err != nil {
		return nil, nil, err
	}
	replayed = []int64{}
	for _, d := range dead {
		dctx := ctx
		if each != nil {
			dctx = each(d)
		}
		if _, err := r.replay(dctx, d); err != nil {
			var rb *RebuildError
			switch {
			case errors.As(err, &rb):
				failed = append(failed, ReplayFailure{ID: d.ID, Error: rb.Error()})
				continue
			case errors.Is(err, ErrNotDead):
				failed = append(failed, ReplayFailure{ID: d.ID, Error: fmt.Sprintf("delivery %d is not a dead letter (or does not exist)", d.ID)})
				continue
			}
			return replayed, failed, err
		}
		replayed = append(replayed, d.ID)
	}
	return replayed, failed, nil
}
