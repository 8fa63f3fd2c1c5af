package engine

import (
	"encoding/binary"
	"errors"
)

// The stores keep a whole WorklistItem in one column, in a compact format read back far faster
// than thirty columns or JSON: a format byte (worklistFormat), then each field of TextFields,
// in order, as its length (unsigned varint) and its bytes. Fields are only ever appended to
// TextFields: an item written before a field existed reads with the field empty, and a node
// that does not know a field yet skips it.
const worklistFormat = 1

// worklistFieldCount is the number of fields TextFields lists.
const worklistFieldCount = 33

// TextFields returns pointers to every text field of it, in the order the stored format keeps
// them (stores use it to clean text the way their columns hold it).
func (it *WorklistItem) TextFields() [worklistFieldCount]*string {
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

// MarshalBinary encodes it in the stored format. It never fails.
func (it *WorklistItem) MarshalBinary() ([]byte, error) {
	fields := it.TextFields()
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
	return b, nil
}

// decodeWorklistItem decodes the encoded item s into it; the fields are substrings of s.
func decodeWorklistItem(s string, it *WorklistItem) error {
	if len(s) == 0 || s[0] != worklistFormat {
		return errors.New("worklist item in an unknown format")
	}
	i := 1
	for _, p := range it.TextFields() {
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

// DecodeWorklistItems decodes items stored one after another in buf, item i ending at ends[i].
// Ten thousand items (a C-FIND without keys) cost little more than their bytes: buf becomes one
// string of which every field is a substring, and the items are one array — a handful of
// allocations in all, and no garbage to speak of.
func DecodeWorklistItems(buf []byte, ends []int) ([]*WorklistItem, error) {
	text := string(buf)
	items := make([]WorklistItem, len(ends))
	out := make([]*WorklistItem, len(ends))
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

// WorklistBuffer gathers stored items as a store reads them, row by row (copying each, so the
// driver may reuse its buffer), and decodes them all at once with DecodeWorklistItems.
type WorklistBuffer struct {
	buf  []byte
	ends []int
}

// Add appends one stored item.
func (b *WorklistBuffer) Add(encoded []byte) {
	b.buf = append(b.buf, encoded...)
	b.ends = append(b.ends, len(b.buf))
}

// Items decodes what was added.
func (b *WorklistBuffer) Items() ([]*WorklistItem, error) { return DecodeWorklistItems(b.buf, b.ends) }

// Storable returns a copy of it with every text field as the stores keep text (StorableText),
// so that the columns filtered on and the encoded item agree.
func (it *WorklistItem) Storable() WorklistItem {
	c := *it
	for _, p := range c.TextFields() {
		*p = StorableText(*p)
	}
	return c
}
