package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/ferryhealth/ferry/internal/wake"
)

// Deliverer sends the outbox's deliveries (issue: reports → the ordering hospital): it claims
// each due delivery with a lease, hands it to the transport of its kind, and records the outcome —
// delivered; refused for good (AR, a FHIR 4xx) → dead letter; anything else (AE, a timeout, a
// broken connection, a FHIR 5xx) → retried with backoff, the same bytes and MSH-10. Deliveries of
// one destination and patient go in order (Store.DueDeliveries gives only the first of a
// queue). Every node may run one.
//
// A destination that is down delays only its own deliveries: it never has more than
// PerDestination of the workers, and once an attempt finds it down (no connection, no answer) its
// deliveries wait in the store rather than in the workers. When it could not be connected to
// (ErrUnreachable) and Probe is set (ferry serve sets it), it is then probed on its own, a
// connection every ProbeEvery, and its deliveries wait for the first probe it answers, then go
// at once, at full speed (issue 18: an EHR that flaps gets its reports seconds after it is
// back, not after a backoff grown to minutes). Otherwise (it took the connection and did not
// answer, or there is no Probe) they are postponed to its retry time
// (Store.PostponeDestination), the wait growing with each failure in a row up to Retry.Max.
type Deliverer struct {
	Store Store
	// Transport sends one delivery to its destination and returns the receiver's answer (the
	// ACK, the response body). A *Refusal error says the receiver refused it; any other
	// error is a failure to deliver (the destination is down), retried.
	Transport func(ctx context.Context, dest Destination, d *Delivery) (response string, err error)
	// Destination returns the destination a delivery names ("FACILITY/NAME"); false when the
	// configuration no longer has it (the delivery waits).
	Destination func(name string) (Destination, bool)
	Retry       RetryPolicy
	// Probe, if set, checks that a destination found down answers again (opens a connection and
	// closes it): nil when it does. It runs beside the workers, every ProbeEvery (default 3s,
	// at most Retry.Max) while the destination is down.
	Probe      func(ctx context.Context, dest Destination) error
	ProbeEvery time.Duration
	// Workers is how many deliveries are in flight at once (default 16).
	Workers int
	// PerDestination is how many of them may go to one destination (default half the workers,
	// at least one): a destination that answers slowly, or not at all, leaves the others room.
	PerDestination int
	// Lease is how long a claimed delivery is held before another sender may take it (default
	// 2 minutes; longer than any transport timeout).
	Lease time.Duration
	// StoreTimeout bounds each of its store calls — looking for due deliveries, a claim, an
	// outcome, a postponement — (default DefaultStoreTimeout), so that a database that hangs
	// (frozen, cut off) fails the call instead of holding the deliverer (issue 18): a claim that
	// times out is not attempted (should it have been taken after all, its lease runs out); an
	// outcome that times out leaves the delivery leased until its lease ends, and it is then
	// sent again with the same MSH-10 — at least once, as after a crash.
	StoreTimeout time.Duration
	Logger       *slog.Logger
	Now          func() time.Time
	// Delivered, if set, is told of each delivery's end (delivered or dead), for metrics.
	Delivered func(d *Delivery, status Status)

	wake     wake.Signal // a report was committed (Nudge)
	finished wake.Signal // an attempt ended: a worker is free, and the next of its queue may be due
	initOnce sync.Once
	slots    chan struct{} // one per worker in flight

	mu       sync.Mutex
	inFlight map[int64]bool    // deliveries being attempted here
	busy     map[string]int    // attempts in flight per destination
	down     map[string]outage // destinations found down (no answer, no connection)
}

// outage is a destination found down: how many times in a row, and until when its deliveries
// wait. Attempts that fail while it is known down (those in flight when it was found) do not
// lengthen it.
type outage struct {
	failures int
	until    time.Time
	// With Probe: the destination waits for a probe it answers, not for until.
	probed    bool
	nextProbe time.Time
	probing   bool // a probe is in flight
}

// waits reports whether the destination's deliveries wait at now.
func (o outage) waits(now time.Time) bool { return o.probed || now.Before(o.until) }

// probeEvery is the wait between probes of a destination that is down.
func (dl *Deliverer) probeEvery() time.Duration {
	every := cmp.Or(dl.ProbeEvery, 3*time.Second)
	if dl.Retry.Max > 0 {
		every = min(every, dl.Retry.Max)
	}
	return every
}

