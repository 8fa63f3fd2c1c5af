package dimse

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/internal/testwait"
)

// modalityWorklistFind is the Modality Worklist Information Model - FIND SOP class (PS3.4 K.6),
// used here to exercise pending responses and cancel.
const modalityWorklistFind = "1.2.840.10008.5.1.4.31"

// ctImageStorage is the CT Image Storage SOP class, used here to exercise data set streaming.
const ctImageStorage = "1.2.840.10008.5.1.4.1.1.2"

// countingObserver records what the Server reports.
type countingObserver struct {
	mu                       sync.Mutex
	opened, closed, rejected int
	assoc                    map[string]int
	ops                      map[string]int
	aborts                   map[string]int
}

func (o *countingObserver) ConnOpened()   { o.mu.Lock(); o.opened++; o.mu.Unlock(); changes.Notify() }
func (o *countingObserver) ConnClosed()   { o.mu.Lock(); o.closed++; o.mu.Unlock(); changes.Notify() }
func (o *countingObserver) ConnRejected() { o.mu.Lock(); o.rejected++; o.mu.Unlock(); changes.Notify() }
func (o *countingObserver) Association(result string) {
	defer changes.Notify() // after the unlock: deferred calls run last in, first out
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.assoc == nil {
		o.assoc = map[string]int{}
	}
	o.assoc[result]++
}
func (o *countingObserver) Operation(c CommandField, st dicom.Status, _ time.Duration) {
	defer changes.Notify() // after the unlock: deferred calls run last in, first out
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ops == nil {
		o.ops = map[string]int{}
	}
	o.ops[fmt.Sprintf("%s %04X", c, uint16(st))]++
}
func (o *countingObserver) Aborted(kind string) {
	defer changes.Notify() // after the unlock: deferred calls run last in, first out
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.aborts == nil {
		o.aborts = map[string]int{}
	}
	o.aborts[kind]++
}
func (o *countingObserver) count(m *map[string]int, k string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return (*m)[k]
}

var _ Observer = (*countingObserver)(nil)

// testLogger writes the server's log to the test log, so a failure shows what the server saw.
// Lines logged once the test is over (an association goroutine finishing after Shutdown has
// returned) are dropped: testing forbids logging to a finished test.
func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	// Registered before the server's own cleanup, so it runs after the server has shut down.
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// startServer serves s on a loopback port until the test ends, and returns the address.
func startServer(t testing.TB, s *Server) string {
	t.Helper()
	if s.Logger == nil {
		s.Logger = testLogger(t)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() {
		if s.TLSConfig != nil {
			served <- s.ServeTLS(ln)
			return
		}
		served <- s.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ln.Addr().String()
}

func dial(t testing.TB, addr string, cfg ClientConfig) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Dial(ctx, addr, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestEchoAndRelease(t *testing.T) {
	t.Parallel()
	obs := &countingObserver{}
	addr := startServer(t, &Server{Metrics: obs})
	c := dial(t, addr, ClientConfig{CallingAETitle: "TESTSCU"})
	ac := c.AssociateAC()
	if ac.UserInfo.MaxPDULength != DefaultMaxPDULength {
		t.Errorf("AC max PDU length = %d, want %d", ac.UserInfo.MaxPDULength, DefaultMaxPDULength)
	}
	if ac.UserInfo.ImplementationClassUID != dicom.ImplementationClassUID || ac.UserInfo.ImplementationVersionName != dicom.ImplementationVersionName {
		t.Errorf("AC implementation = %q %q", ac.UserInfo.ImplementationClassUID, ac.UserInfo.ImplementationVersionName)
	}
	if _, ts, ok := c.Context(VerificationSOPClass); !ok || ts != dicom.ExplicitVRLittleEndian {
		t.Errorf("Verification context: ts %q ok %v, want explicit VR little endian", ts, ok)
	}
	for i := range 3 {
		st, err := c.Echo(testCtx(t))
		if err != nil || st != dicom.StatusSuccess {
			t.Fatalf("echo %d: status %v, err %v", i, st, err)
		}
	}
	if err := c.Release(testCtx(t)); err != nil {
		t.Fatalf("Release: %v", err)
	}
	changes.For(t, "the condition", func() bool { return obs.count(&obs.ops, "C-ECHO-RQ 0000") == 3 })
	if n := obs.count(&obs.assoc, AssocAccepted); n != 1 {
		t.Errorf("accepted associations = %d, want 1", n)
	}
}

// changes wakes the tests waiting on it whenever a test double records something (the
// observer counts a connection, an association, an operation or an abort; a log line is
// written): tests wait on these events, not on a clock.
var changes testwait.Changes

func TestAssociationPolicy(t *testing.T) {
	t.Parallel()
	obs := &countingObserver{}
	addr := startServer(t, &Server{AETitle: "FERRY", CallingAETitles: []string{"MODALITY1", "PACS"}, Metrics: obs})
	tests := []struct {
		name            string
		called, calling string
		want            *AssociateRJ // nil: accepted
	}{
		{"accepted", "FERRY", "PACS", nil},
		{"unknown called AE title", "WRONG", "PACS", &AssociateRJ{RejectPermanent, SourceServiceUser, ReasonCalledAETitleNotRecognized}},
		{"called AE title is case sensitive", "ferry", "PACS", &AssociateRJ{RejectPermanent, SourceServiceUser, ReasonCalledAETitleNotRecognized}},
		{"calling AE title not allowed", "FERRY", "INTRUDER", &AssociateRJ{RejectPermanent, SourceServiceUser, ReasonCallingAETitleNotRecognized}},
		{"accepted after rejections", "FERRY", "MODALITY1", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Dial(testCtx(t), addr, ClientConfig{CalledAETitle: tc.called, CallingAETitle: tc.calling})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				if st, err := c.Echo(testCtx(t)); err != nil || st != dicom.StatusSuccess {
					t.Errorf("echo: %v %v", st, err)
				}
				if err := c.Release(testCtx(t)); err != nil {
					t.Errorf("Release: %v", err)
				}
				return
			}
			var rj *AssociateRejectError
			if !errors.As(err, &rj) {
				t.Fatalf("Dial error = %v, want an A-ASSOCIATE-RJ", err)
			}
			if rj.RJ != *tc.want {
				t.Errorf("RJ = %+v (%s), want %+v", rj.RJ, rj.RJ.Description(), *tc.want)
			}
		})
	}
	if n := obs.count(&obs.assoc, AssocRejectedCalledAETitle); n != 2 {
		t.Errorf("called-AE rejections counted = %d, want 2", n)
	}
}

// rawAssociate opens a connection and sends rq, returning the connection and the answer.
func rawAssociate(t testing.TB, addr string, rq *AssociateRQ) (net.Conn, PDU) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	if err := WritePDU(conn, rq); err != nil {
		t.Fatal(err)
	}
	p, err := ReadPDU(conn, 1<<20)
	if err != nil {
		t.Fatalf("reading the answer to A-ASSOCIATE-RQ: %v", err)
	}
	return conn, p
}

