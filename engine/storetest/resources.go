package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/fhir"
)

// RunResources runs the contract of engine.Store beyond the message log: resources (versions,
// keys, search), the Modality Worklist and transactions (engine.Tx). open is called once per
// subtest and must return a fresh, migrated, empty store that it closes in t.Cleanup; subtests
// run in parallel.
//
// Tests that race two transactions hold one open while the other starts; they pass on a store
// with one writer (the second waits at Begin) and on one with row locks (it waits at the write).
func RunResources(t *testing.T, open func(t *testing.T) engine.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, st engine.Store)
	}{
		{"PutAndReadBack", testPutAndReadBack},
		{"Versions", testVersions},
		{"InvalidResource", testInvalidResource},
		{"ResourceNotFound", testResourceNotFound},
		{"Keys", testKeys},
		{"KeyRace", testKeyRace},
		{"VersionRace", testVersionRace},
		{"TxSeesItsWrites", testTxSeesItsWrites},
		{"Rollback", testRollback},
		{"Savepoint", testSavepoint},
		{"RecoverAfterConflict", testRecoverAfterConflict},
		{"FailedTxDoesNotCommit", testFailedTxDoesNotCommit},
		{"InsertInbound", testInsertInbound},
		{"InsertInboundRace", testInsertInboundRace},
		{"InsertInboundProcessingFields", testInsertInboundProcessingFields},
		{"ClaimPending", testClaimPending},
		{"ClaimPendingRolledBack", testClaimPendingRolledBack},
		{"ClaimPendingConcurrently", testClaimPendingConcurrently},
		{"ResourceByKeys", testResourceByKeys},
		{"LongIndexValues", testLongIndexValues},
		{"Search", testSearch},
		{"SearchCurrentVersionsOnly", testSearchCurrentVersionsOnly},
		{"SearchPaging", testSearchPaging},
		{"SearchCountDefaultAndCap", testSearchCountDefaultAndCap},
		{"Worklist", testWorklist},
		{"WorklistFilters", testWorklistFilters},
		{"WorklistEveryField", testWorklistEveryField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, open(t))
		})
	}
}

// newResource returns version of typ/id, last updated at, with JSON that carries them and extra
// members (JSON text starting with a comma, or "").
func newResource(typ, id string, version int64, at time.Time, extra string, index []fhir.IndexEntry, keys ...string) *engine.Resource {
	body := fmt.Sprintf(`{"resourceType":%q,"id":%q,"meta":{"versionId":"%d","lastUpdated":%q}%s}`,
		typ, id, version, at.UTC().Format("2006-01-02T15:04:05.000Z"), extra)
	return &engine.Resource{Type: typ, ID: id, VersionID: version, LastUpdated: at, JSON: []byte(body),
		Index: index, Keys: keys}
}

func begin(t testing.TB, st engine.Store) engine.Tx {
	t.Helper()
	tx, err := st.Begin(context.Background())
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	t.Cleanup(func() { tx.Rollback() })
	return tx
}

func put(t testing.TB, tx engine.Tx, r *engine.Resource) {
	t.Helper()
	if err := tx.PutResource(context.Background(), r); err != nil {
		t.Fatalf("PutResource(%s/%s version %d): %v", r.Type, r.ID, r.VersionID, err)
	}
}

func commitTx(t testing.TB, tx engine.Tx) {
	t.Helper()
	if err := tx.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

// putAll stores rs in one transaction.
func putAll(t testing.TB, st engine.Store, rs ...*engine.Resource) {
	t.Helper()
	tx := begin(t, st)
	for _, r := range rs {
		put(t, tx, r)
	}
	commitTx(t, tx)
}

// checkResource fails t unless got is want as stored: type, id, version, JSON byte for byte,
// LastUpdated to the microsecond and in UTC.
func checkResource(t *testing.T, got, want *engine.Resource) {
	t.Helper()
	if got.Type != want.Type || got.ID != want.ID || got.VersionID != want.VersionID {
		t.Errorf("got %s/%s version %d, want %s/%s version %d", got.Type, got.ID, got.VersionID, want.Type, want.ID, want.VersionID)
	}
	if !bytes.Equal(got.JSON, want.JSON) {
		t.Errorf("%s/%s version %d: JSON\n got %q\nwant %q", want.Type, want.ID, want.VersionID, got.JSON, want.JSON)
	}
	if d := got.LastUpdated.Sub(want.LastUpdated); d <= -time.Microsecond || d >= time.Microsecond || got.LastUpdated.Location() != time.UTC {
		t.Errorf("%s/%s version %d: LastUpdated %v, want %v in UTC (within 1µs)", want.Type, want.ID, want.VersionID, got.LastUpdated, want.LastUpdated)
	}
}

func current(t *testing.T, rd engine.ResourceReader, typ, id string) *engine.Resource {
	t.Helper()
	r, err := rd.Resource(context.Background(), typ, id)
	if err != nil {
		t.Fatalf("Resource(%s, %s): %v", typ, id, err)
	}
	return r
}

func checkNotFound(t *testing.T, rd engine.ResourceReader, typ, id string) {
	t.Helper()
	if r, err := rd.Resource(context.Background(), typ, id); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Resource(%s, %s) = %v, %v; want ErrNotFound", typ, id, r, err)
	}
}

func checkKey(t *testing.T, rd engine.ResourceReader, typ, key, wantID string) {
	t.Helper()
	id, err := rd.ResolveKey(context.Background(), typ, key)
	switch {
	case wantID == "" && !errors.Is(err, engine.ErrNotFound):
		t.Errorf("ResolveKey(%s, %s) = %q, %v; want ErrNotFound", typ, key, id, err)
	case wantID != "" && (err != nil || id != wantID):
		t.Errorf("ResolveKey(%s, %s) = %q, %v; want %q", typ, key, id, err, wantID)
	}
}

func testPutAndReadBack(t *testing.T, st engine.Store) {
	ctx := context.Background()
	at := time.Date(2026, 11, 27, 7, 50, 33, 123456789, time.FixedZone("CET", 3600))
	r := newResource("Patient", "p-1.a", 1, at, "", nil)
	// The bytes are the engine's, exactly: whitespace, key order, escapes and a number's form
	// all come back as written (a jsonb column would normalise them).
	r.JSON = []byte("{\"resourceType\" : \"Patient\",\n  \"id\":\"p-1.a\", \"meta\":{\"versionId\":\"1\"},\t" +
		"\"name\":[{\"family\":\"M\\u00fcller\",\"given\":[\"Zo\u00eb\"]}], \"z\":1.0e0, \"a\":{}}\n")
	want := *r
	putAll(t, st, r)
	checkResource(t, current(t, st, "Patient", "p-1.a"), &want)
	v, err := st.ResourceVersion(ctx, "Patient", "p-1.a", 1)
	if err != nil {
		t.Fatalf("ResourceVersion: %v", err)
	}
	checkResource(t, v, &want)
	h, err := st.ResourceHistory(ctx, "Patient", "p-1.a")
	if err != nil || len(h) != 1 {
		t.Fatalf("ResourceHistory = %d versions, %v; want 1", len(h), err)
	}
	checkResource(t, h[0], &want)
	if !bytes.Equal(r.JSON, want.JSON) {
		t.Error("PutResource changed the caller's JSON")
	}
}

func testVersions(t *testing.T, st engine.Store) {
	ctx := context.Background()
	at := baseTime
	v1 := newResource("Patient", "p1", 1, at, `,"gender":"female"`, nil)
	v2 := newResource("Patient", "p1", 2, at.Add(time.Minute), `,"gender":"male"`, nil)
	v3 := newResource("Patient", "p1", 3, at.Add(2*time.Minute), `,"gender":"other"`, nil)
	putAll(t, st, v1)

	for _, tt := range []struct {
		name string
		r    *engine.Resource
	}{
		{"version 1 again", newResource("Patient", "p1", 1, at, "", nil)},
		{"version 3 after 1", v3},
		{"new resource at version 2", newResource("Patient", "p2", 2, at, "", nil)},
	} {
		tx := begin(t, st)
		if err := tx.PutResource(ctx, tt.r); !errors.Is(err, engine.ErrConflict) {
			t.Errorf("%s: PutResource = %v, want ErrConflict", tt.name, err)
		}
		tx.Rollback()
	}
	checkResource(t, current(t, st, "Patient", "p1"), v1)
	checkNotFound(t, st, "Patient", "p2")

	putAll(t, st, v2)
	putAll(t, st, v3)
	checkResource(t, current(t, st, "Patient", "p1"), v3)
	h, err := st.ResourceHistory(ctx, "Patient", "p1")
	if err != nil {
		t.Fatal(err)
	}
	var versions []int64
	for _, r := range h {
		versions = append(versions, r.VersionID)
	}
	if !slices.Equal(versions, []int64{3, 2, 1}) {
		t.Fatalf("ResourceHistory versions = %v, want [3 2 1]", versions)
	}
	for i, want := range []*engine.Resource{v3, v2, v1} {
		checkResource(t, h[i], want)
		got, err := st.ResourceVersion(ctx, "Patient", "p1", want.VersionID)
		if err != nil {
			t.Fatal(err)
		}
		checkResource(t, got, want)
	}
	// Two versions in one transaction.
	tx := begin(t, st)
	put(t, tx, newResource("Patient", "p1", 4, at.Add(3*time.Minute), "", nil))
	v5 := newResource("Patient", "p1", 5, at.Add(4*time.Minute), "", nil)
	put(t, tx, v5)
	commitTx(t, tx)
	checkResource(t, current(t, st, "Patient", "p1"), v5)
	// The same id in another type is another resource.
	putAll(t, st, newResource("Encounter", "p1", 1, at, "", nil))
	if got := current(t, st, "Patient", "p1"); got.VersionID != 5 {
		t.Errorf("Patient/p1 is at version %d after writing Encounter/p1, want 5", got.VersionID)
	}
}

