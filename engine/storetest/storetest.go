// Package storetest is the contract every engine.MessageStore keeps, written once as a test suite
// that each store's own tests run: adapters/postgres and adapters/sqlite call Run with a function
// that opens a fresh, migrated, empty store. A store that passes Run behaves as the engine
// expects: commits are atomic, raw bytes come back exactly, duplicates (same MSH-3, MSH-4 and
// MSH-10 as an accepted message) are recognised by the database even under concurrent commits,
// and the message log filters and pages as engine.MessageFilter documents.
//
// RunResources and RunInstances do the same for resources, transactions and the worklist, and for
// engine.InstanceStore. BenchCommitInbound measures the hot path the same way for every store.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/engine"
)

// Run runs the contract suite. open is called once per subtest and must return a fresh, migrated,
// empty store that it closes (and removes) in t.Cleanup; subtests run in parallel.
func Run(t *testing.T, open func(t *testing.T) engine.MessageStore) {
	tests := []struct {
		name string
		run  func(t *testing.T, st engine.MessageStore)
	}{
		{"CommitAndReadBack", testCommitAndReadBack},
		{"BatchAssignsIDs", testBatchAssignsIDs},
		{"EmptyBatch", testEmptyBatch},
		{"InvalidBatchCommitsNothing", testInvalidBatchCommitsNothing},
		{"DuplicateAcrossBatches", testDuplicateAcrossBatches},
		{"DuplicateWithinBatch", testDuplicateWithinBatch},
		{"NoControlIDNeverDuplicate", testNoControlIDNeverDuplicate},
		{"RejectedWithSameKeyIsNotDuplicate", testRejectedWithSameKey},
		{"RejectedWithoutBytes", testRejectedWithoutBytes},
		{"OtherFacilityOrApplicationIsNotDuplicate", testOtherFacilityOrApplication},
		{"HeaderTextNotUTF8", testHeaderTextNotUTF8},
		{"ProcessingFields", testProcessingFields},
		{"DuplicateIsNeverPending", testDuplicateIsNeverPending},
		{"ConcurrentOverlappingKeys", testConcurrentOverlappingKeys},
		{"Filters", testFilters},
		{"Paging", testPaging},
		{"SearchKeys", testSearchKeys},
		{"TextWindow", testTextWindow},
		{"SearchBackfill", testSearchBackfill},
		{"LimitDefaultAndCap", testLimitDefaultAndCap},
		{"NotFound", testNotFound},
		{"Ping", testPing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, open(t))
		})
	}
}

// baseTime is a whole second, so that stores with microsecond precision keep filter boundaries
// exact.
var baseTime = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// newMessage returns an accepted message with the given key, raw bytes that are a plausible ORM
// and an AA ACK that echoes controlID; marker makes its raw and ACK bytes unique.
func newMessage(app, facility, controlID string, marker int) *engine.InboundMessage {
	raw := fmt.Sprintf("MSH|^~\\&|%s|%s|FERRY|FERRY|20260301100000||ORM^O01^ORM_O01|%s|P|2.5.1\r"+
		"PID|1||MRN%d^^^HOSP^MR||Doe^Jane||19700101|F\r"+
		"ORC|NW|PL%d|FL%d\rOBR|1|PL%d|FL%d|CTCHEST^CT chest^L\r", app, facility, controlID, marker, marker, marker, marker, marker)
	ack := fmt.Sprintf("MSH|^~\\&|FERRY|FERRY|%s|%s|20260301100000||ACK^O01^ACK|ACK%d|P|2.5.1\rMSA|AA|%s\r",
		app, facility, marker, controlID)
	return &engine.InboundMessage{
		Channel:            "mllp",
		ReceivedAt:         baseTime.Add(time.Duration(marker) * time.Millisecond),
		PeerAddr:           "10.0.0.7:51234",
		Raw:                []byte(raw),
		SendingApplication: app,
		SendingFacility:    facility,
		MessageType:        "ORM^O01^ORM_O01",
		ControlID:          controlID,
		Version:            "2.5.1",
		Status:             engine.StatusAccepted,
		ACK:                []byte(ack),
		ACKCode:            "AA",
	}
}

// rejected turns m into a message that failed validation.
func rejected(m *engine.InboundMessage) *engine.InboundMessage {
	m.Status = engine.StatusRejected
	m.ACKCode = "AR"
	m.ACK = append(bytes.Replace(m.ACK, []byte("MSA|AA|"), []byte("MSA|AR|"), 1), "ERR|||207^Application internal error^HL70357|E\r"...)
	m.Error = "PID-3: patient identifier missing"
	return m
}