func verificationRQ(pcs ...PresentationContextRQ) *AssociateRQ {
	if len(pcs) == 0 {
		pcs = []PresentationContextRQ{{ID: 1, AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{dicom.ImplicitVRLittleEndian}}}
	}
	return &AssociateRQ{ProtocolVersion: 1, CalledAETitle: "FERRY", CallingAETitle: "RAW",
		ApplicationContext: ApplicationContextName, PresentationContexts: pcs,
		UserInfo: UserInfo{MaxPDULength: 16384, ImplementationClassUID: "1.2.3"}}
}

func TestPresentationContextNegotiation(t *testing.T) {
	t.Parallel()
	const jpegBaseline = "1.2.840.10008.1.2.4.50"
	noop := HandlerFunc(func(context.Context, *Request, ResponseWriter) {})
	addr := startServer(t, &Server{Services: []Service{
		{SOPClass: ctImageStorage, TransferSyntaxes: []string{jpegBaseline, dicom.ExplicitVRLittleEndian}, Handler: noop},
	}})
	rq := verificationRQ(
		PresentationContextRQ{ID: 1, AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{dicom.ImplicitVRLittleEndian, dicom.ExplicitVRLittleEndian}},
		PresentationContextRQ{ID: 3, AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{dicom.ImplicitVRLittleEndian}},
		PresentationContextRQ{ID: 5, AbstractSyntax: "1.2.840.10008.5.1.4.1.2.2.1", TransferSyntaxes: []string{dicom.ImplicitVRLittleEndian}},
		PresentationContextRQ{ID: 7, AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{"1.2.840.10008.1.2.2"}},
		PresentationContextRQ{ID: 9, AbstractSyntax: ctImageStorage, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian, jpegBaseline}},
		PresentationContextRQ{ID: 10, AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{dicom.ImplicitVRLittleEndian}},
	)
	rq.UserInfo.AsyncOps = &AsyncOpsWindow{Invoked: 5, Performed: 5}
	_, p := rawAssociate(t, addr, rq)
	ac, ok := p.(*AssociateAC)
	if !ok {
		t.Fatalf("answer is %s, want A-ASSOCIATE-AC", p.PDUType())
	}
	want := []PresentationContextAC{
		{1, PresentationAccepted, dicom.ExplicitVRLittleEndian}, // the server's preference wins
		{3, PresentationAccepted, dicom.ImplicitVRLittleEndian},
		{5, PresentationAbstractSyntaxUnsupported, dicom.ImplicitVRLittleEndian},
		{7, PresentationTransferSyntaxUnsupported, "1.2.840.10008.1.2.2"},
		{9, PresentationAccepted, jpegBaseline}, // the service's declaration
		{10, PresentationNoReason, dicom.ImplicitVRLittleEndian},
	}
	if len(ac.PresentationContexts) != len(want) {
		t.Fatalf("got %d contexts, want %d", len(ac.PresentationContexts), len(want))
	}
	for i, w := range want {
		if got := ac.PresentationContexts[i]; got != w {
			t.Errorf("context %d = %+v, want %+v", w.ID, got, w)
		}
	}
	if ac.UserInfo.AsyncOps == nil || *ac.UserInfo.AsyncOps != (AsyncOpsWindow{1, 1}) {
		t.Errorf("async ops window = %+v, want 1/1", ac.UserInfo.AsyncOps)
	}
	if ac.CalledAETitle != "FERRY" || ac.CallingAETitle != "RAW" {
		t.Errorf("AC AE titles = %q %q, want the request's", ac.CalledAETitle, ac.CallingAETitle)
	}
}