func testInvalidResource(t *testing.T, st engine.Store) {
	ctx := context.Background()
	ok := func() *engine.Resource { return newResource("Patient", "ok", 1, baseTime, "", nil) }
	for _, tt := range []struct {
		name   string
		mutate func(r *engine.Resource)
	}{
		{"empty id", func(r *engine.Resource) { r.ID = "" }},
		{"id with a slash", func(r *engine.Resource) { r.ID = "a/b" }},
		{"id too long", func(r *engine.Resource) { r.ID = strings.Repeat("a", 65) }},
		{"empty type", func(r *engine.Resource) { r.Type = "" }},
		{"version 0", func(r *engine.Resource) { r.VersionID = 0 }},
		{"no JSON", func(r *engine.Resource) { r.JSON = nil }},
		{"no LastUpdated", func(r *engine.Resource) { r.LastUpdated = time.Time{} }},
	} {
		r := ok()
		tt.mutate(r)
		tx := begin(t, st)
		if err := tx.PutResource(ctx, r); err == nil {
			t.Errorf("%s: PutResource succeeded, want an error", tt.name)
		}
		tx.Rollback()
	}
	if got, err := st.SearchResources(ctx, engine.ResourceQuery{Type: "Patient"}); err != nil || len(got) != 0 {
		t.Errorf("after invalid writes, search = %d resources, %v; want none", len(got), err)
	}
}

func testResourceNotFound(t *testing.T, st engine.Store) {
	ctx := context.Background()
	putAll(t, st, newResource("Patient", "p1", 1, baseTime, "", nil, "identifier|urn:mrn|1"))
	checkNotFound(t, st, "Patient", "p2")
	checkNotFound(t, st, "Encounter", "p1")
	// Ids the HTTP API passes on from a URL: not found, never a database error.
	for _, id := range []string{"", "p1\x00", "p\xff1", "a/b", "p1' OR '1'='1", strings.Repeat("p", 65)} {
		checkNotFound(t, st, "Patient", id)
	}
	checkNotFound(t, st, "Pat\x00ient", "p1")
	if r, err := st.ResourceVersion(ctx, "Patient", "p1", 2); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("ResourceVersion(p1, 2) = %v, %v; want ErrNotFound", r, err)
	}
	if h, err := st.ResourceHistory(ctx, "Patient", "p2"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("ResourceHistory(p2) = %v, %v; want ErrNotFound", h, err)
	}
	checkKey(t, st, "Patient", "identifier|urn:mrn|2", "")
	checkKey(t, st, "Patient", "identifier|urn:mrn|1\x00\xff", "")
	checkKey(t, st, "Encounter", "identifier|urn:mrn|1", "")
}

func testKeys(t *testing.T, st engine.Store) {
	ctx := context.Background()
	const (
		mrn1 = "identifier|urn:oid:1.2.3|MRN1"
		mrn2 = "identifier|urn:oid:1.2.3|MRN2"
		ssn  = "identifier|http://hl7.org/fhir/sid/us-ssn|123"
	)
	putAll(t, st, newResource("Patient", "a", 1, baseTime, "", nil, mrn1, ssn, mrn1)) // listed twice: fine
	checkKey(t, st, "Patient", mrn1, "a")
	checkKey(t, st, "Patient", ssn, "a")
	checkKey(t, st, "ServiceRequest", mrn1, "") // keys are per type

	// Another patient may not take a held key: ErrConflict, and nothing of it is written.
	tx := begin(t, st)
	if err := tx.PutResource(ctx, newResource("Patient", "b", 1, baseTime, "", nil, mrn2, ssn)); !errors.Is(err, engine.ErrConflict) {
		t.Fatalf("claiming a held key: PutResource = %v, want ErrConflict", err)
	}
	tx.Rollback()
	checkNotFound(t, st, "Patient", "b")
	checkKey(t, st, "Patient", mrn2, "")

	// Another type may hold the same key text.
	putAll(t, st, newResource("ServiceRequest", "b", 1, baseTime, "", nil, mrn1))
	checkKey(t, st, "ServiceRequest", mrn1, "b")

	// A new version keeps the keys it lists (mrn1), releases the rest (ssn), claims new ones.
	putAll(t, st, newResource("Patient", "a", 2, baseTime, "", nil, mrn1, mrn2))
	checkKey(t, st, "Patient", mrn1, "a")
	checkKey(t, st, "Patient", mrn2, "a")
	checkKey(t, st, "Patient", ssn, "")
	// The released key is free for another patient.
	putAll(t, st, newResource("Patient", "b", 1, baseTime, "", nil, ssn))
	checkKey(t, st, "Patient", ssn, "b")
	// A version without keys releases them all.
	putAll(t, st, newResource("Patient", "a", 3, baseTime, "", nil))
	checkKey(t, st, "Patient", mrn1, "")
	checkKey(t, st, "Patient", mrn2, "")
	// Keys are compared exactly.
	putAll(t, st, newResource("Patient", "c", 1, baseTime, "", nil, strings.ToLower(mrn1)))
	checkKey(t, st, "Patient", strings.ToLower(mrn1), "c")
	checkKey(t, st, "Patient", mrn1, "")
	// A key can move between patients in one transaction (a merge): release, then claim.
	tx = begin(t, st)
	put(t, tx, newResource("Patient", "b", 2, baseTime, "", nil))
	put(t, tx, newResource("Patient", "c", 2, baseTime, "", nil, strings.ToLower(mrn1), ssn))
	commitTx(t, tx)
	checkKey(t, st, "Patient", ssn, "c")
}

// race runs first in a transaction left open, then starts second in another transaction, waits
// until second is blocked behind first, and ends first with commit or rollback. It returns
// second's error (from Begin, its step, or Commit).
func race(t *testing.T, st engine.Store, first func(tx engine.Tx), second func(tx engine.Tx) error, commitFirst bool) error {
	t.Helper()
	tx1 := begin(t, st)
	first(tx1)
	done := make(chan error, 1)
	go func() {
		tx2, err := st.Begin(context.Background())
		if err != nil {
			done <- err
			return
		}
		defer tx2.Rollback()
		if err := second(tx2); err != nil {
			done <- err
			return
		}
		done <- tx2.Commit()
	}()
	select {
	case err := <-done:
		t.Fatalf("second transaction ended (%v) while the first held what it needs", err)
	case <-time.After(200 * time.Millisecond):
	}
	if commitFirst {
		commitTx(t, tx1)
	} else if err := tx1.Rollback(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("second transaction still blocked 30s after the first ended")
		return nil
	}
}

// testKeyRace: two nodes create the same patient (two ids, one MRN) at once. One wins; the other
// gets ErrConflict (and the engine answers AE, so the sender retries and finds the patient).
func testKeyRace(t *testing.T, st engine.Store) {
	const mrn = "identifier|urn:oid:1.2.3|RACE"
	for _, commitFirst := range []bool{true, false} {
		a := fmt.Sprintf("a-%v", commitFirst)
		b := fmt.Sprintf("b-%v", commitFirst)
		key := mrn + a
		err := race(t, st,
			func(tx engine.Tx) { put(t, tx, newResource("Patient", a, 1, baseTime, "", nil, key)) },
			func(tx engine.Tx) error {
				return tx.PutResource(context.Background(), newResource("Patient", b, 1, baseTime, "", nil, key))
			}, commitFirst)
		if commitFirst {
			if !errors.Is(err, engine.ErrConflict) {
				t.Errorf("second claim of a key committed meanwhile: %v, want ErrConflict", err)
			}
			checkKey(t, st, "Patient", key, a)
			checkNotFound(t, st, "Patient", b)
		} else {
			if err != nil {
				t.Errorf("claim of a key whose other claimant rolled back: %v, want success", err)
			}
			checkKey(t, st, "Patient", key, b)
			checkNotFound(t, st, "Patient", a)
		}
	}
}

// testVersionRace: two transactions write version 2 of one resource; the second to get there
// gets ErrConflict once the first commits, and succeeds if the first rolls back.
func testVersionRace(t *testing.T, st engine.Store) {
	for _, commitFirst := range []bool{true, false} {
		id := fmt.Sprintf("p-%v", commitFirst)
		putAll(t, st, newResource("Patient", id, 1, baseTime, "", nil))
		first := newResource("Patient", id, 2, baseTime, `,"by":"first"`, nil)
		second := newResource("Patient", id, 2, baseTime, `,"by":"second"`, nil)
		err := race(t, st,
			func(tx engine.Tx) { put(t, tx, first) },
			func(tx engine.Tx) error { return tx.PutResource(context.Background(), second) },
			commitFirst)
		if commitFirst {
			if !errors.Is(err, engine.ErrConflict) {
				t.Errorf("second write of version 2: %v, want ErrConflict", err)
			}
			checkResource(t, current(t, st, "Patient", id), first)
		} else {
			if err != nil {
				t.Errorf("write of version 2 after the other rolled back: %v", err)
			}
			checkResource(t, current(t, st, "Patient", id), second)
		}
	}
}

