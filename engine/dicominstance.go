package engine

import "github.com/ferryhealth/ferry/dicom"

// NewInstance returns the Instance whose header a receiver read from the Part 10 file at path
// (dicom.ReadInstance); the receiver adds the rest (hash, time, origin).
func NewInstance(h *dicom.Header, path string) *Instance {
	return &Instance{
		SOPInstanceUID:         h.SOPInstanceUID,
		SOPClassUID:            h.SOPClassUID,
		SeriesInstanceUID:      h.SeriesInstanceUID,
		StudyInstanceUID:       h.StudyInstanceUID,
		TransferSyntaxUID:      h.TransferSyntaxUID,
		Modality:               h.Modality,
		SeriesNumber:           h.SeriesNumber,
		SeriesDescription:      h.SeriesDescription,
		InstanceNumber:         h.InstanceNumber,
		PatientID:              h.PatientID,
		IssuerOfPatientID:      h.IssuerOfPatientID,
		PatientName:            h.PatientName,
		PatientBirthDate:       h.PatientBirthDate,
		PatientSex:             h.PatientSex,
		AccessionNumber:        h.AccessionNumber,
		StudyDate:              h.StudyDate,
		StudyTime:              h.StudyTime,
		StudyDescription:       h.StudyDescription,
		StudyID:                h.StudyID,
		ReferringPhysicianName: h.ReferringPhysicianName,
		Path:                   path,
		Size:                   h.Size,
	}
}
