package postgres_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lib/pq"
	"github.com/pressly/goose/v3"

	"github.com/ferryhealth/ferry/adapters/postgres"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/storetest"
	"github.com/ferryhealth/ferry/migrations"
)

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) engine.MessageStore { return openTestStore(t) })
}

func BenchmarkCommitInbound(b *testing.B) {
	storetest.BenchCommitInbound(b, func(b *testing.B) engine.MessageStore { return openTestStore(b) })
}

func TestMigrateIsIdempotent(t *testing.T) {
	st := openTestStore(t) // migrated once
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	commitOne(t, st)
}

func TestMigrateDownAndUp(t *testing.T) {
	st := openTestStore(t)
	p, err := goose.NewProvider(goose.DialectPostgres, st.DB(), migrations.Postgres,
		goose.WithDisableGlobalRegistry(true), goose.WithLogger(goose.NopLogger()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(t.Context(), 0); err != nil {
		t.Fatalf("migrating down: %v", err)
	}
	var tables int
	if err := st.DB().QueryRow("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'inbound_messages'").Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Fatalf("inbound_messages still exists after migrating down")
	}
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatalf("migrating up again: %v", err)
	}
	commitOne(t, st)
}

func TestMigrateConcurrently(t *testing.T) {
	// Nodes that start together migrate one schema once, under the advisory lock.
	st := openTestStore(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { errs <- st.Migrate(t.Context()) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Migrate: %v", err)
		}
	}
}

func TestOpenRefusesSynchronousCommitOff(t *testing.T) {
	requirePostgres(t)
	st, err := postgres.Open(t.Context(), withParam(testDSN(), "synchronous_commit", "off"))
	if err == nil {
		st.Close()
		t.Fatal("Open with synchronous_commit=off succeeded, want an error")
	}
	if !strings.Contains(err.Error(), "synchronous_commit") {
		t.Errorf("error %q does not name synchronous_commit", err)
	}
}

func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if st, err := postgres.Open(ctx, "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"); err == nil {
		st.Close()
		t.Fatal("Open of an unreachable server succeeded")
	}
}

// TestRacingNode holds the key in another node's open transaction while CommitInbound runs:
// CommitInbound must wait for it, then store a duplicate of its row if it commits, or the
// accepted original if it rolls back.
func TestRacingNode(t *testing.T) {
	for _, otherCommits := range []bool{true, false} {
		t.Run(fmt.Sprintf("other node commits=%v", otherCommits), func(t *testing.T) {
			st := openTestStore(t)
			ctx := t.Context()
			other, err := st.DB().BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Rollback()
			var otherID int64
			err = other.QueryRowContext(ctx, `INSERT INTO inbound_messages
				(channel, received_at, raw, sending_application, sending_facility, control_id, status, ack, ack_code)
				VALUES ('mllp', now(), 'MSH|', 'RIS', 'STMARYS', 'RACE1', 'accepted', 'ACK FROM OTHER NODE', 'CA')
				RETURNING id`).Scan(&otherID)
			if err != nil {
				t.Fatal(err)
			}

			m := &engine.InboundMessage{Channel: "mllp", ReceivedAt: time.Now(), Raw: []byte("MSH|"),
				SendingApplication: "RIS", SendingFacility: "STMARYS", ControlID: "RACE1",
				Status: engine.StatusAccepted, ACK: []byte("ACK FROM THIS NODE"), ACKCode: "AA"}
			done := make(chan error, 1)
			go func() { done <- st.CommitInbound(ctx, []*engine.InboundMessage{m}) }()
			select {
			case err := <-done:
				t.Fatalf("CommitInbound returned (%v) while another transaction held the key", err)
			case <-time.After(200 * time.Millisecond):
			}
			if otherCommits {
				err = other.Commit()
			} else {
				err = other.Rollback()
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatalf("CommitInbound: %v", err)
			}
			switch {
			case otherCommits && (m.Status != engine.StatusDuplicate || m.DuplicateOf != otherID || string(m.ACK) != "ACK FROM OTHER NODE" || m.ACKCode != "CA"):
				t.Errorf("got %s of %d with ACK %s %q, want duplicate of %d with the other node's ACK", m.Status, m.DuplicateOf, m.ACKCode, m.ACK, otherID)
			case !otherCommits && (m.Status != engine.StatusAccepted || m.DuplicateOf != 0 || string(m.ACK) != "ACK FROM THIS NODE"):
				t.Errorf("got %s of %d with ACK %q, want accepted with its own ACK", m.Status, m.DuplicateOf, m.ACK)
			}
		})
	}
}

