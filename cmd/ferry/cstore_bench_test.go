package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkCStoreVsStorescp measures the DICOM intake goal: C-STORE from 8 parallel
// dcmtk storescu associations into `ferry serve` at ≥ the rate of dcmtk's own storescp writing
// the same files, both measured in the same run. Each round sends the same 400 distinct
// instances (a 526 KB CT of the corpus, copied with new UIDs: 8 studies of 2 series, one study
// per association) to a fresh Ferry on SQLite, to a fresh Ferry on PostgreSQL when
// FERRY_BENCH_PG_DSN is set, and to `storescp --fork` (a process per association, as Ferry has a
// goroutine per association) twice: as it ships, and with TCP_NODELAY=1 in its environment,
// which makes dcmtk disable Nagle's algorithm — without it each of storescp's responses waits
// about 40 ms for the sender's delayed ACK. The order of the targets alternates from round to
// round.
//
// A rate is instances over the wall time from starting the 8 storescu processes to the last
// one's successful exit; a latency is one instance's time from storescu's "Sending Store
// Request" to its "Received Store Response"; receiver CPU is what the receiver's processes used
// meanwhile. ns/op and MB/s are Ferry's on SQLite alone.
//
// storescp writes each file and answers; Ferry also hashes it (SHA-256), fsyncs the file and its
// directory and commits its row before it answers. docs/performance.md, "DICOM intake", has the
// figures and what they mean.
//
//	FERRY_BENCH_ROUNDS=3 go test -run '^$' -bench BenchmarkCStoreVsStorescp -benchtime 1x ./cmd/ferry/
func BenchmarkCStoreVsStorescp(b *testing.B) {
	storescp := requireDCMTK(b, "storescp")
	storescu, assocs, info, rounds := cstoreBenchSetup(b)
	pgDSN := os.Getenv("FERRY_BENCH_PG_DSN")

	targets := []*cstoreTarget{
		{name: "ferry-sqlite", run: func(b *testing.B, dir string) cstoreRun {
			return sendToFerry(b, ferryBin, storescu, "sqlite:"+filepath.Join(dir, "ferry.db"), dir, assocs, true)
		}},
		{name: "storescp", run: func(b *testing.B, dir string) cstoreRun {
			return sendToStorescp(b, storescu, storescp, dir, assocs, false)
		}},
		{name: "storescp-nodelay", run: func(b *testing.B, dir string) cstoreRun {
			return sendToStorescp(b, storescu, storescp, dir, assocs, true)
		}},
	}
	if pgDSN != "" {
		targets = append(targets, &cstoreTarget{name: "ferry-pg", run: func(b *testing.B, dir string) cstoreRun {
			return sendToFerry(b, ferryBin, storescu, benchPostgresSchema(b, pgDSN), dir, assocs, false)
		}})
	}
	b.SetBytes(int64(rounds*cstoreAssociations*cstorePerAssociation) * info.Size())
	for range b.N {
		runCStoreRounds(b, targets, rounds)
	}
	b.Logf("load average after: %s", loadAverage())

	rate := map[string]float64{}
	for _, tg := range targets {
		rate[tg.name] = float64(tg.instances) / tg.wall.Seconds()
		slices.Sort(tg.latencies)
		b.ReportMetric(rate[tg.name], tg.name+"-instances/s")
		b.ReportMetric(percentileMillis(tg.latencies, 0.50), tg.name+"-p50-ms")
		b.ReportMetric(percentileMillis(tg.latencies, 0.95), tg.name+"-p95-ms")
		b.ReportMetric(tg.receiverCPU.Seconds()*1000/float64(tg.instances), tg.name+"-cpu-ms/instance")
		b.ReportMetric(tg.senderCPU.Seconds()*1000/float64(tg.instances), tg.name+"-storescu-cpu-ms/instance")
	}
	for _, ferry := range []string{"ferry-sqlite", "ferry-pg"} {
		if _, ok := rate[ferry]; ok {
			b.ReportMetric(rate[ferry]/rate["storescp"], ferry+"/storescp")
			b.ReportMetric(rate[ferry]/rate["storescp-nodelay"], ferry+"/storescp-nodelay")
		}
	}
}

// cstoreBenchSetup finds storescu and dcmodify and the corpus instance the C-STORE benchmarks
// copy (skipping the benchmark without them), makes the copies (cstoreInstances) and reads
// FERRY_BENCH_ROUNDS (default 3). It stops the timer.
func cstoreBenchSetup(b *testing.B) (storescu string, studies [][]string, src os.FileInfo, rounds int) {
	storescu = requireDCMTK(b, "storescu")
	dcmodify := requireDCMTK(b, "dcmodify")
	path := filepath.Join(corpusDir, cstoreBenchSource)
	src, err := os.Stat(path)
	if err != nil {
		b.Skipf("corpus absent (%v): the benchmark needs ../shared/corpus beside the repository", err)
	}
	rounds = 3
	if v := os.Getenv("FERRY_BENCH_ROUNDS"); v != "" {
		if rounds, err = strconv.Atoi(v); err != nil || rounds < 1 {
			b.Fatalf("FERRY_BENCH_ROUNDS=%q: want a positive number", v)
		}
	}
	b.StopTimer()
	studies = cstoreInstances(b, dcmodify, path, b.TempDir())
	b.Logf("load average before: %s", loadAverage())
	return storescu, studies, src, rounds
}

