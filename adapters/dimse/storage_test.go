package dimse

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/dicom/dicomtest"
	"github.com/ferryhealth/ferry/engine"
)

// fakeSink is the engine's intake at the unit boundary: it moves each file into its own
// directory (every call gets its own file, duplicates too, so tests can read what arrived),
// fsyncs the directory, and says added=false for a SOP Instance UID it has seen.
type fakeSink struct {
	dir string
	err error // when set, StoreInstance fails with it

	mu    sync.Mutex
	calls []engine.Instance
	seen  map[string]bool
}

func newFakeSink(t testing.TB) *fakeSink {
	return &fakeSink{dir: t.TempDir(), seen: map[string]bool{}}
}

func (s *fakeSink) StoreInstance(_ context.Context, inst *engine.Instance, tmpPath string) (bool, error) {
	if s.err != nil {
		return false, s.err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	final := filepath.Join(s.dir, fmt.Sprintf("%06d.dcm", len(s.calls)))
	if err := os.Rename(tmpPath, final); err != nil {
		return false, err
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return false, err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return false, err
	}
	inst.Path = final
	s.calls = append(s.calls, *inst)
	added := !s.seen[inst.SOPInstanceUID]
	s.seen[inst.SOPInstanceUID] = true
	return added, nil
}

func (s *fakeSink) instances() []engine.Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// startStorage serves the storage SCP with sink and returns the server's address and the
// incoming directory.
func startStorage(t testing.TB, sink InstanceSink, cfg StorageConfig, srv *Server) (addr, incoming string) {
	t.Helper()
	if cfg.IncomingDir == "" {
		cfg.IncomingDir = t.TempDir()
	}
	var logger *slog.Logger
	if tt, ok := t.(*testing.T); ok {
		logger = testLogger(tt)
	}
	svcs, err := StorageServices(sink, cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	srv.Services = append(srv.Services, svcs...)
	return startServer(t, srv), cfg.IncomingDir
}

// assertEmptyDir fails when the incoming directory kept a file: every failure removes its own.
func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Errorf("%s holds %d files after the stores, want none", dir, len(entries))
	}
}

