package dimse

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// Issue 17, item 4: "a ~300-byte data set declaring a 2 GiB element made the process allocate
// it". These tests send such data sets down every path that reads outside DICOM bytes and
// measure what the process allocated (runtime.MemStats.TotalAlloc, which counts every
// allocation, even one freed at once) against a margin far below the lengths declared.

// allocBudget is the margin: the attacks declare 2 GiB and more; the work of reading them,
// network and server included, is a few MiB.
const allocBudget = 64 << 20

// allocated runs fn and returns the bytes allocated meanwhile, by any goroutine.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Element encoders for forged data sets: the header only, the value is whatever follows.
func explicitHeader(bo binary.AppendByteOrder, tag Tag, vr string, vl uint32) []byte {
	b := bo.AppendUint16(nil, tag.Group())
	b = bo.AppendUint16(b, tag.Element())
	b = append(b, vr...)
	switch vr {
	case "OB", "OW", "SQ", "UN", "UT", "UC", "UR", "OD", "OF", "OL":
		b = append(b, 0, 0)
		return bo.AppendUint32(b, vl)
	}
	return bo.AppendUint16(b, uint16(vl))
}

func implicitHeader(tag Tag, vl uint32) []byte {
	b := binary.LittleEndian.AppendUint16(nil, tag.Group())
	b = binary.LittleEndian.AppendUint16(b, tag.Element())
	return binary.LittleEndian.AppendUint32(b, vl)
}

func explicitString(bo binary.AppendByteOrder, tag Tag, vr, v string) []byte {
	if len(v)%2 == 1 {
		v += "\x00"
	}
	return append(explicitHeader(bo, tag, vr, uint32(len(v))), v...)
}

// forgedStart is a valid start of a data set: SOP class and instance UIDs.
func forgedStart(bo binary.AppendByteOrder) []byte {
	b := explicitString(bo, TagSOPClassUID, "UI", ctImageStorage)
	return append(b, explicitString(bo, TagSOPInstanceUID, "UI", "1.2.3.4")...)
}

