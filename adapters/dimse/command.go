package dimse

import (
	"encoding/binary"
	"fmt"

	"github.com/ferryhealth/ferry/dicom"
)

// CommandField is the (0000,0100) value that names a DIMSE message (PS3.7 E.1).
type CommandField uint16

// DIMSE command fields (PS3.7 9.3 and 10.3). A response is its request's value with bit 15 set.
const (
	CStoreRQ        CommandField = 0x0001
	CStoreRSP       CommandField = 0x8001
	CGetRQ          CommandField = 0x0010
	CGetRSP         CommandField = 0x8010
	CFindRQ         CommandField = 0x0020
	CFindRSP        CommandField = 0x8020
	CMoveRQ         CommandField = 0x0021
	CMoveRSP        CommandField = 0x8021
	CEchoRQ         CommandField = 0x0030
	CEchoRSP        CommandField = 0x8030
	NEventReportRQ  CommandField = 0x0100
	NEventReportRSP CommandField = 0x8100
	NGetRQ          CommandField = 0x0110
	NGetRSP         CommandField = 0x8110
	NSetRQ          CommandField = 0x0120
	NSetRSP         CommandField = 0x8120
	NActionRQ       CommandField = 0x0130
	NActionRSP      CommandField = 0x8130
	NCreateRQ       CommandField = 0x0140
	NCreateRSP      CommandField = 0x8140
	NDeleteRQ       CommandField = 0x0150
	NDeleteRSP      CommandField = 0x8150
	CCancelRQ       CommandField = 0x0FFF
)

var commandNames = map[CommandField]string{
	CStoreRQ: "C-STORE-RQ", CStoreRSP: "C-STORE-RSP", CGetRQ: "C-GET-RQ", CGetRSP: "C-GET-RSP",
	CFindRQ: "C-FIND-RQ", CFindRSP: "C-FIND-RSP", CMoveRQ: "C-MOVE-RQ", CMoveRSP: "C-MOVE-RSP",
	CEchoRQ: "C-ECHO-RQ", CEchoRSP: "C-ECHO-RSP", NEventReportRQ: "N-EVENT-REPORT-RQ",
	NEventReportRSP: "N-EVENT-REPORT-RSP", NGetRQ: "N-GET-RQ", NGetRSP: "N-GET-RSP",
	NSetRQ: "N-SET-RQ", NSetRSP: "N-SET-RSP", NActionRQ: "N-ACTION-RQ", NActionRSP: "N-ACTION-RSP",
	NCreateRQ: "N-CREATE-RQ", NCreateRSP: "N-CREATE-RSP", NDeleteRQ: "N-DELETE-RQ",
	NDeleteRSP: "N-DELETE-RSP", CCancelRQ: "C-CANCEL-RQ",
}

// String returns the message's name in the standard ("C-ECHO-RQ"), or its hex value. It is a
// fixed string for known commands, safe as a metric label.
func (c CommandField) String() string {
	if n, ok := commandNames[c]; ok {
		return n
	}
	return fmt.Sprintf("command 0x%04X", uint16(c))
}

// IsResponse reports whether the command is a response (bit 15 set).
func (c CommandField) IsResponse() bool { return c&0x8000 != 0 }

// Response returns the command field of the response to this request.
func (c CommandField) Response() CommandField { return c | 0x8000 }

// dataSetAbsent is the (0000,0800) value meaning "no data set follows" (PS3.7 E.1). Any other
// value means one does; this package sends dataSetPresent.
const (
	dataSetAbsent  = 0x0101
	dataSetPresent = 0x0001
)

// Priority values of (0000,0700).
const (
	PriorityMedium uint16 = 0x0000
	PriorityHigh   uint16 = 0x0001
	PriorityLow    uint16 = 0x0002
)

