package dimse

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/dicom/dicomtest"
	"github.com/ferryhealth/ferry/internal/workcount"
)

// Issue 17, item 4: "a ~300-byte data set declaring a 2 GiB element made the process allocate
// it". These tests send such data sets down every path that reads outside DICOM bytes and
// measure what the process allocated (runtime.MemStats.TotalAlloc, which counts every
// allocation, even one freed at once) against a margin far below the lengths declared.

// allocBudget is the margin: the attacks declare 2 GiB and more; the work of reading them,
// network and server included, is a few MiB.
const allocBudget = 64 << 20

// TestCStoreDeclaredLengths sends the forged data sets over C-STORE as complete and incomplete
// P-DATA, with the last fragment flag set and not, and PDUs declaring more than they carry,
// while a well-behaved sender keeps storing.
func TestCStoreDeclaredLengths(t *testing.T) {
	// Not parallel: TotalAlloc counts every goroutine's allocations.
	sink := newFakeSink(t)
	addr, incoming := startStorage(t, sink, StorageConfig{}, &Server{ReadTimeout: 300 * time.Millisecond})
	contexts := []ProposedContext{{SOPClass: ctImageStorage, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}}, {SOPClass: VerificationSOPClass}}
	good := dial(t, addr, ClientConfig{CallingAETitle: "GOOD", Contexts: contexts})
	goodBody, err := dicom.EncodeDataSet(dicomtest.Instance(ctImageStorage, "1.2.3.100", 1000), dicom.ExplicitVRLittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	var forged [][]byte
	for _, f := range dicomtest.Forged(t) {
		if f.TransferSyntax == dicom.ExplicitVRLittleEndian {
			forged = append(forged, f.Body)
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
	n := workcount.Allocated(func() {
		for i, body := range forged {
			// Complete P-DATA, last fragment flag set: refused C000.
			t.Run("complete", func(t *testing.T) {
				c, id, cmd := raw(t)
				if err := WritePDU(c.conn, &PDataTF{Items: []PDV{{ContextID: id, Command: true, Last: true, Data: cmd}, {ContextID: id, Last: true, Data: body}}}); err != nil {
					t.Fatal(err)
				}
				msg, err := c.Receive(testCtx(t))
				if err != nil || msg.Command.Status != dicom.StatusCannotUnderstand {
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
		if rsp := cstore(t, good, ctImageStorage, "1.2.3.100", goodBody); rsp.Status != dicom.StatusSuccess {
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
	c := dial(t, addr, ClientConfig{CallingAETitle: "MODALITY", Contexts: []ProposedContext{{SOPClass: ModalityWorklistFindSOPClass, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}}}})
	id, _, _ := c.Context(ModalityWorklistFindSOPClass)
	le := binary.LittleEndian
	filler := bytes.Repeat([]byte{'A'}, 200)
	identifiers := [][]byte{
		append(dicomtest.ExplicitHeader(le, dicom.NewTag(0x0010, 0x0010), "UT", 1<<31), filler...),
		append(dicomtest.ExplicitHeader(le, dicom.TagScheduledProcedureStepSequence, "SQ", uint32(dicom.UndefinedLength)),
			append(dicomtest.ImplicitHeader(dicom.TagItem, uint32(dicom.UndefinedLength)), append(dicomtest.ExplicitHeader(le, dicom.TagModality, "UN", 0xFFFFFFF0), filler...)...)...),
		append(dicomtest.ExplicitHeader(le, dicom.TagScheduledProcedureStepSequence, "SQ", 1<<31), filler...),
	}
	statuses := make([]dicom.Status, len(identifiers))
	n := workcount.Allocated(func() {
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
		if st != dicom.StatusCannotUnderstand {
			t.Errorf("identifier %d: status %v, want C000", i, st)
		}
	}
	if n > allocBudget {
		t.Errorf("the queries allocated %d MiB, want < %d MiB", n>>20, allocBudget>>20)
	}
	t.Logf("%d forged identifiers allocated %.1f MiB", len(identifiers), float64(n)/(1<<20))
}