func testTxSeesItsWrites(t *testing.T, st engine.Store) {
	ctx := context.Background()
	const mrn = "identifier|urn:mrn|T1"
	putAll(t, st, newResource("Patient", "old", 1, baseTime, "", []fhir.IndexEntry{{Param: "family", Value: "doe"}}))
	tx := begin(t, st)
	v1 := newResource("Patient", "new", 1, baseTime.Add(time.Second), "", []fhir.IndexEntry{{Param: "family", Value: "doe"}}, mrn)
	put(t, tx, v1)
	oldV2 := newResource("Patient", "old", 2, baseTime.Add(2*time.Second), "", []fhir.IndexEntry{{Param: "family", Value: "roe"}})
	put(t, tx, oldV2)

	// Inside: its writes.
	checkResource(t, current(t, tx, "Patient", "new"), v1)
	checkResource(t, current(t, tx, "Patient", "old"), oldV2)
	checkKey(t, tx, "Patient", mrn, "new")
	if h, err := tx.ResourceHistory(ctx, "Patient", "old"); err != nil || len(h) != 2 {
		t.Errorf("in the transaction, history of Patient/old = %d versions, %v; want 2", len(h), err)
	}
	if r, err := tx.ResourceVersion(ctx, "Patient", "old", 2); err != nil {
		t.Errorf("in the transaction, ResourceVersion(old, 2): %v", err)
	} else {
		checkResource(t, r, oldV2)
	}
	searchIDs(t, tx, engine.ResourceQuery{Type: "Patient", Filters: []engine.SearchFilter{
		{Param: "family", Op: engine.SearchEq, Values: []engine.SearchValue{{Value: "doe"}}}}}, "new")
	item := newWorklistItem("sr-new", "ACC-NEW", "MRN-NEW", "CT", "CT1", "20261127", "0900")
	if err := tx.PutWorklistItem(ctx, item); err != nil {
		t.Fatal(err)
	}
	if items, err := tx.WorklistItems(ctx, engine.WorklistFilter{PatientID: "MRN-NEW"}); err != nil || len(items) != 1 || !reflect.DeepEqual(items[0], item) {
		t.Errorf("in the transaction, WorklistItems = %v, %v; want its own item", items, err)
	}
	// Not found is an answer: the transaction goes on.
	checkNotFound(t, tx, "Patient", "missing")
	checkKey(t, tx, "Patient", "identifier|urn:mrn|none", "")

	// Outside, until the commit: the state before it.
	checkNotFound(t, st, "Patient", "new")
	checkKey(t, st, "Patient", mrn, "")
	if got := current(t, st, "Patient", "old"); got.VersionID != 1 {
		t.Errorf("outside the transaction, Patient/old is at version %d, want 1", got.VersionID)
	}
	searchIDs(t, st, engine.ResourceQuery{Type: "Patient", Filters: []engine.SearchFilter{
		{Param: "family", Op: engine.SearchEq, Values: []engine.SearchValue{{Value: "doe"}}}}}, "old")
	if items := worklist(t, st, engine.WorklistFilter{}); len(items) != 0 {
		t.Errorf("outside the transaction, before its commit, the worklist has %d items", len(items))
	}

	commitTx(t, tx)
	if items := worklist(t, st, engine.WorklistFilter{PatientID: "MRN-NEW"}); len(items) != 1 {
		t.Errorf("after the commit, the worklist has %d items of the patient, want 1", len(items))
	}
	checkResource(t, current(t, st, "Patient", "new"), v1)
	checkKey(t, st, "Patient", mrn, "new")
	checkResource(t, current(t, st, "Patient", "old"), oldV2)
}

func testRollback(t *testing.T, st engine.Store) {
	ctx := context.Background()
	tx := begin(t, st)
	m := newMessage("RIS", "STMARYS", "RB1", 1)
	if err := tx.InsertInbound(ctx, m); err != nil {
		t.Fatal(err)
	}
	put(t, tx, newResource("Patient", "p1", 1, baseTime, "", nil, "identifier|urn:mrn|RB"))
	if err := tx.PutWorklistItem(ctx, &engine.WorklistItem{ServiceRequestID: "sr1", AccessionNumber: "A1"}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Errorf("second Rollback: %v, want nil", err)
	}
	if err := tx.Commit(); err == nil {
		t.Error("Commit after Rollback succeeded, want an error")
	}
	checkNotFound(t, st, "Patient", "p1")
	checkKey(t, st, "Patient", "identifier|urn:mrn|RB", "")
	if got, err := st.Message(ctx, m.ID); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Message(%d) after rollback = %v, %v; want ErrNotFound", m.ID, got, err)
	}
	if items := worklist(t, st, engine.WorklistFilter{}); len(items) != 0 {
		t.Errorf("worklist after rollback: %d items, want 0", len(items))
	}
	// The rolled-back message left no original behind.
	again := newMessage("RIS", "STMARYS", "RB1", 2)
	commit(t, st, again)
	checkStatus(t, st, again, engine.StatusAccepted)

	// After Commit, Rollback does nothing and a second Commit fails.
	tx = begin(t, st)
	put(t, tx, newResource("Patient", "p2", 1, baseTime, "", nil))
	commitTx(t, tx)
	if err := tx.Rollback(); err != nil {
		t.Errorf("Rollback after Commit: %v, want nil", err)
	}
	if err := tx.Commit(); err == nil {
		t.Error("second Commit succeeded, want an error")
	}
	current(t, st, "Patient", "p2")
}

func testSavepoint(t *testing.T, st engine.Store) {
	ctx := context.Background()
	tx := begin(t, st)
	if err := tx.RollbackToSavepoint(ctx); err == nil {
		t.Error("RollbackToSavepoint without a savepoint succeeded, want an error")
	}
	put(t, tx, newResource("Patient", "a", 1, baseTime, "", nil, "k|a"))
	if err := tx.Savepoint(ctx); err != nil {
		t.Fatalf("Savepoint: %v", err)
	}
	put(t, tx, newResource("Patient", "b", 1, baseTime, "", nil, "k|b"))
	put(t, tx, newResource("Patient", "a", 2, baseTime, "", nil))
	if err := tx.PutWorklistItem(ctx, &engine.WorklistItem{ServiceRequestID: "sr-b"}); err != nil {
		t.Fatal(err)
	}
	if err := tx.RollbackToSavepoint(ctx); err != nil {
		t.Fatalf("RollbackToSavepoint: %v", err)
	}
	checkNotFound(t, tx, "Patient", "b")
	checkKey(t, tx, "Patient", "k|b", "")
	if items, err := tx.WorklistItems(ctx, engine.WorklistFilter{}); err != nil || len(items) != 0 {
		t.Errorf("after rolling back to the savepoint, WorklistItems = %d items, %v; want none", len(items), err)
	}
	checkKey(t, tx, "Patient", "k|a", "a") // the version 2 that released it is undone
	if got := current(t, tx, "Patient", "a"); got.VersionID != 1 {
		t.Errorf("Patient/a at version %d after rolling back to the savepoint, want 1", got.VersionID)
	}
	// The savepoint stays: roll back to it again.
	put(t, tx, newResource("Patient", "c", 1, baseTime, "", nil))
	if err := tx.RollbackToSavepoint(ctx); err != nil {
		t.Fatalf("second RollbackToSavepoint: %v", err)
	}
	checkNotFound(t, tx, "Patient", "c")
	// A new savepoint replaces it: rolling back keeps what came before the new one.
	put(t, tx, newResource("Patient", "d", 1, baseTime, "", nil))
	if err := tx.Savepoint(ctx); err != nil {
		t.Fatal(err)
	}
	put(t, tx, newResource("Patient", "e", 1, baseTime, "", nil))
	if err := tx.RollbackToSavepoint(ctx); err != nil {
		t.Fatal(err)
	}
	checkNotFound(t, tx, "Patient", "e")
	put(t, tx, newResource("Patient", "f", 1, baseTime, "", nil))
	// Many savepoints in one transaction: each replaces the last.
	for range 100 {
		if err := tx.Savepoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	commitTx(t, tx)
	for _, id := range []string{"a", "d", "f"} {
		current(t, st, "Patient", id)
	}
	for _, id := range []string{"b", "c", "e"} {
		checkNotFound(t, st, "Patient", id)
	}
	if items := worklist(t, st, engine.WorklistFilter{}); len(items) != 0 {
		t.Errorf("worklist item written after the savepoint survived: %d items", len(items))
	}
}

// testRecoverAfterConflict: after ErrConflict, from a stale version or a held key, the
// transaction refuses further steps until RollbackToSavepoint; then it goes on, keeps what came
// before the savepoint, and commits. This is how the engine records a message whose effects
// conflicted: the message stays, answered AE.
func testRecoverAfterConflict(t *testing.T, st engine.Store) {
	ctx := context.Background()
	putAll(t, st, newResource("Patient", "held", 1, baseTime, "", nil, "k|held"))
	for _, tt := range []struct {
		name     string
		conflict *engine.Resource
	}{
		{"stale version", newResource("Patient", "held", 1, baseTime, "", nil)},
		{"held key", newResource("Patient", "other", 1, baseTime, "", nil, "k|held")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tx := begin(t, st)
			m := newMessage("RIS", "STMARYS", "RC-"+tt.name, 1)
			if err := tx.InsertInbound(ctx, m); err != nil {
				t.Fatal(err)
			}
			if err := tx.Savepoint(ctx); err != nil {
				t.Fatal(err)
			}
			put(t, tx, newResource("Patient", "lost-"+tt.conflict.ID, 1, baseTime, "", nil))
			if err := tx.PutResource(ctx, tt.conflict); !errors.Is(err, engine.ErrConflict) {
				t.Fatalf("PutResource = %v, want ErrConflict", err)
			}
			if _, err := tx.Resource(ctx, "Patient", "held"); err == nil {
				t.Error("a read after ErrConflict succeeded; want the transaction refused until RollbackToSavepoint")
			}
			if err := tx.RollbackToSavepoint(ctx); err != nil {
				t.Fatalf("RollbackToSavepoint after ErrConflict: %v", err)
			}
			checkNotFound(t, tx, "Patient", "lost-"+tt.conflict.ID)
			put(t, tx, newResource("Patient", "after-"+tt.conflict.ID, 1, baseTime, "", nil))
			commitTx(t, tx)
			checkStatus(t, st, m, engine.StatusAccepted)
			current(t, st, "Patient", "after-"+tt.conflict.ID)
			checkNotFound(t, st, "Patient", "lost-"+tt.conflict.ID)
			checkKey(t, st, "Patient", "k|held", "held")
		})
	}
}

