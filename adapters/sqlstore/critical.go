package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferryhealth/ferry/engine"
)

// Critical results and their acknowledgement (engine/critical.go, engine/critical,
// migrations/*/00105_critical_results.sql).
const criticalColumns = `report_id, report_version, patient_id, service_request_id, reported_at,
acknowledged_by, acknowledged_at, acknowledged_version, notify_attempts, notified_at`

type criticalStatements struct {
	putCriticalResult, criticalResult, acknowledgeCritical, criticalStats,
	dueCriticalAlerts, claimCriticalAlert, finishCriticalAlert string
}

func newCriticalStatements(rebind func(string) string, d Dialect) criticalStatements {
	notified := d.TimeOrNull("notified_at")
	return criticalStatements{
		putCriticalResult: rebind(`INSERT INTO critical_results (report_id, report_version, patient_id, service_request_id, reported_at)
VALUES (?, ?, ?, ?, ?) ON CONFLICT (report_id) DO NOTHING`),
		criticalResult: rebind(`SELECT ` + criticalColumns + ` FROM critical_results WHERE report_id = ?`),
		// The first acknowledgement is kept: a second physician's finds the row taken.
		acknowledgeCritical: rebind(`UPDATE critical_results SET acknowledged_by = ?, acknowledged_at = ?, acknowledged_version = ?
WHERE report_id = ? AND acknowledged_by = ''`),
		// Reads the partial index critical_results_unacknowledged.
		criticalStats: rebind(`SELECT count(*), min(reported_at), coalesce(sum(CASE WHEN reported_at < ? THEN 1 ELSE 0 END), 0)
FROM critical_results WHERE acknowledged_by = ''`),
		dueCriticalAlerts: rebind(`SELECT ` + criticalColumns + ` FROM critical_results
WHERE acknowledged_by = '' AND reported_at < ? AND ` + notified + ` IS NULL AND (` + d.TimeOrNull("notify_after") + ` IS NULL OR notify_after <= ?)
ORDER BY reported_at LIMIT ?`),
		// A claim holds the alert off other nodes until the lease ends (a node that dies
		// mid-attempt delays it that long, then another sends it).
		claimCriticalAlert: rebind(`UPDATE critical_results SET notify_after = ?, notify_attempts = notify_attempts + 1
WHERE report_id = ? AND acknowledged_by = '' AND ` + notified + ` IS NULL AND (` + d.TimeOrNull("notify_after") + ` IS NULL OR notify_after <= ?)`),
		finishCriticalAlert: rebind(`UPDATE critical_results SET notified_at = ?, notify_after = ? WHERE report_id = ?`),
	}
}

// criticalTxStatements are the statements a report's or an acknowledgement's transaction runs.
func (s *Store) criticalTxStatements() []string {
	return []string{s.putCriticalResult, s.acknowledgeCritical, s.criticalResult}
}

// PutCriticalResult records r unless its report has a row, as engine.CriticalWriter documents.
func (s *Store) PutCriticalResult(ctx context.Context, c Conn, r *engine.CriticalResult) error {
	if err := r.Validate(); err != nil {
		return &InvalidError{err}
	}
	ts, err := s.times(r.ReportedAt)
	if err != nil {
		return err
	}
	if _, err := c.Exec(ctx, s.putCriticalResult, engine.StorableText(r.ReportID), r.Version,
		engine.StorableText(r.PatientID), engine.StorableText(r.OrderID), ts[0]); err != nil {
		return fmt.Errorf("recording critical result of DiagnosticReport/%s: %w", r.ReportID, s.d.InterpretError(err))
	}
	return nil
}

// CriticalResult returns the critical result of report reportID, or engine.ErrNotFound.
func (s *Store) CriticalResult(ctx context.Context, c Conn, reportID string) (*engine.CriticalResult, error) {
	rows, err := c.Query(ctx, s.criticalResult, engine.StorableText(reportID))
	r, err := scanRow(s, rows, err, scanCritical)
	if err != nil {
		return nil, fmt.Errorf("reading critical result of DiagnosticReport/%s: %w", reportID, err)
	}
	return r, nil
}

