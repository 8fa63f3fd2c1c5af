package dicom

import "fmt"

// Status is the (0000,0900) value of a DIMSE response (PS3.7 annex C and the services' tables).
type Status uint16

// Statuses used by the services of this package and its handlers.
const (
	StatusSuccess Status = 0x0000
	// StatusPending: a C-FIND match follows in the identifier; more responses come.
	StatusPending Status = 0xFF00
	// StatusPendingWarning: as StatusPending, but an optional key was not supported.
	StatusPendingWarning Status = 0xFF01
	// StatusCancel: the operation ended because of a C-CANCEL-RQ.
	StatusCancel Status = 0xFE00

	StatusAttributeListError          Status = 0x0107
	StatusProcessingFailure           Status = 0x0110
	StatusSOPClassNotSupported        Status = 0x0122
	StatusDuplicateInvocation         Status = 0x0210
	StatusUnrecognizedOperation       Status = 0x0211
	StatusMistypedArgument            Status = 0x0212
	StatusOutOfResources              Status = 0xA700
	StatusIdentifierDoesNotMatchClass Status = 0xA900
	StatusCannotUnderstand            Status = 0xC000
	StatusCoercionOfDataElements      Status = 0xB000
	StatusElementsDiscarded           Status = 0xB006
	StatusDataSetDoesNotMatchClass    Status = 0xB007
)

// IsPending reports whether more responses follow this one (PS3.7 C.4.2).
func (s Status) IsPending() bool { return s == StatusPending || s == StatusPendingWarning }

// Class returns the status's category: "success", "warning", "failure", "cancel" or "pending"
// (PS3.7 C.1). Fixed strings, safe as metric labels.
func (s Status) Class() string {
	switch {
	case s == StatusSuccess:
		return "success"
	case s.IsPending():
		return "pending"
	case s == StatusCancel:
		return "cancel"
	case s == 0x0001 || s == StatusAttributeListError || s == 0x0116 || s&0xF000 == 0xB000:
		return "warning"
	}
	return "failure"
}

func (s Status) String() string { return fmt.Sprintf("0x%04X (%s)", uint16(s), s.Class()) }