// testFailedTxDoesNotCommit: a transaction that failed and was not rolled back to a savepoint
// commits nothing, and Commit says so.
func testFailedTxDoesNotCommit(t *testing.T, st engine.Store) {
	ctx := context.Background()
	putAll(t, st, newResource("Patient", "held", 1, baseTime, "", nil, "k|held"))
	tx := begin(t, st)
	put(t, tx, newResource("Patient", "a", 1, baseTime, "", nil))
	if err := tx.PutResource(ctx, newResource("Patient", "b", 1, baseTime, "", nil, "k|held")); !errors.Is(err, engine.ErrConflict) {
		t.Fatalf("PutResource = %v, want ErrConflict", err)
	}
	if err := tx.PutResource(ctx, newResource("Patient", "c", 1, baseTime, "", nil)); err == nil {
		t.Error("PutResource after ErrConflict succeeded; want the transaction refused")
	}
	if err := tx.Commit(); err == nil {
		t.Error("Commit after ErrConflict succeeded, want an error")
	}
	for _, id := range []string{"a", "b", "c"} {
		checkNotFound(t, st, "Patient", id)
	}
	// The store goes on.
	putAll(t, st, newResource("Patient", "d", 1, baseTime, "", nil))
}

func testInsertInbound(t *testing.T, st engine.Store) {
	ctx := context.Background()
	orig := newMessage("RIS", "STMARYS", "TX1", 1)
	orig.ACKCode = "CA"
	want := clone(orig)
	tx := begin(t, st)
	if err := tx.InsertInbound(ctx, orig); err != nil {
		t.Fatalf("InsertInbound: %v", err)
	}
	if orig.ID <= 0 {
		t.Fatalf("ID %d after InsertInbound, want > 0", orig.ID)
	}
	want.ID = orig.ID
	checkSame(t, orig, want)
	// The same key again in the transaction: a duplicate of the first, with its ACK.
	dup := newMessage("RIS", "STMARYS", "TX1", 2)
	if err := tx.InsertInbound(ctx, dup); err != nil {
		t.Fatal(err)
	}
	// Rejected and keyless messages are stored as they are.
	rej := rejected(newMessage("RIS", "STMARYS", "TX1", 3))
	keyless := newMessage("RIS", "STMARYS", "", 4)
	odd := newMessage("R\xffIS", "STMARYS", "TX\x002", 5)
	for _, m := range []*engine.InboundMessage{rej, keyless, odd} {
		if err := tx.InsertInbound(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	bad := newMessage("RIS", "STMARYS", "TX3", 6)
	bad.Status = "bogus"
	if err := tx.InsertInbound(ctx, bad); err == nil {
		t.Error("InsertInbound with an invalid status succeeded, want an error")
	}
	if _, err := st.Message(ctx, orig.ID); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("message visible outside its transaction before the commit: %v", err)
	}
	commitTx(t, tx)
	checkStatus(t, st, orig, engine.StatusAccepted)
	checkDuplicate(t, st, dup, orig)
	checkStatus(t, st, rej, engine.StatusRejected)
	checkStatus(t, st, keyless, engine.StatusAccepted)
	if odd.SendingApplication != "R\uFFFDIS" || odd.ControlID != "TX\uFFFD2" {
		t.Errorf("header text stored as %q/%q, want it made valid UTF-8 as CommitInbound does", odd.SendingApplication, odd.ControlID)
	}
	checkStatus(t, st, odd, engine.StatusAccepted)
	if !(orig.ID < dup.ID && dup.ID < rej.ID && rej.ID < keyless.ID) {
		t.Errorf("IDs %d, %d, %d, %d not in insert order", orig.ID, dup.ID, rej.ID, keyless.ID)
	}

	// Later: by a transaction and by CommitInbound, both duplicates of the committed original.
	tx = begin(t, st)
	later := newMessage("RIS", "STMARYS", "TX1", 7)
	if err := tx.InsertInbound(ctx, later); err != nil {
		t.Fatal(err)
	}
	commitTx(t, tx)
	checkDuplicate(t, st, later, orig)
	batch := newMessage("RIS", "STMARYS", "TX1", 8)
	commit(t, st, batch)
	checkDuplicate(t, st, batch, orig)
	// And the other way round: a transaction's message duplicates a CommitInbound original.
	first := newMessage("RIS", "STMARYS", "TX9", 9)
	commit(t, st, first)
	tx = begin(t, st)
	second := newMessage("RIS", "STMARYS", "TX9", 10)
	if err := tx.InsertInbound(ctx, second); err != nil {
		t.Fatal(err)
	}
	commitTx(t, tx)
	checkDuplicate(t, st, second, first)
}

// testInsertInboundRace: a message in an open transaction holds its key. CommitInbound of the
// same key (another node's group commit) waits for it: the transaction commits, and the batch's
// message is its duplicate; or it rolls back, and the batch's message is accepted.
func testInsertInboundRace(t *testing.T, st engine.Store) {
	ctx := context.Background()
	for _, commitFirst := range []bool{true, false} {
		key := fmt.Sprintf("RACE-%v", commitFirst)
		tx := begin(t, st)
		inTx := newMessage("RIS", "STMARYS", key, 1)
		if err := tx.InsertInbound(ctx, inTx); err != nil {
			t.Fatal(err)
		}
		m := newMessage("RIS", "STMARYS", key, 2)
		done := make(chan error, 1)
		go func() { done <- st.CommitInbound(ctx, []*engine.InboundMessage{m}) }()
		select {
		case err := <-done:
			t.Fatalf("CommitInbound returned (%v) while a transaction held the key", err)
		case <-time.After(200 * time.Millisecond):
		}
		if commitFirst {
			commitTx(t, tx)
		} else if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("CommitInbound: %v", err)
		}
		if commitFirst {
			checkDuplicate(t, st, m, inTx)
		} else {
			checkStatus(t, st, m, engine.StatusAccepted)
		}
	}
}

// testInsertInboundProcessingFields: InsertInbound stores MappingVersion, Pending and
// ProcessingError as CommitInbound does: Pending only on an accepted message, and a duplicate
// never pending and without mapping version or processing error.
func testInsertInboundProcessingFields(t *testing.T, st engine.Store) {
	ctx := context.Background()
	orig := newMessage("RIS", "STMARYS", "TXP1", 1)
	orig.Pending, orig.MappingVersion = true, "orm_o01@1"
	mapped := newMessage("RIS", "STMARYS", "TXP2", 2)
	mapped.MappingVersion, mapped.ProcessingError = "orm_o01@1", "ORC-2: unknown order \x00"
	errored := newMessage("RIS", "STMARYS", "TXP3", 3)
	errored.Status, errored.ACKCode, errored.Error = engine.StatusError, "AE", "no procedure code"
	errored.Pending, errored.MappingVersion = true, "orm_o01@1"
	dup := newMessage("RIS", "STMARYS", "TXP1", 4)
	dup.Pending, dup.MappingVersion, dup.ProcessingError = true, "orm_o01@1", "set by the caller"

	tx := begin(t, st)
	for _, m := range []*engine.InboundMessage{orig, mapped, errored, dup} {
		if err := tx.InsertInbound(ctx, m); err != nil {
			t.Fatalf("InsertInbound: %v", err)
		}
	}
	commitTx(t, tx)
	if !orig.Pending || orig.MappingVersion != "orm_o01@1" {
		t.Errorf("original: Pending %v MappingVersion %q, want true and its own", orig.Pending, orig.MappingVersion)
	}
	checkStatus(t, st, orig, engine.StatusAccepted)
	if mapped.Pending || mapped.MappingVersion != "orm_o01@1" || mapped.ProcessingError != "ORC-2: unknown order \uFFFD" {
		t.Errorf("mapped: Pending %v MappingVersion %q ProcessingError %q", mapped.Pending, mapped.MappingVersion, mapped.ProcessingError)
	}
	checkStatus(t, st, mapped, engine.StatusAccepted)
	if errored.Pending || errored.MappingVersion != "orm_o01@1" {
		t.Errorf("error message: Pending %v MappingVersion %q, want false and its own", errored.Pending, errored.MappingVersion)
	}
	checkStatus(t, st, errored, engine.StatusError)
	checkDuplicate(t, st, dup, orig)
	if dup.Pending || dup.MappingVersion != "" || dup.ProcessingError != "" {
		t.Errorf("duplicate: Pending %v MappingVersion %q ProcessingError %q, want false and empty", dup.Pending, dup.MappingVersion, dup.ProcessingError)
	}
}