func TestStorageConfigValidate(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  StorageConfig
		want string
	}{
		{"empty", StorageConfig{}, "IncomingDir is empty"},
		{"missing", StorageConfig{IncomingDir: filepath.Join(t.TempDir(), "nope")}, "no such file"},
		{"a file", StorageConfig{IncomingDir: file}, "not a directory"},
		{"negative size", StorageConfig{IncomingDir: t.TempDir(), MaxInstanceSize: -1}, "negative"},
		{"fine", StorageConfig{IncomingDir: t.TempDir()}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := StorageServices(nil, StorageConfig{IncomingDir: t.TempDir()}, nil); err == nil {
		t.Error("StorageServices accepted a nil sink")
	}
}

// cstore sends one C-STORE-RQ with the data set bytes and returns the response's command.
func cstore(t testing.TB, c *Client, sopClass, sopInstance string, body []byte) *Command {
	t.Helper()
	id, _, ok := c.Context(sopClass)
	if !ok {
		t.Fatalf("no accepted context for %s", sopClass)
	}
	cmd := &Command{Field: CStoreRQ, MessageID: c.NewMessageID(), AffectedSOPClassUID: sopClass, AffectedSOPInstanceUID: sopInstance}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Send(ctx, id, cmd, bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	msg, err := c.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Command.Field != CStoreRSP || msg.Command.MessageIDBeingRespondedTo != cmd.MessageID {
		t.Fatalf("response %+v to C-STORE-RQ %d", msg.Command, cmd.MessageID)
	}
	return msg.Command
}

func offendingElement(c *Command) dicom.Tag {
	for _, e := range c.Other {
		if e.Tag == dicom.TagOffendingElement && len(e.Value) == 4 {
			return dicom.NewTag(binary.LittleEndian.Uint16(e.Value), binary.LittleEndian.Uint16(e.Value[2:]))
		}
	}
	return 0
}

// TestCStoreClient stores through Ferry's own Client: the instance's facts reach the sink, the
// file is a Part 10 file holding the data set as sent, a second store of the same instance
// succeeds as a duplicate, and every refusal has its status and leaves nothing behind.
func TestCStoreClient(t *testing.T) {
	t.Parallel()
	sink := newFakeSink(t)
	addr, incoming := startStorage(t, sink, StorageConfig{MaxInstanceSize: 64 << 10}, &Server{})
	c := dial(t, addr, ClientConfig{CallingAETitle: "CT01", Contexts: []ProposedContext{
		{SOPClass: ctImageStorage}, {SOPClass: "1.2.840.10008.5.1.4.1.1.4"}, {SOPClass: VerificationSOPClass}}})

	const uid = "1.2.826.0.1.3680043.8.498.1.1.1"
	body, err := dicom.EncodeDataSet(dicomtest.Instance(ctImageStorage, uid, 20000), dicom.ExplicitVRLittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	for i, wantAdded := range []bool{true, false} {
		if rsp := cstore(t, c, ctImageStorage, uid, body); rsp.Status != dicom.StatusSuccess {
			t.Fatalf("store %d: status %v (%s)", i+1, rsp.Status, rsp.ErrorComment)
		}
		got := sink.instances()
		if len(got) != i+1 {
			t.Fatalf("sink called %d times, want %d", len(got), i+1)
		}
		inst := got[i]
		if added := !slices.ContainsFunc(got[:i], func(p engine.Instance) bool { return p.SOPInstanceUID == inst.SOPInstanceUID }); added != wantAdded {
			t.Errorf("store %d: added %v, want %v", i+1, added, wantAdded)
		}
		want := engine.Instance{
			Header: dicom.Header{
				SOPInstanceUID:         uid,
				SOPClassUID:            ctImageStorage,
				SeriesInstanceUID:      "1.2.826.0.1.3680043.8.498.1.1",
				StudyInstanceUID:       "1.2.826.0.1.3680043.8.498.1",
				TransferSyntaxUID:      dicom.ExplicitVRLittleEndian,
				Modality:               "CT",
				SeriesNumber:           "3",
				SeriesDescription:      "AXIAL 5mm",
				InstanceNumber:         "17",
				PatientID:              "P42",
				IssuerOfPatientID:      "STMARYS",
				PatientName:            "Müller^Hans",
				PatientBirthDate:       "19600101",
				PatientSex:             "M",
				AccessionNumber:        "ACC42",
				StudyDate:              "20240105",
				StudyTime:              "101500",
				StudyDescription:       "CT HEAD",
				StudyID:                "S1",
				ReferringPhysicianName: "Smïth^Ann",
			},
			CallingAETitle: "CT01",
			CalledAETitle:  "FERRY",
		}
		file, err := os.ReadFile(inst.Path)
		if err != nil {
			t.Fatal(err)
		}
		checkFields := inst
		checkFields.Path, checkFields.Size, checkFields.SHA256, checkFields.ReceivedAt, checkFields.PeerAddr = "", 0, "", time.Time{}, ""
		if checkFields != want {
			t.Errorf("instance:\n got %+v\nwant %+v", checkFields, want)
		}
		if inst.Size != int64(len(file)) || inst.SHA256 != sha256Hex(file) {
			t.Errorf("size %d, sha256 %s; the file has %d bytes, %s", inst.Size, inst.SHA256, len(file), sha256Hex(file))
		}
		if inst.ReceivedAt.Before(before) || inst.ReceivedAt.After(time.Now()) || !strings.HasPrefix(inst.PeerAddr, "127.0.0.1:") {
			t.Errorf("received at %v, peer %q", inst.ReceivedAt, inst.PeerAddr)
		}
		meta, stored, ts, err := dicom.SplitFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if ts != dicom.ExplicitVRLittleEndian || !bytes.Equal(stored, body) {
			t.Errorf("stored data set: ts %s, %d bytes, equal %v", ts, len(stored), bytes.Equal(stored, body))
		}
		for tag, want := range map[dicom.Tag]string{dicom.NewTag(0x0002, 0x0002): ctImageStorage, dicom.NewTag(0x0002, 0x0003): uid,
			dicom.NewTag(0x0002, 0x0012): dicom.ImplementationClassUID, dicom.NewTag(0x0002, 0x0013): dicom.ImplementationVersionName,
			dicom.NewTag(0x0002, 0x0016): "CT01"} {
			if got := meta.String(tag); got != want {
				t.Errorf("file meta %s = %q, want %q", tag, got, want)
			}
		}
		// Group length: the meta elements after its own 12 bytes, up to the data set.
		if gl := meta.Get(dicom.NewTag(0x0002, 0x0000)); gl == nil || int(binary.LittleEndian.Uint32(gl.Value)) != len(file)-132-12-len(stored) {
			t.Errorf("file meta group length %v, want %d", gl, len(file)-132-12-len(stored))
		}
	}

	other := func(mut func(ds *dicom.DataSet)) []byte {
		ds := dicomtest.Instance(ctImageStorage, "1.2.3.9", 100)
		mut(ds)
		b, err := dicom.EncodeDataSet(ds, dicom.ExplicitVRLittleEndian)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name          string
		sopClass, uid string
		body          []byte
		want          dicom.Status
		wantElement   dicom.Tag
		wantComment   string
	}{
		{"SOP instance UID differs from the command's", ctImageStorage, "1.2.3.10", other(func(*dicom.DataSet) {}),
			dicom.StatusDataSetMismatch, dicom.TagSOPInstanceUID, "SOP Instance UID differs"},
		{"SOP class differs from the command's", "1.2.840.10008.5.1.4.1.1.4", "1.2.3.9", other(func(*dicom.DataSet) {}),
			dicom.StatusDataSetMismatch, dicom.TagSOPClassUID, "SOP Class UID differs"},
		{"no study instance UID", ctImageStorage, "1.2.3.9", other(func(ds *dicom.DataSet) { ds.Remove(dicom.TagStudyInstanceUID) }),
			dicom.StatusDataSetMismatch, dicom.TagStudyInstanceUID, "StudyInstanceUID missing"},
		{"no series instance UID", ctImageStorage, "1.2.3.9", other(func(ds *dicom.DataSet) { ds.Remove(dicom.TagSeriesInstanceUID) }),
			dicom.StatusDataSetMismatch, dicom.TagSeriesInstanceUID, "SeriesInstanceUID missing"},
		{"no SOP instance UID", ctImageStorage, "1.2.3.9", other(func(ds *dicom.DataSet) { ds.Remove(dicom.TagSOPInstanceUID) }),
			dicom.StatusDataSetMismatch, dicom.TagSOPInstanceUID, "SOPInstanceUID missing"},
		{"series instance UID not a UID", ctImageStorage, "1.2.3.9", other(func(ds *dicom.DataSet) {
			ds.Set(dicom.NewString(dicom.TagSeriesInstanceUID, dicom.VRUI, "1.2.3/../../etc"))
		}), dicom.StatusDataSetMismatch, dicom.TagSeriesInstanceUID, "SeriesInstanceUID is not a valid UID"},
		{"larger than MaxInstanceSize", ctImageStorage, "1.2.3.11", other(func(ds *dicom.DataSet) {
			ds.Set(&dicom.Element{Tag: dicom.TagPixelData, VR: dicom.VROW, Value: make([]byte, 70<<10)})
		}), dicom.StatusOutOfResources, 0, "instance larger than 65536 bytes"},
		{"garbage", ctImageStorage, "1.2.3.12", []byte("this is not a DICOM data set at all, just text"),
			dicom.StatusCannotUnderstand, dicom.NewTag(0x6874, 0x7369), "data set does not parse"},
		{"truncated", ctImageStorage, "1.2.3.9", other(func(*dicom.DataSet) {})[:300],
			dicom.StatusCannotUnderstand, dicom.TagSeriesInstanceUID, "data set does not parse"},
		{"unsupported character set with non-ASCII text", ctImageStorage, "1.2.3.9", other(func(ds *dicom.DataSet) {
			ds.Set(dicom.NewString(dicom.TagSpecificCharacterSet, dicom.VRCS, "ISO_IR 999"))
		}), dicom.StatusCannotUnderstand, dicom.TagSpecificCharacterSet, "text not decodable"},
	}
	for _, tc := range tests {
		rsp := cstore(t, c, tc.sopClass, tc.uid, tc.body)
		if rsp.Status != tc.want || offendingElement(rsp) != tc.wantElement || !strings.Contains(rsp.ErrorComment, tc.wantComment) {
			t.Errorf("%s: status %v, element %v, comment %q; want %v, %v, %q", tc.name, rsp.Status,
				offendingElement(rsp), rsp.ErrorComment, tc.want, tc.wantElement, tc.wantComment)
		}
	}
	if st, err := c.Echo(testCtx(t)); err != nil || st != dicom.StatusSuccess {
		t.Fatalf("echo after the refusals: %v %v", st, err)
	}
	if n := len(sink.instances()); n != 2 {
		t.Errorf("sink called %d times, want 2 (refusals never reach it)", n)
	}
	assertEmptyDir(t, incoming)
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestCStoreSinkFailures: a store that fails answers A700 (retry later), one that refuses the
// instance C000; either way the file goes and the association goes on.
func TestCStoreSinkFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want dicom.Status
	}{
		{"store down", errors.New("database unavailable"), dicom.StatusOutOfResources},
		{"instance refused", fmt.Errorf("study belongs to another patient: %w", dicom.ErrInstanceRefused), dicom.StatusCannotUnderstand},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sink := newFakeSink(t)
			sink.err = tc.err
			addr, incoming := startStorage(t, sink, StorageConfig{}, &Server{})
			c := dial(t, addr, ClientConfig{Contexts: []ProposedContext{{SOPClass: ctImageStorage}, {SOPClass: VerificationSOPClass}}})
			body, err := dicom.EncodeDataSet(dicomtest.Instance(ctImageStorage, "1.2.3.4", 1000), dicom.ExplicitVRLittleEndian)
			if err != nil {
				t.Fatal(err)
			}
			if rsp := cstore(t, c, ctImageStorage, "1.2.3.4", body); rsp.Status != tc.want {
				t.Errorf("status %v (%s), want %v", rsp.Status, rsp.ErrorComment, tc.want)
			}
			if st, err := c.Echo(testCtx(t)); err != nil || st != dicom.StatusSuccess {
				t.Fatalf("echo after the failure: %v %v", st, err)
			}
			assertEmptyDir(t, incoming)
		})
	}
}

