package engine

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// Deliverer sends the outbox's deliveries (issue: reports → the ordering hospital): it claims
// each due delivery with a lease, hands it to the transport of its kind, and records the outcome —
// delivered; refused for good (AR, a FHIR 4xx) → dead letter; anything else (AE, a timeout, a
// broken connection, a FHIR 5xx) → retried with backoff, the same bytes and MSH-10. Deliveries of
// one destination and patient go in order (Outbox.DueDeliveries gives only the first of a
// queue); a destination that is down delays only its own queues. Every node may run one.
type Deliverer struct {
	Outbox Outbox
	// Transport sends one delivery to its destination and returns the receiver's answer (the
	// ACK, the response body). A *DeliveryRefusal error says the receiver refused it; any other
	// error is a failure to deliver, retried.
	Transport func(ctx context.Context, dest ResultDestination, d *Delivery) (response string, err error)
	// Destination returns the destination a delivery names ("FACILITY/NAME"); false when the
	// configuration no longer has it (the delivery waits).
	Destination func(name string) (ResultDestination, bool)
	Retry       RetryPolicy
	// Workers is how many deliveries are in flight at once (default 8).
	Workers int
	// Lease is how long a claimed delivery is held before another sender may take it (default
	// 2 minutes; longer than any transport timeout).
	Lease  time.Duration
	Logger *slog.Logger
	Now    func() time.Time
	// Delivered, if set, is told of each delivery's end (delivered or dead), for metrics.
	Delivered func(d *Delivery, status DeliveryStatus)

	wake wakeup
}

// Nudge tells the deliverer that a delivery was just committed, due at once: Run looks for due
// deliveries now rather than at its next poll (a report reaches the hospital in milliseconds,
// not up to a poll later). Whoever commits a report version with its deliveries calls it after
// the commit; it never blocks, and nudges while a pass runs make one more pass.
func (dl *Deliverer) Nudge() { dl.wake.nudge() }

// DeliveryRefusal is the receiver refusing a delivery: Permanent (AR/CR, a FHIR 4xx) sends it to
// the dead letters; otherwise (AE/CE) it is retried as Retry.OnError says.
type DeliveryRefusal struct {
	Code      string // MSA-1 or the HTTP status
	Permanent bool
}

func (e *DeliveryRefusal) Error() string { return "the receiver answered " + e.Code }

// RetryPolicy says how failed deliveries are tried again.
type RetryPolicy struct {
	// First and Max bound the wait before a retry: First after the first failure, doubling,
	// at most Max (defaults 5s and 10 minutes).
	First, Max time.Duration
	// MaxAttempts sends a delivery to the dead letters after that many failed attempts; 0:
	// never (an EHR down for a day gets its reports when it is back).
	MaxAttempts int
	// ErrorIsDead sends an AE/CE answer straight to the dead letters instead of retrying.
	ErrorIsDead bool
	// RejectRetries retries an AR/CR answer (or a FHIR 4xx) instead of sending it to the dead
	// letters.
	RejectRetries bool
}

func (p RetryPolicy) wait(attempts int) time.Duration {
	first, most := p.First, p.Max
	if first <= 0 {
		first = 5 * time.Second
	}
	if most <= 0 {
		most = 10 * time.Minute
	}
	d := first
	for i := 1; i < attempts && d < most; i++ {
		d *= 2
	}
	return min(d, most)
}

func (dl *Deliverer) now() time.Time {
	if dl.Now != nil {
		return dl.Now()
	}
	return time.Now()
}

func (dl *Deliverer) logger() *slog.Logger {
	if dl.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return dl.Logger
}

// Run delivers until ctx ends, looking for due deliveries every poll (and at once after a pass
// that found some, or when nudged).
func (dl *Deliverer) Run(ctx context.Context, poll time.Duration) {
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	nudge := dl.wake.c()
	t := time.NewTimer(poll)
	defer t.Stop()
	for ctx.Err() == nil {
		n, err := dl.DeliverDue(ctx)
		if err != nil && ctx.Err() == nil {
			dl.logger().Error("delivering reports", "err", err)
		}
		if n > 0 {
			continue
		}
		t.Reset(poll)
		select {
		case <-ctx.Done():
		case <-nudge:
		case <-t.C:
		}
	}
}