// probeDue starts a probe of each destination that is down and due one; the probes run beside
// the workers (attempts counts them). A destination that answers is up again: its deliveries
// are due at once and Run is nudged.
func (dl *Deliverer) probeDue(ctx context.Context, attempts *sync.WaitGroup) {
	if dl.Probe == nil {
		return
	}
	now := dl.now()
	dl.mu.Lock()
	defer dl.mu.Unlock()
	for name, o := range dl.down {
		if !o.probed || o.probing || now.Before(o.nextProbe) {
			continue
		}
		dest, ok := dl.Destination(name)
		if !ok {
			delete(dl.down, name) // no longer configured: its deliveries wait as such
			continue
		}
		o.probing = true
		dl.down[name] = o
		attempts.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, dl.probeEvery())
			err := dl.Probe(pctx, dest)
			cancel()
			dl.mu.Lock()
			o, still := dl.down[name] // a delivery may have gone through meanwhile
			switch {
			case err == nil:
				delete(dl.down, name)
			case still:
				o.probing, o.nextProbe = false, dl.now().Add(dl.probeEvery())
				dl.down[name] = o
			}
			dl.mu.Unlock()
			if err == nil && ctx.Err() == nil {
				dl.logger().Info("destination answers again; its deliveries go now", "destination", name,
					"down_for", dl.now().Sub(o.until).Round(time.Millisecond))
				dl.wake.Nudge()
			}
		})
	}
}

// DefaultStoreTimeout bounds one store call of a Deliverer whose StoreTimeout is not set.
const DefaultStoreTimeout = 10 * time.Second

// ErrStoreTimeout is a store call of the deliverer that did not return within StoreTimeout.
var ErrStoreTimeout = errors.New("the store did not answer in time")

// stored runs call with a deadline of dl.StoreTimeout and returns what it returned, or
// ErrStoreTimeout once the deadline has passed, without waiting longer for call: a driver blocked
// on a connection that gets no answer (lib/pq cannot cancel a query on a frozen server) does not
// hold the deliverer. Such a call ends when its connection does; the store's pool bounds how
// many can be left so.
func stored[T any](ctx context.Context, dl *Deliverer, what string, call func(context.Context) (T, error)) (T, error) {
	timeout := cmp.Or(dl.StoreTimeout, DefaultStoreTimeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := call(ctx)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		if err := context.Cause(ctx); !errors.Is(err, context.DeadlineExceeded) {
			return zero, err // the caller's context ended
		}
		return zero, fmt.Errorf("%s: %w (%s)", what, ErrStoreTimeout, timeout)
	}
}

// Nudge tells the deliverer that a delivery was just committed, due at once: Run looks for due
// deliveries now rather than at its next poll (a report reaches the hospital in milliseconds,
// not up to a poll later). Whoever commits a report version with its deliveries calls it after
// the commit; it never blocks, and nudges while a pass runs make one more pass.
func (dl *Deliverer) Nudge() { dl.wake.Nudge() }

// ErrUnreachable marks a Transport error that means no connection could be opened (refused,
// no route, no such host), as against a connection that gave no answer in time: with Probe
// set, a destination found unreachable is probed until it answers, while one that takes the
// connection and does not answer (a hung interface engine, which a probe cannot tell from a
// working one) waits its retry time, longer after each failure in a row, up to Retry.Max.
var ErrUnreachable = errors.New("destination unreachable")

// Refusal is the receiver refusing a delivery: Permanent (AR/CR, a FHIR 4xx) sends it to
// the dead letters; otherwise (AE/CE) it is retried as Retry.OnError says.
type Refusal struct {
	Code      string // MSA-1 or the HTTP status
	Permanent bool
}

func (e *Refusal) Error() string { return "the receiver answered " + e.Code }

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

func (dl *Deliverer) init() {
	dl.initOnce.Do(func() {
		workers := dl.Workers
		if workers <= 0 {
			workers = 16
		}
		dl.slots = make(chan struct{}, workers)
		dl.inFlight, dl.busy, dl.down = map[int64]bool{}, map[string]int{}, map[string]outage{}
	})
}

func (dl *Deliverer) perDestination() int {
	if dl.PerDestination > 0 {
		return dl.PerDestination
	}
	return max(cap(dl.slots)/2, 1)
}

// Run delivers until ctx ends. It looks for due deliveries every poll and when nudged, and
// starts them as workers come free, without waiting for the ones in flight: one destination's
// slow attempt holds up no other's.
func (dl *Deliverer) Run(ctx context.Context, poll time.Duration) {
	dl.init()
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	nudge, finished := dl.wake.C(), dl.finished.C()
	t := time.NewTimer(poll)
	defer t.Stop()
	var attempts sync.WaitGroup
	defer attempts.Wait()
	var backlog []*Delivery // found due, not started yet: no worker was free, or no room at its destination
	look := true
	for ctx.Err() == nil {
		if look || len(backlog) == 0 {
			due, err := dl.due(ctx)
			if err != nil && ctx.Err() == nil {
				dl.logger().Error("delivering reports", "err", err)
			}
			backlog = due
		}
		backlog = dl.start(ctx, backlog, &attempts, nil)
		dl.probeDue(ctx, &attempts)
		t.Reset(poll)
		select {
		case <-ctx.Done():
		case <-nudge:
			look = true
		case <-t.C:
			look = true
		case <-finished: // a worker is free: start the backlog, or look again once it is empty
			look = false
		}
	}
}

