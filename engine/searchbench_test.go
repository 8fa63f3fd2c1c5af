package engine_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/adapters/postgres"
	"github.com/ferryhealth/ferry/engine"
)

// BenchmarkMessageSearch is issue 14's message search at scale: a page of the console's message
// browser (51 messages, newest first) for a mix of searches, on a PostgreSQL message log of
// FERRY_BENCH_SEARCH_MESSAGES messages (default 1,000,000) in the database FERRY_BENCH_SEARCH_DSN
// names (created and filled in bulk, with generate_series, on first use and kept). It reports
// the p50 and p95 of all searches, and the p95 of the free-text ones (a bounded scan) apart.
//
//	FERRY_BENCH_SEARCH_DSN=postgres://postgres@127.0.0.1:5432/ferry_searchbench?sslmode=disable \
//	  go test -run '^$' -bench BenchmarkMessageSearch -benchtime 2000x ./engine/
func BenchmarkMessageSearch(b *testing.B) {
	dsn := os.Getenv("FERRY_BENCH_SEARCH_DSN")
	if dsn == "" {
		b.Skip("set FERRY_BENCH_SEARCH_DSN to a PostgreSQL database for the message search benchmark (docs/performance.md)")
	}
	n := 1_000_000
	if v := os.Getenv("FERRY_BENCH_SEARCH_MESSAGES"); v != "" {
		fmt.Sscan(v, &n)
	}
	ctx := context.Background()
	createDatabase(b, dsn)
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	fillMessageLog(b, st, n)

	rng := rand.New(rand.NewPCG(14, uint64(time.Now().UnixNano())))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// The mix an analyst's day has: one kind of search after another.
	searches := []func(i int) engine.MessageFilter{
		func(i int) engine.MessageFilter { return engine.MessageFilter{PatientID: "MRN" + strconv.Itoa(i/5)} },
		func(i int) engine.MessageFilter { return engine.MessageFilter{Accession: "ACC" + strconv.Itoa(i)} },
		func(i int) engine.MessageFilter { return engine.MessageFilter{Accession: "pl" + strconv.Itoa(i)} },
		func(i int) engine.MessageFilter {
			return engine.MessageFilter{StudyUID: "1.2.826.0.1." + strconv.Itoa(i)}
		},
		func(i int) engine.MessageFilter {
			return engine.MessageFilter{PatientName: "giv" + strconv.Itoa(i%300) + " fam" + strconv.Itoa(i%5000)}
		},
		func(i int) engine.MessageFilter {
			return engine.MessageFilter{PatientID: "MRN" + strconv.Itoa(i/5), Status: engine.StatusAccepted,
				SendingFacility: "FAC" + strconv.Itoa(i%20)}
		},
		func(i int) engine.MessageFilter {
			return engine.MessageFilter{Status: engine.StatusError, Since: base.Add(time.Duration(i) * time.Second)}
		},
		func(int) engine.MessageFilter { return engine.MessageFilter{} },
		func(i int) engine.MessageFilter {
			return engine.MessageFilter{ControlID: "C" + strconv.Itoa(i)}
		},
	}
	text := func(i int) engine.MessageFilter {
		return engine.MessageFilter{Text: "PL" + strconv.Itoa(i) + "\r", SendingFacility: "FAC" + strconv.Itoa(i%20)}
	}
	var all, texts []time.Duration
	b.ResetTimer()
	for i := range b.N {
		target := rng.IntN(n)
		f := searches[i%len(searches)](target)
		isText := i%(len(searches)+1) == len(searches)
		if isText {
			f = text(target)
		}
		f.Limit = 51
		start := time.Now()
		msgs, err := st.Messages(ctx, f)
		d := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if len(msgs) == 0 && f.PatientID != "" && f.Status == "" {
			b.Fatalf("%+v found nothing", f)
		}
		all = append(all, d)
		if isText {
			texts = append(texts, d)
		}
	}
	b.StopTimer()
	q := func(d []time.Duration, p float64) float64 {
		if len(d) == 0 {
			return 0
		}
		slices.Sort(d)
		return float64(d[int(p*float64(len(d)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(q(all, 0.50), "p50-ms")
	b.ReportMetric(q(all, 0.95), "p95-ms")
	b.ReportMetric(q(texts, 0.95), "text-p95-ms")
}

// fillMessageLog fills the message log to n messages in bulk (generate_series), with the search
// keys the intake would have extracted from each: 5 messages a patient, 20 facilities, 5,000
// family and 300 given names, 1 in 50 answered AE, one second apart.
func fillMessageLog(b *testing.B, st *postgres.Store, n int) {
	ctx := context.Background()
	var have int
	if err := st.DB().QueryRowContext(ctx, `SELECT count(*) FROM inbound_messages`).Scan(&have); err != nil {
		b.Fatal(err)
	}
	if have >= n {
		return
	}
	b.Logf("filling the message log from %d to %d messages", have, n)
	_, err := st.DB().ExecContext(ctx, `
INSERT INTO inbound_messages (id, channel, received_at, peer_addr, raw, sending_application,
	sending_facility, message_type, control_id, version, status, ack, ack_code, error)
SELECT i, 'mllp', timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second', '10.0.0.1:5000',
	convert_to('MSH|^~\&|RIS|FAC' || i % 20 || '|FERRY|FERRY|20260101000000||ORM^O01|C' || i ||
		'|P|2.5.1' || chr(13) || 'PID|1||MRN' || i / 5 || '^^^HOSP^MR||FAM' || i % 5000 || '^GIV' || i % 300 ||
		'||19700101|F' || chr(13) || 'ORC|NW|PL' || i || chr(13) || 'OBR|1|PL' || i ||
		'||CT^CT chest^L' || repeat('|', 14) || 'ACC' || i || chr(13) ||
		'ZDS|1.2.826.0.1.' || i || '^^Application^DICOM' || chr(13), 'UTF8'),
	'RIS', 'FAC' || i % 20, 'ORM^O01', 'C' || i, '2.5.1',
	CASE WHEN i % 50 = 0 THEN 'error' ELSE 'accepted' END, '',
	CASE WHEN i % 50 = 0 THEN 'AE' ELSE 'AA' END,
	CASE WHEN i % 50 = 0 THEN 'procedure code not in the table' ELSE '' END
FROM generate_series($1::bigint + 1, $2::bigint) AS i`, have, n)
	if err != nil {
		b.Fatal(err)
	}
	_, err = st.DB().ExecContext(ctx, `
INSERT INTO message_search_keys (kind, value, message_id)
SELECT k.kind, k.value, i
FROM generate_series($1::bigint + 1, $2::bigint) AS i,
	LATERAL (VALUES ('mrn', 'MRN' || i / 5), ('name', 'fam' || i % 5000), ('name', 'giv' || i % 300),
		('accession', 'PL' || i), ('accession', 'ACC' || i), ('study_uid', '1.2.826.0.1.' || i)) AS k(kind, value)
ON CONFLICT DO NOTHING`, have, n)
	if err != nil {
		b.Fatal(err)
	}
	for _, q := range []string{
		`SELECT setval('inbound_messages_id_seq', (SELECT max(id) FROM inbound_messages))`,
		`UPDATE message_search_backfill SET below = 1`,
		`VACUUM ANALYZE inbound_messages`, `VACUUM ANALYZE message_search_keys`, // the visibility map: index-only scans
	} {
		if _, err := st.DB().ExecContext(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
}