// TestCStoreTransferSyntaxes stores corpus files in the transfer syntaxes dcmtk's storescu
// would convert on the way (explicit VR big endian, deflated) through Ferry's own Client,
// proposing only the file's own syntax: each is kept as sent and its header read.
// TestCStoreTransferSyntaxes stores Ferry's own instance in each transfer syntax dcmtk can
// write it in (dcmconv, dcmcrle, dcmcjpeg, dcmcjpls convert it), as it is: the header read in
// each, the data set kept byte for byte (lossy ones keep their SOP Instance UID: +un). JPEG 2000 (dcmtk has no encoder) is covered by
// TestCStoreCorpusTransferSyntaxes where the shared corpus is present.
func TestCStoreTransferSyntaxes(t *testing.T) {
	t.Parallel()
	sink := newFakeSink(t)
	addr, _ := startStorage(t, sink, StorageConfig{}, &Server{})
	dir := t.TempDir()
	for i, tc := range []struct {
		ts, tool string
		args     []string
		eightBit bool
	}{
		{dicom.ImplicitVRLittleEndian, "dcmconv", []string{"+ti"}, false},
		{dicom.ExplicitVRBigEndian, "dcmconv", []string{"+tb"}, false},
		{dicom.DeflatedExplicitVRLittleEndian, "dcmconv", []string{"+td"}, false},
		{"1.2.840.10008.1.2.4.50", "dcmcjpeg", []string{"+eb", "+un"}, true},
		{"1.2.840.10008.1.2.4.51", "dcmcjpeg", []string{"+ee", "+un"}, false},
		{"1.2.840.10008.1.2.4.57", "dcmcjpeg", []string{"+el"}, false},
		{"1.2.840.10008.1.2.4.70", "dcmcjpeg", []string{"+e1"}, false},
		{"1.2.840.10008.1.2.4.80", "dcmcjpls", []string{"+el"}, false},
		{"1.2.840.10008.1.2.4.81", "dcmcjpls", []string{"+en", "+un"}, false},
		{"1.2.840.10008.1.2.5", "dcmcrle", nil, false},
	} {
		t.Run(tc.ts, func(t *testing.T) {
			tool := requirePeer(t, tc.tool, "dcmtk")
			uid := fmt.Sprintf("1.2.826.0.1.3680043.8.498.3.%d", i)
			ds := dicomtest.Instance(ctImageStorage, uid, 64*64*2)
			if tc.eightBit {
				dicomtest.Image8(ds)
			}
			src := dicomtest.WriteInstance(t, dir, fmt.Sprintf("src%d.dcm", i), ds)
			converted := filepath.Join(dir, fmt.Sprintf("ts%d.dcm", i))
			if out, err := runPeer(t, tool, append(append([]string{}, tc.args...), src, converted)...); err != nil {
				t.Fatalf("%s: %v\n%s", tc.tool, err, out)
			}
			file, err := os.ReadFile(converted)
			if err != nil {
				t.Fatal(err)
			}
			_, body, fileTS, err := dicom.SplitFile(file)
			if err != nil || fileTS != tc.ts {
				t.Fatalf("%s wrote %v (transfer syntax %s)", tc.tool, err, fileTS)
			}
			c := dial(t, addr, ClientConfig{Contexts: []ProposedContext{{SOPClass: ctImageStorage, TransferSyntaxes: []string{tc.ts}}}})
			if rsp := cstore(t, c, ctImageStorage, uid, body); rsp.Status != dicom.StatusSuccess {
				t.Fatalf("status %v (%s)", rsp.Status, rsp.ErrorComment)
			}
			insts := sink.instances()
			j := slices.IndexFunc(insts, func(in engine.Instance) bool { return in.SOPInstanceUID == uid })
			if j < 0 {
				t.Fatal("not stored")
			}
			got := insts[j]
			if got.TransferSyntaxUID != tc.ts || got.PatientName != "Müller^Hans" || got.ReferringPhysicianName != "Smïth^Ann" ||
				got.StudyInstanceUID != "1.2.826.0.1.3680043.8.498.1" || got.InstanceNumber != "17" || got.Modality != "CT" {
				t.Errorf("stored header %+v", got)
			}
			stored, err := os.ReadFile(got.Path)
			if err != nil {
				t.Fatal(err)
			}
			if _, sb, sts, err := dicom.SplitFile(stored); err != nil || sts != tc.ts || !bytes.Equal(sb, body) {
				t.Errorf("stored data set differs from the one sent (%v, %s)", err, sts)
			}
		})
	}
}