// DeliverDue makes one pass: the destinations that are down and due a probe are probed (and
// waited for), then every delivery due now is claimed and attempted, Workers at a time
// (PerDestination to one destination), and waited for; it returns how many were attempted.
func (dl *Deliverer) DeliverDue(ctx context.Context) (int, error) {
	dl.init()
	var (
		attempts sync.WaitGroup
		res      passResult
	)
	dl.probeDue(ctx, &attempts)
	attempts.Wait()
	list, err := dl.due(ctx)
	for len(list) > 0 && ctx.Err() == nil {
		if list = dl.start(ctx, list, &attempts, &res); len(list) > 0 {
			select { // wait for a worker or for room at a destination
			case <-dl.finished.C():
			case <-ctx.Done():
			}
		}
	}
	attempts.Wait()
	res.mu.Lock()
	defer res.mu.Unlock()
	return res.attempted, cmp.Or(err, res.err)
}

// due returns the deliveries due now, but those to the destinations that have no room.
func (dl *Deliverer) due(ctx context.Context) ([]*Delivery, error) {
	dl.mu.Lock()
	var full []string
	for dest, n := range dl.busy {
		if n >= dl.perDestination() {
			full = append(full, dest)
		}
	}
	for dest, o := range dl.down {
		if o.probed && dl.busy[dest] < dl.perDestination() {
			full = append(full, dest) // waits for a probe it answers
		}
	}
	dl.mu.Unlock()
	return stored(ctx, dl, "looking for due deliveries", func(ctx context.Context) ([]*Delivery, error) {
		return dl.Store.DueDeliveries(ctx, dl.now(), 4*cap(dl.slots), full)
	})
}

// passResult gathers what a pass's attempts did, for DeliverDue.
type passResult struct {
	mu        sync.Mutex
	attempted int
	err       error
}

// start starts an attempt of each delivery of list, in order, while a worker is free and its
// destination has room; the attempts run on after it returns (attempts counts them). It returns
// what it could not start yet (a delivery already in flight here is dropped).
func (dl *Deliverer) start(ctx context.Context, list []*Delivery, attempts *sync.WaitGroup, res *passResult) []*Delivery {
	lease := dl.Lease
	if lease <= 0 {
		lease = 2 * time.Minute
	}
	var rest []*Delivery
	dl.mu.Lock()
	defer dl.mu.Unlock()
	for i, d := range list {
		if dl.inFlight[d.ID] {
			continue
		}
		if o, found := dl.down[d.Destination]; found && o.waits(dl.now()) {
			// Found down by an attempt that ended meanwhile: that attempt postpones this
			// delivery in the store (it may not have yet; without this check, an attempt that
			// failed alongside it and freed its worker first lets this one be tried at once).
			continue
		}
		if dl.busy[d.Destination] >= dl.perDestination() {
			rest = append(rest, d)
			continue
		}
		select {
		case dl.slots <- struct{}{}:
		default: // no worker free
			return append(rest, list[i:]...)
		}
		dl.inFlight[d.ID] = true
		dl.busy[d.Destination]++
		attempts.Go(func() {
			defer dl.release(d)
			// Each worker claims its delivery itself: the claims' commits overlap
			// (PostgreSQL flushes them together) instead of queueing one after another.
			now := dl.now()
			ok, err := stored(ctx, dl, "claiming delivery "+strconv.FormatInt(d.ID, 10), func(ctx context.Context) (bool, error) {
				return dl.Store.ClaimDelivery(ctx, d.ID, now, now.Add(lease))
			})
			if err != nil || !ok { // !ok: another sender has it, or it is no longer due
				res.record(false, err)
				return
			}
			d.Attempts++
			res.record(true, dl.attempt(ctx, d))
		})
	}
	return rest
}

// record counts one attempt (attempted) and keeps the first error.
func (r *passResult) record(attempted bool, err error) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if attempted {
		r.attempted++
	}
	r.err = cmp.Or(r.err, err)
}

// release ends d's attempt here: its worker is free, its destination has room.
func (dl *Deliverer) release(d *Delivery) {
	dl.mu.Lock()
	delete(dl.inFlight, d.ID)
	if dl.busy[d.Destination]--; dl.busy[d.Destination] <= 0 {
		delete(dl.busy, d.Destination)
	}
	dl.mu.Unlock()
	<-dl.slots
	dl.finished.Nudge()
}