func commit(t *testing.T, st engine.MessageStore, msgs ...*engine.InboundMessage) {
	t.Helper()
	if err := st.CommitInbound(context.Background(), msgs); err != nil {
		t.Fatalf("CommitInbound(%d messages): %v", len(msgs), err)
	}
}

func read(t *testing.T, st engine.MessageStore, id int64) *engine.InboundMessage {
	t.Helper()
	m, err := st.Message(context.Background(), id)
	if err != nil {
		t.Fatalf("Message(%d): %v", id, err)
	}
	return m
}

func list(t *testing.T, st engine.MessageStore, f engine.MessageFilter) []*engine.InboundMessage {
	t.Helper()
	msgs, err := st.Messages(context.Background(), f)
	if err != nil {
		t.Fatalf("Messages(%+v): %v", f, err)
	}
	return msgs
}

func clone(m *engine.InboundMessage) *engine.InboundMessage {
	c := *m
	c.Raw = bytes.Clone(m.Raw)
	c.ACK = bytes.Clone(m.ACK)
	return &c
}

// checkSame fails t unless got and want agree: bytes exactly (nil and empty alike), ReceivedAt
// to the microsecond, the rest equal.
func checkSame(t *testing.T, got, want *engine.InboundMessage) {
	t.Helper()
	if !bytes.Equal(got.Raw, want.Raw) {
		t.Errorf("message %d: Raw = %q, want %q", want.ID, got.Raw, want.Raw)
	}
	if !bytes.Equal(got.ACK, want.ACK) {
		t.Errorf("message %d: ACK = %q, want %q", want.ID, got.ACK, want.ACK)
	}
	if d := got.ReceivedAt.Sub(want.ReceivedAt); d <= -time.Microsecond || d >= time.Microsecond {
		t.Errorf("message %d: ReceivedAt = %s, want %s (within 1µs)", want.ID, got.ReceivedAt, want.ReceivedAt)
	}
	g, w := *got, *want
	g.Raw, g.ACK, g.ReceivedAt = nil, nil, time.Time{}
	w.Raw, w.ACK, w.ReceivedAt = nil, nil, time.Time{}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("message %d:\n got %+v\nwant %+v", want.ID, g, w)
	}
}

// checkDuplicate fails t unless m was stored as a duplicate of orig, with orig's ACK, both in m
// (updated by CommitInbound) and in the store.
func checkDuplicate(t *testing.T, st engine.MessageStore, m, orig *engine.InboundMessage) {
	t.Helper()
	if m.Status != engine.StatusDuplicate || m.DuplicateOf != orig.ID {
		t.Errorf("message %d (%s): Status %q DuplicateOf %d, want duplicate of %d", m.ID, m.ControlID, m.Status, m.DuplicateOf, orig.ID)
	}
	if !bytes.Equal(m.ACK, orig.ACK) || m.ACKCode != orig.ACKCode {
		t.Errorf("message %d: ACK %q %q, want the original's %q %q", m.ID, m.ACKCode, m.ACK, orig.ACKCode, orig.ACK)
	}
	if m.ID == 0 || m.ID == orig.ID {
		t.Errorf("duplicate has ID %d, want its own (original %d)", m.ID, orig.ID)
	}
	checkSame(t, read(t, st, m.ID), m)
}

func checkStatus(t *testing.T, st engine.MessageStore, m *engine.InboundMessage, want engine.Status) {
	t.Helper()
	if m.Status != want || m.DuplicateOf != 0 {
		t.Errorf("message %d (%s/%s/%q): Status %q DuplicateOf %d, want %q and no original",
			m.ID, m.SendingApplication, m.SendingFacility, m.ControlID, m.Status, m.DuplicateOf, want)
	}
	checkSame(t, read(t, st, m.ID), m)
}

