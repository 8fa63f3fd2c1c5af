package engine_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/adapters/postgres"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/hl7"
)

// BenchmarkADTUpdateManyActiveOrders measures an ADT^A08 patient update end to end (parsed,
// mapped, validated, group-committed, ACKed) for a patient with three active orders while
// FERRY_BENCH_ADT_ORDERS other orders (default 1,000,000) are active, on the PostgreSQL database
// FERRY_BENCH_ADT_DSN names (created, and filled on first use directly with generate_series — the
// rows an active order leaves in resources, resource_versions, resource_index and worklist_items
// — then kept). The update rewrites the patient's worklist items (refreshWorklistPatient), the
// step issue 18 item 4 found growing with the active orders. It runs with no planner statistics
// on those tables (deleted from pg_statistic, autovacuum off for them) and after ANALYZE, and
// reports the p50 and p99 latency of the whole update and of its reads of the patient's orders.
// docs/performance.md ("ADT updates and active orders") has the figures and the command:
//
//	FERRY_BENCH_ADT_DSN=postgres://postgres@127.0.0.1:5432/ferry_adtbench?sslmode=disable \
//	  go test -run '^$' -bench BenchmarkADTUpdateManyActiveOrders -benchtime 300x ./engine/
func BenchmarkADTUpdateManyActiveOrders(b *testing.B) {
	dsn := os.Getenv("FERRY_BENCH_ADT_DSN")
	if dsn == "" {
		b.Skip("set FERRY_BENCH_ADT_DSN to a PostgreSQL database for the ADT update benchmark (docs/performance.md)")
	}
	orders := 1_000_000
	if v := os.Getenv("FERRY_BENCH_ADT_ORDERS"); v != "" {
		fmt.Sscan(v, &orders)
	}
	ctx := context.Background()
	createDatabase(b, dsn)
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	migrated, err := postgres.Open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	if err := migrated.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	migrated.Close()
	fillActiveOrders(b, db, orders)

	for _, bc := range []struct {
		name  string
		stats string
	}{
		{"statistics=none", `DELETE FROM pg_statistic WHERE starelid IN ('resources'::regclass, 'resource_versions'::regclass,
			'resource_index'::regclass, 'resource_keys'::regclass, 'worklist_items'::regclass)`},
		{"statistics=fresh", `ANALYZE resources, resource_versions, resource_index, resource_keys, worklist_items`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if _, err := db.Exec(bc.stats); err != nil {
				b.Fatal(err)
			}
			st, err := postgres.Open(ctx, dsn) // a new pool: no plan prepared under other statistics
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			timed := &patientReads{Store: st}
			in := shippedInbound(b, timed)
			send := func(i int, segs ...string) {
				raw := []byte(fmt.Sprintf(segs[0], fmt.Sprintf("ADTB%d-%d", time.Now().UnixNano(), i)))
				for _, s := range segs[1:] {
					raw = append(append(raw, '\r'), s...)
				}
				ack, err := hl7.Parse(in.Receive(ctx, engine.Received{Data: append(raw, '\r'), ReceivedAt: time.Now()}))
				if err != nil || ack.Value("MSA-1") != "AA" {
					b.Fatalf("want AA, got %v %q", err, ack.Bytes())
				}
			}
			msh := `MSH|^~\&|RIS|STMARYS|FERRY|FERRY|20261127083000-0500||ORM^O01|%s|P|2.3.1`
			for o := range 3 { // the patient's own orders (an identical repeat changes nothing)
				placer := fmt.Sprintf("ADTBPL%d", o)
				send(o, msh, pidFor("ADTBENCH", "DOE^JANE"), orc("NW", placer, "SC"), obr(placer, "ADTBACC"+placer))
			}
			adt := `MSH|^~\&|ADT|STMARYS|FERRY|FERRY|20261127083000-0500||ADT^A08^ADT_A01|%s|P|2.5.1`
			latencies := make([]time.Duration, 0, b.N)
			reads := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				timed.spent = 0
				start := time.Now()
				send(i, adt, pidFor("ADTBENCH", fmt.Sprintf("DOE^JANE^V%d", i%2)), "PV1|1|O")
				latencies = append(latencies, time.Since(start))
				reads = append(reads, timed.spent)
			}
			b.StopTimer()
			q := func(d []time.Duration, p float64) float64 {
				slices.Sort(d)
				return float64(d[int(p*float64(len(d)-1))].Microseconds()) / 1000
			}
			b.ReportMetric(q(latencies, 0.50), "p50-ms")
			b.ReportMetric(q(latencies, 0.99), "p99-ms")
			b.ReportMetric(q(reads, 0.50), "find-p50-ms")
			b.ReportMetric(q(reads, 0.99), "find-p99-ms")
		})
	}
}