// TestCStoreCorpusTransferSyntaxes sends, for each transfer syntax, a storable file of the shared
// corpus (real equipment's files, JPEG 2000 included), where it is present, and checks the header
// read against its INDEX.tsv.
func TestCStoreCorpusTransferSyntaxes(t *testing.T) {
	t.Parallel()
	rows := corpusIndex(t)
	sink := newFakeSink(t)
	addr, _ := startStorage(t, sink, StorageConfig{}, &Server{})
	for _, ts := range []string{dicom.ExplicitVRBigEndian, dicom.DeflatedExplicitVRLittleEndian, dicom.ImplicitVRLittleEndian,
		"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
		"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
		"1.2.840.10008.1.2.5"} {
		t.Run(ts, func(t *testing.T) {
			i := slices.IndexFunc(rows, func(r corpusRow) bool { return r.TransferSyntaxUID == ts && storable(r) })
			if i < 0 {
				t.Skipf("the corpus (../shared/corpus) has no storable file in transfer syntax %s to send", ts)
			}
			row := rows[i]
			file, err := os.ReadFile(row.path)
			if err != nil {
				t.Fatal(err)
			}
			_, body, fileTS, err := dicom.SplitFile(file)
			if err != nil || fileTS != ts {
				t.Fatalf("%s: %v (transfer syntax %s)", row.File, err, fileTS)
			}
			c := dial(t, addr, ClientConfig{Contexts: []ProposedContext{{SOPClass: row.SOPClassUID, TransferSyntaxes: []string{ts}}}})
			if rsp := cstore(t, c, row.SOPClassUID, row.SOPInstanceUID, body); rsp.Status != dicom.StatusSuccess {
				t.Fatalf("%s: status %v (%s)", row.File, rsp.Status, rsp.ErrorComment)
			}
			insts := sink.instances()
			j := slices.IndexFunc(insts, func(in engine.Instance) bool {
				return in.SOPInstanceUID == row.SOPInstanceUID && in.TransferSyntaxUID == ts
			})
			if j < 0 {
				t.Fatalf("%s: not stored", row.File)
			}
			checkAgainstIndex(t, insts[j], row)
			stored, err := os.ReadFile(insts[j].Path)
			if err != nil {
				t.Fatal(err)
			}
			if _, sb, sts, err := dicom.SplitFile(stored); err != nil || sts != ts || !bytes.Equal(sb, body) {
				t.Errorf("%s: stored data set differs from the one sent (%v, %s)", row.File, err, sts)
			}
		})
	}
}