func testCommitAndReadBack(t *testing.T, st engine.MessageStore) {
	m := newMessage("RIS", "STMARYS", "CTL0001", 1)
	// Real feeds carry NULs and invalid UTF-8; the store keeps every byte.
	m.Raw = []byte("MSH|^~\\&|RIS|STMARYS|||20260301||ORM^O01|CTL0001|P|2.3\rPID|1||12\x0034||D\xffo\xfe^J\xc3\r\x00\r\n")
	m.ACK = []byte("MSH|^~\\&|FERRY\rMSA|AA|CTL0001\r\x00\xff")
	m.ReceivedAt = time.Date(2026, 3, 1, 11, 59, 58, 123456789, time.FixedZone("CET", 3600))
	r := rejected(newMessage("RIS", "STMARYS", "", 2))
	r.Raw = []byte{0x0b, 0xff, 0x00, 'x'}
	e := newMessage("LAB", "STMARYS", "CTL0002", 3)
	e.Status, e.ACKCode, e.Error = engine.StatusError, "AE", "mapping failed: no procedure code"
	empty := rejected(newMessage("", "", "", 4))
	empty.Raw, empty.ACK, empty.MessageType, empty.Version = nil, nil, "", ""

	want := []*engine.InboundMessage{clone(m), clone(r), clone(e), clone(empty)}
	commit(t, st, m, r, e, empty)
	for i, m := range []*engine.InboundMessage{m, r, e, empty} {
		if m.ID <= 0 {
			t.Fatalf("message %d: ID %d after commit, want > 0", i, m.ID)
		}
		want[i].ID = m.ID
		checkSame(t, m, want[i]) // CommitInbound changes only the ID of a message that is no duplicate
		checkSame(t, read(t, st, m.ID), want[i])
	}
	got := list(t, st, engine.MessageFilter{})
	if len(got) != 4 {
		t.Fatalf("Messages() = %d messages, want 4", len(got))
	}
	for i, g := range got {
		checkSame(t, g, want[3-i])
	}
}

func testBatchAssignsIDs(t *testing.T, st engine.MessageStore) {
	var batch []*engine.InboundMessage
	for i := range 10 {
		m := newMessage("RIS", "STMARYS", fmt.Sprintf("B%d", i), i)
		if i%3 == 1 {
			rejected(m)
		}
		batch = append(batch, m)
	}
	commit(t, st, batch...)
	for i, m := range batch {
		if m.ID <= 0 {
			t.Fatalf("message %d: ID %d, want > 0", i, m.ID)
		}
		// IDs follow batch order, so the message log lists a batch newest first too.
		if i > 0 && m.ID <= batch[i-1].ID {
			t.Errorf("message %d: ID %d not above the previous message's %d", i, m.ID, batch[i-1].ID)
		}
		if got := read(t, st, m.ID); got.ControlID != m.ControlID {
			t.Errorf("Message(%d).ControlID = %q, want %q", m.ID, got.ControlID, m.ControlID)
		}
	}
	next := newMessage("RIS", "STMARYS", "B-next", 99)
	commit(t, st, next)
	if next.ID <= batch[len(batch)-1].ID {
		t.Errorf("next batch's ID %d not above the last batch's %d", next.ID, batch[len(batch)-1].ID)
	}
}

func testEmptyBatch(t *testing.T, st engine.MessageStore) {
	commit(t, st)
	if got := list(t, st, engine.MessageFilter{}); len(got) != 0 {
		t.Errorf("Messages() after an empty commit = %d messages, want 0", len(got))
	}
}

func testInvalidBatchCommitsNothing(t *testing.T, st engine.MessageStore) {
	ok := newMessage("RIS", "STMARYS", "V1", 1)
	bad := newMessage("RIS", "STMARYS", "V2", 2)
	bad.Status = "bogus"
	if err := st.CommitInbound(context.Background(), []*engine.InboundMessage{ok, bad}); err == nil {
		t.Fatal("CommitInbound with an invalid status succeeded, want an error")
	}
	if ok.ID != 0 {
		t.Errorf("ID %d set on a message whose commit failed", ok.ID)
	}
	if got := list(t, st, engine.MessageFilter{}); len(got) != 0 {
		t.Fatalf("a failed batch left %d messages, want none", len(got))
	}
	// The valid message, sent again, is new: the failed batch left no original behind.
	commit(t, st, ok)
	checkStatus(t, st, ok, engine.StatusAccepted)
}

