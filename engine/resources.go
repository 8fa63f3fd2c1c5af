package engine

import (
	"context"
	"errors"
	"time"

	"github.com/ferryhealth/ferry/engine/outbox"
	"github.com/ferryhealth/ferry/engine/turnaround"
	"github.com/ferryhealth/ferry/fhir"
)

// Resource is one version of a FHIR R4 resource as stored. Versions are only ever added: the
// current version is the one with the highest VersionID; earlier ones answer vread and _history.
type Resource struct {
	Type        string // e.g. "Patient"
	ID          string // the logical id, [A-Za-z0-9\-\.]{1,64}
	VersionID   int64  // 1 for the first version, then +1 per change
	LastUpdated time.Time
	// JSON is the whole resource as FHIR JSON, with id, meta.versionId and meta.lastUpdated
	// already matching the fields above. It has passed google/fhir's R4 validation.
	JSON []byte
	// Index holds the version's search parameter values (see fhir.IndexEntry). Written with the
	// version; a read may leave it nil.
	Index []fhir.IndexEntry
	// Keys are business keys that at most one resource of the Type may hold at a time, e.g.
	// "identifier|urn:oid:1.2.3|MRN123" for a Patient or "placer|urn:oid:1.2.3|ORD1" for a
	// ServiceRequest: PutResource claims them for this resource (a database constraint, so two
	// nodes racing to create the same patient yield one) and releases the keys the previous
	// version held that this one does not. Resource (the current version) returns the keys
	// held; other reads may leave it nil.
	Keys []string
}

// ErrConflict is returned by PutResource when the version already exists (another transaction
// wrote it first) or a key is held by another resource of the type. The transaction then refuses
// every step until RollbackToSavepoint, which makes it usable again (or Rollback); the engine
// records the message as an error, answered AE so the sender retries.
var ErrConflict = errors.New("conflicting change")

// ResourceReader reads stored resources. Store and Tx both implement it; inside a Tx reads see
// the transaction's own writes.
type ResourceReader interface {
	// Resource returns the current version of typ/id, or ErrNotFound.
	Resource(ctx context.Context, typ, id string) (*Resource, error)
	// ResourceVersion returns one version of typ/id, or ErrNotFound.
	ResourceVersion(ctx context.Context, typ, id string, version int64) (*Resource, error)
	// ResourceHistory returns every version of typ/id, newest first, or ErrNotFound when there
	// is none.
	ResourceHistory(ctx context.Context, typ, id string) ([]*Resource, error)
	// ResolveKey returns the id of the resource of typ that currently holds key, or ErrNotFound.
	ResolveKey(ctx context.Context, typ, key string) (string, error)
	// ResourceByKeys returns the current version (with Keys) of the resource of typ holding the
	// first of keys that any resource holds, or ErrNotFound when none is held.
	ResourceByKeys(ctx context.Context, typ string, keys []string) (*Resource, error)
	// SearchResources returns the current versions matching q, newest LastUpdated first (ties
	// by ID), skipping q.Offset and returning at most q.Count (the store caps Count at 1000 and
	// defaults 0 to 100).
	SearchResources(ctx context.Context, q ResourceQuery) ([]*Resource, error)
}

// ResourceQuery selects current resource versions of one type. Filters are ANDed.
type ResourceQuery struct {
	Type    string
	Filters []SearchFilter
	Offset  int
	Count   int
}

// SearchFilter matches resources having at least one index entry with Param that satisfies Op
// against any of Values (the values are ORed, as FHIR's comma is).
type SearchFilter struct {
	Param  string
	Op     SearchOp
	Values []SearchValue
}

// SearchValue is one value a filter compares index entries with. System "" matches any system
// (FHIR "value"); for a token search "system|value" both must match.
type SearchValue struct {
	System string
	Value  string
}

// SearchOp says how an index entry's Value is compared with a SearchValue's.
type SearchOp string

const (
	SearchEq     SearchOp = "eq"     // equal (and System equal when the SearchValue has one)
	SearchPrefix SearchOp = "prefix" // entry Value starts with the value (strings; dates at coarser precision)
	SearchGe     SearchOp = "ge"     // entry Value >= value, lexically
	SearchGt     SearchOp = "gt"
	SearchLe     SearchOp = "le"
	SearchLt     SearchOp = "lt"
)

// Tx is one store transaction in which an inbound message is recorded together with everything
// it changes (resources, worklist items), so the ACK tells the sender the truth. The engine
// drives it; the store provides the steps. A Tx is used by one goroutine.
type Tx interface {
	ResourceReader
	WorklistReader      // reads see the transaction's own worklist changes
	LinkWriter          // a patient merge moves the patient's studies in the message's transaction
	outbox.Inserter     // a report version is stored with its deliveries
	turnaround.Marker   // an order's milestones are marked with the change that reaches them
	PatientAccessWriter // an order's doctors see its patient from the order's commit on
	CriticalWriter      // a critical report awaits its acknowledgement from its version's commit on
	// InsertInbound records m exactly as MessageStore.CommitInbound records one message,
	// duplicate detection included: when m turns out to be a duplicate it is stored as such and
	// updated (Status, DuplicateOf, ACK, ACKCode; a duplicate is not processed, so it is never
	// Pending and has no MappingVersion or ProcessingError). It sets m.ID.
	InsertInbound(ctx context.Context, m *InboundMessage) error
	// Savepoint marks the point RollbackToSavepoint returns to; a new Savepoint replaces it.
	Savepoint(ctx context.Context) error
	// RollbackToSavepoint undoes everything since the last Savepoint; the Tx stays usable.
	RollbackToSavepoint(ctx context.Context) error
	// PutResource adds r as a new version: r.VersionID must be the current version + 1 (1 for
	// a new resource), else ErrConflict. It replaces the index entries and claims r.Keys (see
	// Resource.Keys).
	PutResource(ctx context.Context, r *Resource) error
	// PutWorklistItem inserts or replaces the worklist item of item.ServiceRequestID.
	PutWorklistItem(ctx context.Context, item *WorklistItem) error
	// DeleteWorklistItem removes the worklist item of a ServiceRequest; none is not an error.
	DeleteWorklistItem(ctx context.Context, serviceRequestID string) error
	// ClaimPending returns up to limit accepted messages with Pending set, oldest first, locked
	// for this transaction: another transaction (on any node) skips them until this one ends
	// (FOR NO KEY UPDATE SKIP LOCKED, which still lets a resent copy be stored as a duplicate
	// of a claimed message at once; SQLite has one writer). Raw is filled. A claimed message
	// whose transaction rolls back is pending again.
	ClaimPending(ctx context.Context, limit int) ([]*InboundMessage, error)
	// FinishPending records that a pending message was processed: Pending cleared, its
	// MappingVersion and ProcessingError ("" on success) stored. ErrNotFound when id is not an
	// accepted, pending message; the Tx stays usable.
	FinishPending(ctx context.Context, id int64, mappingVersion, processingError string) error
	// FinishStudyDerivation takes d's study off the derivation queue (DerivationQueue) unless
	// it changed since d was read (its Changes moved on): then it stays queued.
	FinishStudyDerivation(ctx context.Context, d StudyDerivation) error
	// Commit makes the transaction durable (fsynced) and returns only then.
	Commit() error
	// Rollback abandons the transaction; after Commit it does nothing.
	Rollback() error
}

// Store is everything the engine keeps: the message log, resources and the worklist.
// adapters/postgres and adapters/sqlite implement it.
type Store interface {
	MessageStore
	ResourceReader
	WorklistReader
	// Begin starts a transaction for recording messages with their effects.
	Begin(ctx context.Context) (Tx, error)
}
