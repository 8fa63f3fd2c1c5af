package dimse

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// PDUType is the first byte of a PDU (PS3.8 9.3.1).
type PDUType byte

// The seven PDU types of the DICOM upper layer (PS3.8 table 9-11 and 9.3.2–9.3.8).
const (
	TypeAssociateRQ PDUType = 0x01
	TypeAssociateAC PDUType = 0x02
	TypeAssociateRJ PDUType = 0x03
	TypePDataTF     PDUType = 0x04
	TypeReleaseRQ   PDUType = 0x05
	TypeReleaseRP   PDUType = 0x06
	TypeAbort       PDUType = 0x07
)

func (t PDUType) String() string {
	switch t {
	case TypeAssociateRQ:
		return "A-ASSOCIATE-RQ"
	case TypeAssociateAC:
		return "A-ASSOCIATE-AC"
	case TypeAssociateRJ:
		return "A-ASSOCIATE-RJ"
	case TypePDataTF:
		return "P-DATA-TF"
	case TypeReleaseRQ:
		return "A-RELEASE-RQ"
	case TypeReleaseRP:
		return "A-RELEASE-RP"
	case TypeAbort:
		return "A-ABORT"
	}
	return fmt.Sprintf("PDU type 0x%02X", byte(t))
}

// Well-known UIDs of the upper layer and of this package.
const (
	// ApplicationContextName is the DICOM application context (PS3.7 A.2.1), the only one defined.
	ApplicationContextName = "1.2.840.10008.3.1.1.1"
)

// Limits of the PDU layer.
const (
	// pduHeaderLength is the fixed header of every PDU: type, reserved, 32-bit length.
	pduHeaderLength = 6
	// maxAssociatePDULength caps the PDUs that are not P-DATA-TF. The negotiated maximum length
	// applies to P-DATA-TF only (PS3.8 D.1); an A-ASSOCIATE-RQ proposing every storage SOP class
	// with many transfer syntaxes each stays far below this.
	maxAssociatePDULength = 1 << 20
	// MinMaxPDULength is the smallest maximum PDU length this package accepts as configuration
	// (the smallest dcmtk allows, too).
	MinMaxPDULength = 4096
)

// PDU is one of *AssociateRQ, *AssociateAC, *AssociateRJ, *PDataTF, *ReleaseRQ, *ReleaseRP and
// *Abort. ReadPDU returns them; EncodePDU and WritePDU encode them.
type PDU interface {
	// PDUType names the kind of PDU.
	PDUType() PDUType
}

// AssociateRQ is an A-ASSOCIATE-RQ PDU (PS3.8 9.3.2).
type AssociateRQ struct {
	// ProtocolVersion is a bit field; bit 0 set means version 1, the only one defined.
	ProtocolVersion uint16
	// CalledAETitle and CallingAETitle are the AE titles with their space padding removed.
	CalledAETitle, CallingAETitle string
	ApplicationContext            string
	PresentationContexts          []PresentationContextRQ
	UserInfo                      UserInfo
}

// AssociateAC is an A-ASSOCIATE-AC PDU (PS3.8 9.3.3). Its AE title fields echo the request's
// and are not significant.
type AssociateAC struct {
	ProtocolVersion               uint16
	CalledAETitle, CallingAETitle string
	ApplicationContext            string
	PresentationContexts          []PresentationContextAC
	UserInfo                      UserInfo
}

// PresentationContextRQ is a presentation context item as proposed (item type 20H): one abstract
// syntax (a SOP class UID) and the transfer syntaxes the requestor can use with it.
type PresentationContextRQ struct {
	ID               byte // odd, 1–255
	AbstractSyntax   string
	TransferSyntaxes []string
}

// PresentationContextAC is the acceptor's answer to one proposed context (item type 21H).
// TransferSyntax is significant only when Result is PresentationAccepted.
type PresentationContextAC struct {
	ID             byte
	Result         PresentationResult
	TransferSyntax string
}

// PresentationResult is the result/reason of a presentation context in an A-ASSOCIATE-AC
// (PS3.8 table 9-18).
type PresentationResult byte

// Presentation context results.
const (
	PresentationAccepted                  PresentationResult = 0
	PresentationUserRejection             PresentationResult = 1
	PresentationNoReason                  PresentationResult = 2
	PresentationAbstractSyntaxUnsupported PresentationResult = 3
	PresentationTransferSyntaxUnsupported PresentationResult = 4
)

