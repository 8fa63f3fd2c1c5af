package dicom_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/dicom/dicomtest"
	"github.com/ferryhealth/ferry/internal/workcount"
)

// allocBudget is what reading forged instances may allocate: they declare 2 GiB and more; the
// work of reading them is kilobytes.
const allocBudget = 64 << 20

// TestReadInstance reads Ferry's own instance in each transfer syntax it writes, with its text
// in ISO_IR 100, and checks every field of the header.
func TestReadInstance(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	want := dicom.Header{
		SOPInstanceUID: "1.2.3.4", SOPClassUID: dicomtest.CTImageStorage,
		SeriesInstanceUID: "1.2.826.0.1.3680043.8.498.1.1", StudyInstanceUID: "1.2.826.0.1.3680043.8.498.1",
		Modality: "CT", SeriesNumber: "3", SeriesDescription: "AXIAL 5mm", InstanceNumber: "17",
		PatientID: "P42", IssuerOfPatientID: "STMARYS", PatientName: "Müller^Hans", PatientBirthDate: "19600101",
		PatientSex: "M", AccessionNumber: "ACC42", StudyDate: "20240105", StudyTime: "101500",
		StudyDescription: "CT HEAD", StudyID: "S1", ReferringPhysicianName: "Smïth^Ann",
	}
	for _, ts := range []string{dicom.ExplicitVRLittleEndian, dicom.ImplicitVRLittleEndian, dicom.DeflatedExplicitVRLittleEndian, "1.2.840.10008.1.2.4.70"} {
		body := dicomtest.Encode(t, dicomtest.Instance(dicomtest.CTImageStorage, "1.2.3.4", 100), ts)
		path := dicomtest.WriteFile(t, dir, "i.dcm", ts, body)
		h, err := dicom.ReadInstance(path, 0)
		if err != nil {
			t.Fatalf("%s: %v", ts, err)
		}
		w := want
		w.TransferSyntaxUID = ts
		fi, _ := os.Stat(path)
		w.Size = fi.Size()
		if *h != w {
			t.Errorf("%s:\n got %+v\nwant %+v", ts, *h, w)
		}
	}
}

// TestReadInstanceBigEndian reads an instance written in explicit VR big endian by hand.
func TestReadInstanceBigEndian(t *testing.T) {
	t.Parallel()
	be := binary.BigEndian
	body := bytes.Join([][]byte{
		dicomtest.ExplicitString(be, dicom.TagSOPClassUID, "UI", dicomtest.CTImageStorage),
		dicomtest.ExplicitString(be, dicom.TagSOPInstanceUID, "UI", "1.2.3.4"),
		dicomtest.ExplicitString(be, dicom.TagPatientName, "PN", "Doe^Jane"),
		dicomtest.ExplicitString(be, dicom.TagStudyInstanceUID, "UI", "1.2.3"),
		dicomtest.ExplicitString(be, dicom.TagSeriesInstanceUID, "UI", "1.2.3.1"),
		dicomtest.ExplicitHeader(be, dicom.NewTag(0x0028, 0x0010), "US", 2), {0, 1},
		dicomtest.ExplicitHeader(be, dicom.TagPixelData, "OW", 4), {1, 2, 3, 4},
	}, nil)
	h, err := dicom.ReadInstance(dicomtest.WriteFile(t, t.TempDir(), "be.dcm", dicom.ExplicitVRBigEndian, body), 0)
	if err != nil || h.PatientName != "Doe^Jane" || h.SeriesInstanceUID != "1.2.3.1" {
		t.Fatalf("%+v %v", h, err)
	}
}

