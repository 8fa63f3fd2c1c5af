package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/audit"
	"github.com/ferryhealth/ferry/engine/outbox"
	"github.com/ferryhealth/ferry/engine/turnaround"
)

// Pool gives a store the shared areas' methods on its pools, to embed: the message log's reads,
// engine.ResourceReader,
// engine.WorklistReader, turnaround.Reader, engine.LinkStore, engine.DerivationQueue,
// outbox.Store and the reads of engine.InstanceStore, each as the Store method of the same name
// documents.
type Pool struct {
	S *Store
	C Conn // the store's pools: reads on its reading pool, writes committed on their own
	// Begin begins one of the store's transactions, for the changes Pool makes in a transaction
	// of their own (audited, see inAuditedTx). Both stores set it.
	Begin func(ctx context.Context) (engine.Tx, error)
}

// Areas is what a store built on sqlstore provides beyond engine.Store, through Pool and its
// own methods; TxAreas what its Tx provides beyond engine.Tx.
type (
	Areas interface {
		engine.Store
		engine.InstanceStore
		engine.LinkStore
		engine.DerivationQueue
		turnaround.Reader
		outbox.Store
		engine.ErrorQueue
	}
	TxAreas interface {
		engine.Tx
		engine.ReprocessTx
		engine.LinkWriter
		turnaround.Marker
		outbox.Inserter
	}
)

// TxGuard is a store's transaction as the shared steps see it: whether it takes another step,
// and what it records of a step's error (a failure refuses the steps after it; not found and
// InvalidError do not).
type TxGuard interface {
	Usable() error
	Check(err error) error
}

// TxSteps gives a store's Tx the shared areas' steps, to embed: the pending processing's steps,
// engine.ResourceReader,
// engine.WorklistWriter and reader, turnaround.Marker, engine.LinkWriter,
// FinishStudyDerivation and outbox.Inserter, each guarded by G.
type TxSteps struct {
	S *Store
	C Conn // the transaction
	G TxGuard
}

func (p Pool) WorklistItems(ctx context.Context, f engine.WorklistFilter) ([]*engine.WorklistItem, error) {
	return p.S.WorklistItems(ctx, p.C, f)
}

func (p Pool) Turnaround(ctx context.Context, srID string) (*turnaround.Clocks, error) {
	return p.S.Turnaround(ctx, p.C, srID)
}

func (p Pool) Overdue(ctx context.Context, now time.Time, sla turnaround.SLAs, n int) ([]*turnaround.Clocks, error) {
	return p.S.Overdue(ctx, p.C, now, sla, n)
}

// PutStudyLink records l in one statement, committed on its own, where the dialect has one
// (StudyLinkStatement); else, or when ctx carries an audit event pending for the change (a
// person's link or unlink, audit.PendingIn), in a transaction of its own that appends the event
// too.
func (p Pool) PutStudyLink(ctx context.Context, l *engine.StudyLink) error {
	pending := audit.PendingIn(ctx)
	if pending == nil && len(p.S.putStudyLink) == 1 {
		return p.S.PutStudyLink(ctx, p.C, l)
	}
	patient := ""
	if l != nil && l.PatientID != "" {
		patient = "Patient/" + l.PatientID
	}
	err := p.inTx(ctx, pending, patient, func(tx engine.Tx) error { return tx.PutStudyLink(ctx, l) })
	if err != nil && l != nil {
		return fmt.Errorf("storing link of study %s: %w", l.StudyInstanceUID, err)
	}
	return err
}

// errNoChange is what a change given to inTx returns when it changed nothing (a request that
// matched no message): its transaction is rolled back, its event not appended.
var errNoChange = errors.New("nothing changed")