func TestRejectsProtocolVersionAndApplicationContext(t *testing.T) {
	t.Parallel()
	addr := startServer(t, &Server{})
	rq := verificationRQ()
	rq.ProtocolVersion = 2
	_, p := rawAssociate(t, addr, rq)
	if rj, ok := p.(*AssociateRJ); !ok || *rj != (AssociateRJ{RejectPermanent, SourceServiceProviderACSE, ReasonProtocolVersionUnsupported}) {
		t.Errorf("protocol version 2: got %#v", p)
	}
	rq = verificationRQ()
	rq.ApplicationContext = "1.2.3.4"
	_, p = rawAssociate(t, addr, rq)
	if rj, ok := p.(*AssociateRJ); !ok || *rj != (AssociateRJ{RejectPermanent, SourceServiceUser, ReasonApplicationContextUnsupported}) {
		t.Errorf("application context: got %#v", p)
	}
}

// echoRQBytes is a C-ECHO-RQ command set.
func echoRQBytes(t testing.TB, msgID uint16) []byte {
	b, err := (&Command{Field: CEchoRQ, MessageID: msgID, AffectedSOPClassUID: VerificationSOPClass}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// expectAbort reads from conn and wants an A-ABORT with the reason, then the connection closed.
func expectAbort(t testing.TB, conn net.Conn, reason AbortReason) {
	t.Helper()
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	for {
		p, err := ReadPDU(conn, 1<<20)
		if err != nil {
			t.Fatalf("want A-ABORT, got error %v", err)
		}
		if ab, ok := p.(*Abort); ok {
			if ab.Source != AbortServiceProvider || ab.Reason != reason {
				t.Errorf("A-ABORT source %d reason %s, want source 2 reason %s", ab.Source, ab.Reason, reason)
			}
			break
		}
		if _, ok := p.(*PDataTF); !ok {
			t.Fatalf("want A-ABORT, got %s", p.PDUType())
		}
	}
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Error("connection still open after A-ABORT")
	}
}

func TestProtocolViolationsAbort(t *testing.T) {
	t.Parallel()
	obs := &countingObserver{}
	addr := startServer(t, &Server{MaxPDULength: MinMaxPDULength, Metrics: obs})
	pdata := func(v ...PDV) []byte {
		b, err := EncodePDU(&PDataTF{Items: v})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	echo := echoRQBytes(t, 1)
	tests := []struct {
		name   string
		send   []byte
		reason AbortReason
	}{
		{"data set fragment before any command", pdata(PDV{ContextID: 1, Last: true, Data: []byte{1, 2}}), AbortReasonUnexpectedPDUParam},
		{"PDV on a context not accepted", pdata(PDV{ContextID: 3, Command: true, Last: true, Data: echo}), AbortReasonInvalidPDUParamValue},
		{"command set that does not decode", pdata(PDV{ContextID: 1, Command: true, Last: true, Data: []byte{0, 0, 0, 0, 4}}), AbortReasonInvalidPDUParamValue},
		{"command fragment inside a data set", pdata(
			PDV{ContextID: 1, Command: true, Last: true, Data: mustEncode(t, &Command{Field: CEchoRQ, MessageID: 1, HasDataSet: true})},
			PDV{ContextID: 1, Command: true, Last: true, Data: echo}), AbortReasonUnexpectedPDUParam},
		{"unknown PDU type", []byte{0x09, 0, 0, 0, 0, 4, 0, 0, 0, 0}, AbortReasonUnrecognizedPDU},
		{"A-ASSOCIATE-RQ during data transfer", mustEncodePDU(t, verificationRQ()), AbortReasonUnexpectedPDU},
		{"P-DATA-TF over the maximum PDU length", pdata(PDV{ContextID: 1, Command: true, Last: true, Data: make([]byte, MinMaxPDULength)}), AbortReasonInvalidPDUParamValue},
		{"PDV length past the PDU", []byte{0x04, 0, 0, 0, 0, 6, 0, 0, 0, 9, 1, 3}, AbortReasonInvalidPDUParamValue},
		{"response sent to the SCP", pdata(PDV{ContextID: 1, Command: true, Last: true, Data: mustEncode(t, &Command{Field: CEchoRSP, MessageIDBeingRespondedTo: 1})}), AbortReasonUnexpectedPDUParam},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, p := rawAssociate(t, addr, verificationRQ())
			if _, ok := p.(*AssociateAC); !ok {
				t.Fatalf("not associated: %s", p.PDUType())
			}
			if _, err := conn.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			expectAbort(t, conn, tc.reason)
		})
	}
	// Before association: anything but A-ASSOCIATE-RQ is unexpected.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(pdata(PDV{ContextID: 1, Command: true, Last: true, Data: echo})); err != nil {
		t.Fatal(err)
	}
	expectAbort(t, conn, AbortReasonUnexpectedPDU)

	// And the server still serves everyone else.
	c := dial(t, addr, ClientConfig{})
	if st, err := c.Echo(testCtx(t)); err != nil || st != dicom.StatusSuccess {
		t.Fatalf("echo after the violations: %v %v", st, err)
	}
	// The server counts an abort as its connection goroutine ends, after the peer has seen
	// the connection close: wait for the count rather than read it at once.
	changes.For(t, "one too-large abort counted", func() bool { return obs.count(&obs.aborts, AbortTooLarge) == 1 })
}