// TestReadInstanceCharacterSets: text attributes come out as UTF-8 from each kind of Specific
// Character Set: none (UTF-8 when valid, else Latin-1), single-byte, UTF-8, ISO 2022 with a
// single-byte G1, and the multi-byte ISO 2022 sets (Japanese, Korean, with half-width
// katakana); a set Ferry cannot decode with non-ASCII text is refused C000.
func TestReadInstanceCharacterSets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		name, charset string
		value, want   string // value: the PN's bytes; want "" : refused
	}{
		{"undeclared, UTF-8", "", "Müller", "Müller"},
		{"undeclared, Latin-1", "", "M\xfcller", "Müller"},
		{"ISO_IR 100", "ISO_IR 100", "M\xfcller", "Müller"},
		{"ISO_IR 144 (Cyrillic)", "ISO_IR 144", "\xbb\xee\xda\xe1\xd5\xdd\xdd", "Люксенн"},
		{"ISO_IR 192", "ISO_IR 192", "Müller", "Müller"},
		{"ISO 2022 IR 100", `\ISO 2022 IR 100`, "M\xfcller", "Müller"},
		{"ISO_IR 13 (half-width katakana)", "ISO_IR 13", "\xd4\xcf\xc0\xde", "ﾔﾏﾀﾞ"},
		{"ISO 2022 IR 87 (JIS X 0208)", `\ISO 2022 IR 87`, "Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B", "Yamada^Tarou=山田^太郎"},
		{"ISO 2022 IR 13 with IR 87", `ISO 2022 IR 13\ISO 2022 IR 87`, "\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J", "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎"},
		{"ISO 2022 IR 149 (Korean)", `\ISO 2022 IR 149`, "Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7", "Hong^Gildong=洪^吉洞"},
		{"unsupported set, non-ASCII", `\ISO 2022 IR 166`, "\xa1\xa2", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ds := dicomtest.Instance(dicomtest.CTImageStorage, "1.2.3.4", 0)
			ds.Set(dicom.NewString(dicom.TagSpecificCharacterSet, dicom.VRCS, tc.charset))
			if tc.charset == "" {
				ds.Remove(dicom.TagSpecificCharacterSet)
			}
			ds.Set(&dicom.Element{Tag: dicom.TagPatientName, VR: dicom.VRPN, Value: []byte(tc.value)})
			ds.Set(dicom.NewString(dicomtest.TagReferringPhysicianName, dicom.VRPN, "Smith^Ann"))
			body := dicomtest.Encode(t, ds, dicom.ExplicitVRLittleEndian)
			h, err := dicom.ReadInstance(dicomtest.WriteFile(t, dir, tc.name+".dcm", dicom.ExplicitVRLittleEndian, body), 0)
			if tc.want == "" {
				var ie *dicom.InstanceError
				if !errors.As(err, &ie) || ie.Status != dicom.StatusCannotUnderstand || ie.Tag != dicom.TagSpecificCharacterSet {
					t.Fatalf("%+v %v, want C000 naming Specific Character Set", h, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.PatientName != tc.want {
				t.Fatalf("PatientName %q, want %q", h.PatientName, tc.want)
			}
		})
	}
}

// TestReadInstanceRefusals: what is not a Part 10 instance Ferry can keep is refused with the
// status that says why, naming the element at fault.
func TestReadInstanceRefusals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	instance := func(edit func(*dicom.DataSet)) []byte {
		ds := dicomtest.Instance(dicomtest.CTImageStorage, "1.2.3.4", 0)
		edit(ds)
		return dicomtest.Encode(t, ds, dicom.ExplicitVRLittleEndian)
	}
	for _, tc := range []struct {
		name   string
		file   []byte
		status dicom.Status
		tag    dicom.Tag
	}{
		{"no DICM", []byte("not a DICOM file at all"), dicom.StatusCannotUnderstand, 0},
		{"no transfer syntax", append(append(make([]byte, 128), "DICM"...), dicomtest.ExplicitHeader(binary.LittleEndian, dicom.NewTag(0x0002, 0x0000), "UL", 4)...),
			dicom.StatusCannotUnderstand, dicom.NewTag(0x0002, 0x0000)},
		{"unknown transfer syntax", dicomtest.Part10(t, "1.2.3", dicomtest.CTImageStorage, "1.2.3.4", instance(func(*dicom.DataSet) {})),
			dicom.StatusCannotUnderstand, dicom.NewTag(0x0002, 0x0010)},
		{"no SOP Instance UID", dicomtest.Part10(t, dicom.ExplicitVRLittleEndian, dicomtest.CTImageStorage, "1.2.3.4",
			instance(func(ds *dicom.DataSet) { ds.Remove(dicom.TagSOPInstanceUID) })), dicom.StatusDataSetMismatch, dicom.TagSOPInstanceUID},
		{"Series Instance UID not a UID", dicomtest.Part10(t, dicom.ExplicitVRLittleEndian, dicomtest.CTImageStorage, "1.2.3.4",
			instance(func(ds *dicom.DataSet) {
				ds.Set(dicom.NewString(dicom.TagSeriesInstanceUID, dicom.VRUI, "1.2.x"))
			})), dicom.StatusDataSetMismatch, dicom.TagSeriesInstanceUID},
		{"truncated", dicomtest.Part10(t, dicom.ExplicitVRLittleEndian, dicomtest.CTImageStorage, "1.2.3.4",
			dicomtest.Encode(t, dicomtest.Instance(dicomtest.CTImageStorage, "1.2.3.4", 1000), dicom.ExplicitVRLittleEndian)[:500]),
			dicom.StatusCannotUnderstand, dicom.TagPixelData},
	} {
		path := filepath.Join(dir, tc.name)
		if err := os.WriteFile(path, tc.file, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := dicom.ReadInstance(path, 0)
		var ie *dicom.InstanceError
		if !errors.As(err, &ie) || ie.Status != tc.status || ie.Tag != tc.tag {
			t.Errorf("%s: %v, want %s naming %s", tc.name, err, tc.status, tc.tag)
		}
	}
	if _, err := dicom.ReadInstance(filepath.Join(dir, "absent"), 0); dicom.AsInstanceError(err, "").Status != dicom.StatusOutOfResources {
		t.Errorf("a missing file: %v, want A700", err)
	}
}

// TestReadInstanceDeclaredLengths: the header read of a stored instance (C-STORE and STOW-RS
// both use it) refuses every forged length with C000 and allocates none of them.
func TestReadInstanceDeclaredLengths(t *testing.T) {
	// Not parallel: TotalAlloc counts every goroutine's allocations.
	dir := t.TempDir()
	forged := dicomtest.Forged(t)
	paths := make([]string, len(forged))
	for i, f := range forged {
		paths[i] = dicomtest.WriteFile(t, dir, string(rune('a'+i))+".dcm", f.TransferSyntax, f.Body)
	}
	// File meta information declaring 2 GiB (an OB in group 0002).
	meta := append(make([]byte, 128), "DICM"...)
	metaBody := append(dicomtest.ExplicitHeader(binary.LittleEndian, dicom.NewTag(0x0002, 0x0001), "OB", 1<<31), bytes.Repeat([]byte{0}, 200)...)
	meta = append(meta, dicomtest.ExplicitHeader(binary.LittleEndian, dicom.NewTag(0x0002, 0x0000), "UL", 4)...)
	meta = binary.LittleEndian.AppendUint32(meta, uint32(len(metaBody)))
	metaPath := filepath.Join(dir, "meta.dcm")
	if err := os.WriteFile(metaPath, append(meta, metaBody...), 0o600); err != nil {
		t.Fatal(err)
	}
	forged = append(forged, dicomtest.ForgedDataSet{Name: "file meta information: OB of 2 GiB"})
	paths = append(paths, metaPath)

	errs := make([]error, len(paths))
	n := workcount.Allocated(func() {
		for i, p := range paths {
			_, errs[i] = dicom.ReadInstance(p, 0)
		}
	})
	for i, err := range errs {
		var ie *dicom.InstanceError
		if !errors.As(err, &ie) || ie.Status != dicom.StatusCannotUnderstand {
			t.Errorf("%s: %v, want C000", forged[i].Name, err)
		}
	}
	if n > allocBudget {
		t.Errorf("reading %d forged instances allocated %d MiB, want < %d MiB", len(paths), n>>20, allocBudget>>20)
	}
	t.Logf("reading %d forged instances allocated %.1f MiB", len(paths), float64(n)/(1<<20))
}

// TestReadInstanceHeaderBudget: a header holding more than the budget is refused; under it, read.
func TestReadInstanceHeaderBudget(t *testing.T) {
	t.Parallel()
	ds := dicomtest.Instance(dicomtest.CTImageStorage, "1.2.3.4", 0)
	ds.Set(dicom.NewString(dicomtest.TagStudyDescription, dicom.VRUT, string(bytes.Repeat([]byte{'x'}, 64<<10))))
	path := dicomtest.WriteFile(t, t.TempDir(), "big.dcm", dicom.ExplicitVRLittleEndian, dicomtest.Encode(t, ds, dicom.ExplicitVRLittleEndian))
	if _, err := dicom.ReadInstance(path, 128<<10); err != nil {
		t.Errorf("under the budget: %v", err)
	}
	var ie *dicom.InstanceError
	if _, err := dicom.ReadInstance(path, 32<<10); !errors.As(err, &ie) || ie.Status != dicom.StatusCannotUnderstand {
		t.Errorf("over the budget: %v, want C000", err)
	}
}

// FuzzReadInstance feeds arbitrary data sets, in each transfer syntax the header read knows, to
// ReadInstance as a Part 10 file. It must never panic, refuse only with an *InstanceError, and
// allocate no more than the header budget allows (issue 17, item 4).
func FuzzReadInstance(f *testing.F) {
	syntaxes := []string{dicom.ExplicitVRLittleEndian, dicom.ImplicitVRLittleEndian, dicom.ExplicitVRBigEndian, dicom.DeflatedExplicitVRLittleEndian}
	for _, ts := range syntaxes[:2] {
		f.Add(dicomtest.Encode(f, dicomtest.Instance(dicomtest.CTImageStorage, "1.2.3.4", 64), ts), uint8(slices.Index(syntaxes, ts)))
	}
	for _, fd := range dicomtest.Forged(f) {
		if len(fd.Body) < 4<<10 {
			f.Add(fd.Body, uint8(max(0, slices.Index(syntaxes, fd.TransferSyntax))))
		}
	}
	dir := f.TempDir()
	const budget = 1 << 20
	f.Fuzz(func(t *testing.T, data []byte, tsIndex uint8) {
		ts := syntaxes[int(tsIndex)%len(syntaxes)]
		path := dicomtest.WriteFile(t, dir, "fuzz.dcm", ts, data)
		// TotalAlloc without the collections workcount.Allocated runs first: a fuzz worker runs
		// one input at a time, and a collection per input would leave it a few inputs a second.
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := dicom.ReadInstance(path, budget)
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 {
			t.Fatalf("reading a %d-byte instance allocated %d MiB", len(data), n>>20)
		}
		var ie *dicom.InstanceError
		if err != nil && !errors.As(err, &ie) {
			t.Fatalf("refused with %T: %v", err, err)
		}
	})
}
