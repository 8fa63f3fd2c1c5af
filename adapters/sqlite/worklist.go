package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/ferryhealth/ferry/engine"
)

const putWorklistItemSQL = `
INSERT INTO worklist_items (service_request_id, accession_number, patient_id, modality,
	station_ae_title, start_date, start_time, item)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (service_request_id) DO UPDATE SET
	accession_number = excluded.accession_number, patient_id = excluded.patient_id,
	modality = excluded.modality, station_ae_title = excluded.station_ae_title,
	start_date = excluded.start_date, start_time = excluded.start_time, item = excluded.item`

const deleteWorklistItemSQL = `DELETE FROM worklist_items WHERE service_request_id = ?`

// PutWorklistItem inserts or replaces the worklist item of item.ServiceRequestID.
func (t *Tx) PutWorklistItem(ctx context.Context, item *engine.WorklistItem) error {
	if err := t.usable(); err != nil {
		return err
	}
	if item == nil || item.ServiceRequestID == "" {
		return errors.New("storing worklist item: no ServiceRequestID")
	}
	it := item.Storable()
	err := t.exec(ctx, putWorklistItemSQL, it.ServiceRequestID, it.AccessionNumber, it.PatientID,
		it.Modality, it.StationAETitle, it.StartDate, it.StartTime, marshalItem(&it))
	if err != nil {
		return t.check(fmt.Errorf("storing worklist item of ServiceRequest/%s: %w", it.ServiceRequestID, err))
	}
	return nil
}

// DeleteWorklistItem removes the worklist item of a ServiceRequest; none is not an error.
func (t *Tx) DeleteWorklistItem(ctx context.Context, serviceRequestID string) error {
	if err := t.usable(); err != nil {
		return err
	}
	if err := t.exec(ctx, deleteWorklistItemSQL, storableText(serviceRequestID)); err != nil {
		return t.check(fmt.Errorf("deleting worklist item of ServiceRequest/%s: %w", serviceRequestID, err))
	}
	return nil
}

// WorklistItems returns the items matching f, by StartDate, StartTime, then ServiceRequestID.
func (s *Store) WorklistItems(ctx context.Context, f engine.WorklistFilter) ([]*engine.WorklistItem, error) {
	return reader{s: s}.worklistItems(ctx, f)
}

// WorklistItems returns the items matching f as the transaction sees them, its own changes
// included.
func (t *Tx) WorklistItems(ctx context.Context, f engine.WorklistFilter) ([]*engine.WorklistItem, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	items, err := reader{s: t.s, tx: t}.worklistItems(ctx, f)
	return items, t.check(err)
}

// worklistItems reads the items column alone, on the read-only pool, in the order of the
// worklist_items_start index (or of the filter's own index, which ends in the same columns). The
// query's text depends only on which filters are set, so each shape is prepared once; the values
// are arguments.
func (rd reader) worklistItems(ctx context.Context, f engine.WorklistFilter) ([]*engine.WorklistItem, error) {
	var (
		where []string
		args  []any
	)
	add := func(column, op, value string) {
		args = append(args, storableText(value))
		where = append(where, column+" "+op+" ?")
	}
	if f.AccessionNumber != "" {
		add("accession_number", "=", f.AccessionNumber)
	}
	if f.PatientID != "" {
		add("patient_id", "=", f.PatientID)
	}
	if f.Modality != "" {
		add("modality", "=", f.Modality)
	}
	if f.StationAETitle != "" {
		add("station_ae_title", "=", f.StationAETitle)
	}
	if f.StartDateFrom != "" {
		add("start_date", ">=", f.StartDateFrom)
	}
	if f.StartDateTo != "" {
		add("start_date", "<=", f.StartDateTo)
	}
	query := "SELECT item FROM worklist_items"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY start_date, start_time, service_request_id"
	if f.Limit > 0 {
		args = append(args, f.Limit)
		query += " LIMIT ?"
	}
	rows, err := rd.queryShape(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("reading worklist: %w", interpretError(err))
	}
	defer rows.Close()
	items, err := scanWorklistItems(rows)
	if err != nil {
		return nil, fmt.Errorf("reading worklist: %w", interpretError(err))
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
