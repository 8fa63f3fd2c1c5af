package engine

import (
	"context"
	"errors"
	"time"
)

// CriticalResult is a report with a critical finding (CriticalFindingURL) awaiting, or having
// had, its acknowledgement by the ordering physician (ACR practice parameter on communication of
// diagnostic imaging findings; docs/reports.md, "Critical results"). The row is written in the
// transaction that stores the report's first critical version; engine/critical records the
// acknowledgement and raises the alert when none comes in time.
type CriticalResult struct {
	ReportID   string    // DiagnosticReport id
	Version    int64     // the first version that carried the critical finding
	PatientID  string    // the order's patient (the survivor when merged), for access checks
	OrderID    string    // ServiceRequest id
	ReportedAt time.Time // when that version was stored
	// The acknowledgement: who ("" until acknowledged), when, and the report version they had
	// in front of them.
	AcknowledgedBy      string
	AcknowledgedAt      time.Time
	AcknowledgedVersion int64
	// The overdue alert's webhook: when it was answered (zero until then), how many attempts.
	NotifiedAt     time.Time
	NotifyAttempts int
}

// Acknowledged reports whether a physician has acknowledged the result.
func (r *CriticalResult) Acknowledged() bool { return r.AcknowledgedBy != "" }

// Validate checks what a store needs to keep the row.
func (r *CriticalResult) Validate() error {
	if r.ReportID == "" || r.Version < 1 || r.PatientID == "" || r.OrderID == "" || r.ReportedAt.IsZero() {
		return errors.New("a critical result needs its report, version, patient, order and time")
	}
	return nil
}

// CriticalWriter records a critical result in the transaction of the report version that
// carries it.
type CriticalWriter interface {
	// PutCriticalResult records r when its report has no row yet; a report already recorded
	// (an earlier critical version) keeps its row, acknowledgement included, and that is not
	// an error.
	PutCriticalResult(ctx context.Context, r *CriticalResult) error
}

// markCritical records the report version res stored as a critical result, in tx.
func markCritical(ctx context.Context, tx Tx, res *storedReport, patientID string) error {
	if !res.critical || !res.changed {
		return nil
	}
	return tx.PutCriticalResult(ctx, &CriticalResult{ReportID: res.version.ID, Version: res.version.VersionID,
		PatientID: patientID, OrderID: res.orderID, ReportedAt: res.version.LastUpdated})
}

// CriticalStats is what the critical results' metrics show.
type CriticalStats struct {
	Unacknowledged int       // critical results no physician has acknowledged
	Overdue        int       // of those, the ones older than the time allowed
	Oldest         time.Time // when the oldest unacknowledged one was reported; zero when none
}