// DeliverDue makes one pass: every delivery due now is claimed and attempted, Workers at a time;
// it returns how many were attempted.
func (dl *Deliverer) DeliverDue(ctx context.Context) (int, error) {
	workers := dl.Workers
	if workers <= 0 {
		workers = 8
	}
	now := dl.now()
	due, err := dl.Outbox.DueDeliveries(ctx, now, 4*workers)
	if err != nil {
		return 0, err
	}
	lease := dl.Lease
	if lease <= 0 {
		lease = 2 * time.Minute
	}
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		attempted int
		firstErr  error
		claimErr  error // a claim failed: no more are tried this pass
	)
	// Each worker claims its delivery itself: the claims' commits overlap (PostgreSQL flushes
	// them together) instead of queueing one after another in this loop.
	sem := make(chan struct{}, workers)
	for _, d := range due {
		sem <- struct{}{}
		mu.Lock()
		stop := claimErr != nil
		mu.Unlock()
		if stop {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			ok, err := dl.Outbox.ClaimDelivery(ctx, d.ID, now, now.Add(lease))
			if err != nil {
				mu.Lock()
				claimErr = cmp.Or(claimErr, err)
				mu.Unlock()
				return
			}
			if !ok {
				return // another sender has it
			}
			d.Attempts++
			err = dl.attempt(ctx, d)
			mu.Lock()
			attempted++
			if err != nil && firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return attempted, cmp.Or(claimErr, firstErr)
}

// attempt sends one claimed delivery and records the outcome.
func (dl *Deliverer) attempt(ctx context.Context, d *Delivery) error {
	out := DeliveryOutcome{Status: DeliveryPending}
	dest, ok := dl.Destination(d.Destination)
	var response string
	var err error
	if !ok {
		err = errors.New("destination " + d.Destination + " is not configured")
	} else {
		response, err = dl.Transport(ctx, dest, d)
	}
	out.At, out.Response = dl.now(), limit(response, 4000)
	var refusal *DeliveryRefusal
	switch {
	case err == nil:
		out.Status = DeliveryDelivered
	case errors.As(err, &refusal) && refusal.Permanent && !dl.Retry.RejectRetries,
		errors.As(err, &refusal) && !refusal.Permanent && dl.Retry.ErrorIsDead:
		out.Status, out.LastError = DeliveryDead, limit(err.Error(), 500)
	case dl.Retry.MaxAttempts > 0 && d.Attempts >= dl.Retry.MaxAttempts:
		out.Status, out.LastError = DeliveryDead, limit("gave up after "+strconv.Itoa(d.Attempts)+" attempts: "+err.Error(), 500)
	default:
		out.LastError = limit(err.Error(), 500)
		out.NextAttemptAt = out.At.Add(dl.Retry.wait(d.Attempts))
	}
	if ctx.Err() != nil && out.Status == DeliveryPending {
		return ctx.Err() // shutting down: the lease runs out and another attempt follows
	}
	if ferr := dl.Outbox.FinishDelivery(context.WithoutCancel(ctx), d.ID, out); ferr != nil {
		return ferr
	}
	switch out.Status {
	case DeliveryDelivered:
		dl.logger().Info("report delivered", "delivery", d.ID, "report", d.ReportID, "version", d.ReportVersion,
			"destination", d.Destination, "control_id", d.ControlID, "attempts", d.Attempts)
	case DeliveryDead:
		dl.logger().Warn("report delivery dead-lettered", "delivery", d.ID, "report", d.ReportID, "version", d.ReportVersion,
			"destination", d.Destination, "control_id", d.ControlID, "attempts", d.Attempts, "err", out.LastError)
	default:
		dl.logger().Warn("report delivery failed; will retry", "delivery", d.ID, "destination", d.Destination,
			"control_id", d.ControlID, "attempts", d.Attempts, "retry_at", out.NextAttemptAt, "err", out.LastError)
	}
	if dl.Delivered != nil && out.Status != DeliveryPending {
		dl.Delivered(d, out.Status)
	}
	return nil
}