func mustEncode(t testing.TB, c *Command) []byte {
	t.Helper()
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustEncodePDU(t testing.TB, p PDU) []byte {
	t.Helper()
	b, err := EncodePDU(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFragmentedCommandFromPeer sends a C-ECHO-RQ split into one-byte fragments, as a peer with
// a tiny PDU size might: the server reassembles it.
func TestFragmentedCommandFromPeer(t *testing.T) {
	t.Parallel()
	addr := startServer(t, &Server{})
	conn, p := rawAssociate(t, addr, verificationRQ())
	if _, ok := p.(*AssociateAC); !ok {
		t.Fatalf("not associated: %s", p.PDUType())
	}
	echo := echoRQBytes(t, 7)
	for i := range echo {
		if err := WritePDU(conn, &PDataTF{Items: []PDV{{ContextID: 1, Command: true, Last: i == len(echo)-1, Data: echo[i : i+1]}}}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := ReadPDU(conn, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	pd, ok := p.(*PDataTF)
	if !ok || len(pd.Items) != 1 || !pd.Items[0].Last || !pd.Items[0].Command {
		t.Fatalf("answer %#v, want one whole command PDV", p)
	}
	rsp, err := DecodeCommand(pd.Items[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	if rsp.Field != CEchoRSP || rsp.MessageIDBeingRespondedTo != 7 || rsp.Status != dicom.StatusSuccess || rsp.AffectedSOPClassUID != VerificationSOPClass {
		t.Errorf("response %+v", rsp)
	}
}

// findHandler answers a C-FIND with a pending response per element of its identifier, then
// keeps sending pending responses until cancelled, if forever is set.
type findHandler struct {
	forever bool
	sent    chan int
}

func (h *findHandler) ServeDIMSE(ctx context.Context, req *Request, w ResponseWriter) {
	id, err := req.ReadDataSet(1 << 20)
	if err != nil {
		_ = w.Respond(Response{Status: dicom.StatusCannotUnderstand, ErrorComment: "identifier does not decode"})
		return
	}
	for i := 0; ; i++ {
		if i >= 3 && !h.forever {
			_ = w.Respond(Response{Status: dicom.StatusSuccess})
			return
		}
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), ErrCancelRequested) {
				_ = w.Respond(Response{Status: dicom.StatusCancel})
			}
			return
		default:
		}
		match := &dicom.DataSet{}
		match.Set(dicom.NewString(dicom.TagPatientID, dicom.VRLO, fmt.Sprintf("PID%d", i)))
		match.Set(dicom.NewString(dicom.TagAccessionNumber, dicom.VRSH, id.String(dicom.TagAccessionNumber)))
		if err := w.Respond(Response{Status: dicom.StatusPending, DataSet: match}); err != nil {
			return
		}
		if h.sent != nil {
			select { // never blocks: the test reads only the first few
			case h.sent <- i:
			default:
			}
		}
	}
}

func worklistQueryBytes(t testing.TB, ts string) []byte {
	q := &dicom.DataSet{}
	q.Set(dicom.NewString(dicom.TagAccessionNumber, dicom.VRSH, "ACC123"))
	q.Set(dicom.NewString(dicom.TagPatientID, dicom.VRLO, ""))
	sps := &dicom.DataSet{}
	sps.Set(dicom.NewString(dicom.NewTag(0x0040, 0x0001), dicom.VRAE, "CT01"))
	q.Set(dicom.NewSequence(dicom.TagScheduledProcedureStepSequence, sps))
	b, err := dicom.EncodeDataSet(q, ts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFindPendingResponses(t *testing.T) {
	t.Parallel()
	addr := startServer(t, &Server{Services: []Service{{SOPClass: modalityWorklistFind, Handler: &findHandler{}}}})
	for _, ts := range []string{dicom.ImplicitVRLittleEndian, dicom.ExplicitVRLittleEndian} {
		t.Run(ts, func(t *testing.T) {
			// A small maximum PDU length makes the server fragment every response.
			c := dial(t, addr, ClientConfig{MaxPDULength: 20, Contexts: []ProposedContext{{SOPClass: modalityWorklistFind, TransferSyntaxes: []string{ts}}}})
			id, gotTS, ok := c.Context(modalityWorklistFind)
			if !ok || gotTS != ts {
				t.Fatalf("context: %v %q", ok, gotTS)
			}
			msgID := c.NewMessageID()
			cmd := &Command{Field: CFindRQ, MessageID: msgID, AffectedSOPClassUID: modalityWorklistFind}
			if err := c.Send(testCtx(t), id, cmd, bytes.NewReader(worklistQueryBytes(t, ts))); err != nil {
				t.Fatal(err)
			}
			var pids []string
			for {
				msg, err := c.Receive(testCtx(t))
				if err != nil {
					t.Fatal(err)
				}
				if msg.Command.Field != CFindRSP || msg.Command.MessageIDBeingRespondedTo != msgID {
					t.Fatalf("got %s for %d", msg.Command.Field, msg.Command.MessageIDBeingRespondedTo)
				}
				if !msg.Command.Status.IsPending() {
					if msg.Command.Status != dicom.StatusSuccess || msg.Data != nil {
						t.Errorf("final response: status %v, data %d bytes", msg.Command.Status, len(msg.Data))
					}
					break
				}
				ds, err := dicom.DecodeDataSet(msg.Data, ts, dicom.DecodeOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if acc := ds.String(dicom.TagAccessionNumber); acc != "ACC123" {
					t.Errorf("accession %q", acc)
				}
				pids = append(pids, ds.String(dicom.TagPatientID))
			}
			if strings.Join(pids, ",") != "PID0,PID1,PID2" {
				t.Errorf("matches %v", pids)
			}
			if err := c.Release(testCtx(t)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestFindCancel(t *testing.T) {
	t.Parallel()
	h := &findHandler{forever: true, sent: make(chan int, 1000)}
	addr := startServer(t, &Server{Services: []Service{{SOPClass: modalityWorklistFind, Handler: h}}})
	c := dial(t, addr, ClientConfig{Contexts: []ProposedContext{{SOPClass: modalityWorklistFind}, {SOPClass: VerificationSOPClass}}})
	id, ts, _ := c.Context(modalityWorklistFind)
	msgID := c.NewMessageID()
	if err := c.Send(testCtx(t), id, &Command{Field: CFindRQ, MessageID: msgID, AffectedSOPClassUID: modalityWorklistFind}, bytes.NewReader(worklistQueryBytes(t, ts))); err != nil {
		t.Fatal(err)
	}
	<-h.sent
	<-h.sent
	if err := c.Send(testCtx(t), id, &Command{Field: CCancelRQ, MessageIDBeingRespondedTo: msgID}, nil); err != nil {
		t.Fatal(err)
	}
	pending := 0
	for {
		msg, err := c.Receive(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if msg.Command.Status.IsPending() {
			pending++
			continue
		}
		if msg.Command.Status != dicom.StatusCancel {
			t.Errorf("final status %v, want Cancel", msg.Command.Status)
		}
		break
	}
	if pending < 2 {
		t.Errorf("%d pending responses before the cancel, want at least 2", pending)
	}
	// The association goes on.
	if st, err := c.Echo(testCtx(t)); err != nil || st != dicom.StatusSuccess {
		t.Fatalf("echo after cancel: %v %v", st, err)
	}
}

// storeHandler writes each C-STORE data set to a Part 10 file, streaming.
type storeHandler struct {
	dir     string
	readMax int64 // stop reading after this many bytes and fail (0: read all)
}

func (h *storeHandler) ServeDIMSE(_ context.Context, req *Request, w ResponseWriter) {
	if req.Command.Field != CStoreRQ {
		_ = w.Respond(Response{Status: dicom.StatusUnrecognizedOperation})
		return
	}
	if h.readMax > 0 {
		_, _ = io.CopyN(io.Discard, req.Data, h.readMax)
		_ = w.Respond(Response{Status: dicom.StatusOutOfResources, ErrorComment: "test: refusing"})
		return
	}
	f, err := os.Create(filepath.Join(h.dir, req.Command.AffectedSOPInstanceUID+".dcm"))
	if err != nil {
		_ = w.Respond(Response{Status: dicom.StatusOutOfResources})
		return
	}
	defer f.Close()
	hdr, err := dicom.AppendFileHeader(nil, dicom.FileMeta{MediaStorageSOPClassUID: req.SOPClass,
		MediaStorageSOPInstanceUID: req.Command.AffectedSOPInstanceUID, TransferSyntaxUID: req.TransferSyntax,
		SourceAETitle: req.Association.CallingAETitle})
	if err == nil {
		_, err = f.Write(hdr)
	}
	if err == nil {
		_, err = io.Copy(f, req.Data)
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		_ = w.Respond(Response{Status: dicom.StatusOutOfResources})
		return
	}
	_ = w.Respond(Response{Status: dicom.StatusSuccess})
}

func TestStoreStreamsDataSet(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := startServer(t, &Server{MaxPDULength: 16384, Services: []Service{
		{SOPClass: ctImageStorage, Handler: &storeHandler{dir: dir}},
		{SOPClass: "1.2.840.10008.5.1.4.1.1.7", Handler: &storeHandler{readMax: 1000}},
	}})
	c := dial(t, addr, ClientConfig{Contexts: []ProposedContext{{SOPClass: ctImageStorage}, {SOPClass: "1.2.840.10008.5.1.4.1.1.7"}, {SOPClass: VerificationSOPClass}}})

	// A 3 MiB data set: about 190 fragments of 16 KiB.
	ds := &dicom.DataSet{}
	ds.Set(dicom.NewString(dicom.TagSOPClassUID, dicom.VRUI, ctImageStorage))
	ds.Set(dicom.NewString(dicom.TagSOPInstanceUID, dicom.VRUI, "1.2.3.4.5"))
	pixels := make([]byte, 3<<20)
	for i := range pixels {
		pixels[i] = byte(i * 7)
	}
	ds.Set(&dicom.Element{Tag: dicom.TagPixelData, VR: dicom.VROW, Value: pixels})
	body, err := dicom.EncodeDataSet(ds, dicom.ExplicitVRLittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	store := func(sopClass, instance string) *Command {
		t.Helper()
		id, _, ok := c.Context(sopClass)
		if !ok {
			t.Fatalf("%s not accepted", sopClass)
		}
		cmd := &Command{Field: CStoreRQ, MessageID: c.NewMessageID(), AffectedSOPClassUID: sopClass, AffectedSOPInstanceUID: instance}
		if err := c.Send(testCtx(t), id, cmd, bytes.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		msg, err := c.Receive(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if msg.Command.Field != CStoreRSP || msg.Command.MessageIDBeingRespondedTo != cmd.MessageID || msg.Command.AffectedSOPInstanceUID != instance {
			t.Fatalf("response %+v", msg.Command)
		}
		return msg.Command
	}
	if rsp := store(ctImageStorage, "1.2.3.4.5"); rsp.Status != dicom.StatusSuccess {
		t.Fatalf("status %v", rsp.Status)
	}
	file, err := os.ReadFile(filepath.Join(dir, "1.2.3.4.5.dcm"))
	if err != nil {
		t.Fatal(err)
	}
	meta, stored, ts, err := dicom.SplitFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if ts != dicom.ExplicitVRLittleEndian || !bytes.Equal(stored, body) {
		t.Errorf("stored file: ts %q, data set %d bytes (equal %v), want %d", ts, len(stored), bytes.Equal(stored, body), len(body))
	}
	if got := meta.String(dicom.NewTag(0x0002, 0x0016)); got != "FERRYSCU" {
		t.Errorf("source AE title %q", got)
	}

	// A handler that stops reading early and fails: the rest of the data set is discarded, the
	// response comes after it, and the association goes on.
	rsp := store("1.2.840.10008.5.1.4.1.1.7", "9.8.7")
	if rsp.Status != dicom.StatusOutOfResources || rsp.ErrorComment != "test: refusing" {
		t.Errorf("refusing handler: %+v", rsp)
	}
	if st, err := c.Echo(testCtx(t)); err != nil || st != dicom.StatusSuccess {
		t.Fatalf("echo after refused store: %v %v", st, err)
	}
}

func TestHandlerFailures(t *testing.T) {
	t.Parallel()
	obs := &countingObserver{}
	addr := startServer(t, &Server{Metrics: obs, Services: []Service{
		{SOPClass: "1.2.3.1", Handler: HandlerFunc(func(context.Context, *Request, ResponseWriter) {})},
		{SOPClass: "1.2.3.2", Handler: HandlerFunc(func(context.Context, *Request, ResponseWriter) { panic("test panic with a patient name") })},
	}})
	cfg := ClientConfig{Contexts: []ProposedContext{{SOPClass: "1.2.3.1"}, {SOPClass: "1.2.3.2"}, {SOPClass: VerificationSOPClass}}}
	c := dial(t, addr, cfg)

	// No final response from the handler: the server sends processing failure.
	id, _, _ := c.Context("1.2.3.1")
	if err := c.Send(testCtx(t), id, &Command{Field: CEchoRQ, MessageID: 1, AffectedSOPClassUID: "1.2.3.1"}, nil); err != nil {
		t.Fatal(err)
	}
	msg, err := c.Receive(testCtx(t))
	if err != nil || msg.Command.Status != dicom.StatusProcessingFailure {
		t.Fatalf("no final response: %+v %v", msg, err)
	}
	// A command naming another SOP class than its context's.
	if err := c.Send(testCtx(t), id, &Command{Field: CEchoRQ, MessageID: 2, AffectedSOPClassUID: "1.2.3.2"}, nil); err != nil {
		t.Fatal(err)
	}
	if msg, err = c.Receive(testCtx(t)); err != nil || msg.Command.Status != dicom.StatusSOPClassNotSupported {
		t.Fatalf("mismatched SOP class: %+v %v", msg, err)
	}
	// The built-in Verification handler refuses anything but C-ECHO.
	vid, _, _ := c.Context(VerificationSOPClass)
	if err := c.Send(testCtx(t), vid, &Command{Field: CFindRQ, MessageID: 3, AffectedSOPClassUID: VerificationSOPClass}, bytes.NewReader(nil)); err != nil {
		t.Fatal(err)
	}
	if msg, err = c.Receive(testCtx(t)); err != nil || msg.Command.Status != dicom.StatusUnrecognizedOperation {
		t.Fatalf("C-FIND on Verification: %+v %v", msg, err)
	}

	// A panicking handler aborts its association, and only that one.
	id2, _, _ := c.Context("1.2.3.2")
	if err := c.Send(testCtx(t), id2, &Command{Field: CEchoRQ, MessageID: 4, AffectedSOPClassUID: "1.2.3.2"}, nil); err != nil {
		t.Fatal(err)
	}
	var ab *AbortError
	if _, err := c.Receive(testCtx(t)); !errors.As(err, &ab) {
		t.Fatalf("after a handler panic: %v, want A-ABORT", err)
	}
	c2 := dial(t, addr, cfg)
	if st, err := c2.Echo(testCtx(t)); err != nil || st != dicom.StatusSuccess {
		t.Fatalf("echo on a new association: %v %v", st, err)
	}
	changes.For(t, "the condition", func() bool { return obs.count(&obs.aborts, AbortHandlerPanic) == 1 })
}

func TestTimeouts(t *testing.T) {
	t.Parallel()
	// Each case has its own server, with only the timeout under test short, so that a loaded
	// machine does not trip the others.
	t.Run("ARTIM: no A-ASSOCIATE-RQ", func(t *testing.T) {
		t.Parallel()
		obs := &countingObserver{}
		addr := startServer(t, &Server{ARTIMTimeout: 200 * time.Millisecond, Metrics: obs})
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// The deadline only guards against a hang: the abort counted below as a timeout says
		// why the connection closed, with no wall-clock bound that a busy machine could break.
		_ = conn.SetDeadline(time.Now().Add(time.Minute))
		if n, err := conn.Read(make([]byte, 1)); err == nil {
			t.Fatalf("read %d bytes, want the connection closed", n)
		}
		changes.For(t, "the condition", func() bool { return obs.count(&obs.aborts, AbortTimeout) == 1 })
	})
	t.Run("idle association", func(t *testing.T) {
		t.Parallel()
		obs := &countingObserver{}
		addr := startServer(t, &Server{IdleTimeout: 200 * time.Millisecond, Metrics: obs})
		conn, p := rawAssociate(t, addr, verificationRQ())
		if _, ok := p.(*AssociateAC); !ok {
			t.Fatal(p.PDUType())
		}
		p, err := ReadPDU(conn, 1<<20)
		if ab, ok := p.(*Abort); err != nil || !ok || ab.Source != AbortServiceUser {
			t.Fatalf("idle: got %#v, %v; want A-ABORT", p, err)
		}
		changes.For(t, "the condition", func() bool { return obs.count(&obs.aborts, AbortTimeout) == 1 })
	})
	t.Run("trickled PDU", func(t *testing.T) {
		t.Parallel()
		obs := &countingObserver{}
		addr := startServer(t, &Server{ReadTimeout: 200 * time.Millisecond, Metrics: obs})
		conn, p := rawAssociate(t, addr, verificationRQ())
		if _, ok := p.(*AssociateAC); !ok {
			t.Fatal(p.PDUType())
		}
		b := mustEncodePDU(t, &PDataTF{Items: []PDV{{ContextID: 1, Command: true, Last: true, Data: echoRQBytes(t, 1)}}})
		if _, err := conn.Write(b[:10]); err != nil { // the header and a little: the rest never comes
			t.Fatal(err)
		}
		expectAbort(t, conn, AbortReasonNotSpecified)
		changes.For(t, "the condition", func() bool { return obs.count(&obs.aborts, AbortTimeout) == 1 })
	})
}

func TestConnectionLimit(t *testing.T) {
	t.Parallel()
	obs := &countingObserver{}
	addr := startServer(t, &Server{MaxConns: 1, Metrics: obs})
	c := dial(t, addr, ClientConfig{})
	_, err := Dial(testCtx(t), addr, ClientConfig{})
	var rj *AssociateRejectError
	if !errors.As(err, &rj) || rj.RJ != (AssociateRJ{RejectTransient, SourceServiceProviderPresentation, ReasonLocalLimitExceeded}) {
		t.Fatalf("second association: %v, want rejected-transient local-limit-exceeded", err)
	}
	if st, err := c.Echo(testCtx(t)); err != nil || st != dicom.StatusSuccess {
		t.Fatalf("first association: %v %v", st, err)
	}
	if err := c.Release(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	changes.For(t, "the condition", func() bool {
		c, err := Dial(testCtx(t), addr, ClientConfig{})
		if err != nil {
			return false
		}
		c.Release(testCtx(t))
		return true
	})
}

func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	release := make(chan struct{})
	slow := HandlerFunc(func(ctx context.Context, req *Request, w ResponseWriter) {
		close(started)
		<-release
		_ = w.Respond(Response{Status: dicom.StatusSuccess})
	})
	s := &Server{Logger: testLogger(t), Services: []Service{{SOPClass: "1.2.3.9", Handler: slow}}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	addr := ln.Addr().String()

	idle := dial(t, addr, ClientConfig{})
	busy := dial(t, addr, ClientConfig{Contexts: []ProposedContext{{SOPClass: "1.2.3.9"}}})
	id, _, _ := busy.Context("1.2.3.9")
	if err := busy.Send(testCtx(t), id, &Command{Field: CEchoRQ, MessageID: 1, AffectedSOPClassUID: "1.2.3.9"}, nil); err != nil {
		t.Fatal(err)
	}
	<-started

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	var ab *AbortError
	if _, err := idle.Receive(testCtx(t)); !errors.As(err, &ab) {
		t.Errorf("idle association: %v, want A-ABORT", err)
	}
	// The idle association has been aborted, so Shutdown is under way; it must still be waiting
	// for the operation, which has not been released.
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while an operation was in progress", err)
	default:
	}
	close(release)
	msg, err := busy.Receive(testCtx(t))
	if err != nil || msg.Command.Status != dicom.StatusSuccess {
		t.Fatalf("the operation in progress: %+v %v, want its success response", msg, err)
	}
	if _, err := busy.Receive(testCtx(t)); !errors.As(err, &ab) {
		t.Errorf("after its operation: %v, want A-ABORT", err)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	cert, pool := selfSigned(t)
	addr := startServer(t, &Server{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	c := dial(t, addr, ClientConfig{TLSConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}})
	if st, err := c.Echo(testCtx(t)); err != nil || st != dicom.StatusSuccess {
		t.Fatalf("echo over TLS: %v %v", st, err)
	}
	if err := c.Release(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	// Plain TCP to the TLS port gets nowhere.
	if _, err := Dial(testCtx(t), addr, ClientConfig{Timeout: time.Second}); err == nil {
		t.Error("plain association on a TLS port succeeded")
	}
}

func selfSigned(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func TestValidate(t *testing.T) {
	t.Parallel()
	s := &Server{AETitle: "THIS_TITLE_IS_TOO_LONG", CallingAETitles: []string{"  "}, MaxPDULength: 100,
		Services: []Service{{SOPClass: "1.2"}, {SOPClass: "1.2", Handler: HandlerFunc(serveEcho)}}}
	err := s.Validate()
	if err == nil {
		t.Fatal("Validate accepted a bad configuration")
	}
	for _, want := range []string{"AETitle", "CallingAETitles[0]", "MaxPDULength 100", "services[0] (1.2): Handler is nil", "services[1]: SOP class 1.2 already registered"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := s.Serve(ln); err == nil || errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve with a bad configuration: %v", err)
	}
	if err := (&Server{}).Validate(); err != nil {
		t.Errorf("zero Server: %v", err)
	}
}

// TestLogsHoldNoPHI runs a C-FIND whose identifier holds a patient name, and a panicking handler
// whose panic value holds one, and checks that the log never shows it.
func TestLogsHoldNoPHI(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	const name = "DOE^JANE"
	s := &Server{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Services: []Service{
			{SOPClass: modalityWorklistFind, Handler: &findHandler{}},
			{SOPClass: "1.2.3.2", Handler: HandlerFunc(func(context.Context, *Request, ResponseWriter) { panic(name) })},
		}}
	addr := startServer(t, s)
	c := dial(t, addr, ClientConfig{Contexts: []ProposedContext{{SOPClass: modalityWorklistFind}, {SOPClass: "1.2.3.2"}}})
	q := &dicom.DataSet{}
	q.Set(dicom.NewString(dicom.TagPatientName, dicom.VRPN, name))
	b, _ := dicom.EncodeDataSet(q, dicom.ExplicitVRLittleEndian)
	id, _, _ := c.Context(modalityWorklistFind)
	if err := c.Send(testCtx(t), id, &Command{Field: CFindRQ, MessageID: 1, AffectedSOPClassUID: modalityWorklistFind}, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := c.Receive(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if !msg.Command.Status.IsPending() {
			break
		}
	}
	id2, _, _ := c.Context("1.2.3.2")
	_ = c.Send(testCtx(t), id2, &Command{Field: CEchoRQ, MessageID: 2, AffectedSOPClassUID: "1.2.3.2"}, nil)
	_, _ = c.Receive(testCtx(t))
	changes.For(t, "the condition", func() bool { return strings.Contains(buf.String(), "panicked") })
	if strings.Contains(buf.String(), "DOE") {
		t.Errorf("the log holds the patient name:\n%s", buf.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	defer changes.Notify()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