func testDuplicateAcrossBatches(t *testing.T, st engine.MessageStore) {
	orig := newMessage("RIS", "STMARYS", "D1", 1)
	orig.ACKCode = "CA"
	commit(t, st, orig)
	checkStatus(t, st, orig, engine.StatusAccepted)

	dup := newMessage("RIS", "STMARYS", "D1", 2) // resent: its own raw bytes and a fresh ACK
	raw := bytes.Clone(dup.Raw)
	commit(t, st, dup)
	checkDuplicate(t, st, dup, orig)
	if !bytes.Equal(dup.Raw, raw) {
		t.Errorf("duplicate's Raw = %q, want its own bytes %q", dup.Raw, raw)
	}
	again := newMessage("RIS", "STMARYS", "D1", 3)
	commit(t, st, again, newMessage("RIS", "STMARYS", "D2", 4))
	checkDuplicate(t, st, again, orig) // of the accepted original, never of a duplicate
	checkSame(t, read(t, st, orig.ID), orig)
}

func testDuplicateWithinBatch(t *testing.T, st engine.MessageStore) {
	first := newMessage("RIS", "STMARYS", "W1", 1)
	other := newMessage("RIS", "STMARYS", "W2", 2)
	second := newMessage("RIS", "STMARYS", "W1", 3)
	rej := rejected(newMessage("RIS", "STMARYS", "W1", 4))
	third := newMessage("RIS", "STMARYS", "W1", 5)
	commit(t, st, first, other, second, rej, third)
	checkStatus(t, st, first, engine.StatusAccepted)
	checkStatus(t, st, other, engine.StatusAccepted)
	checkStatus(t, st, rej, engine.StatusRejected)
	checkDuplicate(t, st, second, first)
	checkDuplicate(t, st, third, first)

	// A later batch holding the key twice: both are duplicates of the committed original.
	x, y := newMessage("RIS", "STMARYS", "W1", 6), newMessage("RIS", "STMARYS", "W1", 7)
	commit(t, st, x, y)
	checkDuplicate(t, st, x, first)
	checkDuplicate(t, st, y, first)
}

func testNoControlIDNeverDuplicate(t *testing.T, st engine.MessageStore) {
	for round := range 2 {
		r1 := rejected(newMessage("RIS", "STMARYS", "", 10*round+1))
		r2 := rejected(newMessage("RIS", "STMARYS", "", 10*round+2))
		a1 := newMessage("RIS", "STMARYS", "", 10*round+3)
		a2 := newMessage("RIS", "STMARYS", "", 10*round+4)
		commit(t, st, r1, r2, a1, a2)
		checkStatus(t, st, r1, engine.StatusRejected)
		checkStatus(t, st, r2, engine.StatusRejected)
		checkStatus(t, st, a1, engine.StatusAccepted)
		checkStatus(t, st, a2, engine.StatusAccepted)
	}
}

func testRejectedWithSameKey(t *testing.T, st engine.MessageStore) {
	// A rejected message is no original: the accepted one after it is new.
	early := rejected(newMessage("RIS", "STMARYS", "R1", 1))
	commit(t, st, early)
	checkStatus(t, st, early, engine.StatusRejected)
	orig := newMessage("RIS", "STMARYS", "R1", 2)
	commit(t, st, orig)
	checkStatus(t, st, orig, engine.StatusAccepted)

	// Rejected and error messages with an accepted message's key are stored as they are.
	late := rejected(newMessage("RIS", "STMARYS", "R1", 3))
	failed := newMessage("RIS", "STMARYS", "R1", 4)
	failed.Status, failed.ACKCode, failed.Error = engine.StatusError, "AE", "store of orders unavailable"
	commit(t, st, late, failed)
	checkStatus(t, st, late, engine.StatusRejected)
	checkStatus(t, st, failed, engine.StatusError)

	dup := newMessage("RIS", "STMARYS", "R1", 5)
	commit(t, st, dup)
	checkDuplicate(t, st, dup, orig)
}

// A rejected message over the hourly budget (engine.RejectedBudget) is stored without its
// bytes: the store keeps the row, an empty raw and the error that says so.
func testRejectedWithoutBytes(t *testing.T, st engine.MessageStore) {
	m := rejected(newMessage("JUNK", "", "", 1))
	m.Raw = []byte{}
	m.Error = "message does not start with an MSH segment (its 15728640 bytes were not kept: the hourly budget for rejected messages is spent)"
	commit(t, st, m)
	got := read(t, st, m.ID)
	if len(got.Raw) != 0 {
		t.Errorf("Raw = %d bytes, want none", len(got.Raw))
	}
	checkSame(t, got, m)
}

