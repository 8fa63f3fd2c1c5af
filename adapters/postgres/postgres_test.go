package postgres_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lib/pq"
	"github.com/pressly/goose/v3"

	"github.com/ferryhealth/ferry/adapters/postgres"
	"github.com/ferryhealth/ferry/adapters/sqlite"
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

func TestResources(t *testing.T) {
	storetest.RunResources(t, func(t *testing.T) engine.Store { return openTestStore(t) })
}

func BenchmarkTxOrder(b *testing.B) {
	storetest.BenchTxOrder(b, func(b *testing.B) engine.Store { return openTestStore(b) })
}

func BenchmarkWorklistItems10k(b *testing.B) {
	storetest.BenchWorklistItems10k(b, func(b *testing.B) engine.Store { return openTestStore(b) })
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

// waitBlockedBy waits until PostgreSQL reports a session waiting for a lock that holder's
// transaction holds (as PostgreSQL's own isolation tester does, by asking pg_blocking_pids), and
// fails if done says the operation under test ended first. No clock decides: the minute only
// guards against a hang; each check is one query round trip.
func waitBlockedBy(t *testing.T, db *sql.DB, holder *sql.Tx, done <-chan error) {
	t.Helper()
	var holderPID int
	if err := holder.QueryRowContext(t.Context(), `SELECT pg_backend_pid()`).Scan(&holderPID); err != nil {
		t.Fatal(err)
	}
	for hang := time.Now().Add(time.Minute); ; {
		select {
		case err := <-done:
			t.Fatalf("CommitInbound returned (%v) while another transaction held the key", err)
		default:
		}
		var blocked bool
		if err := db.QueryRowContext(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE $1 = ANY (pg_blocking_pids(pid)))`, holderPID).Scan(&blocked); err != nil {
			t.Fatal(err)
		}
		if blocked {
			return
		}
		if time.Now().After(hang) {
			t.Fatal("CommitInbound never waited for the other transaction's key")
		}
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
			waitBlockedBy(t, st.DB(), other, done)
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

// TestRacingNodeWithinBatch: another node holds a key that a batch carries twice, beside a key of
// its own. When that node commits, the one-statement commit fails on the key and the batch goes in
// as a transaction: both messages with the key are duplicates of the other node's row, the other
// message is accepted, and nothing is stored twice.
func TestRacingNodeWithinBatch(t *testing.T) {
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
		VALUES ('mllp', now(), 'MSH|', 'RIS', 'STMARYS', 'RACE2', 'accepted', 'ACK FROM OTHER NODE', 'CA')
		RETURNING id`).Scan(&otherID)
	if err != nil {
		t.Fatal(err)
	}
	msg := func(controlID, ack string) *engine.InboundMessage {
		return &engine.InboundMessage{Channel: "mllp", ReceivedAt: time.Now(), Raw: []byte("MSH|" + ack),
			SendingApplication: "RIS", SendingFacility: "STMARYS", ControlID: controlID,
			Status: engine.StatusAccepted, ACK: []byte(ack), ACKCode: "AA"}
	}
	first, own, second := msg("RACE2", "FIRST"), msg("OWN1", "OWN"), msg("RACE2", "SECOND")
	done := make(chan error, 1)
	go func() { done <- st.CommitInbound(ctx, []*engine.InboundMessage{first, own, second}) }()
	waitBlockedBy(t, st.DB(), other, done)
	if err := other.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("CommitInbound: %v", err)
	}
	for _, m := range []*engine.InboundMessage{first, second} {
		if m.Status != engine.StatusDuplicate || m.DuplicateOf != otherID || string(m.ACK) != "ACK FROM OTHER NODE" || m.ACKCode != "CA" {
			t.Errorf("message %d: got %s of %d with ACK %s %q, want duplicate of %d with the other node's ACK",
				m.ID, m.Status, m.DuplicateOf, m.ACKCode, m.ACK, otherID)
		}
	}
	if own.Status != engine.StatusAccepted || string(own.ACK) != "OWN" {
		t.Errorf("unrelated message: got %s with ACK %q, want accepted with its own", own.Status, own.ACK)
	}
	if !(first.ID < own.ID && own.ID < second.ID) {
		t.Errorf("IDs %d, %d, %d not in batch order", first.ID, own.ID, second.ID)
	}
	var rows int
	if err := st.DB().QueryRowContext(ctx, `SELECT count(*) FROM inbound_messages`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 4 {
		t.Errorf("%d rows stored, want 4 (the other node's and the batch's three)", rows)
	}
}

// TestFailedStatementCommitsNothing: a batch that the database refuses half way (here a duplicate
// pointing at no message, which the foreign key rejects) leaves nothing behind, not even the valid
// messages before it, and the store takes the next batch.
func TestFailedStatementCommitsNothing(t *testing.T) {
	st := openTestStore(t)
	ctx := t.Context()
	ok := &engine.InboundMessage{Channel: "mllp", ReceivedAt: time.Now(), Raw: []byte("MSH|1"),
		SendingApplication: "RIS", SendingFacility: "STMARYS", ControlID: "F1",
		Status: engine.StatusAccepted, ACK: []byte("ACK1"), ACKCode: "AA"}
	bad := &engine.InboundMessage{Channel: "mllp", ReceivedAt: time.Now(), Raw: []byte("MSH|2"),
		SendingApplication: "RIS", SendingFacility: "STMARYS", ControlID: "F2",
		Status: engine.StatusDuplicate, DuplicateOf: 1 << 40, ACK: []byte("ACK2"), ACKCode: "AA"}
	if err := st.CommitInbound(ctx, []*engine.InboundMessage{ok, bad}); err == nil {
		t.Fatal("CommitInbound with a duplicate of no message succeeded, want an error")
	}
	if ok.ID != 0 {
		t.Errorf("ID %d set on a message whose commit failed", ok.ID)
	}
	var rows int
	if err := st.DB().QueryRowContext(ctx, `SELECT count(*) FROM inbound_messages`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 0 {
		t.Fatalf("a failed batch left %d rows, want none", rows)
	}
	if err := st.CommitInbound(ctx, []*engine.InboundMessage{ok}); err != nil {
		t.Fatalf("next CommitInbound: %v", err)
	}
	if ok.Status != engine.StatusAccepted {
		t.Errorf("valid message sent again: %s, want accepted (the failed batch left no original)", ok.Status)
	}
}

// TestReceivedAtRoundTrip: receive times go over as binary timestamptz; each comes back as the
// same instant truncated to PostgreSQL's microseconds, in UTC, before and after 2000 (the zero of
// the binary form) and from any zone.
func TestReceivedAtRoundTrip(t *testing.T) {
	st := openTestStore(t)
	ctx := t.Context()
	zone := time.FixedZone("UTC-5", -5*3600)
	times := []time.Time{
		time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 1_500, time.UTC),
		time.Date(1901, 6, 15, 12, 30, 0, 123_456_789, time.UTC),
		time.Date(2026, 11, 27, 9, 15, 42, 987_654_321, zone),
		time.Date(2262, 4, 11, 23, 47, 16, 854_775_807, time.UTC),
	}
	var batch []*engine.InboundMessage
	for i, at := range times {
		batch = append(batch, &engine.InboundMessage{Channel: "mllp", ReceivedAt: at, Raw: []byte("MSH|"),
			ControlID: fmt.Sprintf("T%d", i), Status: engine.StatusAccepted, ACKCode: "AA"})
	}
	if err := st.CommitInbound(ctx, batch); err != nil {
		t.Fatal(err)
	}
	for i, m := range batch {
		got, err := st.Message(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if want := times[i].UTC().Truncate(time.Microsecond); !got.ReceivedAt.Equal(want) || got.ReceivedAt.Location() != time.UTC {
			t.Errorf("received_at %v: read back %v, want %v", times[i], got.ReceivedAt, want)
		}
	}
}

// BenchmarkCommitInboundCorpus commits batches of the ORM messages of ../shared/corpus (the
// messages the durable-ingest measurement in docs/performance.md sends: 91 bytes to 4.5 KB, a
// third over PostgreSQL's 2 KB TOAST threshold), each with a fresh control ID, and one batch in
// eight carrying a message already stored (a duplicate, answered with the original's ACK).
func BenchmarkCommitInboundCorpus(b *testing.B) {
	raws := corpusORMs(b)
	for _, batchSize := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("batch=%d", batchSize), func(b *testing.B) {
			st := openTestStore(b)
			ctx := context.Background()
			var size int64
			for i := range batchSize {
				size += int64(len(raws[i%len(raws)]))
			}
			b.SetBytes(size)
			seq := 0
			var last *engine.InboundMessage
			for b.Loop() {
				batch := make([]*engine.InboundMessage, batchSize)
				for i := range batch {
					seq++
					batch[i] = &engine.InboundMessage{Channel: "mllp", ReceivedAt: time.Now(),
						PeerAddr: "10.0.0.7:51234", Raw: raws[seq%len(raws)],
						SendingApplication: "RIS", SendingFacility: "STMARYS", MessageType: "ORM^O01",
						ControlID: fmt.Sprintf("C%d", seq), Version: "2.3", Status: engine.StatusAccepted,
						ACK: []byte("MSH|^~\\&|FERRY|FERRY|RIS|STMARYS|20261127||ACK^O01|F1|P|2.3\rMSA|AA|C" + strconv.Itoa(seq) + "\r"), ACKCode: "AA"}
				}
				if last != nil && seq%8 == 0 {
					batch[0].ControlID = last.ControlID
				}
				if err := st.CommitInbound(ctx, batch); err != nil {
					b.Fatal(err)
				}
				last = batch[len(batch)-1]
			}
			b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// corpusORMs reads the ORM messages of ../shared/corpus that docs/performance.md names, skipping
// the benchmark when the corpus is absent.
func corpusORMs(b *testing.B) [][]byte {
	const dir = "../../../shared/corpus/"
	index, err := os.ReadFile(dir + "hl7v2/INDEX.tsv")
	if err != nil {
		b.Skipf("corpus not found (%v): the benchmark needs ../shared beside the repository", err)
	}
	var raws [][]byte
	for _, line := range strings.Split(string(index), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 4 || !strings.HasPrefix(f[3], "ORM") || strings.Contains(f[0], "batch") || strings.Contains(f[0], "ruby") {
			continue
		}
		raw, err := os.ReadFile(dir + f[0])
		if err != nil {
			b.Fatal(err)
		}
		raws = append(raws, raw)
		if len(raws) == 20 {
			break
		}
	}
	if len(raws) == 0 {
		b.Skip("no ORM message in the corpus index")
	}
	return raws
}

// TestClaimPendingSkipsLocked: two transactions (two nodes' workers) claim at once; the second
// does not wait for the first, and skips the messages the first holds.
func TestClaimPendingSkipsLocked(t *testing.T) {
	st := openTestStore(t)
	ctx := t.Context()
	var pending []*engine.InboundMessage
	for i := range 4 {
		pending = append(pending, &engine.InboundMessage{Channel: "mllp", ReceivedAt: time.Now(),
			Raw: []byte("MSH|"), SendingApplication: "RIS", SendingFacility: "STMARYS",
			ControlID: fmt.Sprintf("SK%d", i), Status: engine.StatusAccepted, ACKCode: "CA", Pending: true})
	}
	if err := st.CommitInbound(ctx, pending); err != nil {
		t.Fatal(err)
	}
	tx1, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx1.Rollback()
	first, err := tx1.ClaimPending(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan []*engine.InboundMessage, 1)
	go func() {
		tx2, err := st.Begin(ctx)
		if err != nil {
			t.Error(err)
			done <- nil
			return
		}
		defer tx2.Rollback()
		second, err := tx2.ClaimPending(ctx, 10)
		if err != nil {
			t.Error(err)
		}
		done <- second
	}()
	select {
	case second := <-done:
		if len(first) != 2 || len(second) != 2 || first[1].ID >= second[0].ID ||
			first[0].ID != pending[0].ID || second[1].ID != pending[3].ID {
			t.Errorf("claims %v and %v, want the oldest two and the other two", ids(first), ids(second))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a second claim waited for the first transaction")
	}
}

// TestDuplicateOfClaimedMessage: a message resent while its original is claimed for processing
// is stored and answered as a duplicate at once. The claim's row lock (FOR NO KEY UPDATE) leaves
// the foreign key of duplicate_of free to check the original.
func TestDuplicateOfClaimedMessage(t *testing.T) {
	st := openTestStore(t)
	ctx := t.Context()
	msg := func() *engine.InboundMessage {
		return &engine.InboundMessage{Channel: "mllp", ReceivedAt: time.Now(), Raw: []byte("MSH|"),
			SendingApplication: "RIS", SendingFacility: "STMARYS", ControlID: "CL1",
			Status: engine.StatusAccepted, ACK: []byte("ORIGINAL ACK"), ACKCode: "CA", Pending: true}
	}
	orig := msg()
	if err := st.CommitInbound(ctx, []*engine.InboundMessage{orig}); err != nil {
		t.Fatal(err)
	}
	tx, err := st.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if claimed, err := tx.ClaimPending(ctx, 1); err != nil || len(claimed) != 1 {
		t.Fatalf("ClaimPending = %v, %v; want the original", ids(claimed), err)
	}
	resent := msg()
	done := make(chan error, 1)
	go func() { done <- st.CommitInbound(ctx, []*engine.InboundMessage{resent}) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("CommitInbound of a duplicate waited for the transaction processing its original")
	}
	if resent.Status != engine.StatusDuplicate || resent.DuplicateOf != orig.ID || resent.Pending {
		t.Errorf("resent message: %s of %d, pending %v; want a duplicate of %d, not pending", resent.Status, resent.DuplicateOf, resent.Pending, orig.ID)
	}
}

func ids(msgs []*engine.InboundMessage) []int64 {
	var out []int64
	for _, m := range msgs {
		out = append(out, m.ID)
	}
	return out
}

// TestGenericPlans: the statements that must stay index probes as tables grow have generic plans
// (the ones a prepared statement keeps) of index scans even on empty tables, where a plan may
// otherwise scan or hash a whole table that is small only for now.
func TestGenericPlans(t *testing.T) {
	st := openTestStore(t)
	ctx := t.Context()
	conn, err := st.DB().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(context.Background(), "RESET plan_cache_mode")
	for _, tt := range []struct {
		name, query, params, args string
		want                      []string
	}{
		{"ResourceByKeys", postgres.ResourceByKeysSQL, "text, text, text, text, text, text, text, text, text",
			"'Patient', 'k1', 'k2', NULL, NULL, NULL, NULL, NULL, NULL",
			[]string{"resource_keys_pkey", "resources_pkey", "resource_versions_pkey"}},
		{"ClaimPending", postgres.ClaimPendingSQL, "int", "10", []string{"inbound_messages_pending"}},
		// A study's series and a series' instances found through their index.
		{"StudySeries", postgres.StudySeriesSQL, "text", "'1.2.3'", []string{"dicom_series_study"}},
		{"SeriesInstances", postgres.SeriesInstancesSQL, "text", "'1.2.3'", []string{"dicom_instances_series"}},
		// The outbox: what is due in due order, and a destination's pending deliveries.
		{"DueDeliveries", postgres.DueDeliveriesSQL, "timestamptz, int, text[]", "now(), 10, '{A/B}'", []string{"deliveries_pending_due", "deliveries_pending_queue"}},
		{"PostponeDestination", postgres.PostponeDestinationSQL, "text, text, text, timestamptz, timestamptz",
			"'A/B', 'A/B|', 'A/B}', now(), now()", []string{"deliveries_pending_"}}, // either partial index
	} {
		t.Run(tt.name, func(t *testing.T) {
			name := strings.ToLower(tt.name)
			if _, err := conn.ExecContext(ctx, "PREPARE "+name+"("+tt.params+") AS "+tt.query); err != nil {
				t.Fatal(err)
			}
			defer conn.ExecContext(context.Background(), "DEALLOCATE "+name)
			rows, err := conn.QueryContext(ctx, "EXPLAIN EXECUTE "+name+"("+tt.args+")")
			if err != nil {
				t.Fatal(err)
			}
			var plan []string
			for rows.Next() {
				var line string
				if err := rows.Scan(&line); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, line)
			}
			rows.Close()
			text := strings.Join(plan, "\n")
			for _, bad := range []string{"Seq Scan", "Hash"} {
				if strings.Contains(text, bad) {
					t.Errorf("generic plan has a %s:\n%s", bad, text)
				}
			}
			for _, idx := range tt.want {
				if !strings.Contains(text, idx) {
					t.Errorf("generic plan does not use %s:\n%s", idx, text)
				}
			}
		})
	}
}

func TestInstances(t *testing.T) {
	storetest.RunInstances(t, func(t *testing.T) engine.InstanceStore { return openTestStore(t) })
}

func BenchmarkPutInstance(b *testing.B) {
	storetest.BenchPutInstance(b, func(b *testing.B) engine.InstanceStore { return openTestStore(b) })
}

func TestLinks(t *testing.T) {
	storetest.RunLinks(t, func(t *testing.T) storetest.LinkStore { return openTestStore(t) })
}

func TestOutbox(t *testing.T) {
	storetest.RunOutbox(t, func(t *testing.T) storetest.OutboxStore { return openTestStore(t) })
}

func TestTurnaround(t *testing.T) {
	storetest.RunTurnaround(t, func(t *testing.T) storetest.TurnaroundStore { return openTestStore(t) })
}

// TestStudyLinkEvidenceStored: evidence is kept as a JSON object, keys sorted, and the table
// itself rejects an unknown status.
func TestStudyLinkEvidenceStored(t *testing.T) {
	st := openTestStore(t)
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

// TestSchemaMatchesSQLite: with every migration applied, both stores have the same tables, each
// with the same columns, and the same named secondary indexes. The two migration directories are
// written apart (docs/storage.md, "Tests"); this keeps them one schema.
func TestSchemaMatchesSQLite(t *testing.T) {
	ctx := t.Context()
	pg := openTestStore(t)
	lite, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	if err := lite.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	objects := func(db *sql.DB, query string) map[string]bool {
		rows, err := db.QueryContext(ctx, query)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]bool{}
		for rows.Next() {
			var table, name string
			if err := rows.Scan(&table, &name); err != nil {
				t.Fatal(err)
			}
			out[table+"."+name] = true
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, c := range []struct {
		what             string
		postgres, sqlite string
	}{
		{"column", `SELECT table_name, column_name FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name <> 'goose_db_version'`,
			`SELECT m.name, c.name FROM sqlite_schema m JOIN pragma_table_info(m.name) c
			WHERE m.type = 'table' AND m.name NOT IN ('goose_db_version', 'sqlite_sequence')`},
		// Secondary indexes by name; primary keys and unique constraints are the tables' own.
		{"index", `SELECT i.tablename, i.indexname FROM pg_indexes i
			WHERE i.schemaname = current_schema() AND i.tablename <> 'goose_db_version'
				AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conname = i.indexname)`,
			`SELECT tbl_name, name FROM sqlite_schema
			WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%' AND tbl_name <> 'goose_db_version'`},
	} {
		p, s := objects(pg.DB(), c.postgres), objects(lite.ReadDB(), c.sqlite)
		for o := range p {
			if !s[o] {
				t.Errorf("%s %s: on PostgreSQL, not on SQLite", c.what, o)
			}
		}
		for o := range s {
			if !p[o] {
				t.Errorf("%s %s: on SQLite, not on PostgreSQL", c.what, o)
			}
		}
		t.Logf("%s: %d on PostgreSQL, %d on SQLite", c.what, len(p), len(s))
		if len(p) == 0 {
			t.Errorf("no %s found on PostgreSQL", c.what)
		}
	}
}

// CheckMaintenance names what keeps autovacuum from running: off for the server (as on some test
// servers), or off for one of Ferry's tables.
func TestCheckMaintenance(t *testing.T) {
	st := openTestStore(t)
	ctx := t.Context()
	var server string
	if err := st.DB().QueryRowContext(ctx, "SELECT current_setting('autovacuum') || '/' || current_setting('track_counts')").Scan(&server); err != nil {
		t.Fatal(err)
	}
	err := st.CheckMaintenance(ctx)
	if server != "on/on" {
		if err == nil || !strings.Contains(err.Error(), " is off") {
			t.Fatalf("autovacuum/track_counts %s: CheckMaintenance = %v, want it said", server, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("autovacuum on: CheckMaintenance = %v", err)
	}
	if _, err := st.DB().ExecContext(ctx, "ALTER TABLE worklist_items SET (autovacuum_enabled = false)"); err != nil {
		t.Fatal(err)
	}
	if err := st.CheckMaintenance(ctx); err == nil || !strings.Contains(err.Error(), "worklist_items") {
		t.Fatalf("autovacuum off for worklist_items: CheckMaintenance = %v", err)
	}
}

func TestErrorQueue(t *testing.T) {
	storetest.RunErrorQueue(t, func(t *testing.T) storetest.ErrorQueueStore { return openTestStore(t) })
}

func TestMappingHistory(t *testing.T) {
	storetest.RunMappingHistory(t, func(t *testing.T) storetest.MappingHistoryStore { return openTestStore(t) })
}

func TestCritical(t *testing.T) {
	storetest.RunCritical(t, func(t *testing.T) storetest.CriticalStore { return openTestStore(t) })
}