func (r PresentationResult) String() string {
	switch r {
	case PresentationAccepted:
		return "acceptance"
	case PresentationUserRejection:
		return "user-rejection"
	case PresentationNoReason:
		return "no-reason (provider rejection)"
	case PresentationAbstractSyntaxUnsupported:
		return "abstract-syntax-not-supported (provider rejection)"
	case PresentationTransferSyntaxUnsupported:
		return "transfer-syntaxes-not-supported (provider rejection)"
	}
	return fmt.Sprintf("result %d", byte(r))
}

// UserInfo is the user information item (50H) and the sub-items this package understands
// (PS3.7 annex D.3.3).
type UserInfo struct {
	// MaxPDULength is the largest P-DATA-TF PDU, less its 6-byte header, that the sender of this
	// item can receive (sub-item 51H). 0 means no limit, and is also what an absent sub-item reads as.
	MaxPDULength uint32
	// ImplementationClassUID (52H) and ImplementationVersionName (55H) identify the peer's software.
	ImplementationClassUID    string
	ImplementationVersionName string
	// AsyncOps is the asynchronous operations window (53H); nil when absent, which means one
	// outstanding operation each way.
	AsyncOps *AsyncOpsWindow
	// RoleSelections are the SCP/SCU role selection sub-items (54H).
	RoleSelections []RoleSelection
	// Other holds sub-items not listed above (extended negotiation, user identity), as received.
	Other []RawItem
}

// AsyncOpsWindow is the asynchronous operations window negotiation (PS3.7 D.3.3.3).
type AsyncOpsWindow struct {
	Invoked, Performed uint16 // 0 means unlimited
}

// RoleSelection is an SCP/SCU role selection sub-item (PS3.7 D.3.3.4).
type RoleSelection struct {
	SOPClassUID string
	SCU, SCP    bool
}

// RawItem is a variable item or sub-item kept as it was received.
type RawItem struct {
	Type byte
	Data []byte
}

// AssociateRJ is an A-ASSOCIATE-RJ PDU (PS3.8 9.3.4).
type AssociateRJ struct {
	Result RejectResult
	Source RejectSource
	Reason byte // meaning depends on Source; see the Reject* constants
}

// RejectResult is the Result field of an A-ASSOCIATE-RJ.
type RejectResult byte

// RejectSource is the Source field of an A-ASSOCIATE-RJ.
type RejectSource byte

// A-ASSOCIATE-RJ results, sources and reasons (PS3.8 table 9-21).
const (
	RejectPermanent RejectResult = 1
	RejectTransient RejectResult = 2

	SourceServiceUser                 RejectSource = 1 // DICOM UL service-user
	SourceServiceProviderACSE         RejectSource = 2 // DICOM UL service-provider (ACSE related function)
	SourceServiceProviderPresentation RejectSource = 3 // DICOM UL service-provider (presentation related function)

	// Reasons when Source is SourceServiceUser.
	ReasonNoReasonGiven                 byte = 1
	ReasonApplicationContextUnsupported byte = 2
	ReasonCallingAETitleNotRecognized   byte = 3
	ReasonCalledAETitleNotRecognized    byte = 7
	// Reasons when Source is SourceServiceProviderACSE (1 is no-reason-given).
	ReasonProtocolVersionUnsupported byte = 2
	// Reasons when Source is SourceServiceProviderPresentat.
	ReasonTemporaryCongestion byte = 1
	ReasonLocalLimitExceeded  byte = 2
)

// Description tells what an A-ASSOCIATE-RJ means, in the standard's words.
func (rj *AssociateRJ) Description() string {
	result := "rejected-permanent"
	if rj.Result == RejectTransient {
		result = "rejected-transient"
	}
	reason := fmt.Sprintf("reason %d", rj.Reason)
	switch rj.Source {
	case SourceServiceUser:
		switch rj.Reason {
		case ReasonNoReasonGiven:
			reason = "no-reason-given"
		case ReasonApplicationContextUnsupported:
			reason = "application-context-name-not-supported"
		case ReasonCallingAETitleNotRecognized:
			reason = "calling-AE-title-not-recognized"
		case ReasonCalledAETitleNotRecognized:
			reason = "called-AE-title-not-recognized"
		}
	case SourceServiceProviderACSE:
		switch rj.Reason {
		case 1:
			reason = "no-reason-given"
		case ReasonProtocolVersionUnsupported:
			reason = "protocol-version-not-supported"
		}
	case SourceServiceProviderPresentation:
		switch rj.Reason {
		case ReasonTemporaryCongestion:
			reason = "temporary-congestion"
		case ReasonLocalLimitExceeded:
			reason = "local-limit-exceeded"
		}
	}
	return fmt.Sprintf("%s, source %d, %s", result, rj.Source, reason)
}