// pendingFixture commits n pending accepted messages (control IDs prefix1 … prefixn) among
// messages that are not pending: an accepted one processed already, a rejected one, and a
// duplicate of the first. It returns the pending ones, oldest first.
func pendingFixture(t *testing.T, st engine.Store, prefix string, n int) []*engine.InboundMessage {
	t.Helper()
	var batch, pending []*engine.InboundMessage
	for i := 1; i <= n; i++ {
		m := newMessage("RIS", "STMARYS", fmt.Sprintf("%s%d", prefix, i), i)
		m.Pending = true
		pending = append(pending, m)
		batch = append(batch, m)
		if i == 1 {
			done := newMessage("RIS", "STMARYS", prefix+"-done", 100)
			done.MappingVersion = "orm_o01@1"
			rej := rejected(newMessage("RIS", "STMARYS", prefix+"-rej", 101))
			dup := newMessage("RIS", "STMARYS", prefix+"1", 102)
			dup.Pending = true
			batch = append(batch, done, rej, dup)
		}
	}
	commit(t, st, batch...)
	return pending
}

func claim(t *testing.T, tx engine.Tx, limit int) []*engine.InboundMessage {
	t.Helper()
	got, err := tx.ClaimPending(context.Background(), limit)
	if err != nil {
		t.Fatalf("ClaimPending(%d): %v", limit, err)
	}
	return got
}

func messageIDs(msgs []*engine.InboundMessage) []int64 {
	var ids []int64
	for _, m := range msgs {
		ids = append(ids, m.ID)
	}
	return ids
}

// testClaimPending: ClaimPending returns the oldest pending messages, up to the limit, whole
// (Raw included); FinishPending clears Pending and stores the outcome, so that the next claim
// goes on with the rest; a message that is not pending is not found.
func testClaimPending(t *testing.T, st engine.Store) {
	ctx := context.Background()
	pending := pendingFixture(t, st, "CP", 5)

	tx := begin(t, st)
	got := claim(t, tx, 3)
	if ids, want := messageIDs(got), messageIDs(pending[:3]); !slices.Equal(ids, want) {
		t.Fatalf("ClaimPending(3) = %v, want the oldest three %v", ids, want)
	}
	for i, m := range got {
		checkSame(t, m, pending[i])
	}
	if err := tx.FinishPending(ctx, got[0].ID, "orm_o01@2", ""); err != nil {
		t.Fatalf("FinishPending: %v", err)
	}
	if err := tx.FinishPending(ctx, got[1].ID, "orm_o01@2", "OBR-4: unknown procedure code \xff"); err != nil {
		t.Fatalf("FinishPending: %v", err)
	}
	// Not pending (any more, or ever): not found, and the transaction goes on.
	for _, id := range []int64{got[0].ID, pending[len(pending)-1].ID + 1000} {
		if err := tx.FinishPending(ctx, id, "orm_o01@2", ""); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("FinishPending(%d) of a message that is not pending = %v, want ErrNotFound", id, err)
		}
	}
	if got := claim(t, tx, 0); len(got) != 0 {
		t.Errorf("ClaimPending(0) = %d messages, want none", len(got))
	}
	commitTx(t, tx)

	want0, want1 := clone(pending[0]), clone(pending[1])
	want0.Pending, want0.MappingVersion = false, "orm_o01@2"
	want1.Pending, want1.MappingVersion, want1.ProcessingError = false, "orm_o01@2", "OBR-4: unknown procedure code \uFFFD"
	checkSame(t, read(t, st, pending[0].ID), want0)
	checkSame(t, read(t, st, pending[1].ID), want1)
	checkSame(t, read(t, st, pending[2].ID), pending[2]) // claimed, not finished: pending still

	tx = begin(t, st)
	if ids, want := messageIDs(claim(t, tx, 10)), messageIDs(pending[2:]); !slices.Equal(ids, want) {
		t.Errorf("ClaimPending(10) after two were finished = %v, want %v", ids, want)
	}
	for _, m := range pending[2:] {
		if err := tx.FinishPending(ctx, m.ID, "orm_o01@2", ""); err != nil {
			t.Fatal(err)
		}
	}
	commitTx(t, tx)
	tx = begin(t, st)
	if got := claim(t, tx, 10); len(got) != 0 {
		t.Errorf("ClaimPending after every message was finished = %v, want none", messageIDs(got))
	}
	tx.Rollback()
}

// testClaimPendingRolledBack: messages claimed (and even finished) in a transaction that rolls
// back are pending still, and the next claim gets them.
func testClaimPendingRolledBack(t *testing.T, st engine.Store) {
	pending := pendingFixture(t, st, "RB", 3)
	tx := begin(t, st)
	got := claim(t, tx, 2)
	if err := tx.FinishPending(context.Background(), got[0].ID, "orm_o01@1", ""); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	checkSame(t, read(t, st, pending[0].ID), pending[0])
	tx = begin(t, st)
	if ids, want := messageIDs(claim(t, tx, 2)), messageIDs(pending[:2]); !slices.Equal(ids, want) {
		t.Errorf("ClaimPending(2) after a rollback = %v, want the same two again %v", ids, want)
	}
	tx.Rollback()
}

// testClaimPendingConcurrently: two transactions claim at once. With row locks (PostgreSQL) the
// second claims while the first is open and skips what the first holds; with one writer
// (SQLite) it waits for the first to commit and finds what the first finished gone. Either way
// the two sets are disjoint, and together they are the oldest.
func testClaimPendingConcurrently(t *testing.T, st engine.Store) {
	ctx := context.Background()
	pending := pendingFixture(t, st, "CC", 6)
	tx1 := begin(t, st)
	first := claim(t, tx1, 2)
	for _, m := range first {
		if err := tx1.FinishPending(ctx, m.ID, "orm_o01@1", ""); err != nil {
			t.Fatal(err)
		}
	}
	type result struct {
		msgs []*engine.InboundMessage
		err  error
	}
	done := make(chan result, 1)
	go func() {
		tx2, err := st.Begin(ctx)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer tx2.Rollback()
		msgs, err := tx2.ClaimPending(ctx, 2)
		done <- result{msgs, err}
	}()
	var second result
	select {
	case second = <-done: // row locks: the second did not wait
	case <-time.After(300 * time.Millisecond): // one writer: it waits for the first
	}
	commitTx(t, tx1)
	if second.msgs == nil && second.err == nil {
		select {
		case second = <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("second claim still blocked 30s after the first transaction ended")
		}
	}
	if second.err != nil {
		t.Fatalf("second ClaimPending: %v", second.err)
	}
	ids := append(messageIDs(first), messageIDs(second.msgs)...)
	if want := messageIDs(pending[:4]); !slices.Equal(ids, want) {
		t.Errorf("claims %v and %v, want disjoint sets, together the oldest four %v",
			messageIDs(first), messageIDs(second.msgs), want)
	}
}

