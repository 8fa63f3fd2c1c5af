package engine

import "github.com/ferryhealth/ferry/dicom"

// NewInstance returns the Instance whose header a receiver read from the Part 10 file at path
// (dicom.ReadInstance); the receiver adds the rest (hash, time, origin).
func NewInstance(h *dicom.Header, path string) *Instance {
	return &Instance{Header: *h, Path: path}
}