// attempt sends one claimed delivery and records the outcome.
func (dl *Deliverer) attempt(ctx context.Context, d *Delivery) error {
	out := Outcome{Status: Pending}
	dest, ok := dl.Destination(d.Destination)
	var response string
	var err error
	if !ok {
		err = errors.New("destination " + d.Destination + " is not configured")
	} else {
		response, err = dl.Transport(ctx, dest, d)
	}
	out.At, out.Response = dl.now(), clip(response, 4000)
	var refusal *Refusal
	switch {
	case err == nil:
		out.Status = Delivered
	case errors.As(err, &refusal) && refusal.Permanent && !dl.Retry.RejectRetries,
		errors.As(err, &refusal) && !refusal.Permanent && dl.Retry.ErrorIsDead:
		out.Status, out.LastError = Dead, clip(err.Error(), 500)
	case dl.Retry.MaxAttempts > 0 && d.Attempts >= dl.Retry.MaxAttempts:
		out.Status, out.LastError = Dead, clip("gave up after "+strconv.Itoa(d.Attempts)+" attempts: "+err.Error(), 500)
	default:
		out.LastError = clip(err.Error(), 500)
		out.NextAttemptAt = out.At.Add(dl.Retry.wait(d.Attempts))
	}
	if ctx.Err() != nil && out.Status == Pending {
		return ctx.Err() // shutting down: the lease runs out and another attempt follows
	}
	// The destination is down when it could not be reached or did not answer (not when it
	// refused): its other deliveries wait until it is tried again, later after each failure.
	var downUntil time.Time
	if reached := err == nil || errors.As(err, &refusal); ok {
		dl.mu.Lock()
		o := dl.down[d.Destination]
		switch {
		case reached:
			delete(dl.down, d.Destination)
		case dl.Probe != nil && errors.Is(err, ErrUnreachable):
			// Cannot be connected to: its deliveries wait for a probe it answers, then go at once.
			if out.Status == Pending {
				out.NextAttemptAt = out.At
			}
			if !o.probed { // found now (or found earlier not answering, and now not even connecting)
				dl.down[d.Destination] = outage{failures: o.failures + 1, until: out.At, probed: true, nextProbe: out.At.Add(dl.probeEvery())}
				dl.mu.Unlock()
				dl.logger().Warn("destination down; its deliveries wait until it answers a probe", "destination", d.Destination,
					"probe_every", dl.probeEvery(), "err", out.LastError)
				dl.mu.Lock()
			}
		case out.At.Before(o.until): // known down: in flight when it was found
			if out.Status == Pending {
				out.NextAttemptAt = later(out.NextAttemptAt, o.until)
			}
		default:
			o.probed = false // connected, but no answer: a probe cannot tell when it is back
			o.failures++
			o.until = out.At.Add(dl.Retry.wait(o.failures))
			dl.down[d.Destination] = o
			downUntil = o.until
			if out.Status == Pending {
				out.NextAttemptAt = later(out.NextAttemptAt, downUntil)
			}
		}
		dl.mu.Unlock()
	}
	// The outcome is recorded even when shutting down: the attempt was made.
	if _, ferr := stored(context.WithoutCancel(ctx), dl, "recording the outcome of delivery "+strconv.FormatInt(d.ID, 10), func(ctx context.Context) (struct{}, error) {
		return struct{}{}, dl.Store.FinishDelivery(ctx, d.ID, out)
	}); ferr != nil {
		return ferr
	}
	if !downUntil.IsZero() {
		n, perr := stored(context.WithoutCancel(ctx), dl, "postponing the deliveries of "+d.Destination, func(ctx context.Context) (int64, error) {
			return dl.Store.PostponeDestination(ctx, d.Destination, out.At, downUntil)
		})
		if perr != nil {
			return perr
		}
		if n > 0 {
			dl.logger().Warn("destination down; its deliveries wait", "destination", d.Destination,
				"deliveries", n, "until", downUntil, "err", out.LastError)
		}
	}
	switch out.Status {
	case Delivered:
		dl.logger().Info("report delivered", "delivery", d.ID, "report", d.ReportID, "version", d.ReportVersion,
			"destination", d.Destination, "control_id", d.ControlID, "attempts", d.Attempts)
	case Dead:
		dl.logger().Warn("report delivery dead-lettered", "delivery", d.ID, "report", d.ReportID, "version", d.ReportVersion,
			"destination", d.Destination, "control_id", d.ControlID, "attempts", d.Attempts, "err", out.LastError)
	default:
		dl.logger().Warn("report delivery failed; will retry", "delivery", d.ID, "destination", d.Destination,
			"control_id", d.ControlID, "attempts", d.Attempts, "retry_at", out.NextAttemptAt, "err", out.LastError)
	}
	if dl.Delivered != nil && out.Status != Pending {
		dl.Delivered(d, out.Status)
	}
	return nil
}

// clip cuts s to n bytes, marking the cut: errors and answers are kept bounded.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
