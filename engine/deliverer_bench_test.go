package engine_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/adapters/mllp"
	"github.com/ferryhealth/ferry/adapters/postgres"
	"github.com/ferryhealth/ferry/adapters/sqlite"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/outbox"
	"github.com/ferryhealth/ferry/fhir"
	"github.com/ferryhealth/ferry/hl7"
	"github.com/ferryhealth/ferry/mappings"
)

// The report outbox's benchmarks (issue: "Outbox to a local MLLP receiver: ≥ 1,000 report
// deliveries/s; from report commit to ACK p99 ≤ 50 ms at 100 reports/s"). Both run a Deliverer
// with cmd/ferry's MLLP transport against an adapters/mllp Server on loopback that answers AA,
// on every store FERRY_BENCH_OUTBOX names (space-separated): "sqlite" (a new file in a temporary
// directory each round) and a PostgreSQL URL (a new schema outbox_bench in its database each
// round, the database created when missing). Without FERRY_BENCH_OUTBOX they skip.
// docs/performance.md, "Report delivery", has the figures and the commands:
//
//	FERRY_BENCH_OUTBOX='sqlite postgres://postgres@127.0.0.1:5432/ferry_outboxbench?sslmode=disable' \
//	  go test -run '^$' -bench 'BenchmarkOutboxThroughput|BenchmarkReportToACK' -benchtime 1x ./engine/

// BenchmarkOutboxThroughput delivers FERRY_BENCH_OUTBOX_N deliveries (default 5,000: two report
// versions, preliminary and final, for each of N/2 patients, one destination; ORU^R01 of about
// 2.5 KB, each its own MSH-10), inserted in batches with Tx.InsertDelivery, all due, with
// Deliverer.Run, for each shape of workers (Deliverer.Workers) and MLLP connections; it reports
// deliveries per second from the start of Run to the last delivery recorded.
func BenchmarkOutboxThroughput(b *testing.B) {
	n := envInt("FERRY_BENCH_OUTBOX_N", 5000)
	for _, target := range outboxBenchTargets(b) {
		b.Run(target.name, func(b *testing.B) {
			for _, shape := range [][2]int{{8, 2}, {8, 4}, {8, 8}, {16, 2}, {16, 4}, {16, 8}, {32, 2}, {32, 4}, {32, 8}} {
				workers, conns := shape[0], shape[1]
				b.Run(fmt.Sprintf("workers=%d/conns=%d", workers, conns), func(b *testing.B) {
					recv := startACKReceiver(b)
					payload := oruTemplate()
					b.SetBytes(int64(n * (len(payload) - 2))) // one op is one round of n deliveries
					var spent time.Duration
					b.StopTimer()
					for range b.N {
						st := target.open(b)
						insertDueDeliveries(b, st, n, payload)
						transport := newMLLPTransport(recv.addr, conns)
						var delivered atomic.Int64
						ctx, stop := context.WithCancel(context.Background())
						dl := outboxBenchDeliverer(st, recv.addr, transport, workers)
						dl.Delivered = func(_ *outbox.Delivery, status outbox.Status) {
							if status != outbox.Delivered {
								b.Errorf("a delivery ended %s", status)
							}
							if delivered.Add(1) == int64(n) {
								stop()
							}
						}
						b.StartTimer()
						start := time.Now()
						dl.Run(ctx, 200*time.Millisecond)
						spent += time.Since(start)
						b.StopTimer()
						stop()
						transport.close()
						st.Close()
						if got := delivered.Load(); got != int64(n) {
							b.Fatalf("delivered %d of %d", got, n)
						}
					}
					b.ReportMetric(float64(n*b.N)/spent.Seconds(), "deliveries/s")
				})
			}
		})
	}
}