func testResourceByKeys(t *testing.T, st engine.Store) {
	ctx := context.Background()
	const (
		mrnA = "identifier|urn:oid:1.2.3|MRN-A"
		ssnA = "identifier|http://hl7.org/fhir/sid/us-ssn|111"
		mrnB = "identifier|urn:oid:1.2.3|MRN-B"
		none = "identifier|urn:oid:1.2.3|MRN-NONE"
	)
	a1 := newResource("Patient", "a", 1, baseTime, `,"v":1`, nil, ssnA, mrnA)
	a2 := newResource("Patient", "a", 2, baseTime.Add(time.Second), `,"v":2`, nil, mrnA, ssnA)
	b := newResource("Patient", "b", 1, baseTime, "", nil, mrnB)
	putAll(t, st, a1, b)
	putAll(t, st, a2)
	byKeys := func(rd engine.ResourceReader, typ string, keys ...string) (*engine.Resource, error) {
		t.Helper()
		return rd.ResourceByKeys(ctx, typ, keys)
	}
	for _, tt := range []struct {
		name string
		keys []string
		want *engine.Resource
	}{
		{"one key", []string{mrnA}, a2},
		{"first held key wins", []string{none, mrnB, mrnA}, b},
		{"in the order given", []string{ssnA, mrnB}, a2},
		{"a key twice", []string{mrnB, mrnB}, b},
		{"many keys", append(slices.Repeat([]string{none}, 9), mrnB, mrnA), b},
		{"many keys, the first held", append([]string{ssnA}, slices.Repeat([]string{none}, 20)...), a2},
		{"none held", []string{none}, nil},
		{"no keys", nil, nil},
		{"odd bytes", []string{"identifier|\x00|\xff"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := byKeys(st, "Patient", tt.keys...)
			if tt.want == nil {
				if !errors.Is(err, engine.ErrNotFound) {
					t.Errorf("ResourceByKeys(%q) = %v, %v; want ErrNotFound", tt.keys, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ResourceByKeys(%q): %v", tt.keys, err)
			}
			checkResource(t, got, tt.want)
			wantKeys := slices.Sorted(slices.Values(tt.want.Keys))
			if !slices.Equal(got.Keys, wantKeys) {
				t.Errorf("ResourceByKeys(%q).Keys = %q, want %q (sorted)", tt.keys, got.Keys, wantKeys)
			}
		})
	}
	// Keys are per type, and a type outside FHIR's syntax holds none.
	for _, typ := range []string{"ServiceRequest", "Pat\x00ient", ""} {
		if r, err := byKeys(st, typ, mrnA); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("ResourceByKeys(%q, MRN-A) = %v, %v; want ErrNotFound", typ, r, err)
		}
	}
	// In a transaction: its own writes, a released key included; not found leaves it usable.
	tx := begin(t, st)
	b2 := newResource("Patient", "b", 2, baseTime.Add(time.Second), `,"v":2`, nil, none)
	put(t, tx, b2)
	if r, err := byKeys(tx, "Patient", mrnB); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("in the transaction, a released key finds %v, %v; want ErrNotFound", r, err)
	}
	got, err := byKeys(tx, "Patient", mrnB, none)
	if err != nil {
		t.Fatalf("in the transaction, ResourceByKeys: %v", err)
	}
	checkResource(t, got, b2)
	if !slices.Equal(got.Keys, []string{none}) {
		t.Errorf("in the transaction, Keys = %q, want [%s]", got.Keys, none)
	}
	// Outside, until the commit: the state before it.
	got, err = byKeys(st, "Patient", none, mrnB)
	if err != nil {
		t.Fatalf("outside the transaction, ResourceByKeys: %v", err)
	}
	checkResource(t, got, b)
	commitTx(t, tx)
	got, err = byKeys(st, "Patient", mrnB, none)
	if err != nil {
		t.Fatal(err)
	}
	checkResource(t, got, b2)
}

// testLongIndexValues: an index value, system or param longer than a btree entry may hold (about
// 2.7 KB on PostgreSQL) is stored cut to its first 512 bytes, at a UTF-8 boundary, rather than
// failing the write; searches compare on those bytes too, so the whole value still finds it.
func testLongIndexValues(t *testing.T, st engine.Store) {
	// Text that does not compress, as PostgreSQL would compress an index entry that does.
	rng := rand.New(rand.NewPCG(1, 2))
	noise := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[rng.IntN(36)]
		}
		return string(b)
	}
	kept := "a" + strings.Repeat("é", 255) // 511 bytes
	long := kept + "é" + noise(4000)       // byte 512 is inside that é: it is dropped
	system := "urn:" + noise(3000)
	param := noise(3000)
	r := newResource("Observation", "o1", 1, baseTime, "", []fhir.IndexEntry{
		{Param: "value-string", Value: long},
		{Param: "code", System: system, Value: "X"},
		{Param: param, Value: "v"},
		{Param: "value-string", Value: long + "z"}, // the same first 512 bytes: one entry
	})
	putAll(t, st, r)
	q := func(param string, op engine.SearchOp, system, value string) engine.ResourceQuery {
		return engine.ResourceQuery{Type: "Observation", Filters: []engine.SearchFilter{
			{Param: param, Op: op, Values: []engine.SearchValue{{System: system, Value: value}}}}}
	}
	searchIDs(t, st, q("value-string", engine.SearchEq, "", long), "o1")
	searchIDs(t, st, q("value-string", engine.SearchEq, "", kept), "o1")
	searchIDs(t, st, q("value-string", engine.SearchEq, "", kept[:len(kept)-2]))
	searchIDs(t, st, q("value-string", engine.SearchPrefix, "", "aéé"), "o1")
	searchIDs(t, st, q("value-string", engine.SearchPrefix, "", long), "o1")
	searchIDs(t, st, q("code", engine.SearchEq, system, "X"), "o1")
	searchIDs(t, st, q(param, engine.SearchEq, "", "v"), "o1")
	// A new version with the same long values keeps its entries.
	r2 := newResource("Observation", "o1", 2, baseTime.Add(time.Second), "", r.Index)
	putAll(t, st, r2)
	searchIDs(t, st, q("value-string", engine.SearchEq, "", long), "o1")
}

// searchIDs fails t unless q returns the resources with exactly ids, in order.
func searchIDs(t *testing.T, rd engine.ResourceReader, q engine.ResourceQuery, ids ...string) []*engine.Resource {
	t.Helper()
	got, err := rd.SearchResources(context.Background(), q)
	if err != nil {
		t.Fatalf("SearchResources(%+v): %v", q, err)
	}
	var gotIDs []string
	for _, r := range got {
		gotIDs = append(gotIDs, r.Type+"/"+r.ID)
	}
	var want []string
	for _, id := range ids {
		want = append(want, q.Type+"/"+id)
	}
	if !slices.Equal(gotIDs, want) {
		t.Errorf("SearchResources(%+v) = %v, want %v", q, gotIDs, want)
	}
	return got
}

// searchFixture stores five patients, last updated one minute apart (p1 first), and one
// Practitioner that shares their parameters.
func searchFixture(t *testing.T, st engine.Store) []*engine.Resource {
	t.Helper()
	spec := []struct {
		id                 string
		mrnSystem, mrn     string
		family, birth, sex string
		extra              []fhir.IndexEntry
		lastUpdatedMinutes int
	}{
		{"p1", "urn:oid:1.2.3", "MRN1", "doe", "1970-01-01", "female", nil, 0},
		{"p2", "urn:oid:1.2.3", "MRN2", "doherty", "1980-06-15", "male", nil, 1},
		{"p3", "urn:oid:9.9.9", "MRN1", "dow", "1980-06-15T10:30:00Z", "female", nil, 2},
		// LIKE's metacharacters and the escape character, literally.
		{"p4", "urn:oid:1.2.3", "MRN4", "o%_\\neil", "1990", "other", nil, 3},
		{"p5", "", "MRN5", "smith", "2001-12-31", "male", []fhir.IndexEntry{{Param: "family", Value: "doe"}}, 3}, // same time as p4: ties by id
	}
	var rs []*engine.Resource
	for _, s := range spec {
		index := []fhir.IndexEntry{
			{Param: "identifier", System: s.mrnSystem, Value: s.mrn},
			{Param: "family", Value: s.family},
			{Param: "name", Value: s.family},
			{Param: "birthdate", Value: s.birth},
			{Param: "gender", System: "http://hl7.org/fhir/administrative-gender", Value: s.sex},
		}
		index = append(index, s.extra...)
		at := baseTime.Add(time.Duration(s.lastUpdatedMinutes) * time.Minute)
		rs = append(rs, newResource("Patient", s.id, 1, at, "", index))
	}
	rs = append(rs, newResource("Practitioner", "p1", 1, baseTime.Add(time.Hour), "",
		[]fhir.IndexEntry{{Param: "family", Value: "doe"}, {Param: "identifier", System: "urn:oid:1.2.3", Value: "MRN1"}}))
	putAll(t, st, rs...)
	return rs
}