// Command is a DIMSE command set (PS3.7 9.3, 10.3, E.1), the fields of group 0000 that the
// package and its services use. It is encoded in implicit VR little endian whatever the
// presentation context's transfer syntax (PS3.7 6.3.1).
type Command struct {
	Field CommandField
	// MessageID identifies a request (every request but C-CANCEL-RQ).
	MessageID uint16
	// MessageIDBeingRespondedTo identifies the request a response or a C-CANCEL-RQ is about.
	MessageIDBeingRespondedTo uint16
	AffectedSOPClassUID       string
	AffectedSOPInstanceUID    string
	// Priority of C-STORE, C-FIND, C-GET and C-MOVE requests (PriorityMedium, the zero value, when
	// the element is absent).
	Priority uint16
	// HasDataSet reports whether a data set (an identifier) follows the command: (0000,0800) is
	// not 0101H.
	HasDataSet bool
	// Status of a response.
	Status dicom.Status
	// ErrorComment (0000,0902) of a failure or warning response. It goes to the peer; it must not
	// hold patient data.
	ErrorComment string
	// MoveOriginatorAETitle and MoveOriginatorMessageID identify the C-MOVE a C-STORE-RQ is a
	// sub-operation of; empty and 0 when it is not one.
	MoveOriginatorAETitle   string
	MoveOriginatorMessageID uint16
	// Other holds the other elements of the command set, in tag order: as received, or to send.
	Other []*dicom.Element
}

// CommandError reports a command set that cannot be decoded or lacks a required element. Its
// text holds tags and lengths only.
type CommandError struct {
	Tag dicom.Tag // the element at fault; 0 when the whole set is
	Msg string
}

func (e *CommandError) Error() string {
	if e.Tag == 0 && e.Msg != "" {
		return "dimse: invalid command set: " + e.Msg
	}
	return fmt.Sprintf("dimse: invalid command set, element %s: %s", e.Tag, e.Msg)
}

// DecodeCommand decodes a command set (implicit VR little endian). It requires the elements that
// every command of its kind carries (PS3.7 E.1): CommandField; MessageID in requests;
// MessageIDBeingRespondedTo in responses and C-CANCEL-RQ; Status in responses;
// CommandDataSetType in all.
func DecodeCommand(b []byte) (*Command, error) {
	ds, err := dicom.DecodeDataSet(b, dicom.ImplicitVRLittleEndian, dicom.DecodeOptions{})
	if err != nil {
		return nil, &CommandError{Msg: err.Error()}
	}
	c := &Command{}
	var seenField, seenID, seenRespID, seenStatus, seenType bool
	for _, e := range ds.Elements {
		if e.Tag.Group() != 0x0000 {
			return nil, &CommandError{Tag: e.Tag, Msg: "element outside group 0000"}
		}
		u16 := func() (uint16, error) {
			if len(e.Value) != 2 {
				return 0, &CommandError{Tag: e.Tag, Msg: fmt.Sprintf("US value of %d bytes, want 2", len(e.Value))}
			}
			return binary.LittleEndian.Uint16(e.Value), nil
		}
		var v uint16
		switch e.Tag {
		case dicom.TagCommandGroupLength: // recomputed when encoding; not needed to decode
		case dicom.TagCommandField:
			v, err = u16()
			c.Field, seenField = CommandField(v), true
		case dicom.TagMessageID:
			c.MessageID, err = u16()
			seenID = true
		case dicom.TagMessageIDBeingRespondedTo:
			c.MessageIDBeingRespondedTo, err = u16()
			seenRespID = true
		case dicom.TagPriority:
			c.Priority, err = u16()
		case dicom.TagCommandDataSetType:
			v, err = u16()
			c.HasDataSet, seenType = v != dataSetAbsent, true
		case dicom.TagStatus:
			v, err = u16()
			c.Status, seenStatus = dicom.Status(v), true
		case dicom.TagMoveOriginatorMessageID:
			c.MoveOriginatorMessageID, err = u16()
		case dicom.TagAffectedSOPClassUID:
			c.AffectedSOPClassUID = singleString(e)
		case dicom.TagAffectedSOPInstanceUID:
			c.AffectedSOPInstanceUID = singleString(e)
		case dicom.TagErrorComment:
			c.ErrorComment = singleString(e)
		case dicom.TagMoveOriginatorAETitle:
			c.MoveOriginatorAETitle = singleString(e)
		default:
			c.Other = append(c.Other, e)
		}
		if err != nil {
			return nil, err
		}
	}
	missing := func(t dicom.Tag) error { return &CommandError{Tag: t, Msg: "required element missing"} }
	switch {
	case !seenField:
		return nil, missing(dicom.TagCommandField)
	case !seenType:
		return nil, missing(dicom.TagCommandDataSetType)
	case c.Field == CCancelRQ && !seenRespID:
		return nil, missing(dicom.TagMessageIDBeingRespondedTo)
	case c.Field == CCancelRQ:
	case c.Field.IsResponse() && !seenRespID:
		return nil, missing(dicom.TagMessageIDBeingRespondedTo)
	case c.Field.IsResponse() && !seenStatus:
		return nil, missing(dicom.TagStatus)
	case !c.Field.IsResponse() && !seenID:
		return nil, missing(dicom.TagMessageID)
	}
	return c, nil
}

