package engine

import "context"

// WorklistItem is one scheduled procedure step as the Modality Worklist (DICOM PS3.4 K.6,
// 1.2.840.10008.5.1.4.31; IHE Radiology RAD-5) offers it to a modality: it is derived from an
// active ServiceRequest and its Patient, replaced when either changes and removed when the
// order is cancelled, held or completed. Text fields hold DICOM values as a modality expects
// them: names as PN ("DOE^JOHN^^^"), dates as DA ("YYYYMMDD"), times as TM ("HHMMSS").
type WorklistItem struct {
	ServiceRequestID string `json:"service_request_id,omitempty"` // the FHIR ServiceRequest id this item comes from

	// Requested procedure.
	AccessionNumber               string `json:"accession_number,omitempty"`                // (0008,0050), from OBR-18 / IPC-1
	AccessionIssuer               string `json:"accession_issuer,omitempty"`                // (0008,0051) > (0040,0031) Local Namespace Entity ID
	RequestedProcedureID          string `json:"requested_procedure_id,omitempty"`          // (0040,1001)
	RequestedProcedureDescription string `json:"requested_procedure_description,omitempty"` // (0032,1060)
	RequestedProcedureCode        Code   `json:"requested_procedure_code,omitempty"`        // (0032,1064) Requested Procedure Code Sequence
	RequestedProcedurePriority    string `json:"requested_procedure_priority,omitempty"`    // (0040,1003) STAT, HIGH, ROUTINE, MEDIUM, LOW
	ReasonForRequestedProcedure   string `json:"reason_for_requested_procedure,omitempty"`  // (0040,1002)
	StudyInstanceUID              string `json:"study_instance_uid,omitempty"`              // (0020,000D), IPC-3 or ZDS-1, else generated
	ReferringPhysicianName        string `json:"referring_physician_name,omitempty"`        // (0008,0090) PN
	RequestingPhysician           string `json:"requesting_physician,omitempty"`            // (0032,1032) PN
	PlacerOrderNumber             string `json:"placer_order_number,omitempty"`             // (0040,2016) Placer Order Number / Imaging Service Request
	FillerOrderNumber             string `json:"filler_order_number,omitempty"`             // (0040,2017)
	AdmissionID                   string `json:"admission_id,omitempty"`                    // (0038,0010)

	// Scheduled procedure step, (0040,0100) Scheduled Procedure Step Sequence item.
	Modality            string `json:"modality,omitempty"`             // (0008,0060)
	StationAETitle      string `json:"station_ae_title,omitempty"`     // (0040,0001)
	StationName         string `json:"station_name,omitempty"`         // (0040,0010)
	StartDate           string `json:"start_date,omitempty"`           // (0040,0002) DA
	StartTime           string `json:"start_time,omitempty"`           // (0040,0003) TM
	StepID              string `json:"step_id,omitempty"`              // (0040,0009)
	StepDescription     string `json:"step_description,omitempty"`     // (0040,0007)
	StepCode            Code   `json:"step_code,omitempty"`            // (0040,0008) Scheduled Protocol Code Sequence
	PerformingPhysician string `json:"performing_physician,omitempty"` // (0040,0006) PN
	StepStatus          string `json:"step_status,omitempty"`          // (0040,0020) SCHEDULED

	// Patient.
	PatientName       string `json:"patient_name,omitempty"`         // (0010,0010) PN
	PatientID         string `json:"patient_id,omitempty"`           // (0010,0020)
	IssuerOfPatientID string `json:"issuer_of_patient_id,omitempty"` // (0010,0021)
	PatientBirthDate  string `json:"patient_birth_date,omitempty"`   // (0010,0030) DA
	PatientSex        string `json:"patient_sex,omitempty"`          // (0010,0040) M, F, O
}

// Code is a coded entry as DICOM carries it in a code sequence item (PS3.3 8.8).
type Code struct {
	Value   string `json:"value,omitempty"`   // (0008,0100) Code Value
	Scheme  string `json:"scheme,omitempty"`  // (0008,0102) Coding Scheme Designator, e.g. LN, RADLEX, 99LOCAL
	Meaning string `json:"meaning,omitempty"` // (0008,0104) Code Meaning
}

// WorklistFilter narrows the items a store returns for a C-FIND before the SCP applies the full
// DICOM matching rules. Each set field is an exact match on the stored value, except the date
// range: StartDateFrom <= StartDate <= StartDateTo (DA text compares in date order). Zero fields
// do not filter. The SCP sets only what the query's keys pin exactly (no wildcards).
type WorklistFilter struct {
	AccessionNumber string
	PatientID       string
	Modality        string
	StationAETitle  string
	StartDateFrom   string
	StartDateTo     string
	// Limit caps the items returned (0: no cap).
	Limit int
}

// WorklistReader reads the Modality Worklist.
type WorklistReader interface {
	// WorklistItems returns the items matching f, by StartDate, StartTime, then ServiceRequestID.
	WorklistItems(ctx context.Context, f WorklistFilter) ([]*WorklistItem, error)
}