func testSearch(t *testing.T, st engine.Store) {
	rs := searchFixture(t, st)
	f := func(param string, op engine.SearchOp, values ...string) engine.SearchFilter {
		sf := engine.SearchFilter{Param: param, Op: op}
		for _, v := range values {
			sv := engine.SearchValue{Value: v}
			if system, value, ok := strings.Cut(v, "|"); ok {
				sv = engine.SearchValue{System: system, Value: value}
			}
			sf.Values = append(sf.Values, sv)
		}
		return sf
	}
	tests := []struct {
		name    string
		filters []engine.SearchFilter
		want    []string // newest first, ties by id
	}{
		{"no filter", nil, []string{"p4", "p5", "p3", "p2", "p1"}},
		{"eq", []engine.SearchFilter{f("family", engine.SearchEq, "doe")}, []string{"p5", "p1"}},
		{"eq is exact", []engine.SearchFilter{f("family", engine.SearchEq, "do")}, nil},
		{"eq any system", []engine.SearchFilter{f("identifier", engine.SearchEq, "MRN1")}, []string{"p3", "p1"}},
		{"eq with system", []engine.SearchFilter{f("identifier", engine.SearchEq, "urn:oid:1.2.3|MRN1")}, []string{"p1"}},
		{"eq with another system", []engine.SearchFilter{f("identifier", engine.SearchEq, "urn:oid:9.9.9|MRN2")}, nil},
		{"values are ORed", []engine.SearchFilter{f("identifier", engine.SearchEq, "urn:oid:9.9.9|MRN1", "MRN2", "MRN404")}, []string{"p3", "p2"}},
		{"filters are ANDed", []engine.SearchFilter{f("family", engine.SearchPrefix, "do"), f("gender", engine.SearchEq, "female")}, []string{"p3", "p1"}},
		{"one entry per filter suffices", []engine.SearchFilter{f("family", engine.SearchEq, "doe"), f("family", engine.SearchEq, "smith")}, []string{"p5"}},
		{"param is exact", []engine.SearchFilter{f("famil", engine.SearchEq, "doe")}, nil},
		{"prefix", []engine.SearchFilter{f("name", engine.SearchPrefix, "do")}, []string{"p3", "p2", "p1"}},
		{"prefix of the whole value", []engine.SearchFilter{f("name", engine.SearchPrefix, "doherty")}, []string{"p2"}},
		{"prefix longer than the value", []engine.SearchFilter{f("name", engine.SearchPrefix, "doherty2")}, nil},
		{"prefix: percent is literal", []engine.SearchFilter{f("name", engine.SearchPrefix, "%")}, nil},
		{"prefix: underscore is literal", []engine.SearchFilter{f("name", engine.SearchPrefix, "o_")}, nil},
		{"prefix: metacharacters matched", []engine.SearchFilter{f("name", engine.SearchPrefix, "o%_\\n")}, []string{"p4"}},
		{"prefix: empty matches any value", []engine.SearchFilter{f("name", engine.SearchPrefix, "")}, []string{"p4", "p5", "p3", "p2", "p1"}},
		{"prefix of a date", []engine.SearchFilter{f("birthdate", engine.SearchPrefix, "1980-06")}, []string{"p3", "p2"}},
		{"prefix ORed", []engine.SearchFilter{f("name", engine.SearchPrefix, "sm", "doh")}, []string{"p5", "p2"}},
		// One semantics on every store: the stored value's leading bytes, case and all (the
		// index holds values normalized already; a store's LIKE may fold case).
		{"prefix: case-sensitive", []engine.SearchFilter{f("name", engine.SearchPrefix, "DO")}, nil},
		{"prefix: case-sensitive, identifier", []engine.SearchFilter{f("identifier", engine.SearchPrefix, "mrn")}, nil},
		{"prefix with a system", []engine.SearchFilter{f("identifier", engine.SearchPrefix, "urn:oid:9.9.9|MRN")}, []string{"p3"}},
		{"ge", []engine.SearchFilter{f("birthdate", engine.SearchGe, "1980-06-15")}, []string{"p4", "p5", "p3", "p2"}},
		{"gt", []engine.SearchFilter{f("birthdate", engine.SearchGt, "1980-06-15")}, []string{"p4", "p5", "p3"}},
		{"le", []engine.SearchFilter{f("birthdate", engine.SearchLe, "1980-06-15")}, []string{"p2", "p1"}},
		{"lt", []engine.SearchFilter{f("birthdate", engine.SearchLt, "1980-06-15")}, []string{"p1"}},
		{"range", []engine.SearchFilter{f("birthdate", engine.SearchGe, "1975"), f("birthdate", engine.SearchLt, "1995")}, []string{"p4", "p3", "p2"}},
		{"token with system", []engine.SearchFilter{f("gender", engine.SearchEq, "http://hl7.org/fhir/administrative-gender|male")}, []string{"p5", "p2"}},
		{"no values match nothing", []engine.SearchFilter{{Param: "family", Op: engine.SearchEq}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			searchIDs(t, st, engine.ResourceQuery{Type: "Patient", Filters: tt.filters}, tt.want...)
		})
	}
	// Results carry the whole current version.
	got := searchIDs(t, st, engine.ResourceQuery{Type: "Practitioner", Filters: []engine.SearchFilter{
		f("identifier", engine.SearchEq, "urn:oid:1.2.3|MRN1")}}, "p1")
	if len(got) == 1 {
		checkResource(t, got[0], rs[len(rs)-1])
	}
	searchIDs(t, st, engine.ResourceQuery{Type: "Observation"})
	searchIDs(t, st, engine.ResourceQuery{Type: "Pat\x00ient"})
	if _, err := st.SearchResources(context.Background(), engine.ResourceQuery{Type: "Patient", Filters: []engine.SearchFilter{
		{Param: "family", Op: "sounds-like", Values: []engine.SearchValue{{Value: "doe"}}}}}); err == nil {
		t.Error("search with an unknown operator succeeded, want an error")
	}
	// Odd bytes in a value are no database error.
	searchIDs(t, st, engine.ResourceQuery{Type: "Patient", Filters: []engine.SearchFilter{f("family", engine.SearchEq, "d\x00o\xffe")}})
}

func testSearchCurrentVersionsOnly(t *testing.T, st engine.Store) {
	putAll(t, st,
		newResource("Patient", "a", 1, baseTime, "", []fhir.IndexEntry{{Param: "family", Value: "doe"}, {Param: "gender", Value: "female"}}),
		newResource("Patient", "b", 1, baseTime, "", []fhir.IndexEntry{{Param: "family", Value: "doe"}}))
	eq := func(param, value string) engine.ResourceQuery {
		return engine.ResourceQuery{Type: "Patient", Filters: []engine.SearchFilter{
			{Param: param, Op: engine.SearchEq, Values: []engine.SearchValue{{Value: value}}}}}
	}
	searchIDs(t, st, eq("family", "doe"), "a", "b")
	// a changes name: its old entries go, the kept one (gender) stays, the new one comes; a is
	// now the newest.
	a2 := newResource("Patient", "a", 2, baseTime.Add(time.Second), "",
		[]fhir.IndexEntry{{Param: "family", Value: "roe"}, {Param: "gender", Value: "female"}, {Param: "gender", Value: "female"}})
	putAll(t, st, a2)
	searchIDs(t, st, eq("family", "doe"), "b")
	searchIDs(t, st, eq("family", "roe"), "a")
	got := searchIDs(t, st, eq("gender", "female"), "a")
	if len(got) == 1 {
		checkResource(t, got[0], a2)
	}
	searchIDs(t, st, engine.ResourceQuery{Type: "Patient"}, "a", "b")
	// A version without entries leaves none.
	putAll(t, st, newResource("Patient", "a", 3, baseTime.Add(2*time.Second), "", nil))
	searchIDs(t, st, eq("gender", "female"))
	searchIDs(t, st, engine.ResourceQuery{Type: "Patient"}, "a", "b")
}

func testSearchPaging(t *testing.T, st engine.Store) {
	var rs []*engine.Resource
	for i := range 25 {
		// Pairs share a time: ties are ordered by id.
		rs = append(rs, newResource("Patient", fmt.Sprintf("p%02d", i), 1, baseTime.Add(time.Duration(i/2)*time.Second), "",
			[]fhir.IndexEntry{{Param: "active", Value: "true"}}))
	}
	putAll(t, st, rs...)
	// Newest first: p24 alone at second 12, then pairs (p22, p23), (p20, p21), …
	want := []string{"p24"}
	for pair := 11; pair >= 0; pair-- {
		want = append(want, fmt.Sprintf("p%02d", 2*pair), fmt.Sprintf("p%02d", 2*pair+1))
	}
	for _, filtered := range []bool{false, true} {
		var seen []string
		for offset := 0; offset < 40; offset += 7 {
			q := engine.ResourceQuery{Type: "Patient", Offset: offset, Count: 7}
			if filtered {
				q.Filters = []engine.SearchFilter{{Param: "active", Op: engine.SearchEq, Values: []engine.SearchValue{{Value: "true"}}}}
			}
			got, err := st.SearchResources(context.Background(), q)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range got {
				seen = append(seen, r.ID)
			}
		}
		if !slices.Equal(seen, want) {
			t.Errorf("filtered=%v: pages of 7 gave %v, want %v", filtered, seen, want)
		}
	}
	searchIDs(t, st, engine.ResourceQuery{Type: "Patient", Offset: -5, Count: 2}, "p24", "p22")
	searchIDs(t, st, engine.ResourceQuery{Type: "Patient", Offset: 25})
}

func testSearchCountDefaultAndCap(t *testing.T, st engine.Store) {
	const total = 1005
	tx := begin(t, st)
	for i := range total {
		put(t, tx, newResource("Basic", fmt.Sprintf("b%04d", i), 1, baseTime, "", []fhir.IndexEntry{{Param: "code", Value: "x"}}))
	}
	commitTx(t, tx)
	for _, tt := range []struct{ count, want int }{{0, 100}, {-1, 100}, {7, 7}, {1000, 1000}, {5000, 1000}} {
		for _, filters := range [][]engine.SearchFilter{nil, {{Param: "code", Op: engine.SearchEq, Values: []engine.SearchValue{{Value: "x"}}}}} {
			got, err := st.SearchResources(context.Background(), engine.ResourceQuery{Type: "Basic", Count: tt.count, Filters: filters})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.want {
				t.Errorf("SearchResources(Count: %d, %d filters) = %d resources, want %d", tt.count, len(filters), len(got), tt.want)
			}
		}
	}
}

func worklist(t *testing.T, st engine.Store, f engine.WorklistFilter) []*engine.WorklistItem {
	t.Helper()
	items, err := st.WorklistItems(context.Background(), f)
	if err != nil {
		t.Fatalf("WorklistItems(%+v): %v", f, err)
	}
	return items
}