// singleString returns a text element's whole value without padding (an AE, UI or LO value).
func singleString(e *dicom.Element) string {
	if v := e.Strings(); len(v) > 0 {
		return v[0]
	}
	return ""
}

// Encode returns the command set in implicit VR little endian, CommandGroupLength first. Which
// elements it writes follows the command: MessageID for requests, MessageIDBeingRespondedTo and
// Status for responses (and MessageIDBeingRespondedTo alone for C-CANCEL-RQ), Priority for the
// C-STORE, C-FIND, C-GET and C-MOVE requests, the others when they are set.
func (c *Command) Encode() ([]byte, error) {
	ds := &dicom.DataSet{Elements: make([]*dicom.Element, 0, 8+len(c.Other))}
	for _, e := range c.Other {
		if e.Tag.Group() != 0x0000 || e.Tag == dicom.TagCommandGroupLength {
			return nil, fmt.Errorf("dimse: encoding command: %s is not a command element", e.Tag)
		}
		ds.Set(e)
	}
	ds.Set(dicom.NewUint16(dicom.TagCommandField, uint16(c.Field)))
	if c.AffectedSOPClassUID != "" {
		ds.Set(dicom.NewString(dicom.TagAffectedSOPClassUID, dicom.VRUI, c.AffectedSOPClassUID))
	}
	switch {
	case c.Field == CCancelRQ:
		ds.Set(dicom.NewUint16(dicom.TagMessageIDBeingRespondedTo, c.MessageIDBeingRespondedTo))
	case c.Field.IsResponse():
		ds.Set(dicom.NewUint16(dicom.TagMessageIDBeingRespondedTo, c.MessageIDBeingRespondedTo))
		ds.Set(dicom.NewUint16(dicom.TagStatus, uint16(c.Status)))
	default:
		ds.Set(dicom.NewUint16(dicom.TagMessageID, c.MessageID))
	}
	switch c.Field {
	case CStoreRQ, CFindRQ, CGetRQ, CMoveRQ:
		ds.Set(dicom.NewUint16(dicom.TagPriority, c.Priority))
	}
	dsType := uint16(dataSetAbsent)
	if c.HasDataSet {
		dsType = dataSetPresent
	}
	ds.Set(dicom.NewUint16(dicom.TagCommandDataSetType, dsType))
	if c.ErrorComment != "" {
		ds.Set(dicom.NewString(dicom.TagErrorComment, dicom.VRLO, c.ErrorComment))
	}
	if c.AffectedSOPInstanceUID != "" {
		ds.Set(dicom.NewString(dicom.TagAffectedSOPInstanceUID, dicom.VRUI, c.AffectedSOPInstanceUID))
	}
	if c.MoveOriginatorAETitle != "" {
		ds.Set(dicom.NewString(dicom.TagMoveOriginatorAETitle, dicom.VRAE, c.MoveOriginatorAETitle))
		ds.Set(dicom.NewUint16(dicom.TagMoveOriginatorMessageID, c.MoveOriginatorMessageID))
	}
	body, err := dicom.AppendDataSet(make([]byte, 12, 160), ds, dicom.ImplicitVRLittleEndian)
	if err != nil {
		return nil, err
	}
	// (0000,0000) UL, length 4, value: the bytes after it (PS3.7 E.1).
	binary.LittleEndian.PutUint32(body[4:], 4)
	binary.LittleEndian.PutUint32(body[8:], uint32(len(body)-12))
	return body, nil
}