// runCStoreRounds runs every target once per round, in a fresh directory each, the order
// reversed every other round, and adds each run to its target; it logs one line per round (the
// testing package keeps only the first 10 lines of a benchmark's log): each target's rate over
// the wall time and over the transfer.
func runCStoreRounds(b *testing.B, targets []*cstoreTarget, rounds int) {
	base := b.TempDir()
	for r := range rounds {
		order := slices.Clone(targets)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		line := fmt.Sprintf("round %d (instances/s, wall/transfer):", r+1)
		for _, tg := range order {
			dir, err := os.MkdirTemp(base, tg.name+"-")
			if err != nil {
				b.Fatal(err)
			}
			// No target pays for the previous one's unwritten pages: storescp leaves 210 MB in
			// the page cache that the kernel would write during the next round.
			syscall.Sync()
			run := tg.run(b, dir)
			if err := os.RemoveAll(dir); err != nil {
				b.Fatal(err)
			}
			tg.instances += run.instances
			tg.wall += run.wall
			tg.transfer += run.transfer
			tg.latencies = append(tg.latencies, run.latencies...)
			tg.receiverCPU += run.receiverCPU
			tg.senderCPU += run.senderCPU
			line += fmt.Sprintf(" %s %.0f/%.0f", tg.name, float64(run.instances)/run.wall.Seconds(), float64(run.instances)/run.transfer.Seconds())
		}
		b.Log(line)
	}
}

// cstoreBenchSource is the instance the benchmark copies: a 512×512 16-bit CT of Orthanc's test
// set, explicit VR little endian, 526 KB — a CT slice as a scanner sends it.
const cstoreBenchSource = "dicom/orthanc-tests/HierarchicalAnonymization__RTH__CT01.dcm"

const (
	cstoreAssociations   = 8  // the parallel storescu associations
	cstorePerAssociation = 50 // instances each association sends: one study of two series
)

// cstoreTarget is one receiver under test and what its rounds measured.
type cstoreTarget struct {
	name string
	run  func(b *testing.B, dir string) cstoreRun // one round, in a fresh directory
	cstoreRun
}

// cstoreRun is one round's measurement of one target.
type cstoreRun struct {
	instances int
	wall      time.Duration
	// transfer is the time from the first Store Request any storescu sent to the last Store
	// Response: the wall time less the senders' start (each storescu loads dcmtk's dictionary and
	// reads every file it is to send before it associates, which on a busy machine costs more
	// with more processes, whatever the receiver).
	transfer  time.Duration
	latencies []time.Duration
	// receiverCPU and senderCPU are the CPU time (user and system) that the receiver's
	// processes and the storescu processes used during the send.
	receiverCPU, senderCPU time.Duration
}

// requireDCMTK returns the path of a dcmtk program or skips the benchmark (requirePeer is for
// tests).
func requireDCMTK(b *testing.B, name string) string {
	b.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		b.Skipf("%s not found (install Debian dcmtk): the benchmark compares Ferry with dcmtk's storescp", name)
	}
	return path
}

// cstoreInstances writes the copies of src into dir, one directory per association, and returns
// each association's files. Each association's copies are one study of two series, each copy
// with a SOP Instance UID of its own (dcmodify -gin, which also updates the file meta header).
func cstoreInstances(b *testing.B, dcmodify, src, dir string) [][]string {
	b.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		b.Fatal(err)
	}
	assocs := make([][]string, cstoreAssociations)
	for a := range assocs {
		sub := filepath.Join(dir, strconv.Itoa(a))
		if err := os.Mkdir(sub, 0o700); err != nil {
			b.Fatal(err)
		}
		for i := range cstorePerAssociation {
			f := filepath.Join(sub, fmt.Sprintf("%03d.dcm", i))
			if err := os.WriteFile(f, data, 0o600); err != nil {
				b.Fatal(err)
			}
			assocs[a] = append(assocs[a], f)
		}
		study := fmt.Sprintf("1.2.826.0.1.3680043.10.78.%d", a+1)
		half := cstorePerAssociation / 2
		for s, files := range [][]string{assocs[a][:half], assocs[a][half:]} {
			args := append([]string{"-nb", "-gin", "-m", "(0020,000d)=" + study,
				"-m", fmt.Sprintf("(0020,000e)=%s.%d", study, s+1)}, files...)
			if out, err := exec.Command(dcmodify, args...).CombinedOutput(); err != nil {
				b.Fatalf("dcmodify: %v\n%s", err, out)
			}
		}
	}
	return assocs
}

