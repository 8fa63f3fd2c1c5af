package hl7

import "testing"

func TestFieldName(t *testing.T) {
	for _, tt := range []struct {
		seg  string
		n    int
		want string
	}{
		{"PID", 5, "Patient Name"}, {"PID", 3, "Patient Identifier List"}, {"MSH", 9, "Message Type"},
		{"MSH", 10, "Message Control ID"}, {"OBR", 4, "Universal Service Identifier"}, {"ORC", 12, "Ordering Provider"},
		{"PV1", 8, "Referring Doctor"}, {"OBR", 31, "Reason for Study"}, {"OBX", 5, "Observation Value"},
		{"IPC", 3, "Study Instance UID"}, {"PID", 0, ""}, {"PID", 99, ""}, {"ZDS", 1, ""},
	} {
		if got := FieldName(tt.seg, tt.n); got != tt.want {
			t.Errorf("FieldName(%s, %d) = %q, want %q", tt.seg, tt.n, got, tt.want)
		}
	}
}