func testOtherFacilityOrApplication(t *testing.T, st engine.MessageStore) {
	a := newMessage("RIS", "STMARYS", "K1", 1)
	b := newMessage("RIS", "GENERAL", "K1", 2)
	c := newMessage("LAB", "STMARYS", "K1", 3)
	commit(t, st, a, b)
	commit(t, st, c)
	for _, m := range []*engine.InboundMessage{a, b, c} {
		checkStatus(t, st, m, engine.StatusAccepted)
	}
	d := newMessage("LAB", "STMARYS", "K1", 4)
	commit(t, st, d)
	checkDuplicate(t, st, d, c)
}

// testHeaderTextNotUTF8: header fields come from outside bytes. One with NULs or invalid UTF-8
// must not fail its batch; stores keep it as valid UTF-8, each bad byte or NUL as U+FFFD, in msgs
// too, and compare keys in that form. Raw stays exact.
func testHeaderTextNotUTF8(t *testing.T, st engine.MessageStore) {
	odd := newMessage("R\xffIS", "ST\x00MARYS", "C\xfe1\x00", 1)
	odd.Raw = []byte("MSH|^~\\&|R\xffIS|ST\x00MARYS|||||ORM^O01|C\xfe1\x00|P|2.5\r")
	odd.Error = "bad \xc3 byte"
	odd.Status = engine.StatusAccepted
	raw := bytes.Clone(odd.Raw)
	plain := newMessage("RIS", "STMARYS", "C2", 2)
	commit(t, st, odd, plain)

	want := clone(odd)
	want.SendingApplication, want.SendingFacility, want.ControlID = "R\uFFFDIS", "ST\uFFFDMARYS", "C\uFFFD1\uFFFD"
	want.Error = "bad \uFFFD byte"
	checkSame(t, odd, want)
	checkSame(t, read(t, st, odd.ID), want)
	if !bytes.Equal(odd.Raw, raw) {
		t.Errorf("Raw = %q, want %q", odd.Raw, raw)
	}
	checkStatus(t, st, plain, engine.StatusAccepted)

	again := newMessage("R\xffIS", "ST\x00MARYS", "C\xfe1\x00", 3)
	commit(t, st, again)
	checkDuplicate(t, st, again, odd)
	// Filters take the same form: the raw control ID finds both.
	if got := list(t, st, engine.MessageFilter{ControlID: "C\xfe1\x00"}); len(got) != 2 {
		t.Errorf("Messages(ControlID with bad bytes) = %d messages, want 2", len(got))
	}
}

// testProcessingFields: MappingVersion, Pending and ProcessingError are stored and read back
// (Message and Messages); Pending only on an accepted message, since nothing else waits for
// processing; text as valid UTF-8, as header text.
func testProcessingFields(t *testing.T, st engine.MessageStore) {
	pending := newMessage("RIS", "STMARYS", "P1", 1)
	pending.Pending = true
	mapped := newMessage("RIS", "STMARYS", "P2", 2)
	mapped.MappingVersion = "orm_o01@2026-11-27.3"
	failed := newMessage("RIS", "STMARYS", "P3", 3)
	failed.MappingVersion, failed.ProcessingError = "orm_o01@2026-11-27.3", "OBR-4: unknown procedure code \xff"
	errored := newMessage("RIS", "STMARYS", "P4", 4)
	errored.Status, errored.ACKCode, errored.Error = engine.StatusError, "AE", "OBR-4: unknown procedure code"
	errored.MappingVersion, errored.Pending = "orm_o01@2026-11-27.3", true // not accepted: never pending
	rej := rejected(newMessage("RIS", "STMARYS", "P5", 5))
	rej.Pending = true
	keyless := newMessage("RIS", "STMARYS", "", 6)
	keyless.Pending, keyless.MappingVersion = true, "adt@1"

	batch := []*engine.InboundMessage{pending, mapped, failed, errored, rej, keyless}
	want := make([]*engine.InboundMessage, len(batch))
	for i, m := range batch {
		want[i] = clone(m)
	}
	want[2].ProcessingError = "OBR-4: unknown procedure code \uFFFD"
	want[3].Pending = false
	want[4].Pending = false
	commit(t, st, batch...)
	for i, m := range batch {
		want[i].ID = m.ID
		checkSame(t, m, want[i])
		checkSame(t, read(t, st, m.ID), want[i])
	}
	for _, f := range []engine.MessageFilter{{}, {Status: engine.StatusAccepted}} {
		for _, got := range list(t, st, f) {
			for _, w := range want {
				if got.ID == w.ID {
					checkSame(t, got, w)
				}
			}
		}
	}
}