// patientReads times what the update reads of the patient's orders in its transaction (the
// worklist, the orders, a search of them): the step that grew with the active orders, reported
// apart from the rest of the update (a durable commit, which the machine's load moves most).
type patientReads struct {
	engine.Store
	spent time.Duration // one message at a time: no lock
}

func (p *patientReads) Begin(ctx context.Context) (engine.Tx, error) {
	tx, err := p.Store.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return timedTx{Tx: tx, p: p}, nil
}

type timedTx struct {
	engine.Tx
	p *patientReads
}

func (t timedTx) since(start time.Time) { t.p.spent += time.Since(start) }

func (t timedTx) WorklistItems(ctx context.Context, f engine.WorklistFilter) ([]*engine.WorklistItem, error) {
	defer t.since(time.Now())
	return t.Tx.WorklistItems(ctx, f)
}

func (t timedTx) Resource(ctx context.Context, typ, id string) (*engine.Resource, error) {
	defer t.since(time.Now())
	return t.Tx.Resource(ctx, typ, id)
}

func (t timedTx) SearchResources(ctx context.Context, q engine.ResourceQuery) ([]*engine.Resource, error) {
	defer t.since(time.Now())
	return t.Tx.SearchResources(ctx, q)
}

// fillActiveOrders adds active ServiceRequests of other patients until there are n, straight
// into the tables (Ferry's path would take hours here): per order its current-version row, a
// version, the index entries an active order is searched by (status, patient, subject) and a
// worklist item. Autovacuum is turned off on those tables, so the statistics are what the
// benchmark makes them. The items' encoded column is one sample item: the benchmark never
// decodes another patient's item.
func fillActiveOrders(b *testing.B, db *sql.DB, n int) {
	for _, t := range []string{"resources", "resource_versions", "resource_index", "resource_keys", "worklist_items"} {
		if _, err := db.Exec(`ALTER TABLE ` + t + ` SET (autovacuum_enabled = false)`); err != nil {
			b.Fatal(err)
		}
	}
	var have int
	if err := db.QueryRow(`SELECT count(*) FROM resources WHERE type = 'ServiceRequest' AND id LIKE 'bulk-%'`).Scan(&have); err != nil {
		b.Fatal(err)
	}
	if have >= n {
		return
	}
	item, err := (&engine.WorklistItem{ServiceRequestID: "bulk", AccessionNumber: "BULK", PatientID: "BULK", Modality: "CT",
		StartDate: "20261127", StartTime: "083000"}).MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("adding %d active orders (once; kept in the database)", n-have)
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback()
	for _, q := range []string{
		`INSERT INTO resources (type, id, version_id, last_updated)
			SELECT 'ServiceRequest', 'bulk-' || i, 1, now() FROM generate_series($1::int, $2::int - 1) AS i`,
		`INSERT INTO resource_versions (type, id, version_id, last_updated, json)
			SELECT 'ServiceRequest', 'bulk-' || i, 1, now(), convert_to('{"resourceType":"ServiceRequest","id":"bulk-' || i ||
				'","status":"active","intent":"order","subject":{"reference":"Patient/bulkp-' || (i % 250000) || '"}}', 'UTF8')
			FROM generate_series($1::int, $2::int - 1) AS i`,
		`INSERT INTO resource_index (type, id, param, system, value)
			SELECT 'ServiceRequest', 'bulk-' || i, p.param, '', CASE WHEN p.param = 'status' THEN 'active' ELSE 'Patient/bulkp-' || (i % 250000) END
			FROM generate_series($1::int, $2::int - 1) AS i, (VALUES ('status'), ('patient'), ('subject')) AS p(param)`,
		`INSERT INTO worklist_items (service_request_id, accession_number, patient_id, modality, station_ae_title, start_date, start_time, item)
			SELECT 'bulk-' || i, 'BULKACC' || i, 'BULK' || (i % 250000), 'CT', '', '20261127', '083000', $3::bytea
			FROM generate_series($1::int, $2::int - 1) AS i`,
	} {
		args := []any{have, n}
		if strings.Contains(q, "$3") {
			args = append(args, item)
		}
		if _, err := tx.Exec(q, args...); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}