// BenchmarkReportToACK submits reports through engine.Reports.Submit — validated, completed
// from the order, the ORU rendered by the shipped oru_r01 and committed with its delivery —
// paced at FERRY_BENCH_OUTBOX_RATE a second (default 100) for FERRY_BENCH_OUTBOX_SECONDS
// (default 20), submissions running concurrently as they come (an open loop: a slow one does
// not hold the next back), while a Deliverer runs as `ferry serve` runs it (16 workers on
// PostgreSQL and 8 on SQLite, half of them to one destination, 2 connections, Run polling
// every 200ms). The orders are created first through the inbound path
// (ORM^O01, shipped mappings, group commit); each gets a preliminary and, a second later, its
// final (which waits for the preliminary's Submit should that still run). It reports the
// latency from Submit's return (the commit) to the receiver's receipt of the message, by
// MSH-10: p50, p99 and max. The variant "nudge" sets Reports.Nudge to Deliverer.Nudge, as
// `ferry serve` does; "poll" leaves it unset (the deliverer finds each delivery at its next
// poll, as before the nudge).
func BenchmarkReportToACK(b *testing.B) {
	rate := envInt("FERRY_BENCH_OUTBOX_RATE", 100)
	seconds := envInt("FERRY_BENCH_OUTBOX_SECONDS", 20)
	set, err := mappings.Load(mappings.Source{Base: []fs.FS{mappings.Shipped()}})
	if err != nil {
		b.Fatal(err)
	}
	validator, err := fhir.NewValidator()
	if err != nil {
		b.Fatal(err)
	}
	for _, target := range outboxBenchTargets(b) {
		b.Run(target.name, func(b *testing.B) {
			for _, nudge := range []bool{false, true} {
				name := "poll"
				if nudge {
					name = "nudge"
				}
				b.Run(name, func(b *testing.B) {
					var commitToReceipt, submit []time.Duration
					b.StopTimer()
					for range b.N {
						c, s := reportToACKRound(b, target, set, validator, rate, seconds, nudge)
						commitToReceipt, submit = append(commitToReceipt, c...), append(submit, s...)
					}
					b.ReportMetric(quantileMillis(commitToReceipt, 0.50), "p50-ms")
					b.ReportMetric(quantileMillis(commitToReceipt, 0.99), "p99-ms")
					b.ReportMetric(quantileMillis(commitToReceipt, 1), "max-ms")
					b.ReportMetric(quantileMillis(submit, 0.99), "submit-p99-ms")
				})
			}
		})
	}
}

// reportToACKRound is one round of BenchmarkReportToACK on a new store: it returns the commit
// to receipt latency and the time Submit took, of each report version.
func reportToACKRound(b *testing.B, target outboxBenchTarget, set *mappings.Set, validator *fhir.Validator,
	rate, seconds int, nudge bool) (commitToReceipt, submit []time.Duration) {
	ctx := context.Background()
	st := target.open(b)
	defer st.Close()
	orders := rate * seconds / 2
	loadBenchOrders(b, st, set, orders)

	recv := startACKReceiver(b)
	transport := newMLLPTransport(recv.addr, 2)
	defer transport.close()
	workers := 16 // ferry serve's defaults: 16 on PostgreSQL, 8 on the embedded store
	if target.name == "sqlite" {
		workers = 8
	}
	dl := outboxBenchDeliverer(st, recv.addr, transport, workers)
	var controlIDs sync.Map // "report id/version" → MSH-10, noted as Submit renders the ORU
	render := engine.RenderORU(func() *mappings.Set { return set })
	rs := &engine.Reports{Store: st, Validator: validator,
		Destinations: func(facility string) []outbox.Destination {
			return []outbox.Destination{outboxBenchDestination(recv.addr)}
		},
		Render: func(facility string, d outbox.Destination, rv *engine.ReportVersion) ([]byte, string, error) {
			controlIDs.Store(rv.Report.ID+"/"+strconv.FormatInt(rv.Report.VersionID, 10), rv.ControlID)
			return render(facility, d, rv)
		}}
	if nudge {
		rs.Nudge = dl.Nudge // as `ferry serve` wires them
	}
	runCtx, stop := context.WithCancel(ctx)
	running := make(chan struct{})
	go func() { dl.Run(runCtx, 200*time.Millisecond); close(running) }()
	defer func() { stop(); <-running }()

	// Each order's preliminary, and its final 100 submissions (a second at 100/s) later.
	type submission struct {
		order  int
		status string
	}
	var plan []submission
	for i := range orders + 100 {
		if i < orders {
			plan = append(plan, submission{i, "preliminary"})
		}
		if i >= 100 {
			plan = append(plan, submission{i - 100, "final"})
		}
	}
	var (
		mu        sync.Mutex
		committed = map[string]time.Time{} // MSH-10 → when Submit returned
		wg        sync.WaitGroup
		prelims   = make([]chan struct{}, orders) // closed when the order's preliminary is in
	)
	for i := range prelims {
		prelims[i] = make(chan struct{})
	}
	text := strings.Repeat("The lungs are clear. No pleural effusion or pneumothorax. Heart size is normal. ", 12)
	interval := time.Second / time.Duration(rate)
	b.StartTimer()
	start := time.Now()
	for k, s := range plan {
		time.Sleep(time.Until(start.Add(time.Duration(k) * interval)))
		wg.Go(func() {
			if s.status == "final" {
				<-prelims[s.order] // a final before its preliminary would be refused
			} else {
				defer close(prelims[s.order])
			}
			body := reportJSON(s.status, fmt.Sprintf("ACC%07d", s.order), s.status+": "+text)
			began := time.Now()
			r, _, err := rs.Submit(ctx, body, "")
			done := time.Now()
			if err != nil {
				b.Errorf("submitting the %s report of order %d: %v", s.status, s.order, err)
				return
			}
			id, ok := controlIDs.Load(r.ID + "/" + strconv.FormatInt(r.VersionID, 10))
			if !ok {
				b.Errorf("no ORU rendered for DiagnosticReport/%s/_history/%d", r.ID, r.VersionID)
				return
			}
			mu.Lock()
			committed[id.(string)] = done
			submit = append(submit, done.Sub(began))
			mu.Unlock()
		})
	}
	launched := time.Since(start) // the last submission started
	wg.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for recv.received() < len(plan) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	b.StopTimer()
	if got := recv.received(); got < len(plan) {
		b.Fatalf("the receiver got %d of %d report versions", got, len(plan))
	}
	if b.N == 1 {
		b.Logf("%d report versions submitted at %.1f/s, all received %s after the first",
			len(plan), float64(len(plan)-1)/launched.Seconds(), time.Since(start).Round(time.Millisecond))
	}
	for id, at := range committed {
		commitToReceipt = append(commitToReceipt, recv.arrival(id).Sub(at))
	}
	return commitToReceipt, submit
}

