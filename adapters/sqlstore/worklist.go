package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ferryhealth/ferry/engine"
)

// worklistStatements are the Modality Worklist's fixed statements (migrations/*/00002_resources.sql:
// worklist_items).
type worklistStatements struct {
	putWorklistItem, deleteWorklistItem string
}

func newWorklistStatements(rebind func(string) string) worklistStatements {
	return worklistStatements{
		putWorklistItem: rebind(`
INSERT INTO worklist_items (service_request_id, accession_number, patient_id, modality,
	station_ae_title, start_date, start_time, item)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (service_request_id) DO UPDATE SET
	accession_number = excluded.accession_number, patient_id = excluded.patient_id,
	modality = excluded.modality, station_ae_title = excluded.station_ae_title,
	start_date = excluded.start_date, start_time = excluded.start_time, item = excluded.item`),
		deleteWorklistItem: rebind(`DELETE FROM worklist_items WHERE service_request_id = ?`),
	}
}

// PutWorklistItem inserts or replaces the worklist item of item.ServiceRequestID, on c (a
// transaction's), as engine.WorklistWriter documents.
func (s *Store) PutWorklistItem(ctx context.Context, c Conn, item *engine.WorklistItem) error {
	if item == nil || item.ServiceRequestID == "" {
		return &InvalidError{errors.New("storing worklist item: no ServiceRequestID")}
	}
	it := item.Storable()
	_, err := c.Exec(ctx, s.putWorklistItem, it.ServiceRequestID, it.AccessionNumber,
		it.PatientID, it.Modality, it.StationAETitle, it.StartDate, it.StartTime, marshalItem(&it))
	if err != nil {
		return fmt.Errorf("storing worklist item of ServiceRequest/%s: %w", it.ServiceRequestID, s.d.InterpretError(err))
	}
	return nil
}

// DeleteWorklistItem removes the worklist item of a ServiceRequest; none is not an error.
func (s *Store) DeleteWorklistItem(ctx context.Context, c Conn, serviceRequestID string) error {
	if _, err := c.Exec(ctx, s.deleteWorklistItem, engine.StorableText(serviceRequestID)); err != nil {
		return fmt.Errorf("deleting worklist item of ServiceRequest/%s: %w", serviceRequestID, s.d.InterpretError(err))
	}
	return nil
}

// WorklistItems returns the items matching f, by StartDate, StartTime, then ServiceRequestID. It
// reads the item column alone, in the order of the worklist_items_start index (or of the filter's
// own index, which ends in the same columns). The query's text depends only on which filters are
// set (QueryShape); the values are arguments.
func (s *Store) WorklistItems(ctx context.Context, c Conn, f engine.WorklistFilter) ([]*engine.WorklistItem, error) {
	q := conditions{d: s.d}
	for _, w := range []struct{ column, op, value string }{
		{"accession_number", "=", f.AccessionNumber},
		{"patient_id", "=", f.PatientID},
		{"modality", "=", f.Modality},
		{"station_ae_title", "=", f.StationAETitle},
		{"start_date", ">=", f.StartDateFrom},
		{"start_date", "<=", f.StartDateTo},
	} {
		if w.value != "" {
			q.add(w.column + " " + w.op + " " + q.text(w.value))
		}
	}
	query := "SELECT item FROM worklist_items" + q.clause() + " ORDER BY start_date, start_time, service_request_id"
	if f.Limit > 0 {
		query += " LIMIT " + q.arg(f.Limit)
	}
	rows, err := c.QueryShape(ctx, query, q.args...)
	if err != nil {
		return nil, fmt.Errorf("reading worklist: %w", s.d.InterpretError(err))
	}
	defer rows.Close()
	items, err := scanWorklistItems(rows)
	if err != nil {
		return nil, fmt.Errorf("reading worklist: %w", s.d.InterpretError(err))
	}
	return items, nil
}

// scanWorklistItems decodes the item column of rows.
func scanWorklistItems(rows *sql.Rows) ([]*engine.WorklistItem, error) {
	var (
		items engine.WorklistBuffer
		raw   sql.RawBytes // the driver's buffer: Add copies it before the next row
	)
	for rows.Next() {
		if err := rows.Scan(&raw); err != nil {
			return nil, err
		}
		items.Add(raw)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return items.Items()
}

// marshalItem encodes it for the item column; WorklistItem.MarshalBinary never fails.
func marshalItem(it *engine.WorklistItem) []byte {
	b, _ := it.MarshalBinary()
	return b
}
