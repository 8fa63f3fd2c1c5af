package outbox_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ferryhealth/ferry/engine/outbox"
)

// hungStore is a store whose calls named in hang block until release is closed (a database
// frozen with SIGSTOP, or cut off, whose driver does not give up on the context); the others
// answer at once. It is the unit boundary: the real stores' outbox is engine/storetest's.
type hungStore struct {
	outbox.Store
	hang     map[string]bool
	release  chan struct{}
	due      []*outbox.Delivery
	finished []outbox.Outcome
}

func (s *hungStore) block(call string) {
	if s.hang[call] {
		<-s.release
	}
}

func (s *hungStore) DueDeliveries(context.Context, time.Time, int, []string) ([]*outbox.Delivery, error) {
	s.block("due")
	return s.due, nil
}

func (s *hungStore) ClaimDelivery(context.Context, int64, time.Time, time.Time) (bool, error) {
	s.block("claim")
	return true, nil
}

func (s *hungStore) FinishDelivery(_ context.Context, _ int64, o outbox.Outcome) error {
	s.block("finish")
	s.finished = append(s.finished, o)
	return nil
}

// TestDelivererStoreDeadline is issue 18 item 3 for the deliverer: a store call that gets no
// answer (looking for due deliveries, a claim, an outcome) fails with ErrStoreTimeout after
// StoreTimeout, so a pass ends and the deliverer goes on, instead of hanging with the database.
func TestDelivererStoreDeadline(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		hang      string
		attempted int // what DeliverDue reports
		sent      int // what reached the transport
	}{
		{"due", 0, 0},
		{"claim", 0, 0},
		{"finish", 1, 1},
	} {
		t.Run(tc.hang, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := &hungStore{hang: map[string]bool{tc.hang: true}, release: make(chan struct{}),
					due: []*outbox.Delivery{{ID: 1, Destination: "STMARYS/mllp", Kind: outbox.MLLP, QueueKey: "STMARYS/mllp|p1", ControlID: "C1"}}}
				sent := 0
				dl := &outbox.Deliverer{Store: st, StoreTimeout: 3 * time.Second,
					Destination: func(string) (outbox.Destination, bool) { return outbox.Destination{Kind: outbox.MLLP}, true },
					Transport: func(context.Context, outbox.Destination, *outbox.Delivery) (string, error) {
						sent++
						return "MSA|AA|C1", nil
					}}
				start := time.Now()
				n, err := dl.DeliverDue(context.Background())
				took := time.Since(start)
				if !errors.Is(err, outbox.ErrStoreTimeout) {
					t.Errorf("DeliverDue with %s hung: %v, want ErrStoreTimeout", tc.hang, err)
				}
				if took != 3*time.Second {
					t.Errorf("DeliverDue with %s hung returned after %v, want StoreTimeout (3s)", tc.hang, took)
				}
				if n != tc.attempted || sent != tc.sent {
					t.Errorf("DeliverDue with %s hung: %d attempted, %d sent; want %d and %d", tc.hang, n, sent, tc.attempted, tc.sent)
				}
				close(st.release) // the database answers again: the call left behind ends
				synctest.Wait()
			})
		})
	}
}