// sendToFerry starts `bin serve` on db, sends the instances, checks that every one was stored
// and stops Ferry (gracefully). timed: ns/op counts this send.
func sendToFerry(b *testing.B, bin, storescu, db, dir string, assocs [][]string, timed bool) cstoreRun {
	b.Helper()
	addr, pid, stop := startFerryForBench(b, bin, db, dir)
	defer stop()
	host, port, _ := net.SplitHostPort(addr)
	if timed {
		b.StartTimer()
	}
	run := sendCStores(b, storescu, host, port, "FERRY", assocs, pid)
	if timed {
		b.StopTimer()
	}
	if n := countFiles(b, filepath.Join(dir, "ferry-data", "dicom"), ".dcm"); n != run.instances {
		b.Fatalf("Ferry holds %d instance files after %d successful C-STOREs", n, run.instances)
	}
	return run
}

// sendToStorescp starts dcmtk's storescp writing into dir with a process per association
// (--fork), sends the instances, checks that every one was written and stops storescp.
// noDelay: with TCP_NODELAY=1 in its environment, dcmtk's switch for disabling Nagle's algorithm.
func sendToStorescp(b *testing.B, storescu, storescp, dir string, assocs [][]string, noDelay bool) cstoreRun {
	b.Helper()
	port := freePort(b)
	out := &lockedBuffer{}
	cmd := exec.Command(storescp, "--fork", "-od", dir, port)
	cmd.Env = filteredEnv("TCP_NODELAY")
	if noDelay {
		cmd.Env = append(cmd.Env, "TCP_NODELAY=1")
	}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so that stopping it also ends the children it forked.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatalf("starting storescp: %v", err)
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	waitListening(b, "127.0.0.1:"+port, out)
	run := sendCStores(b, storescu, "127.0.0.1", port, "STORESCP", assocs, cmd.Process.Pid)
	if n := countFiles(b, dir, ""); n != run.instances {
		b.Fatalf("storescp wrote %d files after %d successful C-STOREs\n%s", n, run.instances, out.tail(4<<10))
	}
	return run
}

// sendCStores runs one storescu per association, all at once, each sending its files in one
// association, and returns the wall time until the last exits, each instance's latency and the
// CPU that the storescu processes and the receiver (process group receiver) used. Any storescu
// failing, or any instance not answered Success, fails the benchmark. storescu runs as dcmtk
// ships it, without TCP_NODELAY: setting it changes nothing measurable with either receiver.
func sendCStores(b *testing.B, storescu, host, port, calledAE string, assocs [][]string, receiver int) cstoreRun {
	b.Helper()
	type result struct {
		firstSent time.Time
		lastDone  time.Time
		latencies []time.Duration
		stored    int
		cpu       time.Duration // storescu's, user and system
		log       string
		err       error
	}
	results := make([]result, len(assocs))
	var wg sync.WaitGroup
	receiverBefore := processGroupCPU(b, receiver)
	start := time.Now()
	for a, files := range assocs {
		cmd := exec.Command(storescu, append([]string{"-v", "-aec", calledAE, host, port}, files...)...)
		cmd.Env = filteredEnv("TCP_NODELAY")
		cmd.Stdout = io.Discard // its progress dots
		stderr, err := cmd.StderrPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatalf("starting storescu: %v", err)
		}
		wg.Go(func() {
			r := &results[a]
			var log strings.Builder
			var sent time.Time
			// -v logs a line as each request leaves and as its response arrives.
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				now, line := time.Now(), sc.Text()
				log.WriteString(line + "\n")
				switch {
				case strings.HasPrefix(line, "I: Sending Store Request"):
					sent = now
					if r.firstSent.IsZero() {
						r.firstSent = now
					}
				case strings.HasPrefix(line, "I: Received Store Response (Success)"):
					r.latencies = append(r.latencies, now.Sub(sent))
					r.stored++
					r.lastDone = now
				}
			}
			r.err = cmd.Wait()
			r.log = log.String()
			if cmd.ProcessState != nil {
				r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			}
		})
	}
	wg.Wait()
	run := cstoreRun{wall: time.Since(start)}
	run.receiverCPU = processGroupCPU(b, receiver) - receiverBefore
	var firstSent, lastDone time.Time
	for _, r := range results {
		if firstSent.IsZero() || r.firstSent.Before(firstSent) {
			firstSent = r.firstSent
		}
		if r.lastDone.After(lastDone) {
			lastDone = r.lastDone
		}
	}
	run.transfer = lastDone.Sub(firstSent)
	for a, r := range results {
		if r.err != nil || r.stored != len(assocs[a]) {
			b.Fatalf("storescu to %s:%s (%s), association %d: %v, %d of %d stored\n%s",
				host, port, calledAE, a, r.err, r.stored, len(assocs[a]), r.log)
		}
		run.instances += r.stored
		run.latencies = append(run.latencies, r.latencies...)
		run.senderCPU += r.cpu
	}
	return run
}