func worklistIDs(items []*engine.WorklistItem) []string {
	var ids []string
	for _, it := range items {
		ids = append(ids, it.ServiceRequestID)
	}
	return ids
}

// newWorklistItem returns a scheduled CT step for ServiceRequest sr.
func newWorklistItem(sr, accession, patientID, modality, station, date, tm string) *engine.WorklistItem {
	return &engine.WorklistItem{
		ServiceRequestID: sr, AccessionNumber: accession, AccessionIssuer: "STMARYS",
		RequestedProcedureID: "RP" + sr, RequestedProcedureDescription: "CT chest without contrast",
		RequestedProcedureCode:     engine.Code{Value: "24627-2", Scheme: "LN", Meaning: "CT Chest"},
		RequestedProcedurePriority: "ROUTINE", StudyInstanceUID: "1.2.826.0.1.3680043.10.1." + accession,
		ReferringPhysicianName: "SMITH^JOHN^^^", PlacerOrderNumber: "PL" + sr, FillerOrderNumber: "FL" + sr,
		Modality: modality, StationAETitle: station, StartDate: date, StartTime: tm, StepID: "SPS" + sr,
		StepStatus: "SCHEDULED", PatientName: "DOE^JANE^^^", PatientID: patientID,
		IssuerOfPatientID: "STMARYS", PatientBirthDate: "19700101", PatientSex: "F",
	}
}

func putItems(t testing.TB, st engine.Store, items ...*engine.WorklistItem) {
	t.Helper()
	tx := begin(t, st)
	for _, it := range items {
		if err := tx.PutWorklistItem(context.Background(), it); err != nil {
			t.Fatalf("PutWorklistItem(%s): %v", it.ServiceRequestID, err)
		}
	}
	commitTx(t, tx)
}

func testWorklist(t *testing.T, st engine.Store) {
	ctx := context.Background()
	a := newWorklistItem("sr-a", "ACC1", "MRN1", "CT", "CT1", "20261127", "0900")
	b := newWorklistItem("sr-b", "ACC2", "MRN2", "MR", "MR1", "20261127", "0800")
	putItems(t, st, a, b)
	got := worklist(t, st, engine.WorklistFilter{})
	if ids := worklistIDs(got); !slices.Equal(ids, []string{"sr-b", "sr-a"}) {
		t.Fatalf("worklist = %v, want [sr-b sr-a] (by start time)", ids)
	}
	if !reflect.DeepEqual(got[1], a) {
		t.Errorf("item read back\n got %+v\nwant %+v", got[1], a)
	}
	// Replace: the item of sr-a, rescheduled and with a new accession number.
	a2 := *a
	a2.AccessionNumber, a2.StartTime, a2.StationAETitle = "ACC1B", "0700", "CT2"
	putItems(t, st, &a2)
	if items := worklist(t, st, engine.WorklistFilter{AccessionNumber: "ACC1"}); len(items) != 0 {
		t.Errorf("old accession number still finds %d items after the replace", len(items))
	}
	if items := worklist(t, st, engine.WorklistFilter{StationAETitle: "CT1"}); len(items) != 0 {
		t.Errorf("old station still finds %d items after the replace", len(items))
	}
	got = worklist(t, st, engine.WorklistFilter{})
	if ids := worklistIDs(got); !slices.Equal(ids, []string{"sr-a", "sr-b"}) {
		t.Fatalf("worklist after the replace = %v, want [sr-a sr-b]", ids)
	}
	if !reflect.DeepEqual(got[0], &a2) {
		t.Errorf("replaced item\n got %+v\nwant %+v", got[0], &a2)
	}
	// Delete, and delete what is not there.
	tx := begin(t, st)
	for _, sr := range []string{"sr-a", "sr-none", "sr-\x00\xff"} {
		if err := tx.DeleteWorklistItem(ctx, sr); err != nil {
			t.Fatalf("DeleteWorklistItem(%q): %v", sr, err)
		}
	}
	commitTx(t, tx)
	if ids := worklistIDs(worklist(t, st, engine.WorklistFilter{})); !slices.Equal(ids, []string{"sr-b"}) {
		t.Errorf("worklist after delete = %v, want [sr-b]", ids)
	}
	tx = begin(t, st)
	if err := tx.PutWorklistItem(ctx, &engine.WorklistItem{}); err == nil {
		t.Error("PutWorklistItem without a ServiceRequestID succeeded, want an error")
	}
	tx.Rollback()
}

func testWorklistFilters(t *testing.T, st engine.Store) {
	items := []*engine.WorklistItem{
		newWorklistItem("sr1", "A1", "P1", "CT", "CT1", "20261126", "1000"),
		newWorklistItem("sr2", "A2", "P1", "CT", "CT2", "20261127", "0900"),
		newWorklistItem("sr3", "A3", "P2", "MR", "MR1", "20261127", "0900"), // same time as sr2: by id
		newWorklistItem("sr4", "A4", "P3", "CT", "CT1", "20261128", "0800"),
		newWorklistItem("sr5", "A5", "P3", "US", "US1", "20261128", ""),
		newWorklistItem("sr6", "", "", "", "", "", ""),
	}
	putItems(t, st, items...)
	tests := []struct {
		name   string
		filter engine.WorklistFilter
		want   []string
	}{
		{"none", engine.WorklistFilter{}, []string{"sr6", "sr1", "sr2", "sr3", "sr5", "sr4"}},
		{"accession", engine.WorklistFilter{AccessionNumber: "A3"}, []string{"sr3"}},
		{"accession is exact", engine.WorklistFilter{AccessionNumber: "A"}, nil},
		{"patient", engine.WorklistFilter{PatientID: "P1"}, []string{"sr1", "sr2"}},
		{"modality", engine.WorklistFilter{Modality: "CT"}, []string{"sr1", "sr2", "sr4"}},
		{"modality is case sensitive", engine.WorklistFilter{Modality: "ct"}, nil},
		{"station", engine.WorklistFilter{StationAETitle: "CT1"}, []string{"sr1", "sr4"}},
		{"date from", engine.WorklistFilter{StartDateFrom: "20261127"}, []string{"sr2", "sr3", "sr5", "sr4"}},
		{"date to", engine.WorklistFilter{StartDateTo: "20261127"}, []string{"sr6", "sr1", "sr2", "sr3"}},
		{"one day", engine.WorklistFilter{StartDateFrom: "20261127", StartDateTo: "20261127"}, []string{"sr2", "sr3"}},
		{"modality and day", engine.WorklistFilter{Modality: "CT", StartDateFrom: "20261127", StartDateTo: "20261128"}, []string{"sr2", "sr4"}},
		{"everything", engine.WorklistFilter{AccessionNumber: "A4", PatientID: "P3", Modality: "CT", StationAETitle: "CT1",
			StartDateFrom: "20261128", StartDateTo: "20261128"}, []string{"sr4"}},
		{"contradiction", engine.WorklistFilter{AccessionNumber: "A4", PatientID: "P1"}, nil},
		{"limit", engine.WorklistFilter{Limit: 2}, []string{"sr6", "sr1"}},
		{"limit with filter", engine.WorklistFilter{Modality: "CT", Limit: 1}, []string{"sr1"}},
		{"odd bytes", engine.WorklistFilter{PatientID: "P\x00\xff"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ids := worklistIDs(worklist(t, st, tt.filter)); !slices.Equal(ids, tt.want) {
				t.Errorf("WorklistItems(%+v) = %v, want %v", tt.filter, ids, tt.want)
			}
		})
	}
}

// testWorklistEveryField: each text field of engine.WorklistItem, however deep, is stored and
// read back, so that a field added to the type and forgotten by a store fails here.
func testWorklistEveryField(t *testing.T, st engine.Store) {
	item := &engine.WorklistItem{}
	n := 0
	var fill func(v reflect.Value)
	fill = func(v reflect.Value) {
		for i := range v.NumField() {
			switch f := v.Field(i); f.Kind() {
			case reflect.String:
				n++
				f.SetString(fmt.Sprintf("v%d^É^\x01", n))
			case reflect.Struct:
				fill(f)
			default:
				t.Fatalf("WorklistItem field %s of kind %s: extend this test", v.Type().Field(i).Name, f.Kind())
			}
		}
	}
	fill(reflect.ValueOf(item).Elem())
	long := *item
	long.ServiceRequestID = "long"
	long.ReasonForRequestedProcedure = strings.Repeat("r", 70000)
	empty := &engine.WorklistItem{ServiceRequestID: "empty"}
	putItems(t, st, item, &long, empty)
	got := worklist(t, st, engine.WorklistFilter{})
	if len(got) != 3 {
		t.Fatalf("%d items, want 3", len(got))
	}
	byID := map[string]*engine.WorklistItem{}
	for _, it := range got {
		byID[it.ServiceRequestID] = it
	}
	for _, want := range []*engine.WorklistItem{item, &long, empty} {
		if !reflect.DeepEqual(byID[want.ServiceRequestID], want) {
			t.Errorf("item %.20s read back\n got %+v\nwant %+v", want.ServiceRequestID, byID[want.ServiceRequestID], want)
		}
	}
}
