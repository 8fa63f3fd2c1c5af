package httpapi_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/adapters/httpapi"
	"github.com/ferryhealth/ferry/adapters/sqlite"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/outbox"
)

// deadLetters is the outbox at the API's boundary: dead letters listed newest first, as the
// store lists them, with the order of the replays recorded.
type deadLetters struct {
	mu       sync.Mutex
	dead     map[int64]*outbox.Delivery
	replayed []int64
}

func (d *deadLetters) Deliveries(_ context.Context, f outbox.Filter) ([]*outbox.Delivery, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*outbox.Delivery
	for _, x := range d.dead {
		if f.Destination == "" || x.Destination == f.Destination {
			out = append(out, x)
		}
	}
	slices.SortFunc(out, func(a, b *outbox.Delivery) int { return cmp.Compare(b.ID, a.ID) })
	out = out[min(f.Offset, len(out)):]
	return out[:min(f.Limit, len(out))], nil
}

func (d *deadLetters) Delivery(_ context.Context, id int64) (*outbox.Delivery, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if x, ok := d.dead[id]; ok {
		return x, nil
	}
	return &outbox.Delivery{ID: id, Status: outbox.Pending}, nil
}

func (d *deadLetters) ReplayDelivery(_ context.Context, id int64, _ []byte, _ string, _ time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.dead[id]; !ok {
		return engine.ErrNotFound
	}
	delete(d.dead, id)
	d.replayed = append(d.replayed, id)
	return nil
}

// POST /api/v1/deliveries/replay replays every dead letter of the destination oldest first
// (creation order, so each patient's reports keep their order), across pages of the list.
func TestBulkReplayOldestFirst(t *testing.T) {
	t.Parallel()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	dl := &deadLetters{dead: map[int64]*outbox.Delivery{}}
	const n = 2500 // three pages of the list
	for id := int64(1); id <= n; id++ {
		dest := "STMARYS/epic"
		if id%10 == 0 {
			dest = "STMARYS/fhir"
		}
		dl.dead[id] = &outbox.Delivery{ID: id, Destination: dest, Status: outbox.Dead, QueueKey: dest + "|pat-" + string(rune('a'+id%3))}
	}
	api, err := httpapi.New(httpapi.Options{Messages: st, AdminToken: token, Deliveries: dl})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	body, _ := json.Marshal(map[string]string{"user": "ana.analyst", "reason": "EHR fixed", "destination": "STMARYS/epic"})
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/deliveries/replay", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Replayed []int64 `json:"replayed"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("bulk replay: HTTP %d, %v", resp.StatusCode, err)
	}
	if len(dl.replayed) != n-n/10 || !slices.IsSorted(dl.replayed) || !slices.Equal(out.Replayed, dl.replayed) {
		t.Errorf("replayed %d (answer: %d), sorted %v; want the %d dead letters of STMARYS/epic, oldest first",
			len(dl.replayed), len(out.Replayed), slices.IsSorted(dl.replayed), n-n/10)
	}
	if len(dl.dead) != n/10 {
		t.Errorf("%d dead letters left, want the %d of the other destination", len(dl.dead), n/10)
	}
}