// testDuplicateIsNeverPending: a message the store finds to be a duplicate is not processed
// again, so it is stored without Pending, MappingVersion and ProcessingError, whatever the caller
// set (msgs updated to match), while the original keeps its own; within a batch and across
// batches.
func testDuplicateIsNeverPending(t *testing.T, st engine.MessageStore) {
	orig := newMessage("RIS", "STMARYS", "DP1", 1)
	orig.Pending, orig.MappingVersion = true, "orm_o01@1"
	inBatch := newMessage("RIS", "STMARYS", "DP1", 2)
	inBatch.Pending, inBatch.MappingVersion, inBatch.ProcessingError = true, "orm_o01@1", "set by the caller"
	commit(t, st, orig, inBatch)
	if !orig.Pending || orig.MappingVersion != "orm_o01@1" {
		t.Errorf("original: Pending %v MappingVersion %q, want true and its own", orig.Pending, orig.MappingVersion)
	}
	checkSame(t, read(t, st, orig.ID), orig)
	later := newMessage("RIS", "STMARYS", "DP1", 3)
	later.Pending, later.MappingVersion = true, "orm_o01@2"
	commit(t, st, later)
	for _, m := range []*engine.InboundMessage{inBatch, later} {
		checkDuplicate(t, st, m, orig)
		if m.Pending || m.MappingVersion != "" || m.ProcessingError != "" {
			t.Errorf("duplicate %d: Pending %v MappingVersion %q ProcessingError %q, want false and empty",
				m.ID, m.Pending, m.MappingVersion, m.ProcessingError)
		}
	}
}

// testConcurrentOverlappingKeys: 8 committers send batches over one set of keys in different
// orders, as the group committers of several nodes would. Each key gets exactly one accepted
// message; every other message with the key is its duplicate, with its ACK.
func testConcurrentOverlappingKeys(t *testing.T, st engine.MessageStore) {
	const (
		committers = 8
		batches    = 20
		window     = 5  // batches that draw from one set of keys, so committers contend on it
		keys       = 12 // keys in a set
		maxBatch   = 16
	)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		all    []*engine.InboundMessage
		marker atomic.Int64
	)
	errs := make(chan error, committers)
	for c := range committers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 42))
			for b := range batches {
				batch := make([]*engine.InboundMessage, 1+rng.IntN(maxBatch))
				for i := range batch {
					key := fmt.Sprintf("K%d-%d", b/window, rng.IntN(keys))
					batch[i] = newMessage("RIS", "STMARYS", key, int(marker.Add(1)))
				}
				if err := st.CommitInbound(context.Background(), batch); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				all = append(all, batch...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent CommitInbound: %v", err)
	}

	byKey := map[string][]*engine.InboundMessage{}
	ids := map[int64]bool{}
	for _, m := range all {
		byKey[m.ControlID] = append(byKey[m.ControlID], m)
		if ids[m.ID] {
			t.Errorf("ID %d given to two messages", m.ID)
		}
		ids[m.ID] = true
	}
	for key, msgs := range byKey {
		var orig *engine.InboundMessage
		for _, m := range msgs {
			if m.Status == engine.StatusAccepted {
				if orig != nil {
					t.Errorf("key %s: messages %d and %d both accepted", key, orig.ID, m.ID)
				}
				orig = m
			}
		}
		if orig == nil {
			t.Errorf("key %s: no accepted message among %d", key, len(msgs))
			continue
		}
		for _, m := range msgs {
			if m != orig {
				checkDuplicate(t, st, m, orig)
			}
		}
		stored := list(t, st, engine.MessageFilter{ControlID: key, Limit: 1000})
		accepted := 0
		for _, m := range stored {
			if m.Status == engine.StatusAccepted {
				accepted++
			}
		}
		if len(stored) != len(msgs) || accepted != 1 {
			t.Errorf("key %s: store holds %d messages (%d accepted), want %d (1 accepted)", key, len(stored), accepted, len(msgs))
		}
	}
}