// inTx runs change in a transaction of its own and commits it; with pending (an audit event
// waiting for this change, audit.PendingIn) not nil, the event is appended in the same
// transaction, so that a person's change and its AuditEvent commit together or not at all
// (issue 12; docs/security.md, "The audit trail"). patient is the event's patient when it names
// none.
func (p Pool) inTx(ctx context.Context, pending *audit.Pending, patient string, change func(tx engine.Tx) error) error {
	if p.Begin == nil {
		return errors.New("the store's Pool has no Begin: it cannot make this change in a transaction")
	}
	tx, err := p.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	switch err := change(tx); {
	case errors.Is(err, errNoChange):
		return tx.Rollback() // nothing to audit: the request's gate records what it answered
	case err != nil:
		return err
	}
	if pending == nil {
		return tx.Commit()
	}
	atx, ok := tx.(audit.CommitTx)
	if !ok {
		return errors.New("the store's transactions cannot append to the audit trail")
	}
	return pending.Commit(ctx, atx, patient)
}

func (p Pool) StudyLink(ctx context.Context, studyInstanceUID string) (*engine.StudyLink, error) {
	return p.S.StudyLink(ctx, p.C, studyInstanceUID)
}

func (p Pool) StudyLinkHistory(ctx context.Context, studyInstanceUID string) ([]*engine.StudyLink, error) {
	return p.S.StudyLinkHistory(ctx, p.C, studyInstanceUID)
}

func (p Pool) OpenStudyLinks(ctx context.Context, limit, offset int) ([]*engine.StudyLink, error) {
	return p.S.OpenStudyLinks(ctx, p.C, limit, offset)
}

func (p Pool) StudyLinksOfPatient(ctx context.Context, patientID string) ([]*engine.StudyLink, error) {
	return p.S.StudyLinksOfPatient(ctx, p.C, patientID)
}

func (p Pool) StudyLinksWithIdentifier(ctx context.Context, system, value string, limit int) ([]*engine.StudyLink, error) {
	return p.S.StudyLinksWithIdentifier(ctx, p.C, system, value, limit)
}

func (p Pool) DueStudyDerivations(ctx context.Context, quietSince time.Time, limit int) ([]engine.StudyDerivation, error) {
	return p.S.DueStudyDerivations(ctx, p.C, quietSince, limit)
}

func (p Pool) DueDeliveries(ctx context.Context, now time.Time, limit int, busy []string) ([]*outbox.Delivery, error) {
	return p.S.DueDeliveries(ctx, p.C, now, limit, busy)
}

func (p Pool) ClaimDelivery(ctx context.Context, id int64, now, leaseUntil time.Time) (bool, error) {
	return p.S.ClaimDelivery(ctx, p.C, id, now, leaseUntil)
}

func (p Pool) FinishDelivery(ctx context.Context, id int64, o outbox.Outcome) error {
	return p.S.FinishDelivery(ctx, p.C, id, o)
}

// ReplayDelivery replays dead delivery id, committed on its own; when ctx carries an audit
// event pending for the change (a person's replay, audit.PendingIn), in a transaction of its own
// that appends the event too.
func (p Pool) ReplayDelivery(ctx context.Context, id int64, payload []byte, mappingVersion string, now time.Time) error {
	pending := audit.PendingIn(ctx)
	if pending == nil {
		return p.S.ReplayDelivery(ctx, p.C, id, payload, mappingVersion, now)
	}
	return p.inTx(ctx, pending, "", func(tx engine.Tx) error {
		r, ok := tx.(deliveryReplayer)
		if !ok {
			return errors.New("replaying a delivery: the store's transactions cannot")
		}
		return r.ReplayDelivery(ctx, id, payload, mappingVersion, now)
	})
}

// deliveryReplayer is a transaction that replays deliveries (TxSteps).
type deliveryReplayer interface {
	ReplayDelivery(ctx context.Context, id int64, payload []byte, mappingVersion string, now time.Time) error
}

// ReplayDelivery replays dead delivery id in the transaction, as Store.ReplayDelivery documents.
func (t TxSteps) ReplayDelivery(ctx context.Context, id int64, payload []byte, mappingVersion string, now time.Time) error {
	if err := t.G.Usable(); err != nil {
		return err
	}
	return t.G.Check(t.S.ReplayDelivery(ctx, t.C, id, payload, mappingVersion, now))
}

func (p Pool) PostponeDestination(ctx context.Context, destination string, now, until time.Time) (int64, error) {
	return p.S.PostponeDestination(ctx, p.C, destination, now, until)
}

