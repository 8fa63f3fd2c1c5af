package sqlite_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/ferryhealth/ferry/adapters/sqlite"
	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/storetest"
	"github.com/ferryhealth/ferry/migrations"
)

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) engine.MessageStore { return openTestStore(t, testPath(t)) })
}

func BenchmarkCommitInbound(b *testing.B) {
	storetest.BenchCommitInbound(b, func(b *testing.B) engine.MessageStore { return openTestStore(b, testPath(b)) })
}

func TestResources(t *testing.T) {
	storetest.RunResources(t, func(t *testing.T) engine.Store { return openTestStore(t, testPath(t)) })
}

func BenchmarkTxOrder(b *testing.B) {
	storetest.BenchTxOrder(b, func(b *testing.B) engine.Store { return openTestStore(b, testPath(b)) })
}

func BenchmarkWorklistItems10k(b *testing.B) {
	storetest.BenchWorklistItems10k(b, func(b *testing.B) engine.Store { return openTestStore(b, testPath(b)) })
}

func TestMigrateIsIdempotent(t *testing.T) {
	st := openTestStore(t, testPath(t)) // migrated once
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	commitOne(t, st, "M1")
}

func TestMigrateDownAndUp(t *testing.T) {
	st := openTestStore(t, testPath(t))
	p, err := goose.NewProvider(goose.DialectSQLite3, st.DB(), migrations.SQLite,
		goose.WithDisableGlobalRegistry(true), goose.WithLogger(goose.NopLogger()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(t.Context(), 0); err != nil {
		t.Fatalf("migrating down: %v", err)
	}
	var tables int
	if err := st.DB().QueryRow("SELECT count(*) FROM sqlite_schema WHERE name = 'inbound_messages'").Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Fatal("inbound_messages still exists after migrating down")
	}
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatalf("migrating up again: %v", err)
	}
	commitOne(t, st, "M1")
}

func TestOpenCreatesDirectoryAndKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ferry-data", "nested", "ferry.db")
	st := openTestStore(t, path)
	orig := commitOne(t, st, "P1")
	for _, name := range []string{path, path + "-wal"} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatalf("database file: %v", err)
		}
		if mode := fi.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s has mode %o, want 600: it holds patient data", filepath.Base(name), mode)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	st = openTestStore(t, path)
	got, err := st.Message(t.Context(), orig.ID)
	if err != nil || got.ControlID != "P1" {
		t.Fatalf("after reopening, Message(%d) = %+v, %v", orig.ID, got, err)
	}
	// The duplicate rule holds across restarts: it lives in the file, not in memory.
	dup := commitOne(t, st, "P1")
	if dup.Status != engine.StatusDuplicate || dup.DuplicateOf != orig.ID {
		t.Errorf("after reopening, a resent message is %s of %d, want duplicate of %d", dup.Status, dup.DuplicateOf, orig.ID)
	}
}

func TestDurabilitySettings(t *testing.T) {
	st := openTestStore(t, testPath(t))
	for _, tt := range []struct {
		pragma, want string
	}{
		{"journal_mode", "wal"},
		{"synchronous", "2"}, // FULL: the WAL is fsynced at each commit
		{"foreign_keys", "1"},
		{"busy_timeout", "10000"},
	} {
		var got string
		if err := st.DB().QueryRow("PRAGMA " + tt.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", tt.pragma, err)
		}
		if got != tt.want {
			t.Errorf("PRAGMA %s = %s, want %s", tt.pragma, got, tt.want)
		}
	}
	if _, err := st.ReadDB().Exec("DELETE FROM inbound_messages"); err == nil {
		t.Error("a write through ReadDB succeeded, want the readers query-only")
	}
}

func TestOpenRejectsBadPath(t *testing.T) {
	for _, path := range []string{"", "ferry.db?mode=memory"} {
		if st, err := sqlite.Open(t.Context(), path); err == nil {
			st.Close()
			t.Errorf("Open(%q) succeeded, want an error", path)
		}
	}
}

func commitOne(t *testing.T, st *sqlite.Store, controlID string) *engine.InboundMessage {
	t.Helper()
	m := &engine.InboundMessage{Channel: "mllp", ReceivedAt: time.Now(), Raw: []byte("MSH|"),
		SendingApplication: "RIS", SendingFacility: "STMARYS", ControlID: controlID,
		Status: engine.StatusAccepted, ACK: []byte("MSA|AA|" + controlID), ACKCode: "AA"}
	if err := st.CommitInbound(t.Context(), []*engine.InboundMessage{m}); err != nil {
		t.Fatalf("CommitInbound: %v", err)
	}
	return m
}