// filterFixture commits seven messages one second apart and returns them in commit order.
func filterFixture(t *testing.T, st engine.MessageStore) []*engine.InboundMessage {
	t.Helper()
	spec := []struct {
		facility, msgType, controlID string
		status                       engine.Status
	}{
		{"STMARYS", "ORM^O01", "F1", engine.StatusAccepted},
		{"STMARYS", "ORU^R01", "F2", engine.StatusAccepted},
		{"GENERAL", "ORM^O01", "F3", engine.StatusRejected},
		{"GENERAL", "ADT^A01", "F4", engine.StatusAccepted},
		{"STMARYS", "ORM^O01^ORM_O01", "F5", engine.StatusError},
		{"STMARYS", "ORM^O01", "F1", engine.StatusAccepted}, // becomes a duplicate of the first
		{"GENERAL", "O_M^O01", "F7", engine.StatusAccepted}, // LIKE's wildcard, literally
	}
	var msgs []*engine.InboundMessage
	for i, s := range spec {
		m := newMessage("RIS", s.facility, s.controlID, i)
		m.MessageType, m.Status, m.ReceivedAt = s.msgType, s.status, baseTime.Add(time.Duration(i)*time.Second)
		if s.status != engine.StatusAccepted {
			m.ACKCode, m.Error = "AE", "rejected for the test"
		}
		msgs = append(msgs, m)
	}
	commit(t, st, msgs[:4]...)
	commit(t, st, msgs[4:]...)
	if msgs[5].Status != engine.StatusDuplicate {
		t.Fatalf("fixture: message 5 is %s, want duplicate", msgs[5].Status)
	}
	return msgs
}

func testFilters(t *testing.T, st engine.MessageStore) {
	msgs := filterFixture(t, st)
	sec := func(n int) time.Time { return baseTime.Add(time.Duration(n) * time.Second) }
	tests := []struct {
		name   string
		filter engine.MessageFilter
		want   []int // indexes into msgs, newest first
	}{
		{"none", engine.MessageFilter{}, []int{6, 5, 4, 3, 2, 1, 0}},
		{"control ID", engine.MessageFilter{ControlID: "F1"}, []int{5, 0}},
		{"control ID is exact", engine.MessageFilter{ControlID: "F"}, nil},
		{"message code", engine.MessageFilter{MessageType: "ORM"}, []int{5, 4, 2, 0}},
		{"message code and trigger", engine.MessageFilter{MessageType: "ORM^O01"}, []int{5, 4, 2, 0}},
		{"message structure", engine.MessageFilter{MessageType: "ORM^O01^"}, []int{4}},
		{"underscore is literal", engine.MessageFilter{MessageType: "O_M"}, []int{6}},
		{"percent is literal", engine.MessageFilter{MessageType: "%"}, nil},
		{"type is case sensitive", engine.MessageFilter{MessageType: "orm"}, nil},
		{"status rejected", engine.MessageFilter{Status: engine.StatusRejected}, []int{2}},
		{"status duplicate", engine.MessageFilter{Status: engine.StatusDuplicate}, []int{5}},
		{"status accepted", engine.MessageFilter{Status: engine.StatusAccepted}, []int{6, 3, 1, 0}},
		{"sending facility", engine.MessageFilter{SendingFacility: "GENERAL"}, []int{6, 3, 2}},
		{"since is inclusive", engine.MessageFilter{Since: sec(2)}, []int{6, 5, 4, 3, 2}},
		{"until is exclusive", engine.MessageFilter{Until: sec(2)}, []int{1, 0}},
		{"since and until", engine.MessageFilter{Since: sec(1), Until: sec(4)}, []int{3, 2, 1}},
		{"time in another zone", engine.MessageFilter{Since: sec(5).In(time.FixedZone("EST", -5*3600))}, []int{6, 5}},
		{"combined", engine.MessageFilter{SendingFacility: "STMARYS", MessageType: "ORM", Status: engine.StatusAccepted}, []int{0}},
		{"before ID", engine.MessageFilter{BeforeID: msgs[4].ID}, []int{3, 2, 1, 0}},
		{"limit", engine.MessageFilter{Limit: 2}, []int{6, 5}},
		{"limit and before ID", engine.MessageFilter{Limit: 2, BeforeID: msgs[5].ID}, []int{4, 3}},
		{"before the first", engine.MessageFilter{BeforeID: msgs[0].ID}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := list(t, st, tt.filter)
			var gotIDs, wantIDs []int64
			for _, m := range got {
				gotIDs = append(gotIDs, m.ID)
			}
			for _, i := range tt.want {
				wantIDs = append(wantIDs, msgs[i].ID)
			}
			if !reflect.DeepEqual(gotIDs, wantIDs) {
				t.Errorf("Messages(%+v) IDs = %v, want %v", tt.filter, gotIDs, wantIDs)
			}
			for i, m := range got {
				if i < len(tt.want) {
					checkSame(t, m, msgs[tt.want[i]])
				}
			}
		})
	}
}

