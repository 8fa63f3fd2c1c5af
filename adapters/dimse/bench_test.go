package dimse

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// BenchmarkDecodeCommand decodes a C-STORE-RQ command set, the command Ferry reads most.
func BenchmarkDecodeCommand(b *testing.B) {
	cmd, err := (&Command{Field: CStoreRQ, MessageID: 42, AffectedSOPClassUID: ctImageStorage,
		AffectedSOPInstanceUID: "1.2.826.0.1.3680043.8.498.12345678901234567890123456789012", HasDataSet: true}).Encode()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(cmd)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeCommand(cmd); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeIdentifier decodes a worklist-like C-FIND identifier in explicit VR.
func BenchmarkDecodeIdentifier(b *testing.B) {
	id, err := EncodeDataSet(sampleDataSet(), ExplicitVRLittleEndian)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(id)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeDataSet(id, ExplicitVRLittleEndian, DecodeOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEchoRoundTrip measures one C-ECHO-RQ/RSP exchange on an open association over
// loopback TCP: PDU and command encoding and decoding, dispatch to the handler, both ways.
func BenchmarkEchoRoundTrip(b *testing.B) {
	addr := startServer(b, &Server{Logger: slog.New(slog.DiscardHandler)})
	c := dial(b, addr, ClientConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Bytes on the wire per exchange: the request and response PDUs.
	rq := mustEncodePDU(b, &PDataTF{Items: []PDV{{ContextID: 1, Command: true, Last: true, Data: echoRQBytes(b, 1)}}})
	rsp := mustEncodePDU(b, &PDataTF{Items: []PDV{{ContextID: 1, Command: true, Last: true,
		Data: mustEncode(b, &Command{Field: CEchoRSP, MessageIDBeingRespondedTo: 1, AffectedSOPClassUID: VerificationSOPClass})}}})
	b.SetBytes(int64(len(rq) + len(rsp)))
	b.ReportAllocs()
	for b.Loop() {
		if st, err := c.Echo(ctx); err != nil || st != StatusSuccess {
			b.Fatalf("echo: %v %v", st, err)
		}
	}
	b.StopTimer()
	if err := c.Release(ctx); err != nil {
		b.Fatal(err)
	}
}