// PDataTF is a P-DATA-TF PDU (PS3.8 9.3.5): one or more presentation data values.
type PDataTF struct {
	Items []PDV
}

// PDV is one presentation data value item: a fragment of a message's command set or data set
// (PS3.8 9.3.5.1 and annex E.2).
type PDV struct {
	ContextID byte
	Command   bool // message control header bit 0: a command fragment, else a data set fragment
	Last      bool // bit 1: the last fragment of the command set or data set
	Data      []byte
}

// ReleaseRQ is an A-RELEASE-RQ PDU (PS3.8 9.3.6).
type ReleaseRQ struct{}

// ReleaseRP is an A-RELEASE-RP PDU (PS3.8 9.3.7).
type ReleaseRP struct{}

// Abort is an A-ABORT PDU (PS3.8 9.3.8).
type Abort struct {
	Source AbortSource
	Reason AbortReason // significant only when Source is AbortServiceProvider
}

// AbortSource is the Source field of an A-ABORT.
type AbortSource byte

// AbortReason is the Reason/Diag field of an A-ABORT sent by the service provider.
type AbortReason byte

// A-ABORT sources and reasons (PS3.8 table 9-26).
const (
	AbortServiceUser     AbortSource = 0
	AbortServiceProvider AbortSource = 2

	AbortReasonNotSpecified         AbortReason = 0
	AbortReasonUnrecognizedPDU      AbortReason = 1
	AbortReasonUnexpectedPDU        AbortReason = 2
	AbortReasonUnrecognizedPDUParam AbortReason = 4
	AbortReasonUnexpectedPDUParam   AbortReason = 5
	AbortReasonInvalidPDUParamValue AbortReason = 6
)

func (r AbortReason) String() string {
	switch r {
	case AbortReasonNotSpecified:
		return "reason-not-specified"
	case AbortReasonUnrecognizedPDU:
		return "unrecognized-PDU"
	case AbortReasonUnexpectedPDU:
		return "unexpected-PDU"
	case AbortReasonUnrecognizedPDUParam:
		return "unrecognized-PDU-parameter"
	case AbortReasonUnexpectedPDUParam:
		return "unexpected-PDU-parameter"
	case AbortReasonInvalidPDUParamValue:
		return "invalid-PDU-parameter-value"
	}
	return fmt.Sprintf("reason %d", byte(r))
}

// PDUType implements PDU.
func (*AssociateRQ) PDUType() PDUType { return TypeAssociateRQ }

// PDUType implements PDU.
func (*AssociateAC) PDUType() PDUType { return TypeAssociateAC }

// PDUType implements PDU.
func (*AssociateRJ) PDUType() PDUType { return TypeAssociateRJ }

// PDUType implements PDU.
func (*PDataTF) PDUType() PDUType { return TypePDataTF }

// PDUType implements PDU.
func (*ReleaseRQ) PDUType() PDUType { return TypeReleaseRQ }

// PDUType implements PDU.
func (*ReleaseRP) PDUType() PDUType { return TypeReleaseRP }

// PDUType implements PDU.
func (*Abort) PDUType() PDUType { return TypeAbort }

// PDUError reports bytes that are not a valid PDU. Reason is the A-ABORT reason a receiver
// answers with. Its text names the PDU type, the offset in the PDU and what was wrong, never
// field contents, so it is safe to log.
type PDUError struct {
	Type   PDUType
	Offset int // from the start of the PDU, header included
	Reason AbortReason
	Msg    string
}

func (e *PDUError) Error() string {
	return fmt.Sprintf("dimse: invalid %s at byte %d: %s", e.Type, e.Offset, e.Msg)
}