func commitOne(t *testing.T, st *postgres.Store) {
	t.Helper()
	m := &engine.InboundMessage{Channel: "mllp", ReceivedAt: time.Now(), Raw: []byte("MSH|"),
		ControlID: "M1", Status: engine.StatusAccepted}
	if err := st.CommitInbound(t.Context(), []*engine.InboundMessage{m}); err != nil {
		t.Fatalf("CommitInbound after migrating: %v", err)
	}
}

// testDSN is the server the tests use: TEST_DATABASE_URL, or the local default.
func testDSN() string {
	if dsn := os.Getenv("TEST_DATABASE_URL"); dsn != "" {
		return dsn
	}
	return defaultDSN
}

const defaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

var (
	reachOnce sync.Once
	reachErr  error
	schemaSeq atomic.Int64
)

// requirePostgres skips tb when the test server does not answer, or fails it when
// FERRY_REQUIRE_POSTGRES=1 (as in CI), so a missing server never passes silently there.
func requirePostgres(tb testing.TB) {
	tb.Helper()
	reachOnce.Do(func() {
		db, err := sql.Open("postgres", testDSN())
		if err != nil {
			reachErr = err
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		reachErr = db.PingContext(ctx)
	})
	required := os.Getenv("FERRY_REQUIRE_POSTGRES") == "1"
	if testing.Short() && !required {
		tb.Skip("PostgreSQL tests skipped in -short mode")
	}
	if reachErr == nil {
		return
	}
	where := "the default " + defaultDSN
	if os.Getenv("TEST_DATABASE_URL") != "" {
		where = "TEST_DATABASE_URL" // may hold a password: not printed
	}
	if required {
		tb.Fatalf("PostgreSQL at %s is unreachable and FERRY_REQUIRE_POSTGRES=1: %v", where, reachErr)
	}
	tb.Skipf("PostgreSQL at %s is unreachable, skipping (set TEST_DATABASE_URL to a server; FERRY_REQUIRE_POSTGRES=1 fails instead): %v", where, reachErr)
}

// openTestStore returns a store on a schema of its own, created for tb, migrated, and dropped
// with everything in it when tb ends.
func openTestStore(tb testing.TB) *postgres.Store {
	tb.Helper()
	requirePostgres(tb)
	ctx := context.Background()
	admin, err := sql.Open("postgres", testDSN())
	if err != nil {
		tb.Fatal(err)
	}
	schema := fmt.Sprintf("ferry_test_%d_%d", os.Getpid(), schemaSeq.Add(1))
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+pq.QuoteIdentifier(schema)); err != nil {
		admin.Close()
		tb.Fatalf("creating schema %s: %v", schema, err)
	}
	tb.Cleanup(func() {
		if _, err := admin.ExecContext(ctx, "DROP SCHEMA "+pq.QuoteIdentifier(schema)+" CASCADE"); err != nil {
			tb.Errorf("dropping schema %s: %v", schema, err)
		}
		admin.Close()
	})
	st, err := postgres.Open(ctx, withParam(testDSN(), "search_path", schema))
	if err != nil {
		tb.Fatalf("opening store: %v", err)
	}
	tb.Cleanup(func() { st.Close() }) // before the schema is dropped
	if err := st.Migrate(ctx); err != nil {
		tb.Fatalf("migrating: %v", err)
	}
	return st
}

// withParam sets a connection parameter in a URL or key=value DSN.
func withParam(dsn, key, value string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err == nil {
			q := u.Query()
			q.Set(key, value)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return dsn + " " + key + "=" + value
}
