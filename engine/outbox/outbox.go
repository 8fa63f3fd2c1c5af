// Package outbox is the report outbox (issue: reports → the ordering hospital): the deliveries a
// report version's transaction writes, the store interface that keeps them, and the Deliverer
// that sends them through a transport it is given — in order per destination and patient, with
// retries, dead letters, and a destination found down probed on its own. It knows no protocol:
// adapters/delivery sends MLLP and FHIR; the engine's Reports writes the deliveries.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Delivery is one report version on its way to one destination (issue: reports → the ordering
// hospital): the outbox row written in the transaction that stores the report version, so that
// a committed report is always delivered. Payload is the message exactly as it is sent — every
// retry sends the same bytes with the same ControlID (MSH-10), so a receiver can drop a repeat.
//
// Deliveries of one QueueKey (a destination and a patient) go strictly in ID order: the next is
// sent only when no earlier one is still pending, so a final never overtakes its preliminary. A
// dead letter does not hold its queue up.
type Delivery struct {
	ID            int64
	ReportID      string // the DiagnosticReport
	ReportVersion int64
	Destination   string // the facility's destination, "FACILITY/NAME"
	Kind          string // MLLP or FHIR
	QueueKey      string // Destination + "|" + the patient's id
	Status        Status
	ControlID     string // MSH-10 of the ORU (mllp), the request id (fhir); stable across retries
	Payload       []byte
	// MappingVersion is the outbound mapping that built Payload (mappings.Outbound.Version,
	// "oru_r01@1+3fa2c9d1"); "" for a FHIR Bundle, which needs no mapping.
	MappingVersion string
	Attempts       int
	NextAttemptAt  time.Time // when a pending delivery may be sent (again)
	LeaseUntil     time.Time // zero, or until when a sender holds it (a crashed sender's lease runs out)
	LastError      string    // why the last attempt failed; safe to show: no PHI
	Response       string    // the receiver's last answer: the ACK, or the OperationOutcome
	CreatedAt      time.Time
	DeliveredAt    time.Time // zero until delivered
}

// Delivery kinds: the transport a destination is reached by.
const (
	MLLP = "mllp" // ORU^R01 over MLLP
	FHIR = "fhir" // a transaction Bundle POSTed to a FHIR base
)

// Status is where a delivery stands.
type Status string

const (
	Pending   Status = "pending"   // to be sent, or sent and to be retried
	Delivered Status = "delivered" // the receiver accepted it (AA, CA; FHIR 2xx)
	Dead      Status = "dead"      // refused (AR, FHIR 4xx) or retries exhausted: a person replays it
)

// Validate rejects a delivery no correct caller inserts.
func (d *Delivery) Validate() error {
	switch {
	case d == nil:
		return errors.New("storing delivery: nil")
	case d.ReportID == "" || d.ReportVersion < 1:
		return errors.New("storing delivery: no report version")
	case d.Destination == "" || d.QueueKey == "" || d.ControlID == "":
		return fmt.Errorf("storing delivery of DiagnosticReport/%s: destination, queue key and control id are required", d.ReportID)
	case d.Kind != MLLP && d.Kind != FHIR:
		return fmt.Errorf("storing delivery of DiagnosticReport/%s: kind %q is not mllp or fhir", d.ReportID, d.Kind)
	case d.Status != Pending && d.Status != Dead:
		return fmt.Errorf("storing delivery of DiagnosticReport/%s: a new delivery is pending or dead, not %q", d.ReportID, d.Status)
	case d.CreatedAt.IsZero() || d.NextAttemptAt.IsZero():
		return fmt.Errorf("storing delivery of DiagnosticReport/%s: CreatedAt and NextAttemptAt are required", d.ReportID)
	}
	return nil
}

// Filter selects deliveries for listing, newest first. Empty fields match all.
type Filter struct {
	Status      Status
	ReportID    string
	Destination string
	Limit       int // 1 to 1000; 0 means 100
	Offset      int
}

// Outcome is what an attempt came to.
type Outcome struct {
	Status        Status    // pending (retry at NextAttemptAt), delivered or dead
	NextAttemptAt time.Time // for pending
	LastError     string
	Response      string
	At            time.Time // when the attempt ended (DeliveredAt for delivered)
}

// Store keeps deliveries: the report's transaction writes them (Inserter); a Deliverer on any
// node claims the ones due, sends them and records the outcome; the admin API lists and replays
// them. adapters/postgres and adapters/sqlite implement it.
type Store interface {
	// DueDeliveries returns up to limit pending deliveries that may be sent at now: due
	// (NextAttemptAt ≤ now), not leased (LeaseUntil before now), and first of their queue (no
	// pending delivery of the same QueueKey with a lower ID) — longest due first.
	// The deliveries to the destinations named in busy are left out (a sender has as many of
	// theirs in flight as it may).
	DueDeliveries(ctx context.Context, now time.Time, limit int, busy []string) ([]*Delivery, error)
	// ClaimDelivery leases a due delivery until leaseUntil and counts the attempt; false when
	// another sender claimed it first or it is no longer due, pending and first of its queue.
	ClaimDelivery(ctx context.Context, id int64, now, leaseUntil time.Time) (bool, error)
	// FinishDelivery records an attempt's outcome and ends the lease.
	FinishDelivery(ctx context.Context, id int64, o Outcome) error
	// ReplayDelivery makes a dead delivery pending again, due at once, with no attempts counted,
	// and its payload and mapping version replaced when payload is not nil (built again by the
	// mapping in force, engine.Reports.Rerender). The store's not-found error (engine.ErrNotFound)
	// when id is not a dead delivery.
	ReplayDelivery(ctx context.Context, id int64, payload []byte, mappingVersion string, now time.Time) error
	// PostponeDestination makes every pending delivery of destination (its queues' heads and
	// the deliveries behind them) due no earlier than until, but those leased at now (being
	// sent); it returns how many it moved. The deliverer calls it when the destination is down,
	// so that its deliveries wait without taking senders from the other destinations.
	PostponeDestination(ctx context.Context, destination string, now, until time.Time) (int64, error)
	// Delivery returns one delivery with its payload, or the store's not-found error.
	Delivery(ctx context.Context, id int64) (*Delivery, error)
	// Deliveries lists deliveries matching f, newest first, with their payloads.
	Deliveries(ctx context.Context, f Filter) ([]*Delivery, error)
}

// Inserter is the transaction's part: the engine's Tx implements it, so a report version is
// stored with its deliveries.
type Inserter interface {
	// InsertDelivery records d (pending or dead) and sets d.ID. A second delivery of the same
	// report version to the same destination is refused with the store's conflict error
	// (engine.ErrConflict).
	InsertDelivery(ctx context.Context, d *Delivery) error
}

// Destination is one place a facility's reports go (config: facilities[].results).
type Destination struct {
	Name    string // unique within the facility
	Kind    string // MLLP or FHIR
	Address string // host:port (mllp)
	BaseURL string // the FHIR server's base (fhir)
	// Version is the ORU's HL7 version, "2.5.1" (default) or "2.3.1".
	Version string
	// ReceivingApplication and ReceivingFacility are MSH-5 and MSH-6 of the ORU.
	ReceivingApplication, ReceivingFacility string
	// Zone is the hospital's time zone, the ORU's times are written in; nil: UTC.
	Zone *time.Location
}