// PDUTooLargeError reports a PDU whose length field exceeds the receiver's limit. Its body has
// not been read: the association cannot go on (a receiver answers A-ABORT).
type PDUTooLargeError struct {
	Type   PDUType
	Length uint32 // the PDU's length field (the bytes after the 6-byte header)
	Limit  uint32
}

func (e *PDUTooLargeError) Error() string {
	return fmt.Sprintf("dimse: %s of %d bytes exceeds the limit of %d", e.Type, e.Length, e.Limit)
}

// ReadPDU reads one PDU from r. A P-DATA-TF whose length exceeds maxPDataLength is refused with
// a *PDUTooLargeError before its body is read (0 means no limit); the other PDUs are capped at
// 1 MiB. An unknown PDU type or a malformed body gives a *PDUError. It returns io.EOF only when
// r ended before the first byte, io.ErrUnexpectedEOF inside a PDU.
//
// A PDataTF's PDV data is the PDU's own memory and may be kept.
func ReadPDU(r io.Reader, maxPDataLength uint32) (PDU, error) {
	pr := pduReader{r: r, maxPData: maxPDataLength}
	return pr.next(nil)
}

// pduReader reads PDUs from a stream, reusing one buffer for their bodies: a PDU it returns is
// valid until the next call.
type pduReader struct {
	r        io.Reader
	maxPData uint32
	hdr      [pduHeaderLength]byte
	buf      []byte
	reuse    bool // reuse buf between calls (the connection); ReadPDU allocates every time
}