func testPath(tb testing.TB) string { return filepath.Join(tb.TempDir(), "ferry.db") }

// openTestStore opens and migrates the store at path, closing it when tb ends.
func openTestStore(tb testing.TB, path string) *sqlite.Store {
	tb.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		tb.Fatalf("opening store: %v", err)
	}
	tb.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		tb.Fatalf("migrating: %v", err)
	}
	return st
}

func TestInstances(t *testing.T) {
	storetest.RunInstances(t, func(t *testing.T) engine.InstanceStore { return openTestStore(t, testPath(t)) })
}

func BenchmarkPutInstance(b *testing.B) {
	storetest.BenchPutInstance(b, func(b *testing.B) engine.InstanceStore { return openTestStore(b, testPath(b)) })
}

func TestLinks(t *testing.T) {
	storetest.RunLinks(t, func(t *testing.T) storetest.LinkStore { return openTestStore(t, testPath(t)) })
}

func TestOutbox(t *testing.T) {
	storetest.RunOutbox(t, func(t *testing.T) storetest.OutboxStore { return openTestStore(t, testPath(t)) })
}

// TestStudyLinkEvidenceStored: evidence is kept as a JSON object, keys sorted, and the table
// itself rejects an unknown status.
func TestStudyLinkEvidenceStored(t *testing.T) {
	st := openTestStore(t, testPath(t))
	l := &engine.StudyLink{StudyInstanceUID: "1.2.3", Status: engine.LinkLinked, Rule: "accession",
		Evidence:  map[string]string{"b": "2", "a": "1", "c": "x | y | match"},
		DecidedAt: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	if err := st.PutStudyLink(t.Context(), l); err != nil {
		t.Fatal(err)
	}
	var evidence string
	if err := st.DB().QueryRow("SELECT evidence FROM study_links").Scan(&evidence); err != nil {
		t.Fatal(err)
	}
	if want := `{"a":"1","b":"2","c":"x | y | match"}`; evidence != want {
		t.Errorf("evidence stored as %s, want %s", evidence, want)
	}
	if _, err := st.DB().Exec("UPDATE study_links SET status = 'maybe'"); err == nil {
		t.Error("the table accepted status 'maybe'")
	}
}

func TestTurnaround(t *testing.T) {
	storetest.RunTurnaround(t, func(t *testing.T) storetest.TurnaroundStore { return openTestStore(t, testPath(t)) })
}

// TestFirstPrepareWaitsForTheTransaction: a statement prepared for the first time on the writer
// while a transaction holds it waits for that transaction — which meanwhile goes on using its
// own statements, and ends. (The statement cache's lock was once held while waiting: the
// transaction then waited for the lock, and both for ever.)
func TestFirstPrepareWaitsForTheTransaction(t *testing.T) {
	st := openTestStore(t, testPath(t))
	ctx := t.Context()
	tx, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stored := make(chan error, 1)
	go func() { // the first instance: its statements are prepared on the writer now
		_, err := st.PutInstance(ctx, &engine.Instance{
			Header: dicom.Header{
				SOPInstanceUID:    "1.2.3.1.1",
				SOPClassUID:       "1.2.840.10008.5.1.4.1.1.2",
				SeriesInstanceUID: "1.2.3.1",
				StudyInstanceUID:  "1.2.3",
				TransferSyntaxUID: "1.2.840.10008.1.2.1",
				Size:              1,
			},
			Path:       "1.2.3/1.2.3.1/1.dcm",
			SHA256:     strings.Repeat("0", 64),
			ReceivedAt: time.Now(),
		})
		stored <- err
	}()
	time.Sleep(100 * time.Millisecond) // the instance is waiting for the writer
	done := make(chan error, 1)
	go func() {
		if _, err := tx.Resource(ctx, "Patient", "nobody"); !errors.Is(err, engine.ErrNotFound) {
			done <- err
			return
		}
		done <- tx.Commit()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the transaction is stuck behind the first prepare of another statement")
	}
	if err := <-stored; err != nil {
		t.Fatal(err)
	}
}

func TestErrorQueue(t *testing.T) {
	storetest.RunErrorQueue(t, func(t *testing.T) storetest.ErrorQueueStore { return openTestStore(t, testPath(t)) })
}

func TestMappingHistory(t *testing.T) {
	storetest.RunMappingHistory(t, func(t *testing.T) storetest.MappingHistoryStore { return openTestStore(t, testPath(t)) })
}

func TestCritical(t *testing.T) {
	storetest.RunCritical(t, func(t *testing.T) storetest.CriticalStore { return openTestStore(t, testPath(t)) })
}
