package dimse

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// FuzzReadPDU feeds arbitrary bytes to ReadPDU, the first code to touch bytes from a peer. It
// must never panic; what it accepts must encode, read back, and encode to the same bytes.
func FuzzReadPDU(f *testing.F) {
	for _, p := range samplePDUs() {
		b, err := EncodePDU(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add(mustEncodePDU(f, verificationRQ()))
	f.Add(mustEncodePDU(f, &PDataTF{Items: []PDV{{ContextID: 1, Command: true, Last: true, Data: mustEncode(f, &Command{Field: CEchoRQ, MessageID: 1, AffectedSOPClassUID: VerificationSOPClass})}}}))
	f.Add([]byte{0x09, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ReadPDU(bytes.NewReader(data), 1<<16)
		if err != nil {
			var pduErr *PDUError
			var tooLarge *PDUTooLargeError
			if !errors.As(err, &pduErr) && !errors.As(err, &tooLarge) && err != io.EOF && err != io.ErrUnexpectedEOF {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			return
		}
		if rq, ok := p.(*AssociateRQ); ok {
			_ = rq.PresentationContexts[0].TransferSyntaxes[0] // the decoder guarantees one of each
		}
		e1, err := EncodePDU(p)
		if err != nil {
			if strings.Contains(err.Error(), "exceed 65535") {
				return // the maximum length sub-item, always written, can push a full item over
			}
			t.Fatalf("encoding an accepted PDU: %v", err)
		}
		p2, err := ReadPDU(bytes.NewReader(e1), 1<<20)
		if err != nil {
			t.Fatalf("reading back an encoded PDU: %v", err)
		}
		e2, err := EncodePDU(p2)
		if err != nil || !bytes.Equal(e1, e2) {
			t.Fatalf("encoding is not stable (%v):\n%x\n%x", err, e1, e2)
		}
	})
}
