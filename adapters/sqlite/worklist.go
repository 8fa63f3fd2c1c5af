package sqlite

import (
	"context"
	"database/sql"
	"encoding/binary"
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
	it := storableWorklistItem(item)
	err := t.exec(ctx, putWorklistItemSQL, it.ServiceRequestID, it.AccessionNumber, it.PatientID,
		it.Modality, it.StationAETitle, it.StartDate, it.StartTime, encodeWorklistItem(&it))
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

// scanWorklistItems decodes the item column of rows. Ten thousand items (a C-FIND without keys)
// must cost little more than their bytes: the rows' bytes are gathered in one buffer and made one
// string, of which every field is a substring, and the items are one array. A handful of
// allocations in all, instead of one per field or per item, and no garbage to speak of for the
// collector.
func scanWorklistItems(rows *sql.Rows) ([]*engine.WorklistItem, error) {
	var (
		buf  []byte       // the rows' items, one after another
		ends []int        // where each item ends in buf
		raw  sql.RawBytes // the driver's buffer: copied into buf before the next row
	)
	for rows.Next() {
		if err := rows.Scan(&raw); err != nil {
			return nil, err
		}
		buf = append(buf, raw...)
		ends = append(ends, len(buf))
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	text := string(buf)
	items := make([]engine.WorklistItem, len(ends))
	out := make([]*engine.WorklistItem, len(ends))
	start := 0
	for i, end := range ends {
		if err := decodeWorklistItem(text[start:end], &items[i]); err != nil {
			return nil, err
		}
		out[i] = &items[i]
		start = end
	}
	return out, nil
}

// storableWorklistItem returns a copy of item with every text field as text columns hold it
// (storableText), so that the columns filtered on and the encoded item agree.
func storableWorklistItem(item *engine.WorklistItem) engine.WorklistItem {
	it := *item
	for _, p := range worklistFields(&it) {
		*p = storableText(*p)
	}
	return it
}

// The item column holds a whole engine.WorklistItem in the format adapters/postgres uses (the
// two are kept alike; engine would be the place to share it): a compact format, read back far faster
// than thirty columns or JSON: a format byte (worklistFormat), then each field of worklistFields,
// in order, as its length (unsigned varint) and its bytes. Fields are only ever appended to
// worklistFields: an item written before a field existed reads with the field empty, and a node
// that does not know a field yet skips it.
const worklistFormat = 1

// worklistFieldCount is the number of fields worklistFields lists.
const worklistFieldCount = 33

// worklistFields returns the text fields of it in the order the item column stores them.
func worklistFields(it *engine.WorklistItem) [worklistFieldCount]*string {
	return [...]*string{
		&it.ServiceRequestID,
		&it.AccessionNumber, &it.AccessionIssuer, &it.RequestedProcedureID,
		&it.RequestedProcedureDescription,
		&it.RequestedProcedureCode.Value, &it.RequestedProcedureCode.Scheme, &it.RequestedProcedureCode.Meaning,
		&it.RequestedProcedurePriority, &it.ReasonForRequestedProcedure, &it.StudyInstanceUID,
		&it.ReferringPhysicianName, &it.RequestingPhysician, &it.PlacerOrderNumber,
		&it.FillerOrderNumber, &it.AdmissionID,
		&it.Modality, &it.StationAETitle, &it.StationName, &it.StartDate, &it.StartTime, &it.StepID,
		&it.StepDescription, &it.StepCode.Value, &it.StepCode.Scheme, &it.StepCode.Meaning,
		&it.PerformingPhysician, &it.StepStatus,
		&it.PatientName, &it.PatientID, &it.IssuerOfPatientID, &it.PatientBirthDate, &it.PatientSex,
	}
}

func encodeWorklistItem(it *engine.WorklistItem) []byte {
	fields := worklistFields(it)
	size := 1
	for _, p := range fields {
		size += binary.MaxVarintLen32 + len(*p)
	}
	b := make([]byte, 1, size)
	b[0] = worklistFormat
	for _, p := range fields {
		b = binary.AppendUvarint(b, uint64(len(*p)))
		b = append(b, *p...)
	}
	return b
}

// decodeWorklistItem decodes the encoded item s into it; the fields are substrings of s.
func decodeWorklistItem(s string, it *engine.WorklistItem) error {
	if len(s) == 0 || s[0] != worklistFormat {
		return errors.New("worklist item in an unknown format")
	}
	i := 1
	for _, p := range worklistFields(it) {
		if i == len(s) {
			break // written before this field existed
		}
		// The length, an unsigned varint (encoding/binary's, read from a string).
		var n uint64
		for shift := 0; ; shift += 7 {
			if i == len(s) || shift > 28 {
				return errors.New("worklist item truncated")
			}
			c := s[i]
			i++
			n |= uint64(c&0x7f) << shift
			if c < 0x80 {
				break
			}
		}
		if n > uint64(len(s)-i) {
			return errors.New("worklist item truncated")
		}
		*p = s[i : i+int(n)]
		i += int(n)
	}
	return nil
}
