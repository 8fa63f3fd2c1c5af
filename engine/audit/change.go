package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ferryhealth/ferry/engine"
)

// An event of a change — a report created or updated through the API — is appended in the
// transaction that makes the change, so that both commit or neither does (issue 12: "in the same
// transaction as a change"). The request's gate puts a Pending event in the request's context;
// Changes begins the engine's transactions, and one that stores a resource appends the event
// before it commits.

type pendingKey struct{}

// Pending is the event of the change a request is making; Recorded says it was committed with it.
type Pending struct {
	Event    *Event
	Recorded bool
}

// WithPending returns ctx carrying p.
func WithPending(ctx context.Context, p *Pending) context.Context {
	return context.WithValue(ctx, pendingKey{}, p)
}

func pendingFrom(ctx context.Context) *Pending {
	p, _ := ctx.Value(pendingKey{}).(*Pending)
	return p
}

// PendingIn returns the Pending event ctx carries that is not recorded yet, nil for none. A
// store that makes a change in a transaction of its own (a study link, a replay, a reprocessing
// request) commits it with the change through Commit.
func PendingIn(ctx context.Context) *Pending {
	if p := pendingFrom(ctx); p != nil && !p.Recorded {
		return p
	}
	return nil
}

// CommitTx is a store transaction that appends to the trail: what Pending.Commit commits.
type CommitTx interface {
	Appender
	Commit() error
	Rollback() error
}

// Commit appends p's event in tx and commits tx, so that the change tx made and its event
// commit together or not at all; patient names the patient ("Patient/ID") when the event names
// none. On success p is Recorded and its Event carries the store's Seq and hashes; on failure tx
// is rolled back and p stays unrecorded (its request's gate then records the failure).
func (p *Pending) Commit(ctx context.Context, tx CommitTx, patient string) error {
	e := *p.Event
	if e.Patient == "" {
		e.Patient = patient
	}
	if err := tx.AppendAudit(ctx, &e); err != nil {
		tx.Rollback()
		return fmt.Errorf("committing a change: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	*p.Event, p.Recorded = e, true
	return nil
}

// ChangeStore is what Changes wraps: a store's transactions and reads (engine.Reports' Store).
type ChangeStore interface {
	Begin(ctx context.Context) (engine.Tx, error)
	engine.ResourceReader
}

// Changes is a ChangeStore whose transactions append the context's Pending event when they
// store a resource.
type Changes struct{ ChangeStore }

// Begin begins a transaction; with a Pending event in ctx not yet recorded, one that appends it.
func (c Changes) Begin(ctx context.Context) (engine.Tx, error) {
	tx, err := c.ChangeStore.Begin(ctx)
	if err != nil {
		return nil, err
	}
	p := pendingFrom(ctx)
	if p == nil || p.Recorded {
		return tx, nil
	}
	return &changeTx{Tx: tx, ctx: ctx, p: p}, nil
}

// changeTx appends its Pending event at Commit when it stored a resource.
type changeTx struct {
	engine.Tx
	ctx     context.Context
	p       *Pending
	changed bool
	patient string
}

func (t *changeTx) PutResource(ctx context.Context, r *engine.Resource) error {
	if err := t.Tx.PutResource(ctx, r); err != nil {
		return err
	}
	t.changed = true
	if t.patient == "" {
		t.patient = patientOf(r.Type, r.ID, r.JSON)
	}
	return nil
}

func (t *changeTx) Commit() error {
	if !t.changed {
		return t.Tx.Commit()
	}
	ctx, ok := t.Tx.(CommitTx)
	if !ok {
		t.Tx.Rollback()
		return fmt.Errorf("committing a change: the store's transactions cannot append to the audit trail")
	}
	return t.p.Commit(t.ctx, ctx, t.patient)
}

// PatientOf returns the patient ("Patient/ID") a resource is about, for its audit event: itself,
// or its subject or patient reference; "" when it names none.
func PatientOf(typ, id string, body []byte) string { return patientOf(typ, id, body) }

func patientOf(typ, id string, body []byte) string {
	if typ == "Patient" {
		return "Patient/" + id
	}
	var view struct {
		Subject, Patient struct {
			Reference string `json:"reference"`
		}
	}
	if json.Unmarshal(body, &view) != nil {
		return ""
	}
	for _, ref := range []string{view.Subject.Reference, view.Patient.Reference} {
		if strings.HasPrefix(ref, "Patient/") {
			return ref
		}
	}
	return ""
}