// loadBenchOrders creates n orders of n patients through the inbound path, as `ferry serve`
// takes them: ORM^O01 with a visit and an ordering physician (one of 50), accession ACC<i>.
func loadBenchOrders(b *testing.B, st outboxBenchStore, set *mappings.Set, n int) {
	ctx := context.Background()
	gc := engine.NewGroupCommitter(st, engine.GroupCommitOptions{Workers: 4, EffectWorkers: 4})
	defer gc.Close()
	in := engine.NewInbound("bench", gc, nil, nil)
	in.Processor = &engine.Processor{Mappings: func() engine.MappingSource { return set }}
	var wg sync.WaitGroup
	work := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range work {
				doc := 1000 + i%50
				raw := fmt.Sprintf("MSH|^~\\&|RIS|STMARYS|FERRY|FERRY|20261127083000-0500||ORM^O01^ORM_O01|R%d|P|2.5.1\r"+
					"PID|1||%07d^^^STMARYS^MR||DOE%d^JANE^Q||19800102|F|||%d MAIN ST^^SPRINGFIELD^IL^62701^USA^H\r"+
					"PV1|1|O|RAD^^^STMARYS||||%d^SMITH^ROBERT^J^^^MD^^STMARYS|||||||||||V%07d^^^STMARYS^VN\r"+
					"ORC|NW|PL%07d^RIS|||SC||^^^20261127093000^^R||20261127082500|||%d^SMITH^ROBERT^J^^^MD^^STMARYS\r"+
					"OBR|1|PL%07d^RIS||71260^CT CHEST W/O CONTRAST^C4||||||||||||||ACC%07d||||||CT\r",
					i, i, i%97, i%900+1, doc, i, i, doc, i, i)
				ack := in.Receive(ctx, engine.Received{Data: []byte(raw), ReceivedAt: time.Now()})
				if !strings.Contains(string(ack), "MSA|AA") {
					b.Errorf("order %d: %s", i, ack)
					return
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
}

// outboxBenchDeliverer is a Deliverer as `ferry serve` configures it (serve.go), with workers.
func outboxBenchDeliverer(st outbox.Store, addr string, t *mllpTransport, workers int) *outbox.Deliverer {
	dest := outboxBenchDestination(addr)
	return &outbox.Deliverer{Store: st, Transport: t.send, Workers: workers,
		Destination: func(string) (outbox.Destination, bool) { return dest, true },
		Lease:       30*time.Second + 30*time.Second/4 + 2*time.Second}
}

func outboxBenchDestination(addr string) outbox.Destination {
	return outbox.Destination{Name: "ehr", Kind: outbox.MLLP, Address: addr, Version: "2.5.1",
		ReceivingApplication: "EHR", ReceivingFacility: "STMARYS"}
}

// mllpTransport is cmd/ferry's MLLP transport (delivery.go: transports.send and sender),
// copied: a pool of mllp.Senders to the destination, one message at a time each, taken in turn;
// an AR/CR refused for good, an AE/CE retried.
type mllpTransport struct {
	mu      sync.Mutex
	senders []*mllp.Sender
	cursor  int
}

func newMLLPTransport(addr string, conns int) *mllpTransport {
	t := &mllpTransport{}
	for range conns {
		t.senders = append(t.senders, &mllp.Sender{Addr: addr, Timeout: 30 * time.Second})
	}
	return t
}

func (t *mllpTransport) send(ctx context.Context, _ outbox.Destination, d *outbox.Delivery) (string, error) {
	t.mu.Lock()
	s := t.senders[t.cursor%len(t.senders)]
	t.cursor++
	t.mu.Unlock()
	ack, err := s.Send(ctx, d.Payload)
	var nak *mllp.NAKError
	if errors.As(err, &nak) {
		return string(ack), &outbox.Refusal{Code: nak.Code, Permanent: nak.Code == "AR" || nak.Code == "CR"}
	}
	return string(ack), err
}

func (t *mllpTransport) close() {
	for _, s := range t.senders {
		s.Close()
	}
}

// ackReceiver is the hospital's MLLP listener: an adapters/mllp Server on loopback that answers
// every message AA and notes when each arrived (read whole), by MSH-10.
type ackReceiver struct {
	addr    string
	mu      sync.Mutex
	arrived map[string]time.Time
}

func startACKReceiver(b *testing.B) *ackReceiver {
	r := &ackReceiver{arrived: map[string]time.Time{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	r.addr = ln.Addr().String()
	srv := &mllp.Server{Handler: mllp.HandlerFunc(r.serve)}
	go srv.Serve(ln)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return r
}

func (r *ackReceiver) serve(_ context.Context, f *mllp.Frame) []byte {
	h, err := hl7.ReadHeader(f.Data)
	if err != nil {
		return hl7.BuildACK(hl7.Header{}, hl7.ACKOptions{Outcome: hl7.Reject, ControlID: "NAK"})
	}
	r.mu.Lock()
	r.arrived[h.ControlID] = f.ReceivedAt
	r.mu.Unlock()
	return hl7.BuildACK(h, hl7.ACKOptions{Outcome: hl7.Accept, ControlID: "A" + h.ControlID, Time: f.ReceivedAt})
}

func (r *ackReceiver) received() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.arrived)
}

func (r *ackReceiver) arrival(controlID string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.arrived[controlID]
}

// oruTemplate is an ORU^R01 of 2.5 KB, a radiology report in OBX text lines, whose MSH-10
// is %s.
func oruTemplate() string {
	segs := []string{
		`MSH|^~\&|FERRY|FERRY|EHR|STMARYS|20261127101500-0500||ORU^R01^ORU_R01|%s|P|2.5.1`,
		`PID|1||0001234^^^STMARYS^MR||DOE^JANE^Q||19800102|F|||12 MAIN ST^^SPRINGFIELD^IL^62701^USA^H`,
		`PV1|1|O|RAD^^^STMARYS||||1001^SMITH^ROBERT^J^^^MD^^STMARYS|||||||||||V0001234^^^STMARYS^VN`,
		`ORC|RE|PL0001234^RIS|ACC0001234^FERRY||CM||^^^20261127093000^^R||20261127101500|||1001^SMITH^ROBERT^J^^^MD^^STMARYS`,
		`OBR|1|PL0001234^RIS|ACC0001234^FERRY|71260^CT CHEST W/O CONTRAST^C4|||20261127093000|||||||||1001^SMITH^ROBERT^J^^^MD^^STMARYS||ACC0001234|||||20261127101500||CT|F`,
	}
	lines := []string{"EXAMINATION: CT chest without contrast.", "CLINICAL HISTORY: Cough for three weeks.",
		"COMPARISON: None.", "TECHNIQUE: Axial images of the chest without intravenous contrast.",
		"FINDINGS:", "Lungs: clear, without consolidation, mass or nodule.", "Pleura: no effusion or pneumothorax.",
		"Heart and great vessels: normal size; no pericardial effusion.", "Mediastinum: no lymphadenopathy.",
		"Upper abdomen: unremarkable.", "Bones: degenerative change of the thoracic spine.",
		"IMPRESSION:", "1. No acute cardiopulmonary abnormality.", "2. No pulmonary nodule.",
		"Electronically signed by Dr. Ana Lee, Radiologist, on 27 November 2026 at 10:15."}
	for i := range 22 {
		segs = append(segs, fmt.Sprintf("OBX|%d|TX|71260^CT CHEST W/O CONTRAST^C4|1|%s||||||F", i+1, lines[i%len(lines)]))
	}
	return strings.Join(segs, "\r") + "\r"
}

// insertDueDeliveries inserts n pending deliveries, all due, in transactions of 250: for
// patient i, its preliminary (delivery 2i) and its final (2i+1), in that order in its queue.
// Each was committed a millisecond after the one before, as reports committed over the last n
// milliseconds, and is due since then (Reports.Submit makes a delivery due at its commit).
func insertDueDeliveries(b *testing.B, st outboxBenchStore, n int, payload string) {
	ctx := context.Background()
	first := time.Now().Add(-time.Duration(n+1000) * time.Millisecond).UTC().Truncate(time.Millisecond)
	for batch := 0; batch < n; batch += 250 {
		tx, err := st.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for i := batch; i < min(batch+250, n); i++ {
			d := &outbox.Delivery{ReportID: fmt.Sprintf("r%d", i/2), ReportVersion: int64(i%2 + 1),
				Destination: "STMARYS/ehr", Kind: outbox.MLLP, QueueKey: fmt.Sprintf("STMARYS/ehr|p%d", i/2),
				Status: outbox.Pending, ControlID: fmt.Sprintf("B%d", i),
				Payload: fmt.Appendf(nil, payload, fmt.Sprintf("B%d", i))}
			d.CreatedAt = first.Add(time.Duration(i) * time.Millisecond)
			d.NextAttemptAt = d.CreatedAt
			if err := tx.InsertDelivery(ctx, d); err != nil {
				tx.Rollback()
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

// outboxBenchStore is either store.
type outboxBenchStore interface {
	engine.Store
	outbox.Store
	Migrate(ctx context.Context) error
	Close() error
}

// outboxBenchTarget opens a new, migrated store of one kind for each round.
type outboxBenchTarget struct {
	name string
	open func(b *testing.B) outboxBenchStore
}

// outboxBenchTargets returns the stores FERRY_BENCH_OUTBOX names, or skips.
func outboxBenchTargets(b *testing.B) []outboxBenchTarget {
	spec := os.Getenv("FERRY_BENCH_OUTBOX")
	if spec == "" {
		b.Skip("set FERRY_BENCH_OUTBOX to sqlite and/or a PostgreSQL URL for the outbox benchmarks (docs/performance.md)")
	}
	var targets []outboxBenchTarget
	for _, s := range strings.Fields(spec) {
		if s == "sqlite" {
			targets = append(targets, outboxBenchTarget{"sqlite", func(b *testing.B) outboxBenchStore {
				st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "ferry.db"))
				if err != nil {
					b.Fatal(err)
				}
				return migrated(b, st)
			}})
			continue
		}
		dsn := s
		targets = append(targets, outboxBenchTarget{"postgres", func(b *testing.B) outboxBenchStore {
			createDatabase(b, dsn)
			db, err := sql.Open("postgres", dsn)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(`DROP SCHEMA IF EXISTS outbox_bench CASCADE; CREATE SCHEMA outbox_bench`); err != nil {
				b.Fatal(err)
			}
			sep := "?"
			if strings.Contains(dsn, "?") {
				sep = "&"
			}
			st, err := postgres.Open(context.Background(), dsn+sep+"search_path=outbox_bench")
			if err != nil {
				b.Fatal(err)
			}
			return migrated(b, st)
		}})
	}
	return targets
}

func migrated(b *testing.B, st outboxBenchStore) outboxBenchStore {
	if err := st.Migrate(context.Background()); err != nil {
		st.Close()
		b.Fatal(err)
	}
	return st
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// quantileMillis returns the q-quantile of d in milliseconds (q 1: the largest).
func quantileMillis(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return 0
	}
	d = slices.Clone(d)
	slices.Sort(d)
	return float64(d[int(q*float64(len(d)-1))].Microseconds()) / 1000
}