// next reads one PDU. afterHeader, when set, is called between the header and the body, with
// the PDU's type: the server sets the body's read deadline there.
func (pr *pduReader) next(afterHeader func(PDUType) error) (PDU, error) {
	if _, err := io.ReadFull(pr.r, pr.hdr[:]); err != nil {
		return nil, err
	}
	typ := PDUType(pr.hdr[0])
	length := binary.BigEndian.Uint32(pr.hdr[2:])
	if typ < TypeAssociateRQ || typ > TypeAbort {
		return nil, &PDUError{Type: typ, Offset: 0, Reason: AbortReasonUnrecognizedPDU, Msg: "unknown PDU type"}
	}
	limit := uint32(maxAssociatePDULength)
	if typ == TypePDataTF && pr.maxPData != 0 {
		limit = pr.maxPData
	}
	if length > limit {
		return nil, &PDUTooLargeError{Type: typ, Length: length, Limit: limit}
	}
	if afterHeader != nil {
		if err := afterHeader(typ); err != nil {
			return nil, err
		}
	}
	var body []byte
	if pr.reuse {
		if cap(pr.buf) < int(length) {
			pr.buf = make([]byte, length)
		}
		body = pr.buf[:length]
	} else {
		body = make([]byte, length)
	}
	if _, err := io.ReadFull(pr.r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return decodePDUBody(typ, body)
}

// decodePDUBody decodes the body of a PDU whose header has been read.
func decodePDUBody(typ PDUType, body []byte) (PDU, error) {
	d := &itemDecoder{typ: typ, b: body, base: pduHeaderLength}
	switch typ {
	case TypeAssociateRQ, TypeAssociateAC:
		return d.associate(typ)
	case TypeAssociateRJ:
		if len(body) < 4 {
			return nil, d.fail(0, AbortReasonInvalidPDUParamValue, "body shorter than 4 bytes")
		}
		return &AssociateRJ{Result: RejectResult(body[1]), Source: RejectSource(body[2]), Reason: body[3]}, nil
	case TypePDataTF:
		return d.pdata()
	case TypeReleaseRQ, TypeReleaseRP:
		if len(body) < 4 {
			return nil, d.fail(0, AbortReasonInvalidPDUParamValue, "body shorter than 4 bytes")
		}
		if typ == TypeReleaseRQ {
			return &ReleaseRQ{}, nil
		}
		return &ReleaseRP{}, nil
	default: // TypeAbort
		if len(body) < 4 {
			return nil, d.fail(0, AbortReasonInvalidPDUParamValue, "body shorter than 4 bytes")
		}
		return &Abort{Source: AbortSource(body[2]), Reason: AbortReason(body[3])}, nil
	}
}

// itemDecoder decodes a PDU body; base is the offset of b[0] in the PDU, for errors.
type itemDecoder struct {
	typ  PDUType
	b    []byte
	base int
}

func (d *itemDecoder) fail(off int, reason AbortReason, format string, args ...any) error {
	return &PDUError{Type: d.typ, Offset: d.base + off, Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

func (d *itemDecoder) pdata() (*PDataTF, error) {
	p := &PDataTF{}
	b := d.b
	off := 0
	for off < len(b) {
		if len(b)-off < 6 {
			return nil, d.fail(off, AbortReasonInvalidPDUParamValue, "truncated PDV item header")
		}
		n := binary.BigEndian.Uint32(b[off:])
		if n < 2 {
			return nil, d.fail(off, AbortReasonInvalidPDUParamValue, "PDV item length %d is less than 2", n)
		}
		if uint64(n) > uint64(len(b)-off-4) {
			return nil, d.fail(off, AbortReasonInvalidPDUParamValue, "PDV item length %d runs past the PDU", n)
		}
		ctl := b[off+5]
		if ctl&^0x03 != 0 {
			return nil, d.fail(off+5, AbortReasonInvalidPDUParamValue, "reserved bits set in message control header 0x%02X", ctl)
		}
		p.Items = append(p.Items, PDV{
			ContextID: b[off+4],
			Command:   ctl&0x01 != 0,
			Last:      ctl&0x02 != 0,
			Data:      b[off+6 : off+4+int(n) : off+4+int(n)],
		})
		off += 4 + int(n)
	}
	if len(p.Items) == 0 {
		return nil, d.fail(0, AbortReasonInvalidPDUParamValue, "no PDV item")
	}
	return p, nil
}

// item is one variable item or sub-item: type, reserved byte, 16-bit length, data.
type item struct {
	typ  byte
	off  int // of the item header, relative to the decoder's b
	data []byte
}

// items splits b (at offset off in the decoder's b) into variable items.
func (d *itemDecoder) items(b []byte, off int) ([]item, error) {
	var out []item
	for i := 0; i < len(b); {
		if len(b)-i < 4 {
			return nil, d.fail(off+i, AbortReasonInvalidPDUParamValue, "truncated item header")
		}
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		if n > len(b)-i-4 {
			return nil, d.fail(off+i, AbortReasonInvalidPDUParamValue, "item 0x%02X length %d runs past its container", b[i], n)
		}
		out = append(out, item{typ: b[i], off: off + i, data: b[i+4 : i+4+n : i+4+n]})
		i += 4 + n
	}
	return out, nil
}

// uid reads a UID or name from an item, dropping the padding some peers add.
func uid(b []byte) string { return strings.TrimRight(string(b), "\x00 ") }

// aeTitle reads a 16-byte AE title field: leading and trailing spaces are not significant
// (PS3.5 table 6.2-1, AE); NULs are a common mistake for padding.
func aeTitle(b []byte) string { return strings.Trim(string(b), " \x00") }

func (d *itemDecoder) associate(typ PDUType) (PDU, error) {
	const fixed = 68 // version, reserved, called AE, calling AE, reserved (PS3.8 table 9-11)
	if len(d.b) < fixed {
		return nil, d.fail(0, AbortReasonInvalidPDUParamValue, "body shorter than its %d fixed bytes", fixed)
	}
	version := binary.BigEndian.Uint16(d.b)
	called, calling := aeTitle(d.b[4:20]), aeTitle(d.b[20:36])
	items, err := d.items(d.b[fixed:], fixed)
	if err != nil {
		return nil, err
	}
	var (
		appCtx  string
		rqPCs   []PresentationContextRQ
		acPCs   []PresentationContextAC
		ui      UserInfo
		seenApp bool
		seenUI  bool
	)
	for _, it := range items {
		switch {
		case it.typ == 0x10:
			if seenApp {
				return nil, d.fail(it.off, AbortReasonUnexpectedPDUParam, "second application context item")
			}
			seenApp, appCtx = true, uid(it.data)
		case it.typ == 0x20 && typ == TypeAssociateRQ:
			pc, err := d.presentationRQ(it)
			if err != nil {
				return nil, err
			}
			rqPCs = append(rqPCs, pc)
		case it.typ == 0x21 && typ == TypeAssociateAC:
			pc, err := d.presentationAC(it)
			if err != nil {
				return nil, err
			}
			acPCs = append(acPCs, pc)
		case it.typ == 0x50:
			if seenUI {
				return nil, d.fail(it.off, AbortReasonUnexpectedPDUParam, "second user information item")
			}
			seenUI = true
			if ui, err = d.userInfo(it); err != nil {
				return nil, err
			}
		case it.typ == 0x20 || it.typ == 0x21:
			return nil, d.fail(it.off, AbortReasonUnexpectedPDUParam, "presentation context item 0x%02X in %s", it.typ, typ)
		default:
			// An item type this version of the standard does not define: ignored, so that a
			// peer using a later extension can still associate.
		}
	}
	if !seenApp {
		return nil, d.fail(fixed, AbortReasonInvalidPDUParamValue, "no application context item")
	}
	if typ == TypeAssociateRQ {
		if len(rqPCs) == 0 {
			return nil, d.fail(fixed, AbortReasonInvalidPDUParamValue, "no presentation context item")
		}
		return &AssociateRQ{ProtocolVersion: version, CalledAETitle: called, CallingAETitle: calling,
			ApplicationContext: appCtx, PresentationContexts: rqPCs, UserInfo: ui}, nil
	}
	return &AssociateAC{ProtocolVersion: version, CalledAETitle: called, CallingAETitle: calling,
		ApplicationContext: appCtx, PresentationContexts: acPCs, UserInfo: ui}, nil
}

func (d *itemDecoder) presentationRQ(it item) (PresentationContextRQ, error) {
	if len(it.data) < 4 {
		return PresentationContextRQ{}, d.fail(it.off, AbortReasonInvalidPDUParamValue, "presentation context item shorter than 4 bytes")
	}
	pc := PresentationContextRQ{ID: it.data[0]}
	subs, err := d.items(it.data[4:], it.off+8)
	if err != nil {
		return pc, err
	}
	seenAbstract := false
	for _, s := range subs {
		switch s.typ {
		case 0x30:
			if seenAbstract {
				return pc, d.fail(s.off, AbortReasonUnexpectedPDUParam, "second abstract syntax in presentation context %d", pc.ID)
			}
			seenAbstract, pc.AbstractSyntax = true, uid(s.data)
		case 0x40:
			pc.TransferSyntaxes = append(pc.TransferSyntaxes, uid(s.data))
		default:
			return pc, d.fail(s.off, AbortReasonUnrecognizedPDUParam, "unknown sub-item 0x%02X in presentation context %d", s.typ, pc.ID)
		}
	}
	if !seenAbstract {
		return pc, d.fail(it.off, AbortReasonInvalidPDUParamValue, "presentation context %d has no abstract syntax", pc.ID)
	}
	if len(pc.TransferSyntaxes) == 0 {
		return pc, d.fail(it.off, AbortReasonInvalidPDUParamValue, "presentation context %d has no transfer syntax", pc.ID)
	}
	return pc, nil
}

func (d *itemDecoder) presentationAC(it item) (PresentationContextAC, error) {
	if len(it.data) < 4 {
		return PresentationContextAC{}, d.fail(it.off, AbortReasonInvalidPDUParamValue, "presentation context item shorter than 4 bytes")
	}
	pc := PresentationContextAC{ID: it.data[0], Result: PresentationResult(it.data[2])}
	subs, err := d.items(it.data[4:], it.off+8)
	if err != nil {
		return pc, err
	}
	seen := false
	for _, s := range subs {
		if s.typ != 0x40 {
			return pc, d.fail(s.off, AbortReasonUnrecognizedPDUParam, "unknown sub-item 0x%02X in presentation context %d", s.typ, pc.ID)
		}
		if seen {
			return pc, d.fail(s.off, AbortReasonUnexpectedPDUParam, "second transfer syntax in accepted presentation context %d", pc.ID)
		}
		seen, pc.TransferSyntax = true, uid(s.data)
	}
	if !seen && pc.Result == PresentationAccepted {
		return pc, d.fail(it.off, AbortReasonInvalidPDUParamValue, "accepted presentation context %d has no transfer syntax", pc.ID)
	}
	return pc, nil
}

func (d *itemDecoder) userInfo(it item) (UserInfo, error) {
	var ui UserInfo
	subs, err := d.items(it.data, it.off+4)
	if err != nil {
		return ui, err
	}
	for _, s := range subs {
		switch s.typ {
		case 0x51:
			if len(s.data) != 4 {
				return ui, d.fail(s.off, AbortReasonInvalidPDUParamValue, "maximum length sub-item of %d bytes, want 4", len(s.data))
			}
			ui.MaxPDULength = binary.BigEndian.Uint32(s.data)
		case 0x52:
			ui.ImplementationClassUID = uid(s.data)
		case 0x55:
			ui.ImplementationVersionName = uid(s.data)
		case 0x53:
			if len(s.data) != 4 {
				return ui, d.fail(s.off, AbortReasonInvalidPDUParamValue, "asynchronous operations window sub-item of %d bytes, want 4", len(s.data))
			}
			ui.AsyncOps = &AsyncOpsWindow{Invoked: binary.BigEndian.Uint16(s.data), Performed: binary.BigEndian.Uint16(s.data[2:])}
		case 0x54:
			if len(s.data) < 2 {
				return ui, d.fail(s.off, AbortReasonInvalidPDUParamValue, "truncated role selection sub-item")
			}
			n := int(binary.BigEndian.Uint16(s.data))
			if len(s.data) != 2+n+2 {
				return ui, d.fail(s.off, AbortReasonInvalidPDUParamValue, "role selection sub-item of %d bytes for a UID of %d", len(s.data), n)
			}
			ui.RoleSelections = append(ui.RoleSelections, RoleSelection{
				SOPClassUID: uid(s.data[2 : 2+n]), SCU: s.data[2+n] == 1, SCP: s.data[3+n] == 1})
		default:
			ui.Other = append(ui.Other, RawItem{Type: s.typ, Data: s.data})
		}
	}
	return ui, nil
}

// EncodePDU returns the bytes of p, header included. It fails on values that do not fit their
// fields (an AE title over 16 characters, an item over 65535 bytes, a PDV without a context).
func EncodePDU(p PDU) ([]byte, error) { return appendPDU(nil, p) }

// WritePDU encodes p and writes it to w in one Write.
func WritePDU(w io.Writer, p PDU) error {
	b, err := EncodePDU(p)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// appendPDU appends p's encoding to dst.
func appendPDU(dst []byte, p PDU) ([]byte, error) {
	start := len(dst)
	dst = append(dst, byte(p.PDUType()), 0, 0, 0, 0, 0)
	var err error
	switch p := p.(type) {
	case *AssociateRQ:
		dst, err = appendAssociateFixed(dst, p.ProtocolVersion, p.CalledAETitle, p.CallingAETitle, p.ApplicationContext)
		if err != nil {
			return nil, err
		}
		for _, pc := range p.PresentationContexts {
			at := len(dst)
			dst = append(dst, 0x20, 0, 0, 0, pc.ID, 0, 0, 0)
			if dst, err = appendItem(dst, 0x30, []byte(pc.AbstractSyntax)); err != nil {
				return nil, err
			}
			for _, ts := range pc.TransferSyntaxes {
				if dst, err = appendItem(dst, 0x40, []byte(ts)); err != nil {
					return nil, err
				}
			}
			if err := patchItemLength(dst, at); err != nil {
				return nil, err
			}
		}
		dst, err = appendUserInfo(dst, &p.UserInfo)
	case *AssociateAC:
		dst, err = appendAssociateFixed(dst, p.ProtocolVersion, p.CalledAETitle, p.CallingAETitle, p.ApplicationContext)
		if err != nil {
			return nil, err
		}
		for _, pc := range p.PresentationContexts {
			at := len(dst)
			dst = append(dst, 0x21, 0, 0, 0, pc.ID, 0, byte(pc.Result), 0)
			if dst, err = appendItem(dst, 0x40, []byte(pc.TransferSyntax)); err != nil {
				return nil, err
			}
			if err := patchItemLength(dst, at); err != nil {
				return nil, err
			}
		}
		dst, err = appendUserInfo(dst, &p.UserInfo)
	case *AssociateRJ:
		dst = append(dst, 0, byte(p.Result), byte(p.Source), p.Reason)
	case *PDataTF:
		if len(p.Items) == 0 {
			return nil, errors.New("dimse: encoding P-DATA-TF: no PDV item")
		}
		for _, v := range p.Items {
			dst = appendPDV(dst, v)
		}
	case *ReleaseRQ, *ReleaseRP:
		dst = append(dst, 0, 0, 0, 0)
	case *Abort:
		dst = append(dst, 0, 0, byte(p.Source), byte(p.Reason))
	default:
		return nil, fmt.Errorf("dimse: encoding PDU: unknown type %T", p)
	}
	if err != nil {
		return nil, err
	}
	n := len(dst) - start - pduHeaderLength
	if uint64(n) > 0xFFFFFFFF {
		return nil, fmt.Errorf("dimse: encoding %s: %d bytes is too long", p.PDUType(), n)
	}
	binary.BigEndian.PutUint32(dst[start+2:], uint32(n))
	return dst, nil
}

// appendPDV appends one PDV item.
func appendPDV(dst []byte, v PDV) []byte {
	ctl := byte(0)
	if v.Command {
		ctl |= 0x01
	}
	if v.Last {
		ctl |= 0x02
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(v.Data)+2))
	dst = append(dst, v.ContextID, ctl)
	return append(dst, v.Data...)
}

func appendAssociateFixed(dst []byte, version uint16, called, calling, appCtx string) ([]byte, error) {
	if len(called) > 16 || len(calling) > 16 {
		return nil, errors.New("dimse: encoding association PDU: AE title longer than 16 characters")
	}
	dst = binary.BigEndian.AppendUint16(dst, version)
	dst = append(dst, 0, 0)
	// Padded to 16 bytes (not runes: fmt's width counts runes, and a peer may send any byte).
	dst = append(dst, called...)
	dst = append(dst, "                "[:16-len(called)]...)
	dst = append(dst, calling...)
	dst = append(dst, "                "[:16-len(calling)]...)
	dst = append(dst, make([]byte, 32)...)
	return appendItem(dst, 0x10, []byte(appCtx))
}

func appendUserInfo(dst []byte, ui *UserInfo) ([]byte, error) {
	at := len(dst)
	dst = append(dst, 0x50, 0, 0, 0)
	var err error
	dst, err = appendItem(dst, 0x51, binary.BigEndian.AppendUint32(nil, ui.MaxPDULength))
	if err != nil {
		return nil, err
	}
	if ui.ImplementationClassUID != "" {
		if dst, err = appendItem(dst, 0x52, []byte(ui.ImplementationClassUID)); err != nil {
			return nil, err
		}
	}
	if ui.AsyncOps != nil {
		v := binary.BigEndian.AppendUint16(nil, ui.AsyncOps.Invoked)
		if dst, err = appendItem(dst, 0x53, binary.BigEndian.AppendUint16(v, ui.AsyncOps.Performed)); err != nil {
			return nil, err
		}
	}
	for _, rs := range ui.RoleSelections {
		if len(rs.SOPClassUID) > 0xFFFF-4 {
			return nil, errors.New("dimse: encoding role selection: UID too long")
		}
		v := binary.BigEndian.AppendUint16(nil, uint16(len(rs.SOPClassUID)))
		v = append(v, rs.SOPClassUID...)
		v = append(v, boolByte(rs.SCU), boolByte(rs.SCP))
		if dst, err = appendItem(dst, 0x54, v); err != nil {
			return nil, err
		}
	}
	if ui.ImplementationVersionName != "" {
		if dst, err = appendItem(dst, 0x55, []byte(ui.ImplementationVersionName)); err != nil {
			return nil, err
		}
	}
	for _, o := range ui.Other {
		if dst, err = appendItem(dst, o.Type, o.Data); err != nil {
			return nil, err
		}
	}
	return dst, patchItemLength(dst, at)
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// appendItem appends a variable item or sub-item with a 16-bit length.
func appendItem(dst []byte, typ byte, data []byte) ([]byte, error) {
	if len(data) > 0xFFFF {
		return nil, fmt.Errorf("dimse: encoding item 0x%02X: %d bytes exceed 65535", typ, len(data))
	}
	dst = append(dst, typ, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(data)))
	return append(dst, data...), nil
}

// patchItemLength sets the length of the item whose header starts at dst[at].
func patchItemLength(dst []byte, at int) error {
	n := len(dst) - at - 4
	if n > 0xFFFF {
		return fmt.Errorf("dimse: encoding item 0x%02X: %d bytes exceed 65535", dst[at], n)
	}
	binary.BigEndian.PutUint16(dst[at+2:], uint16(n))
	return nil
}