// AcknowledgeCritical records the acknowledgement of report reportID's critical result by user
// by at at, having read version; false when it has no row or was acknowledged already (the first
// acknowledgement is kept).
func (s *Store) AcknowledgeCritical(ctx context.Context, c Conn, reportID, by string, version int64, at time.Time) (bool, error) {
	if by == "" || at.IsZero() {
		return false, &InvalidError{errors.New("an acknowledgement needs its user and time")}
	}
	ts, err := s.times(at)
	if err != nil {
		return false, err
	}
	err = s.execOne(ctx, c, "acknowledging critical result of DiagnosticReport/"+reportID, s.acknowledgeCritical,
		engine.StorableText(by), ts[0], version, engine.StorableText(reportID))
	if errors.Is(err, engine.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// CriticalStats counts the unacknowledged critical results, those reported before
// overdueBefore, and says when the oldest was reported (zero when none).
func (s *Store) CriticalStats(ctx context.Context, c Conn, overdueBefore time.Time) (engine.CriticalStats, error) {
	var st engine.CriticalStats
	ts, err := s.times(overdueBefore)
	if err != nil {
		return st, err
	}
	rows, err := c.Query(ctx, s.criticalStats, ts[0])
	if err := s.scanOne(rows, err, func(r rowScanner) error {
		return r.Scan(&st.Unacknowledged, scanTime{&st.Oldest}, &st.Overdue)
	}); err != nil {
		return st, fmt.Errorf("counting unacknowledged critical results: %w", err)
	}
	return st, nil
}

// DueCriticalAlerts returns up to limit unacknowledged critical results reported before before,
// whose webhook has not been answered and is not held off at now, oldest first.
func (s *Store) DueCriticalAlerts(ctx context.Context, c Conn, before, now time.Time, limit int) ([]*engine.CriticalResult, error) {
	ts, err := s.times(before, now)
	if err != nil {
		return nil, err
	}
	rows, err := c.Query(ctx, s.dueCriticalAlerts, ts[0], ts[1], max(limit, 1))
	out, err := scanAll(s, rows, err, scanCritical)
	if err != nil {
		return nil, fmt.Errorf("reading overdue critical results: %w", err)
	}
	return out, nil
}

// ClaimCriticalAlert holds report reportID's alert for this caller until until, when it is still
// due at now; false when another caller holds it, it was answered or acknowledged meanwhile.
func (s *Store) ClaimCriticalAlert(ctx context.Context, c Conn, reportID string, now, until time.Time) (bool, error) {
	ts, err := s.times(until, now)
	if err != nil {
		return false, err
	}
	err = s.execOne(ctx, c, "claiming the alert of DiagnosticReport/"+reportID, s.claimCriticalAlert,
		ts[0], engine.StorableText(reportID), ts[1])
	if errors.Is(err, engine.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// FinishCriticalAlert records a claimed alert's attempt: answered at notifiedAt (not zero), or
// failed and to be tried again from retryAt.
func (s *Store) FinishCriticalAlert(ctx context.Context, c Conn, reportID string, notifiedAt, retryAt time.Time) error {
	ts, err := s.times(notifiedAt, retryAt)
	if err != nil {
		return err
	}
	return s.execOne(ctx, c, "finishing the alert of DiagnosticReport/"+reportID, s.finishCriticalAlert,
		ts[0], ts[1], engine.StorableText(reportID))
}

func scanCritical(r rowScanner) (*engine.CriticalResult, error) {
	var c engine.CriticalResult
	if err := r.Scan(&c.ReportID, &c.Version, &c.PatientID, &c.OrderID, scanTime{&c.ReportedAt}, &c.AcknowledgedBy,
		scanTime{&c.AcknowledgedAt}, &c.AcknowledgedVersion, &c.NotifyAttempts, scanTime{&c.NotifiedAt}); err != nil {
		return nil, err
	}
	return &c, nil
}

func (p Pool) CriticalResult(ctx context.Context, reportID string) (*engine.CriticalResult, error) {
	return p.S.CriticalResult(ctx, p.C, reportID)
}

func (p Pool) CriticalStats(ctx context.Context, overdueBefore time.Time) (engine.CriticalStats, error) {
	return p.S.CriticalStats(ctx, p.C, overdueBefore)
}

func (p Pool) DueCriticalAlerts(ctx context.Context, before, now time.Time, limit int) ([]*engine.CriticalResult, error) {
	return p.S.DueCriticalAlerts(ctx, p.C, before, now, limit)
}

// ClaimCriticalAlert runs on its own on the store's writing pool.
func (p Pool) ClaimCriticalAlert(ctx context.Context, reportID string, now, until time.Time) (bool, error) {
	return p.S.ClaimCriticalAlert(ctx, p.C, reportID, now, until)
}

// FinishCriticalAlert runs on its own on the store's writing pool.
func (p Pool) FinishCriticalAlert(ctx context.Context, reportID string, notifiedAt, retryAt time.Time) error {
	return p.S.FinishCriticalAlert(ctx, p.C, reportID, notifiedAt, retryAt)
}

func (t TxSteps) PutCriticalResult(ctx context.Context, r *engine.CriticalResult) error {
	if err := t.G.Usable(); err != nil {
		return err
	}
	return t.G.Check(t.S.PutCriticalResult(ctx, t.C, r))
}

func (t TxSteps) AcknowledgeCritical(ctx context.Context, reportID, by string, version int64, at time.Time) (bool, error) {
	if err := t.G.Usable(); err != nil {
		return false, err
	}
	ok, err := t.S.AcknowledgeCritical(ctx, t.C, reportID, by, version, at)
	return ok, t.G.Check(err)
}

func (t TxSteps) CriticalResult(ctx context.Context, reportID string) (*engine.CriticalResult, error) {
	if err := t.G.Usable(); err != nil {
		return nil, err
	}
	r, err := t.S.CriticalResult(ctx, t.C, reportID)
	return r, t.G.Check(err)
}