func (p Pool) Delivery(ctx context.Context, id int64) (*outbox.Delivery, error) {
	return p.S.Delivery(ctx, p.C, id)
}

func (p Pool) Deliveries(ctx context.Context, f outbox.Filter) ([]*outbox.Delivery, error) {
	return p.S.Deliveries(ctx, p.C, f)
}

func (p Pool) Instance(ctx context.Context, sopInstanceUID string) (*engine.Instance, error) {
	return p.S.Instance(ctx, p.C, sopInstanceUID)
}

func (p Pool) SeriesInstances(ctx context.Context, seriesInstanceUID string) ([]*engine.Instance, error) {
	return p.S.SeriesInstances(ctx, p.C, seriesInstanceUID)
}

func (p Pool) Study(ctx context.Context, studyInstanceUID string) (*engine.Study, error) {
	return p.S.Study(ctx, p.C, studyInstanceUID)
}

func (p Pool) StudySeries(ctx context.Context, studyInstanceUID string) ([]*engine.Series, error) {
	return p.S.StudySeries(ctx, p.C, studyInstanceUID)
}

func (p Pool) SearchStudies(ctx context.Context, f engine.StudyFilter) ([]*engine.Study, error) {
	return p.S.SearchStudies(ctx, p.C, f)
}

func (p Pool) Message(ctx context.Context, id int64) (*engine.InboundMessage, error) {
	return p.S.Message(ctx, p.C, id)
}

func (p Pool) Messages(ctx context.Context, f engine.MessageFilter) ([]*engine.InboundMessage, error) {
	return p.S.Messages(ctx, p.C, f)
}

func (p Pool) TextWindowEnd(ctx context.Context, f engine.MessageFilter) (int64, error) {
	return p.S.TextWindowEnd(ctx, p.C, f)
}

func (p Pool) Resource(ctx context.Context, typ, id string) (*engine.Resource, error) {
	return p.S.Resource(ctx, p.C, typ, id)
}

func (p Pool) ResourceVersion(ctx context.Context, typ, id string, version int64) (*engine.Resource, error) {
	return p.S.ResourceVersion(ctx, p.C, typ, id, version)
}

func (p Pool) ResourceHistory(ctx context.Context, typ, id string) ([]*engine.Resource, error) {
	return p.S.ResourceHistory(ctx, p.C, typ, id)
}

func (p Pool) ResolveKey(ctx context.Context, typ, key string) (string, error) {
	return p.S.ResolveKey(ctx, p.C, typ, key)
}

func (p Pool) ResourceByKeys(ctx context.Context, typ string, keys []string) (*engine.Resource, error) {
	return p.S.ResourceByKeys(ctx, p.C, typ, keys)
}

func (p Pool) SearchResources(ctx context.Context, q engine.ResourceQuery) ([]*engine.Resource, error) {
	return p.S.SearchResources(ctx, p.C, q)
}

// The reads of a transaction see its own writes.

func (t TxSteps) Resource(ctx context.Context, typ, id string) (*engine.Resource, error) {
	if err := t.G.Usable(); err != nil {
		return nil, err
	}
	r, err := t.S.Resource(ctx, t.C, typ, id)
	return r, t.G.Check(err)
}

func (t TxSteps) ResourceVersion(ctx context.Context, typ, id string, version int64) (*engine.Resource, error) {
	if err := t.G.Usable(); err != nil {
		return nil, err
	}
	r, err := t.S.ResourceVersion(ctx, t.C, typ, id, version)
	return r, t.G.Check(err)
}

func (t TxSteps) ResourceHistory(ctx context.Context, typ, id string) ([]*engine.Resource, error) {
	if err := t.G.Usable(); err != nil {
		return nil, err
	}
	rs, err := t.S.ResourceHistory(ctx, t.C, typ, id)
	return rs, t.G.Check(err)
}

func (t TxSteps) ResolveKey(ctx context.Context, typ, key string) (string, error) {
	if err := t.G.Usable(); err != nil {
		return "", err
	}
	id, err := t.S.ResolveKey(ctx, t.C, typ, key)
	return id, t.G.Check(err)
}

