package engine

import (
	"reflect"
	"strings"
	"testing"

	"github.com/ferryhealth/ferry/hl7"
)

func TestSearchKeysOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
		want []SearchKey
	}{
		{"an OMI with every key", "MSH|^~\\&|RIS|STMARYS|FERRY|FERRY|20260301100000||OMI^O23^OMI_O23|C1|P|2.5.1\r" +
			"PID|1|ext-9|mrn1^^^HOSP^MR~ MRN1 ^^^X~NHS2||Núñez-Smith^José Luis^M||19700101|F\r" +
			"ORC|NW|pl1^RIS|FL1\rOBR|1|pl1||CT" + strings.Repeat("|", 14) + "ACC-9|ACC-10\r" +
			"IPC|ACC-9|RP1|1.2.3.4|SPS1\rZDS|1.2.3.5^^Application^DICOM\r",
			[]SearchKey{{KeyPatientID, "EXT-9"}, {KeyPatientID, "MRN1"}, {KeyPatientID, "NHS2"},
				{KeyName, "nunez"}, {KeyName, "smith"}, {KeyName, "jose"}, {KeyName, "luis"}, {KeyName, "m"},
				{KeyAccession, "PL1"}, {KeyAccession, "FL1"}, {KeyAccession, "ACC-9"}, {KeyAccession, "ACC-10"},
				{KeyStudyUID, "1.2.3.4"}, {KeyStudyUID, "1.2.3.5"}}},
		{"no patient segments", "MSH|^~\\&|RIS|STMARYS|FERRY|FERRY|20260301100000||ADT^A01|C1|P|2.5.1\r", nil},
		{"a value longer than any identifier is not indexed",
			"MSH|^~\\&|RIS|STMARYS|FERRY|FERRY|20260301100000||ADT^A01|C1|P|2.5.1\rPID|1||" + strings.Repeat("9", 65) + "\r", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := hl7.Parse([]byte(tt.raw))
			if err != nil {
				t.Fatal(err)
			}
			if got := SearchKeysOf(m); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("SearchKeysOf = %v\nwant %v", got, tt.want)
			}
		})
	}
}

// TestSearchKeysBounded: a message built to bloat the index adds at most maxSearchKeys keys.
func TestSearchKeysBounded(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("MSH|^~\\&|RIS|STMARYS|FERRY|FERRY|20260301100000||ADT^A01|C1|P|2.5.1\rPID|1||")
	for i := range 5000 {
		if i > 0 {
			b.WriteByte('~')
		}
		b.WriteString("M")
		b.WriteString(strings.Repeat("1", i%40+1))
		b.WriteByte(byte('A' + i%26))
	}
	m, err := hl7.Parse([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(SearchKeysOf(m)); n != maxSearchKeys {
		t.Errorf("%d keys, want the cap %d", n, maxSearchKeys)
	}
}

func TestFilterSearchKeys(t *testing.T) {
	t.Parallel()
	got := MessageFilter{PatientID: " mrn1 ", Accession: "acc", StudyUID: "1.2.3", PatientName: "José  NÚÑEZ"}.SearchKeys()
	want := []SearchKey{{KeyPatientID, "MRN1"}, {KeyAccession, "ACC"}, {KeyStudyUID, "1.2.3"}, {KeyName, "jose"}, {KeyName, "nunez"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SearchKeys = %v, want %v", got, want)
	}
	if got := (MessageFilter{PatientName: "--"}).SearchKeys(); len(got) != 1 || got[0].Value != "" {
		t.Errorf("a name of punctuation: %v, want one key that matches nothing", got)
	}
}