// corpusRow is one line of the shared corpus's INDEX.tsv.
type corpusRow struct {
	File, PatientID, PatientName, AccessionNumber, StudyInstanceUID, Modality string
	SpecificCharacterSet, SeriesInstanceUID, SOPInstanceUID, SOPClassUID      string
	TransferSyntaxUID, Note                                                   string
	path                                                                      string
}

// corpusIndex reads INDEX.tsv, skipping the test when the corpus is absent.
func corpusIndex(t *testing.T) []corpusRow {
	t.Helper()
	f, err := os.Open(filepath.Join(corpusDICOM, "INDEX.tsv"))
	if err != nil {
		t.Skipf("shared corpus absent (%v): it adds real equipment's files, an extra run in CI; TestCStoreTransferSyntaxes and TestStorescu cover the same paths with Ferry's own instances", err)
	}
	defer f.Close()
	var rows []corpusRow
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for first := true; sc.Scan(); first = false {
		c := strings.Split(sc.Text(), "\t")
		if first || len(c) < 14 {
			continue
		}
		r := corpusRow{File: c[0], PatientID: c[1], PatientName: c[2], AccessionNumber: c[3], StudyInstanceUID: c[4],
			Modality: c[5], SpecificCharacterSet: c[7], SeriesInstanceUID: c[9], SOPInstanceUID: c[10],
			SOPClassUID: c[11], TransferSyntaxUID: c[12], Note: c[13]}
		r.path = filepath.Join(corpusDICOM, strings.TrimPrefix(r.File, "dicom/"))
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// storable reports whether a corpus file is a storage instance Ferry accepts: a Part 10 file of
// a storage SOP class it serves, with the UIDs it requires.
func storable(r corpusRow) bool {
	return r.TransferSyntaxUID != "" && r.SOPInstanceUID != "" && r.StudyInstanceUID != "" && r.SeriesInstanceUID != "" &&
		!strings.Contains(r.Note, "force") && !strings.Contains(r.Note, "DICOMDIR") &&
		slices.ContainsFunc(StorageSOPClasses, func(c StorageSOPClass) bool { return c.UID == r.SOPClassUID })
}

func checkAgainstIndex(t *testing.T, inst engine.Instance, r corpusRow) {
	t.Helper()
	for _, f := range []struct{ name, got, want string }{
		{"PatientID", inst.PatientID, r.PatientID},
		{"StudyInstanceUID", inst.StudyInstanceUID, r.StudyInstanceUID},
		{"SeriesInstanceUID", inst.SeriesInstanceUID, r.SeriesInstanceUID},
		{"SOPClassUID", inst.SOPClassUID, r.SOPClassUID},
		{"Modality", inst.Modality, r.Modality},
		{"AccessionNumber", inst.AccessionNumber, r.AccessionNumber},
		{"PatientName", inst.PatientName, r.PatientName},
	} {
		if f.name == "PatientName" {
			// Trailing empty components are not significant (PS3.5 6.2.1).
			f.got, f.want = strings.TrimRight(f.got, "=^"), strings.TrimRight(f.want, "=^")
		}
		if f.got != f.want {
			t.Errorf("%s: %s %q, INDEX.tsv says %q", r.File, f.name, f.got, f.want)
		}
	}
}

// storescuProposal is the storescu option that proposes a transfer syntax (storescu proposes
// only uncompressed ones unless told): the corpus is sent one transfer syntax at a time, each
// with its option, so each file goes as it is. JPEG lossless process 14 (…4.57) has no option.
var storescuProposal = map[string]string{
	dicom.ImplicitVRLittleEndian:         "-xi",
	dicom.ExplicitVRLittleEndian:         "-xe",
	dicom.ExplicitVRBigEndian:            "-xb",
	dicom.DeflatedExplicitVRLittleEndian: "-xd",
	"1.2.840.10008.1.2.4.50":             "-xy",
	"1.2.840.10008.1.2.4.51":             "-xx",
	"1.2.840.10008.1.2.4.70":             "-xs",
	"1.2.840.10008.1.2.4.80":             "-xt",
	"1.2.840.10008.1.2.4.81":             "-xu",
	"1.2.840.10008.1.2.4.90":             "-xv",
	"1.2.840.10008.1.2.4.91":             "-xw",
	"1.2.840.10008.1.2.5":                "-xr",
}

// canonical re-encodes a data set so that two encodings of the same elements compare equal:
// dcmtk re-serializes what it sends (sequence and item lengths, group lengths, trailing
// padding), so storescu's bytes are the file's elements, not always the file's bytes. It
// returns nil for a transfer syntax this package does not decode.
func canonical(t *testing.T, b []byte, ts string) []byte {
	t.Helper()
	ds, err := dicom.DecodeDataSet(b, ts, dicom.DecodeOptions{StopAt: dicom.NewTag(0xFFFC, 0xFFFC)})
	if errors.Is(err, dicom.ErrUnsupportedTransferSyntax) {
		return nil
	}
	if err != nil {
		t.Fatalf("decoding: %v", err)
	}
	normalize(ds)
	out, err := dicom.EncodeDataSet(ds, ts)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// normalize undoes what dcmtk changes when it re-encodes a data set: group lengths (dropped),
// padding of text values (trimmed), the VR of encapsulated pixel data (OB).
func normalize(ds *dicom.DataSet) {
	ds.Elements = slices.DeleteFunc(ds.Elements, func(e *dicom.Element) bool { return e.Tag.Element() == 0 })
	for _, e := range ds.Elements {
		if e.VR.IsText() {
			e.Value = bytes.TrimRight(e.Value, " \x00")
		}
		if e.Fragments != nil {
			e.VR = dicom.VROB
		}
		for _, it := range e.Items {
			normalize(it)
		}
	}
}

// firstDifference names the first element where two data sets differ.
func firstDifference(t *testing.T, a, b []byte, ts string) string {
	da, err1 := dicom.DecodeDataSet(a, ts, dicom.DecodeOptions{StopAt: dicom.NewTag(0xFFFC, 0xFFFC)})
	db, err2 := dicom.DecodeDataSet(b, ts, dicom.DecodeOptions{StopAt: dicom.NewTag(0xFFFC, 0xFFFC)})
	if err1 != nil || err2 != nil {
		return fmt.Sprintf("decoding: %v, %v", err1, err2)
	}
	normalize(da)
	normalize(db)
	for i := 0; i < max(len(da.Elements), len(db.Elements)); i++ {
		if i >= len(da.Elements) || i >= len(db.Elements) {
			return fmt.Sprintf("element count %d vs %d", len(da.Elements), len(db.Elements))
		}
		ea, eb := da.Elements[i], db.Elements[i]
		x, _ := dicom.EncodeDataSet(&dicom.DataSet{Elements: []*dicom.Element{ea}}, ts)
		y, _ := dicom.EncodeDataSet(&dicom.DataSet{Elements: []*dicom.Element{eb}}, ts)
		if !bytes.Equal(x, y) {
			return fmt.Sprintf("%s %s (%d bytes, %d fragments) vs %s %s (%d bytes, %d fragments)", ea.Tag, ea.VR, len(ea.Value), len(ea.Fragments), eb.Tag, eb.VR, len(eb.Value), len(eb.Fragments))
		}
	}
	return "none"
}

// TestStorescuCorpus sends every storable file of the shared corpus with dcmtk's storescu, one
// association per transfer syntax, proposing that syntax, and checks each instance the sink
// got: its header facts against INDEX.tsv, its transfer syntax against the file's, and its data
// set against the file's (the same elements; the same bytes where dcmtk did not re-encode).
func TestStorescuCorpus(t *testing.T) {
	t.Parallel()
	storescu := requirePeer(t, "storescu", "dcmtk")
	rows := corpusIndex(t)
	byTS := map[string][]corpusRow{}
	for _, r := range rows {
		if storable(r) && storescuProposal[r.TransferSyntaxUID] != "" {
			byTS[r.TransferSyntaxUID] = append(byTS[r.TransferSyntaxUID], r)
		}
	}
	var stats struct{ files, ignored, identical, sameElements, opaque int }
	for _, ts := range slices.Sorted(maps.Keys(byTS)) {
		t.Run(ts, func(t *testing.T) {
			sink := newFakeSink(t)
			addr, incoming := startStorage(t, sink, StorageConfig{}, &Server{CallingAETitles: []string{"MODALITY"}})
			host, port := hostPort(t, addr)
			args := []string{"-R", "-nh", storescuProposal[ts], "-aec", "FERRY", "-aet", "MODALITY", host, port}
			for _, r := range byTS[ts] {
				args = append(args, r.path)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, storescu, args...).CombinedOutput()
			if err != nil {
				t.Logf("storescu: %v", err)
			}
			got := map[string][]engine.Instance{}
			for _, in := range sink.instances() {
				got[in.SOPInstanceUID] = append(got[in.SOPInstanceUID], in)
			}
			for _, r := range byTS[ts] {
				stats.files++
				if bytes.Contains(out, []byte("file: "+r.path+", ignoring file")) {
					stats.ignored++ // storescu cannot read it (no SOP class or instance in its view)
					continue
				}
				stored := got[r.SOPInstanceUID]
				if len(stored) == 0 {
					t.Errorf("%s: not stored", r.File)
					continue
				}
				in := stored[0]
				got[r.SOPInstanceUID] = stored[1:]
				checkAgainstIndex(t, in, r)
				if in.TransferSyntaxUID != ts {
					t.Errorf("%s: stored in %s, sent in %s", r.File, in.TransferSyntaxUID, ts)
					continue
				}
				src, err := os.ReadFile(r.path)
				if err != nil {
					t.Fatal(err)
				}
				_, body, _, err := dicom.SplitFile(src)
				if err != nil {
					t.Fatalf("%s: %v", r.File, err)
				}
				file, err := os.ReadFile(in.Path)
				if err != nil {
					t.Fatal(err)
				}
				_, sb, _, err := dicom.SplitFile(file)
				if err != nil {
					t.Fatalf("%s: stored file: %v", r.File, err)
				}
				switch want := canonical(t, body, ts); {
				case bytes.Equal(sb, body):
					stats.identical++
				case want == nil:
					stats.opaque++ // big endian or deflated, re-encoded by dcmtk: header facts checked
				case bytes.Equal(canonical(t, sb, ts), want):
					stats.sameElements++
				default:
					t.Errorf("%s: the stored data set's elements differ from the file's: %s", r.File, firstDifference(t, body, sb, ts))
				}
			}
			if t.Failed() {
				t.Logf("storescu output:\n%s", out)
			}
			assertEmptyDir(t, incoming)
		})
	}
	t.Logf("%d corpus files: %d ignored by storescu, %d stored byte for byte, %d with the same elements re-encoded by dcmtk, %d big endian or deflated (header checked)",
		stats.files, stats.ignored, stats.identical, stats.sameElements, stats.opaque)
}

// TestStorescuRefusals: real-peer failures. A data set without its Study Instance UID (made by
// dcmodify) gets A900 (storescu takes the command's UIDs from the data set, so a mismatch
// between them is tested with Ferry's Client, in TestCStoreClient), one over MaxInstanceSize gets A700, a calling AE title not in the
// allow-list gets the association rejected, and the next association is served.
func TestStorescuRefusals(t *testing.T) {
	t.Parallel()
	storescu := requirePeer(t, "storescu", "dcmtk")
	dcmodify := requirePeer(t, "dcmodify", "dcmtk")
	work := t.TempDir()
	src := dicomtest.WriteInstance(t, work, "ct.dcm", dicomtest.Instance(ctImageStorage, "1.2.826.0.1.3680043.8.498.8", 10<<10))
	noStudy := filepath.Join(work, "nostudy.dcm")
	copyFile(t, src, noStudy)
	if out, err := runPeer(t, dcmodify, "-nb", "-e", "(0020,000D)", noStudy); err != nil {
		t.Fatalf("dcmodify: %v\n%s", err, out)
	}
	big := dicomtest.WriteInstance(t, work, "big.dcm", dicomtest.Instance(ctImageStorage, "1.2.826.0.1.3680043.8.498.9", 200<<10))

	sink := newFakeSink(t)
	addr, incoming := startStorage(t, sink, StorageConfig{MaxInstanceSize: 100 << 10},
		&Server{CallingAETitles: []string{"MODALITY"}})
	host, port := hostPort(t, addr)
	for _, tc := range []struct {
		name    string
		aet     string
		file    string
		wantOut string // in storescu's output, lower case
	}{
		{"no study instance UID", "MODALITY", noStudy, "error: datasetdoesnotmatchsopclass"},
		{"over MaxInstanceSize", "MODALITY", big, "refused: outofresources"},
		{"calling AE title not accepted", "INTRUDER", src, "calling ae title not recognized"},
		{"stored after the refusals", "MODALITY", src, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runPeer(t, storescu, "-v", "-R", "-aec", "FERRY", "-aet", tc.aet, host, port, tc.file)
			lower := strings.ToLower(out)
			if tc.wantOut == "" {
				if err != nil || strings.Contains(lower, "error") {
					t.Fatalf("storescu: %v\n%s", err, out)
				}
				return
			}
			if !strings.Contains(lower, tc.wantOut) {
				t.Errorf("storescu output does not say %q (err %v):\n%s", tc.wantOut, err, out)
			}
		})
	}
	if n := len(sink.instances()); n != 1 {
		t.Errorf("sink got %d instances, want 1", n)
	}
	assertEmptyDir(t, incoming)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// syncSink is the benchmark's sink: a rename into place and a directory fsync, as the real one
// does before its commit.
type syncSink struct{ dir string }

func (s syncSink) StoreInstance(_ context.Context, inst *engine.Instance, tmpPath string) (bool, error) {
	final := filepath.Join(s.dir, inst.SOPInstanceUID+".dcm")
	if err := os.Rename(tmpPath, final); err != nil {
		return false, err
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return false, err
	}
	defer d.Close()
	return true, d.Sync()
}

// BenchmarkCStore stores a 512×512 16-bit CT image (about 520 KB) over a loopback association,
// one at a time: receive, write, fsync, header parse, rename and directory fsync.
func BenchmarkCStore(b *testing.B) {
	addr, _ := startStorage(b, syncSink{dir: b.TempDir()}, StorageConfig{}, &Server{Logger: slog.New(slog.DiscardHandler)})
	c := dial(b, addr, ClientConfig{Contexts: []ProposedContext{{SOPClass: ctImageStorage}}})
	// The header is encoded per instance (its UID changes), the pixel data once.
	full := dicomtest.Instance(ctImageStorage, "1.2.826.0.1.3680043.8.498.2.000000000", 512*512*2)
	pixels := mustEncodeDataSet(b, &dicom.DataSet{Elements: []*dicom.Element{full.Get(dicom.TagPixelData)}})
	full.Remove(dicom.TagPixelData)
	b.SetBytes(int64(len(mustEncodeDataSet(b, full)) + len(pixels)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		uid := fmt.Sprintf("1.2.826.0.1.3680043.8.498.2.%09d", n)
		full.Set(dicom.NewString(dicom.TagSOPInstanceUID, dicom.VRUI, uid))
		body := append(mustEncodeDataSet(b, full), pixels...)
		if rsp := cstore(b, c, ctImageStorage, uid, body); rsp.Status != dicom.StatusSuccess {
			b.Fatalf("status %v (%s)", rsp.Status, rsp.ErrorComment)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "instances/s")
}

func mustEncodeDataSet(t testing.TB, ds *dicom.DataSet) []byte {
	t.Helper()
	b, err := dicom.EncodeDataSet(ds, dicom.ExplicitVRLittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
