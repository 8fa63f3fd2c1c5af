package delivery_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/adapters/delivery"
	"github.com/ferryhealth/ferry/engine/outbox"
)

// nak is an MLLP client's error for a negative ACK, as adapters/mllp's NAKError.
type nak struct{ code string }

func (e *nak) Error() string   { return "answered " + e.code }
func (e *nak) ACKCode() string { return e.code }

// answering is an MLLP client that answers every message with err (the unit boundary: the real
// client is adapters/mllp's Sender, tested there and end to end in cmd/ferry).
type answering struct{ err error }

func (c answering) Send(context.Context, []byte) ([]byte, error) { return []byte("MSA"), c.err }
func (answering) Close() error                                   { return nil }

// TestSendClassifies: what each answer of a destination comes to for the deliverer — delivered,
// refused for good (dead letter), refused for now (retried), or unreachable (probed).
func TestSendClassifies(t *testing.T) {
	t.Parallel()
	ehr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.Header.Get("X-Request-Id"))
		w.WriteHeader(code)
	}))
	t.Cleanup(ehr.Close)
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downAddr := down.Addr().String()
	down.Close() // nothing listens there now

	for _, tc := range []struct {
		name        string
		kind        string
		mllpErr     error  // what the MLLP client answers
		controlID   string // for FHIR: the status the test server answers
		address     string
		wantRefusal string // "" none; "permanent"; "retry"
		wantDown    bool
		wantErr     bool
	}{
		{"MLLPAccepted", outbox.MLLP, nil, "C1", "ehr:1", "", false, false},
		{"MLLPRejected", outbox.MLLP, &nak{"AR"}, "C1", "ehr:1", "permanent", false, true},
		{"MLLPCommitReject", outbox.MLLP, &nak{"CR"}, "C1", "ehr:1", "permanent", false, true},
		{"MLLPError", outbox.MLLP, &nak{"AE"}, "C1", "ehr:1", "retry", false, true},
		{"MLLPUnreachable", outbox.MLLP, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, "C1", "ehr:1", "", true, true},
		{"MLLPNoAnswer", outbox.MLLP, context.DeadlineExceeded, "C1", "ehr:1", "", false, true},
		{"FHIRCreated", outbox.FHIR, nil, "201", "", "", false, false},
		{"FHIRInvalid", outbox.FHIR, nil, "422", "", "permanent", false, true},
		{"FHIRUnauthorized", outbox.FHIR, nil, "401", "", "retry", false, true},
		{"FHIRTooMany", outbox.FHIR, nil, "429", "", "retry", false, true},
		{"FHIRServerError", outbox.FHIR, nil, "503", "", "retry", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tr := delivery.New(1, 5*time.Second, func(string, *tls.Config, time.Duration) delivery.MLLPClient { return answering{tc.mllpErr} })
			t.Cleanup(tr.Close)
			dest := outbox.Destination{Name: "d", Kind: tc.kind, Address: tc.address, BaseURL: ehr.URL}
			_, err := tr.Send(context.Background(), dest, &outbox.Delivery{Destination: "STMARYS/d", Kind: tc.kind, ControlID: tc.controlID, Payload: []byte("{}")})
			if (err != nil) != tc.wantErr {
				t.Fatalf("Send: %v, want an error: %v", err, tc.wantErr)
			}
			var refusal *outbox.Refusal
			switch got := errors.As(err, &refusal); {
			case tc.wantRefusal == "" && got:
				t.Errorf("Send: refusal %v, want none", refusal)
			case tc.wantRefusal != "" && !got:
				t.Errorf("Send: %v, want a refusal", err)
			case got && refusal.Permanent != (tc.wantRefusal == "permanent"):
				t.Errorf("Send: refusal %v permanent=%v, want %s", refusal, refusal.Permanent, tc.wantRefusal)
			}
			if errors.Is(err, outbox.ErrUnreachable) != tc.wantDown {
				t.Errorf("Send: %v; unreachable: %v, want %v", err, errors.Is(err, outbox.ErrUnreachable), tc.wantDown)
			}
		})
	}

	// Probe: a connection opened and closed, nil when the destination listens.
	tr := delivery.New(1, 5*time.Second, nil)
	if err := tr.Probe(context.Background(), outbox.Destination{Kind: outbox.FHIR, BaseURL: ehr.URL}); err != nil {
		t.Errorf("Probe of a listening FHIR server: %v", err)
	}
	if err := tr.Probe(context.Background(), outbox.Destination{Kind: outbox.MLLP, Address: downAddr}); err == nil {
		t.Errorf("Probe of %s, where nothing listens: nil", downAddr)
	}
}
