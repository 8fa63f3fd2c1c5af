// Package critical is the acknowledgement of critical results (docs/reports.md, "Critical
// results"): a report with a critical finding must be acknowledged by the patient's own
// physician (ACR practice parameter on communication of diagnostic imaging findings). Service
// records who acknowledged, when and which version they read, audited in the same transaction;
// Alerter raises the alert — metrics and a webhook, once per report — when no acknowledgement
// comes within the time allowed, so that a person calls.
//
// The row each critical report gets is written by engine.Reports in the transaction that stores
// its first critical version (engine.CriticalWriter); this package reads and updates it.
package critical

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
)

// Store is what the acknowledgement reads and writes (adapters/sqlstore keeps it on either
// database). Its transactions must be Tx (and, to audit in the same transaction,
// audit.Appender); the stores' are.
type Store interface {
	Begin(ctx context.Context) (engine.Tx, error)
	// CriticalResult returns report reportID's critical result, or engine.ErrNotFound when the
	// report has none (it never carried a critical finding, or does not exist).
	CriticalResult(ctx context.Context, reportID string) (*engine.CriticalResult, error)
}

// Tx is the acknowledgement's step in a store transaction.
type Tx interface {
	// AcknowledgeCritical records the acknowledgement of report reportID's critical result by
	// user by at at, having read version; false when it has no row or was acknowledged
	// already (the first acknowledgement is kept).
	AcknowledgeCritical(ctx context.Context, reportID, by string, version int64, at time.Time) (bool, error)
}

// ErrNotPhysician is an acknowledgement asked by someone who is not a physician: only the
// patient's own physician acknowledges a critical result.
var ErrNotPhysician = errors.New("only a physician acknowledges a critical result")

// ErrNotTheirPatient is an acknowledgement by a physician who sees the patient only through a
// break-glass grant: they may read the report, but the result is for the patient's own
// physicians to acknowledge.
var ErrNotTheirPatient = errors.New("a critical result is acknowledged by the patient's own physician, not under break-glass")

// AuditTrail records an event in a transaction of its own (audit.Recorder).
type AuditTrail interface {
	Record(ctx context.Context, e *audit.Event) error
}

// Service records acknowledgements. Store, Patients and Reports are required.
type Service struct {
	Store Store
	// Patients decides whether a physician reaches the report's patient.
	Patients *access.Patients
	// Reports reads the report's current version (the store's unlimited reader: the
	// physician's access is checked here, on the critical result's patient).
	Reports interface {
		Resource(ctx context.Context, typ, id string) (*engine.Resource, error)
	}
	// Audit records refusals, and the acknowledgement when the store's transactions cannot
	// append to the audit trail themselves.
	Audit  AuditTrail
	Logger *slog.Logger
	Now    func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Acknowledge records that physician id has read report reportID's critical result, from
// address (the client's, for the audit trail). A report with no critical result, or whose
// patient id does not reach, is engine.ErrNotFound (never "forbidden": that would confirm it
// exists); ErrNotPhysician and ErrNotTheirPatient say who may. A result acknowledged already
// keeps its first acknowledgement, and that is not an error.
func (s *Service) Acknowledge(ctx context.Context, id *access.Identity, reportID, address string) error {
	entity := "acknowledge critical result DiagnosticReport/" + reportID
	refuse := func(patient, why string, err error) error {
		e := &audit.Event{Action: audit.ActionUpdate, Outcome: audit.OutcomeMinor, Entity: entity, Detail: why,
			Address: address, Patient: patient}
		if id != nil {
			e.Agent, e.Role = id.User, string(id.Role)
		}
		s.record(ctx, e)
		return err
	}
	if id == nil || id.Role != access.RolePhysician {
		return refuse("", "not a physician", ErrNotPhysician)
	}
	r, err := s.Store.CriticalResult(ctx, reportID)
	if errors.Is(err, engine.ErrNotFound) {
		return refuse("", "no critical result", fmt.Errorf("DiagnosticReport/%s has no critical result: %w", reportID, engine.ErrNotFound))
	}
	if err != nil {
		return err
	}
	patient := "Patient/" + r.PatientID
	reaches, grant, err := s.Patients.Reaches(ctx, id, r.PatientID)
	if err != nil {
		return err
	}
	if !reaches {
		return refuse(patient, "not among the physician's patients", fmt.Errorf("DiagnosticReport/%s: %w", reportID, engine.ErrNotFound))
	}
	if grant != nil {
		return refuse(patient, "break-glass access only", ErrNotTheirPatient)
	}
	if r.Acknowledged() {
		return nil
	}
	report, err := s.Reports.Resource(ctx, "DiagnosticReport", reportID)
	if err != nil {
		return fmt.Errorf("reading DiagnosticReport/%s to acknowledge it: %w", reportID, err)
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	tx, err := s.Store.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	ack, ok := tx.(Tx)
	if !ok {
		return errors.New("acknowledging a critical result: the store's transactions cannot record it")
	}
	done, err := ack.AcknowledgeCritical(ctx, reportID, id.User, report.VersionID, now)
	if err != nil || !done { // !done: acknowledged meanwhile, by another physician or request
		return err
	}
	e := &audit.Event{RecordedAt: now, Action: audit.ActionUpdate, Outcome: audit.OutcomeSuccess, Agent: id.User,
		Role: string(id.Role), Address: address, Patient: patient, Entity: entity,
		Detail: fmt.Sprintf("version %d read", report.VersionID)}
	if app, ok := tx.(audit.Appender); ok {
		if err := app.AppendAudit(ctx, e); err != nil {
			return fmt.Errorf("acknowledging a critical result: %w", err)
		}
		return tx.Commit()
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	s.record(ctx, e)
	return nil
}

// Acknowledgement returns who acknowledged report reportID's critical result and when; ok is
// false when no one has, or the report has no critical result. It does not check access: the
// caller shows it beside a report it has already let the caller read.
func (s *Service) Acknowledgement(ctx context.Context, reportID string) (by string, at time.Time, ok bool, err error) {
	r, err := s.Store.CriticalResult(ctx, reportID)
	if errors.Is(err, engine.ErrNotFound) {
		return "", time.Time{}, false, nil
	}
	if err != nil {
		return "", time.Time{}, false, err
	}
	if !r.Acknowledged() {
		return "", time.Time{}, false, nil
	}
	return r.AcknowledgedBy, r.AcknowledgedAt, true, nil
}

// record records e in a transaction of its own; a failure is logged (the act it records has
// happened or been refused already).
func (s *Service) record(ctx context.Context, e *audit.Event) {
	if s.Audit == nil {
		return
	}
	if e.RecordedAt.IsZero() {
		e.RecordedAt = s.now()
	}
	if err := s.Audit.Record(context.WithoutCancel(ctx), e); err != nil {
		s.logger().Error("recording the audit event of an acknowledgement failed", "err", err)
	}
}

func (s *Service) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}
