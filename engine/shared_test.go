package engine_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ferryhealth/ferry/engine"
)

// orcBy is orc with ORC-12, the ordering provider.
func orcBy(control, placer, status, provider string) string {
	return orc(control, placer, status) + "|||" + provider
}

// The ordering physician a message names is kept as the latest message says, also after the
// group committer has remembered it as stored: a change writes a new version, and changing it
// back writes another (issue 18 item 1: physicians are created before the order's transaction
// and known afterwards without a read).
func TestOrderingPhysicianFollowsTheMessages(t *testing.T) {
	t.Parallel()
	h := newOrderHarness(t)
	for i, tc := range []struct{ given, version string }{
		{"ROBERT", "1"},
		{"ROBERT", "1"}, // the same: nothing written
		{"BOB", "2"},
		{"ROBERT", "3"},
		{"ROBERT", "3"},
	} {
		placer := fmt.Sprintf("PLP%d", i)
		h.mustAccept(mshORM, pidFor("000777", "DOE^JANE"), orcBy("NW", placer, "SC", "1001^SMITH^"+tc.given+"^^^^MD^^STMARYS"), obr(placer, "ACCP"+placer))
		ps := h.search("Practitioner", eq("identifier", "1001"))
		if len(ps) != 1 {
			t.Fatalf("order %d: %d practitioners for one identifier", i, len(ps))
		}
		if v := ps[0]["meta"].(map[string]any)["versionId"]; v != tc.version || !strings.Contains(fmt.Sprint(ps[0]["name"]), tc.given) {
			t.Errorf("order %d: practitioner version %v, name %v; want version %s, given %s", i, v, ps[0]["name"], tc.version, tc.given)
		}
		srs := h.search("ServiceRequest", eq("identifier", placer))
		if len(srs) != 1 || fmt.Sprint(srs[0]["requester"]) != fmt.Sprint(map[string]any{"reference": "Practitioner/" + ps[0]["id"].(string)}) {
			t.Errorf("order %d: requester %v, want Practitioner/%s", i, srs, ps[0]["id"])
		}
	}
}

// Orders of two patients naming one existing physician are in flight at once: the second's
// transaction begins while the first's waits in its commit (before issue 18 item 1's rest the
// physician was a record the second waited for, until the first ended). On SQLite, a single
// writer, the second then waits in the store, not in Ferry.
func TestOrdersNamingOnePhysicianCommitSideBySide(t *testing.T) {
	t.Parallel()
	hs := &holdingStore{began: make(chan struct{}, 4), hold: make(chan struct{})}
	h := newOrderHarnessOn(t, func(st engine.Store) engine.Store { hs.Store = st; return hs })
	prov := "1001^SMITH^ROBERT^^^^MD^^STMARYS"
	h.mustAccept(mshORM, pidFor("000801", "DOE^JANE"), orcBy("NW", "PLS1", "SC", prov), obr("PLS1", "ACCS1"))

	hs.holding.Store(true)
	var wg sync.WaitGroup
	acks := make(chan string, 2)
	send := func(patient, placer string) {
		defer wg.Done()
		code, _ := h.send(mshORM, pidFor(patient, "ROE^JOHN"), orcBy("NW", placer, "SC", prov), obr(placer, "ACC"+placer))
		acks <- code
	}
	wg.Add(1)
	go send("000802", "PLS2")
	<-hs.began // the first order's transaction, held at its commit
	wg.Add(1)
	go send("000803", "PLS3")
	select {
	case <-hs.began:
	case code := <-acks:
		t.Errorf("the second order was answered %s before its transaction began: it waited for the first", code)
	}
	close(hs.hold)
	wg.Wait()
	close(acks)
	for code := range acks {
		if code != "AA" {
			t.Errorf("ACK %s, want AA", code)
		}
	}
	if ps := h.search("Practitioner", eq("identifier", "1001")); len(ps) != 1 {
		t.Errorf("%d practitioners for one identifier", len(ps))
	}
}

// holdingStore, once holding is set, says on began when a transaction begins, and holds every
// transaction that stores a message at its commit until hold is closed.
type holdingStore struct {
	engine.Store
	holding atomic.Bool
	began   chan struct{}
	hold    chan struct{}
}

func (s *holdingStore) Begin(ctx context.Context) (engine.Tx, error) {
	if s.holding.Load() {
		s.began <- struct{}{}
	}
	tx, err := s.Store.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &holdingTx{Tx: tx, s: s}, nil
}

type holdingTx struct {
	engine.Tx
	s      *holdingStore
	stored bool
}

func (tx *holdingTx) InsertInbound(ctx context.Context, m *engine.InboundMessage) error {
	err := tx.Tx.InsertInbound(ctx, m)
	tx.stored = tx.stored || err == nil && tx.s.holding.Load()
	return err
}

func (tx *holdingTx) Commit() error {
	if tx.stored {
		<-tx.s.hold
	}
	return tx.Tx.Commit()
}