func testPaging(t *testing.T, st engine.MessageStore) {
	msgs := filterFixture(t, st)
	var seen []int64
	f := engine.MessageFilter{Limit: 3}
	for page := 0; ; page++ {
		got := list(t, st, f)
		if len(got) == 0 {
			break
		}
		if page > len(msgs) {
			t.Fatal("paging does not end")
		}
		for _, m := range got {
			seen = append(seen, m.ID)
		}
		f.BeforeID = got[len(got)-1].ID
	}
	var want []int64
	for i := len(msgs) - 1; i >= 0; i-- {
		want = append(want, msgs[i].ID)
	}
	if !reflect.DeepEqual(seen, want) {
		t.Errorf("pages of 3 gave IDs %v, want %v", seen, want)
	}
}

func testLimitDefaultAndCap(t *testing.T, st engine.MessageStore) {
	const total = 1005
	for start := 0; start < total; start += 201 {
		var batch []*engine.InboundMessage
		for i := start; i < min(start+201, total); i++ {
			batch = append(batch, rejected(newMessage("RIS", "STMARYS", "", i)))
		}
		commit(t, st, batch...)
	}
	for _, tt := range []struct {
		limit, want int
	}{{0, 100}, {-1, 100}, {7, 7}, {1000, 1000}, {5000, 1000}} {
		if got := list(t, st, engine.MessageFilter{Limit: tt.limit}); len(got) != tt.want {
			t.Errorf("Messages(Limit: %d) = %d messages, want %d", tt.limit, len(got), tt.want)
		}
	}
}

func testNotFound(t *testing.T, st engine.MessageStore) {
	m := newMessage("RIS", "STMARYS", "N1", 1)
	commit(t, st, m)
	for _, id := range []int64{m.ID + 1000, 0, -1} {
		got, err := st.Message(context.Background(), id)
		if !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("Message(%d) = %v, %v; want ErrNotFound", id, got, err)
		}
	}
}

func testPing(t *testing.T, st engine.MessageStore) {
	if err := st.Ping(context.Background()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

// BenchCommitInbound measures CommitInbound with batches of 1, 8 and 32 new accepted messages of
// about 170 bytes each, committed one after another, and with batches of 32 from two committers
// at once (engine.GroupCommitter's Workers: 2), each with the five search keys the intake
// extracts from it. It reports bytes/s of raw message and msgs/s.
// open must return a fresh, migrated store.
func BenchCommitInbound(b *testing.B, open func(b *testing.B) engine.MessageStore) {
	for _, bc := range []struct{ batch, committers int }{{1, 1}, {8, 1}, {32, 1}, {32, 2}} {
		name := fmt.Sprintf("batch=%d", bc.batch)
		if bc.committers > 1 {
			name += fmt.Sprintf("/committers=%d", bc.committers)
		}
		b.Run(name, func(b *testing.B) {
			st := open(b)
			var seq atomic.Int64
			newBatch := func() []*engine.InboundMessage {
				batch := make([]*engine.InboundMessage, bc.batch)
				for i := range batch {
					n := int(seq.Add(1))
					batch[i] = newMessage("RIS", "STMARYS", "BENCH"+strconv.Itoa(n), n)
					// The keys the intake extracts from it (engine.SearchKeysOf): PID-3, PID-5's
					// two words, ORC-2/3 (OBR-2/3 are the same numbers).
					batch[i].SearchKeys = []engine.SearchKey{{Kind: engine.KeyPatientID, Value: "MRN" + strconv.Itoa(n)},
						{Kind: engine.KeyName, Value: "doe"}, {Kind: engine.KeyName, Value: "jane"},
						{Kind: engine.KeyAccession, Value: "PL" + strconv.Itoa(n)}, {Kind: engine.KeyAccession, Value: "FL" + strconv.Itoa(n)}}
				}
				return batch
			}
			var size int64
			for _, m := range newBatch() {
				size += int64(len(m.Raw))
			}
			b.SetBytes(size)

			work := make(chan struct{})
			var wg sync.WaitGroup
			for range bc.committers {
				wg.Go(func() {
					for range work {
						if err := st.CommitInbound(context.Background(), newBatch()); err != nil {
							b.Error(err)
						}
					}
				})
			}
			for b.Loop() {
				work <- struct{}{}
			}
			close(work)
			wg.Wait()
			b.ReportMetric(float64(b.N*bc.batch)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