func deflate(t testing.TB, b []byte, zeros int64) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := flate.NewWriter(&out, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	if _, err := io.Copy(w, io.LimitReader(zeroReader{}, zeros)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return out.Bytes()
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// forgedDataSets are data sets of a few hundred bytes declaring elements of gigabytes, in
// every place a reader meets a length: text, bytes, numbers, sequences and items of defined
// and undefined length, encapsulated fragments, after the header groups, in each transfer
// syntax. The files are Part 10 files as the receivers write them.
func forgedDataSets(t testing.TB) []struct {
	name, ts string
	body     []byte
} {
	le, be := binary.LittleEndian, binary.BigEndian
	filler := bytes.Repeat([]byte{'A'}, 200)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	return []struct {
		name, ts string
		body     []byte
	}{
		{"UT of 2 GiB", ExplicitVRLittleEndian, cat(forgedStart(le), explicitHeader(le, NewTag(0x0008, 0x1030), "UT", 1<<31), filler)},
		{"OB of 0xFFFFFFF0", ExplicitVRLittleEndian, cat(forgedStart(le), explicitHeader(le, NewTag(0x0009, 0x1001), "OB", 0xFFFFFFF0), filler)},
		{"UN of 2 GiB", ExplicitVRLittleEndian, cat(forgedStart(le), explicitHeader(le, NewTag(0x0009, 0x1002), "UN", 1<<31), filler)},
		{"FD of 2 GiB", ExplicitVRLittleEndian, cat(forgedStart(le), explicitHeader(le, NewTag(0x0018, 0x9087), "FD", 0xFFFE), filler)},
		{"DA of undefined length (0xFFFF)", ExplicitVRLittleEndian, cat(forgedStart(le), explicitHeader(le, NewTag(0x0008, 0x0020), "DA", 0xFFFF), filler)},
		{"UT of 2 GiB in an item of a defined-length sequence", ExplicitVRLittleEndian, cat(forgedStart(le),
			explicitHeader(le, NewTag(0x0008, 0x1115), "SQ", 8+12+200), implicitHeader(TagItem, 12+200),
			explicitHeader(le, NewTag(0x0008, 0x1150), "UT", 1<<31), filler)},
		{"UT of 2 GiB in an undefined-length item and sequence", ExplicitVRLittleEndian, cat(forgedStart(le),
			explicitHeader(le, NewTag(0x0008, 0x1115), "SQ", undefinedLength), implicitHeader(TagItem, undefinedLength),
			explicitHeader(le, NewTag(0x0008, 0x1150), "UT", 1<<31), filler)},
		{"item of 2 GiB", ExplicitVRLittleEndian, cat(forgedStart(le),
			explicitHeader(le, NewTag(0x0008, 0x1115), "SQ", undefinedLength), implicitHeader(TagItem, 1<<31), filler)},
		{"fragment of 2 GiB in encapsulated bytes", ExplicitVRLittleEndian, cat(forgedStart(le),
			explicitHeader(le, NewTag(0x0009, 0x1003), "OB", undefinedLength), implicitHeader(TagItem, 1<<31), filler)},
		{"pixel data fragment of 2 GiB", "1.2.840.10008.1.2.4.50", cat(forgedStart(le),
			explicitHeader(le, NewTag(0x7FE0, 0x0010), "OB", undefinedLength), implicitHeader(TagItem, 0), implicitHeader(TagItem, 1<<31), filler)},
		{"Rows of 2 GiB after the header groups", ExplicitVRLittleEndian, cat(forgedStart(le), explicitHeader(le, NewTag(0x0028, 0x0010), "UT", 1<<31), filler)},
		{"implicit VR: Patient's Name of 2 GiB", ImplicitVRLittleEndian, cat(implicitHeader(TagSOPClassUID, 26), []byte(ctImageStorage+"\x00"),
			implicitHeader(NewTag(0x0010, 0x0010), 1<<31), filler)},
		{"implicit VR: Image Position of 0xFFFFFFF0", ImplicitVRLittleEndian, cat(implicitHeader(NewTag(0x0020, 0x0032), 0xFFFFFFF0), filler)},
		{"implicit VR: private element of 2 GiB", ImplicitVRLittleEndian, cat(implicitHeader(NewTag(0x0009, 0x1010), 1<<31), filler)},
		{"big endian: UT of 2 GiB", explicitVRBigEndian, cat(forgedStart(be), explicitHeader(be, NewTag(0x0008, 0x1030), "UT", 1<<31), filler)},
		{"deflated: UT of 2 GiB", deflatedExplicitVRLittleEndian, deflate(t, cat(forgedStart(le), explicitHeader(le, NewTag(0x0008, 0x1030), "UT", 1<<31), filler), 0)},
		{"deflated: 64 MiB of zeros declared and present (a deflate bomb)", deflatedExplicitVRLittleEndian,
			deflate(t, cat(forgedStart(le), explicitHeader(le, NewTag(0x0008, 0x1030), "UT", 64<<20)), 64<<20)},
	}
}

func writePart10(t testing.TB, dir, name, ts string, body []byte) string {
	t.Helper()
	b, err := AppendFileHeader(nil, FileMeta{MediaStorageSOPClassUID: ctImageStorage, MediaStorageSOPInstanceUID: "1.2.3.4", TransferSyntaxUID: ts})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, append(b, body...), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestReadInstanceDeclaredLengths: the header read of a stored instance (C-STORE and STOW-RS
// both use it) refuses every forged length with C000 and allocates none of them.
func TestReadInstanceDeclaredLengths(t *testing.T) {
	// Not parallel: TotalAlloc counts every goroutine's allocations.
	dir := t.TempDir()
	forged := forgedDataSets(t)
	paths := make([]string, len(forged))
	for i, f := range forged {
		paths[i] = writePart10(t, dir, string(rune('a'+i))+".dcm", f.ts, f.body)
	}
	// File meta information declaring 2 GiB (an OB in group 0002).
	meta := append(make([]byte, 128), "DICM"...)
	metaBody := append(explicitHeader(binary.LittleEndian, NewTag(0x0002, 0x0001), "OB", 1<<31), bytes.Repeat([]byte{0}, 200)...)
	meta = append(meta, explicitHeader(binary.LittleEndian, tagFileMetaInformationGroupLength, "UL", 4)...)
	meta = binary.LittleEndian.AppendUint32(meta, uint32(len(metaBody)))
	metaPath := filepath.Join(dir, "meta.dcm")
	if err := os.WriteFile(metaPath, append(meta, metaBody...), 0o600); err != nil {
		t.Fatal(err)
	}
	forged = append(forged, struct {
		name, ts string
		body     []byte
	}{name: "file meta information: OB of 2 GiB"})
	paths = append(paths, metaPath)

	errs := make([]error, len(paths))
	n := allocated(func() {
		for i, p := range paths {
			_, errs[i] = ReadInstance(p)
		}
	})
	for i, err := range errs {
		var ie *InstanceError
		if !errors.As(err, &ie) || ie.Status != StatusCannotUnderstand {
			t.Errorf("%s: %v, want C000", forged[i].name, err)
		}
	}
	if n > allocBudget {
		t.Errorf("reading %d forged instances allocated %d MiB, want < %d MiB", len(paths), n>>20, allocBudget>>20)
	}
	t.Logf("reading %d forged instances allocated %.1f MiB", len(paths), float64(n)/(1<<20))

	// A real instance in each transfer syntax still reads.
	for _, ts := range []string{ExplicitVRLittleEndian, ImplicitVRLittleEndian, explicitVRBigEndian, deflatedExplicitVRLittleEndian} {
		body, err := EncodeDataSet(testInstance(ctImageStorage, "1.2.3.4", 100), ExplicitVRLittleEndian)
		if err != nil {
			t.Fatal(err)
		}
		switch ts {
		case ImplicitVRLittleEndian:
			body, err = EncodeDataSet(testInstance(ctImageStorage, "1.2.3.4", 100), ImplicitVRLittleEndian)
		case explicitVRBigEndian:
			continue // Ferry's encoder writes little endian; TestCStoreTransferSyntaxes covers it
		case deflatedExplicitVRLittleEndian:
			body = deflate(t, body, 0)
		}
		if err != nil {
			t.Fatal(err)
		}
		inst, err := ReadInstance(writePart10(t, dir, "ok.dcm", ts, body))
		if err != nil || inst.SOPInstanceUID != "1.2.3.4" || inst.StudyInstanceUID == "" {
			t.Errorf("%s: %+v %v", ts, inst, err)
		}
	}
}

// TestCStoreDeclaredLengths sends the forged data sets over C-STORE as complete and incomplete
// P-DATA, with the last fragment flag set and not, and PDUs declaring more than they carry,
// while a well-behaved sender keeps storing.
func TestCStoreDeclaredLengths(t *testing.T) {
	// Not parallel: TotalAlloc counts every goroutine's allocations.
	sink := newFakeSink(t)
	addr, incoming := startStorage(t, sink, StorageConfig{}, &Server{ReadTimeout: 300 * time.Millisecond})
	contexts := []ProposedContext{{SOPClass: ctImageStorage, TransferSyntaxes: []string{ExplicitVRLittleEndian}}, {SOPClass: VerificationSOPClass}}
	good := dial(t, addr, ClientConfig{CallingAETitle: "GOOD", Contexts: contexts})
	goodBody, err := EncodeDataSet(testInstance(ctImageStorage, "1.2.3.100", 1000), ExplicitVRLittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	var forged [][]byte
	for _, f := range forgedDataSets(t) {
		if f.ts == ExplicitVRLittleEndian {
			forged = append(forged, f.body)
		}
	}

	// raw opens an association and returns it with the C-STORE command's bytes.
	raw := func(t *testing.T) (*Client, byte, []byte) {
		c := dial(t, addr, ClientConfig{CallingAETitle: "ATTACKER", Contexts: contexts})
		id, _, _ := c.Context(ctImageStorage)
		cmd, err := (&Command{Field: CStoreRQ, MessageID: 1, AffectedSOPClassUID: ctImageStorage, AffectedSOPInstanceUID: "1.2.3.4", HasDataSet: true}).Encode()
		if err != nil {
			t.Fatal(err)
		}
		return c, id, cmd
	}
	var ab *AbortError
	n := allocated(func() {
		for i, body := range forged {
			// Complete P-DATA, last fragment flag set: refused C000.
			t.Run("complete", func(t *testing.T) {
				c, id, cmd := raw(t)
				if err := WritePDU(c.conn, &PDataTF{Items: []PDV{{ContextID: id, Command: true, Last: true, Data: cmd}, {ContextID: id, Last: true, Data: body}}}); err != nil {
					t.Fatal(err)
				}
				msg, err := c.Receive(testCtx(t))
				if err != nil || msg.Command.Status != StatusCannotUnderstand {
					t.Fatalf("forged data set %d: %+v %v, want C000", i, msg, err)
				}
			})
			// Last fragment flag not set: the data set never ends; ReadTimeout aborts.
			t.Run("no last fragment", func(t *testing.T) {
				c, id, cmd := raw(t)
				if err := WritePDU(c.conn, &PDataTF{Items: []PDV{{ContextID: id, Command: true, Last: true, Data: cmd}, {ContextID: id, Last: false, Data: body}}}); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Receive(testCtx(t)); !errors.As(err, &ab) {
					t.Fatalf("forged data set %d without its last fragment: %v, want A-ABORT", i, err)
				}
			})
			// An incomplete PDU: its header declares the largest length, a few bytes follow,
			// then the sender goes silent; ReadTimeout aborts.
			t.Run("incomplete PDU", func(t *testing.T) {
				c, id, cmd := raw(t)
				pdu, err := EncodePDU(&PDataTF{Items: []PDV{{ContextID: id, Command: true, Last: true, Data: cmd}, {ContextID: id, Last: true, Data: body}}})
				if err != nil {
					t.Fatal(err)
				}
				binary.BigEndian.PutUint32(pdu[2:], DefaultMaxPDULength)
				if _, err := c.conn.Write(pdu); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Receive(testCtx(t)); !errors.As(err, &ab) {
					t.Fatalf("incomplete PDU: %v, want A-ABORT", err)
				}
			})
		}
		// A PDU declaring 2 GiB: aborted on its header.
		c, _, _ := raw(t)
		hdr := []byte{byte(TypePDataTF), 0, 0x80, 0, 0, 0}
		if _, err := c.conn.Write(append(hdr, forged[0]...)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Receive(testCtx(t)); !errors.As(err, &ab) || ab.Abort.Reason != AbortReasonInvalidPDUParamValue {
			t.Errorf("PDU declaring 2 GiB: %v, want A-ABORT invalid-PDU-parameter-value", err)
		}
		// The sender that behaves was never held up.
		if rsp := cstore(t, good, ctImageStorage, "1.2.3.100", goodBody); rsp.Status != StatusSuccess {
			t.Errorf("well-behaved C-STORE: %v", rsp.Status)
		}
	})
	if n > allocBudget {
		t.Errorf("the attacks allocated %d MiB, want < %d MiB", n>>20, allocBudget>>20)
	}
	t.Logf("%d forged data sets × 3 ways over C-STORE allocated %.1f MiB", len(forged), float64(n)/(1<<20))
	if got := sink.instances(); len(got) != 1 || got[0].SOPInstanceUID != "1.2.3.100" {
		t.Errorf("stored %+v, want the well-behaved instance alone", got)
	}
	// Every refused or cut-off instance's file is gone (polled: the aborts finish on the
	// server's goroutines; the deadline only guards against hanging).
	deadline := time.Now().Add(time.Minute)
	for entries, _ := os.ReadDir(incoming); len(entries) > 0; entries, _ = os.ReadDir(incoming) {
		if time.Now().After(deadline) {
			t.Fatalf("%d files left in the incoming directory", len(entries))
		}
		time.Sleep(10 * time.Millisecond) // polling a condition
	}
}

// TestCFindDeclaredLengths: worklist identifiers declaring gigabytes (Ferry's own data set
// decoder reads them) are refused C000 without allocating what they declare.
func TestCFindDeclaredLengths(t *testing.T) {
	// Not parallel: TotalAlloc counts every goroutine's allocations.
	addr := startServer(t, &Server{Services: []Service{WorklistService(&memoryWorklist{items: testWorklist()}, nil)}})
	c := dial(t, addr, ClientConfig{CallingAETitle: "MODALITY", Contexts: []ProposedContext{{SOPClass: ModalityWorklistFindSOPClass, TransferSyntaxes: []string{ExplicitVRLittleEndian}}}})
	id, _, _ := c.Context(ModalityWorklistFindSOPClass)
	le := binary.LittleEndian
	filler := bytes.Repeat([]byte{'A'}, 200)
	identifiers := [][]byte{
		append(explicitHeader(le, NewTag(0x0010, 0x0010), "UT", 1<<31), filler...),
		append(explicitHeader(le, TagScheduledProcedureStepSequence, "SQ", undefinedLength),
			append(implicitHeader(TagItem, undefinedLength), append(explicitHeader(le, TagModality, "UN", 0xFFFFFFF0), filler...)...)...),
		append(explicitHeader(le, TagScheduledProcedureStepSequence, "SQ", 1<<31), filler...),
	}
	statuses := make([]Status, len(identifiers))
	n := allocated(func() {
		for i, ident := range identifiers {
			cmd := &Command{Field: CFindRQ, MessageID: c.NewMessageID(), AffectedSOPClassUID: ModalityWorklistFindSOPClass}
			if err := c.Send(testCtx(t), id, cmd, bytes.NewReader(ident)); err != nil {
				t.Fatal(err)
			}
			msg, err := c.Receive(testCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			statuses[i] = msg.Command.Status
		}
	})
	for i, st := range statuses {
		if st != StatusCannotUnderstand {
			t.Errorf("identifier %d: status %v, want C000", i, st)
		}
	}
	if n > allocBudget {
		t.Errorf("the queries allocated %d MiB, want < %d MiB", n>>20, allocBudget>>20)
	}
	t.Logf("%d forged identifiers allocated %.1f MiB", len(identifiers), float64(n)/(1<<20))
}