// startFerryForBench starts `bin serve` (bin: ferryBin, or another build to compare with) on db in dir, in a process group of its own, and
// returns its DICOM address, its process ID and a function that stops it with SIGTERM, failing
// (not at once: it runs deferred) unless it drains and exits 0. It is startFerry for a
// benchmark: startFerry takes a *testing.T.
func startFerryForBench(b *testing.B, bin, db, dir string) (dicomAddr string, pid int, stop func()) {
	b.Helper()
	out, errOut := &lockedBuffer{}, &lockedBuffer{}
	// No cap on associations from one address: every storescu of the benchmark calls from
	// 127.0.0.1, and the default cap (20) would refuse the 21st.
	config := filepath.Join(dir, "bench.yaml")
	if err := os.WriteFile(config, []byte("dicom: {max_connections_per_address: -1}\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", config, "--mllp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--dicom", "127.0.0.1:0", "--db", db)
	cmd.Dir = dir
	cmd.Env = append(filteredEnv("FERRY_DATABASE_URL", "FERRY_ADMIN_TOKEN"), "FERRY_ADMIN_TOKEN="+testAdminToken)
	cmd.Stdout, cmd.Stderr = out, errOut
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // for processGroupCPU
	if err := cmd.Start(); err != nil {
		b.Fatalf("starting ferry serve: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				b.Errorf("ferry serve after SIGTERM: %v; stderr:\n%s", err, errOut.tail(8<<10))
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			b.Errorf("ferry serve did not exit within 20s of SIGTERM; killed")
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if m := servingLine.FindStringSubmatch(out.String()); m != nil {
			return m[5], cmd.Process.Pid, stop
		}
		select {
		case err := <-exited:
			b.Fatalf("ferry serve exited before serving (%v); stderr:\n%s", err, errOut.tail(8<<10))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			b.Fatalf("ferry serve printed no serving line within 60s; stderr:\n%s", errOut.tail(8<<10))
		}
	}
}

// benchPostgresSchema creates a fresh schema in the database dsn names, drops it when the
// benchmark ends, and returns a DSN whose search_path is that schema.
func benchPostgresSchema(b *testing.B, dsn string) string {
	b.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		b.Fatalf("FERRY_BENCH_PG_DSN: %v", err)
	}
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		b.Fatalf("FERRY_BENCH_PG_DSN: %v", err)
	}
	schema := "ferry_bench_" + randomHex(6)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		db.Close()
		b.Fatalf("creating schema %s in %s: %v", schema, redactURL(dsn), err)
	}
	b.Cleanup(func() {
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			b.Errorf("dropping schema %s: %v", schema, err)
		}
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// freePort returns a TCP port on the loopback interface that nothing listens on just now.
func freePort(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// waitListening waits up to 10 s for addr to accept a connection.
func waitListening(b *testing.B, addr string, log *lockedBuffer) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("nothing listens on %s after 10s: %v\n%s", addr, err, log.tail(4<<10))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countFiles counts the regular files under dir whose names end in ext, outside hidden
// directories (Ferry's .incoming).
func countFiles(b *testing.B, dir, ext string) int {
	b.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != dir && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() && strings.HasSuffix(d.Name(), ext) {
			n++
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// percentileMillis is the p-quantile of sorted, in milliseconds.
func percentileMillis(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return float64(sorted[int(p*float64(len(sorted)-1))].Microseconds()) / 1000
}

// loadAverage is the first three fields of /proc/loadavg, or why it could not be read.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return err.Error()
	}
	f := strings.Fields(string(data))
	return strings.Join(f[:min(3, len(f))], " ")
}

// processGroupCPU is the CPU time (user and system) that the processes of process group pgid
// have used, with their children that have exited: storescp forks a child per association, and
// reaps it only when the next association arrives. 0 where there is no /proc.
func processGroupCPU(b *testing.B, pgid int) time.Duration {
	b.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var ticks uint64
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid pgrp … utime stime cutime cstime (fields 14–17, proc(5)); the
		// command name may hold spaces and parentheses, so count from the last ')'.
		f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		if len(f) < 15 || f[2] != strconv.Itoa(pgid) {
			continue
		}
		for _, v := range f[11:15] {
			n, _ := strconv.ParseUint(v, 10, 64)
			ticks += n
		}
	}
	const clockTicks = 100 // sysconf(_SC_CLK_TCK), 100 on Linux
	return time.Duration(ticks) * time.Second / clockTicks
}
