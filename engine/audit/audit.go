// Package audit is Ferry's audit trail: one Event for every read, search, create, update, link,
// replay and login of patient data, and every refusal (HIPAA §164.312(b); IHE ATNA). Events are
// kept append-only in the store and chained: each carries the hash of the one before it, so
// Verify finds a row changed, removed or put out of place. Events read back as FHIR R4
// AuditEvent resources (Resource).
package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"
)

// Action is what was done.
type Action string

const (
	ActionRead   Action = "read"
	ActionSearch Action = "search"
	ActionCreate Action = "create"
	ActionUpdate Action = "update"
	ActionLink   Action = "link"
	ActionReplay Action = "replay"
	ActionLogin  Action = "login"
	ActionLogout Action = "logout"
	// ActionAccess is a request refused before it did anything (no identity, wrong role).
	ActionAccess Action = "access"
	// ActionAdmin is a change to users or tokens.
	ActionAdmin Action = "admin"
	// ActionBreakGlass is a physician opening a patient who is not theirs; Detail carries
	// BreakGlassDetail and the reason, as do the reads made under the grant.
	ActionBreakGlass Action = "break-glass"
)

// BreakGlassDetail begins the Detail of a break-glass grant and of every read made under one:
// "break-glass: " and the reason given. AuditEvent shows such events with the purpose of use
// BTG (HL7 v3 ActReason "break the glass").
const BreakGlassDetail = "break-glass: "

// Outcome is how it ended, as FHIR AuditEvent.outcome codes it.
type Outcome string

const (
	OutcomeSuccess Outcome = "0" // success
	OutcomeMinor   Outcome = "4" // minor failure: refused (401, 403, 404), bad input
	OutcomeSerious Outcome = "8" // serious failure: the request failed (5xx)
)

// Event is one audited act.
type Event struct {
	Seq        int64     // its place in the chain, from 1; set by the store
	RecordedAt time.Time // UTC, to the microsecond (what both stores keep)
	Action     Action
	Outcome    Outcome
	Agent      string // the user ("admin-token" for the bootstrap token), or what was claimed
	Role       string // the agent's role, "" when unknown
	Address    string // the client address (the TCP peer unless a trusted proxy said otherwise)
	Patient    string // "Patient/ID" the act concerned, "" for none or unknown
	Entity     string // what: "GET /fhir/r4/DiagnosticReport/7", "user dr.lee"
	Detail     string // why it failed, or a reason given (break-glass)
	PrevHash   []byte // the hash of the event before (empty for the first)
	Hash       []byte // ChainHash
}

// ChainHash is SHA-256 over prev (the previous event's hash) and every field of e but the hashes,
// each length-prefixed, so that no two different events hash alike.
func (e *Event) ChainHash(prev []byte) []byte {
	h := sha256.New()
	var n [8]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field(prev)
	binary.BigEndian.PutUint64(n[:], uint64(e.Seq))
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(e.RecordedAt.UnixMicro()))
	h.Write(n[:])
	for _, s := range []string{string(e.Action), string(e.Outcome), e.Agent, e.Role, e.Address, e.Patient, e.Entity, e.Detail} {
		field([]byte(s))
	}
	return h.Sum(nil)
}

// Filter selects events (GET /fhir/r4/AuditEvent).
type Filter struct {
	Agent    string
	Patient  string // "Patient/ID"
	From, To time.Time
	AfterSeq int64 // only events after this one (paging, Verify)
	Limit    int   // at most this many; the store caps it at 1000
}

// Reader reads the trail in seq order (adapters/sqlstore).
type Reader interface {
	AuditEvents(ctx context.Context, f Filter) ([]*Event, error)
	// AuditHead returns the chain's head: the last event's seq and hash (0 and empty for none).
	AuditHead(ctx context.Context) (seq int64, hash []byte, err error)
}

// Appender appends events to the trail inside a store transaction, so that an event and the
// change it records commit together or not at all. The store sets Seq, PrevHash and Hash.
type Appender interface {
	AppendAudit(ctx context.Context, e *Event) error
}

// VerifyResult is what Verify found.
type VerifyResult struct {
	Events int64 // events checked
	// Broken is the seq of the first event whose chain does not hold (0: none): it was changed,
	// or an event before it was changed, removed or inserted.
	Broken int64
	Reason string
}

// Verify reads the whole trail in order and checks each event's hash and link.
func Verify(ctx context.Context, r Reader) (VerifyResult, error) {
	var (
		res  VerifyResult
		prev []byte
		seq  int64
	)
	// The head is read first: events appended while Verify runs come after it, and the chain up
	// to it must be whole — a removed last event leaves the head pointing past the trail.
	headSeq, headHash, err := r.AuditHead(ctx)
	if err != nil {
		return res, fmt.Errorf("reading the audit chain's head: %w", err)
	}
	for {
		evs, err := r.AuditEvents(ctx, Filter{AfterSeq: seq, Limit: 1000})
		if err != nil {
			return res, fmt.Errorf("reading audit events after %d: %w", seq, err)
		}
		if len(evs) == 0 {
			if seq < headSeq {
				res.Broken, res.Reason = seq+1, fmt.Sprintf("the chain ends at event %d but its head is event %d: events were removed", seq, headSeq)
			} else if seq == headSeq && !bytes.Equal(prev, headHash) {
				res.Broken, res.Reason = seq, "the last event's hash is not the chain's head"
			}
			return res, nil
		}
		for _, e := range evs {
			res.Events++
			switch {
			case e.Seq != seq+1:
				res.Broken, res.Reason = e.Seq, fmt.Sprintf("event %d follows %d: events are missing", e.Seq, seq)
			case !bytes.Equal(e.PrevHash, prev):
				res.Broken, res.Reason = e.Seq, "its previous hash is not the hash of the event before it"
			case !bytes.Equal(e.ChainHash(prev), e.Hash):
				res.Broken, res.Reason = e.Seq, "its content does not match its hash: it was changed"
			}
			if res.Broken != 0 {
				return res, nil
			}
			prev, seq = e.Hash, e.Seq
		}
	}
}