func (t TxSteps) ResourceByKeys(ctx context.Context, typ string, keys []string) (*engine.Resource, error) {
	if err := t.G.Usable(); err != nil {
		return nil, err
	}
	r, err := t.S.ResourceByKeys(ctx, t.C, typ, keys)
	return r, t.G.Check(err)
}

func (t TxSteps) SearchResources(ctx context.Context, q engine.ResourceQuery) ([]*engine.Resource, error) {
	if err := t.G.Usable(); err != nil {
		return nil, err
	}
	rs, err := t.S.SearchResources(ctx, t.C, q)
	return rs, t.G.Check(err)
}

func (t TxSteps) ClaimPending(ctx context.Context, limit int) ([]*engine.InboundMessage, error) {
	if err := t.G.Usable(); err != nil {
		return nil, err
	}
	msgs, err := t.S.ClaimPending(ctx, t.C, limit)
	return msgs, t.G.Check(err)
}

func (t TxSteps) FinishPending(ctx context.Context, id int64, mappingVersion, processingError string) error {
	if err := t.G.Usable(); err != nil {
		return err
	}
	return t.G.Check(t.S.FinishPending(ctx, t.C, id, mappingVersion, processingError))
}

func (t TxSteps) PutWorklistItem(ctx context.Context, item *engine.WorklistItem) error {
	if err := t.G.Usable(); err != nil {
		return err
	}
	return t.G.Check(t.S.PutWorklistItem(ctx, t.C, item))
}

func (t TxSteps) DeleteWorklistItem(ctx context.Context, serviceRequestID string) error {
	if err := t.G.Usable(); err != nil {
		return err
	}
	return t.G.Check(t.S.DeleteWorklistItem(ctx, t.C, serviceRequestID))
}

// WorklistItems returns the items matching f as the transaction sees them, its own changes
// included.
func (t TxSteps) WorklistItems(ctx context.Context, f engine.WorklistFilter) ([]*engine.WorklistItem, error) {
	if err := t.G.Usable(); err != nil {
		return nil, err
	}
	items, err := t.S.WorklistItems(ctx, t.C, f)
	return items, t.G.Check(err)
}

func (t TxSteps) MarkTurnaround(ctx context.Context, srID, priority string, stage turnaround.Stage, at time.Time) (*turnaround.Clocks, error) {
	if err := t.G.Usable(); err != nil {
		return nil, err
	}
	ta, err := t.S.MarkTurnaround(ctx, t.C, srID, priority, stage, at)
	return ta, t.G.Check(err)
}

func (t TxSteps) PutStudyLink(ctx context.Context, l *engine.StudyLink) error {
	if err := t.G.Usable(); err != nil {
		return err
	}
	return t.G.Check(t.S.PutStudyLink(ctx, t.C, l))
}

// StudyLinksOfPatient returns the current decisions naming patientID, as the transaction sees them.
func (t TxSteps) StudyLinksOfPatient(ctx context.Context, patientID string) ([]*engine.StudyLink, error) {
	if err := t.G.Usable(); err != nil {
		return nil, err
	}
	links, err := t.S.StudyLinksOfPatient(ctx, t.C, patientID)
	return links, t.G.Check(err)
}

func (t TxSteps) FinishStudyDerivation(ctx context.Context, d engine.StudyDerivation) error {
	if err := t.G.Usable(); err != nil {
		return err
	}
	return t.G.Check(t.S.FinishStudyDerivation(ctx, t.C, d))
}

func (t TxSteps) InsertDelivery(ctx context.Context, d *outbox.Delivery) error {
	if err := t.G.Usable(); err != nil {
		return err
	}
	return t.G.Check(t.S.InsertDelivery(ctx, t.C, d))
}

func (p Pool) BackfillSearchKeys(ctx context.Context, limit int, keysOf func(raw []byte) []engine.SearchKey) (int, error) {
	return p.S.BackfillSearchKeys(ctx, p.C, limit, keysOf)
}
