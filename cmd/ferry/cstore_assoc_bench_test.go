package main

import (
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// BenchmarkCStoreAssociations measures issue 18 item 9: the same 400 instances (8 studies of 2
// series, as BenchmarkCStoreVsStorescp sends them) over 8 and over 32 parallel storescu
// associations, into `ferry serve` on SQLite, on PostgreSQL when FERRY_BENCH_PG_DSN is set, and
// into Debian's Orthanc (its own configuration and storage in a temporary directory, on ports
// of its own; skipped when /usr/sbin/Orthanc is absent), all in the same run, the order of the
// targets alternating from round to round. With 32 associations each study is sent over 4 of
// them (12 or 13 instances each), so associations of one study contend on its rows.
//
// The goal: Ferry over 32 associations at least as fast as over 8, and at least twice as fast
// as Orthanc over 32. Two rates: instances over the wall time from starting the storescu
// processes to the last one's successful exit (as in BenchmarkCStoreVsStorescp), and over the
// transfer, from the first Store Request sent to the last response (without the senders' own
// start: 32 storescu processes loading dcmtk's dictionary and reading their files take seconds
// on a busy machine, whatever the receiver).
//
// FERRY_BENCH_BASELINE_BIN names another build of ferry to run beside this one, as targets
// baseline-…, for a before/after comparison in one interleaved run.
//
//	FERRY_BENCH_ROUNDS=5 FERRY_BENCH_PG_DSN='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' \
//	  go test -run '^$' -bench BenchmarkCStoreAssociations -benchtime 1x ./cmd/ferry/
func BenchmarkCStoreAssociations(b *testing.B) {
	storescu, studies, _, rounds := cstoreBenchSetup(b)
	pgDSN := os.Getenv("FERRY_BENCH_PG_DSN")
	orthanc, _ := exec.LookPath("Orthanc")
	if orthanc == "" {
		orthanc, _ = exec.LookPath("/usr/sbin/Orthanc")
	}
	bins := map[string]string{"ferry": ferryBin}
	if old := os.Getenv("FERRY_BENCH_BASELINE_BIN"); old != "" {
		bins["baseline"] = old
	}
	var targets []*cstoreTarget
	for _, n := range []int{8, 32} {
		assocs := splitAssociations(studies, n)
		for _, name := range slices.Sorted(maps.Keys(bins)) {
			bin := bins[name]
			targets = append(targets, &cstoreTarget{name: fmt.Sprintf("%s-sqlite-%d", name, n), run: func(b *testing.B, dir string) cstoreRun {
				return sendToFerry(b, bin, storescu, "sqlite:"+filepath.Join(dir, "ferry.db"), dir, assocs, false)
			}})
			if pgDSN != "" {
				targets = append(targets, &cstoreTarget{name: fmt.Sprintf("%s-pg-%d", name, n), run: func(b *testing.B, dir string) cstoreRun {
					return sendToFerry(b, bin, storescu, benchPostgresSchema(b, pgDSN), dir, assocs, false)
				}})
			}
		}
		if orthanc != "" {
			targets = append(targets, &cstoreTarget{name: fmt.Sprintf("orthanc-%d", n), run: func(b *testing.B, dir string) cstoreRun {
				return sendToOrthanc(b, storescu, orthanc, dir, assocs)
			}})
		}
	}
	for range b.N {
		runCStoreRounds(b, targets, rounds)
	}
	b.Logf("load average after: %s", loadAverage())
	rate, transferRate := map[string]float64{}, map[string]float64{}
	for _, tg := range targets {
		rate[tg.name] = float64(tg.instances) / tg.wall.Seconds()
		transferRate[tg.name] = float64(tg.instances) / tg.transfer.Seconds()
		slices.Sort(tg.latencies)
		b.ReportMetric(rate[tg.name], tg.name+"-instances/s")
		b.ReportMetric(transferRate[tg.name], tg.name+"-transfer-instances/s")
		b.ReportMetric(percentileMillis(tg.latencies, 0.95), tg.name+"-p95-ms")
		b.ReportMetric(tg.receiverCPU.Seconds()*1000/float64(tg.instances), tg.name+"-cpu-ms/instance")
	}
	for _, ferry := range []string{"ferry-sqlite", "ferry-pg", "baseline-sqlite", "baseline-pg"} {
		if _, ok := rate[ferry+"-32"]; !ok {
			continue
		}
		b.ReportMetric(rate[ferry+"-32"]/rate[ferry+"-8"], ferry+"-32/8")
		b.ReportMetric(transferRate[ferry+"-32"]/transferRate[ferry+"-8"], ferry+"-transfer-32/8")
		if o := rate["orthanc-32"]; o > 0 {
			b.ReportMetric(rate[ferry+"-32"]/o, ferry+"-32/orthanc-32")
			b.ReportMetric(transferRate[ferry+"-32"]/transferRate["orthanc-32"], ferry+"-transfer-32/orthanc-32")
		}
	}
}

// splitAssociations deals the studies' instances, in order, into n associations of (nearly)
// equal length: with n = len(studies) one study per association, with more each study over
// several.
func splitAssociations(studies [][]string, n int) [][]string {
	var all []string
	for _, s := range studies {
		all = append(all, s...)
	}
	assocs := make([][]string, n)
	for i := range n {
		assocs[i] = all[i*len(all)/n : (i+1)*len(all)/n]
	}
	return assocs
}

// sendToOrthanc starts Debian's Orthanc with a configuration of its own in dir (storage and
// index there, DICOM and HTTP on free loopback ports, no plugins, everything else as it ships),
// sends the instances, checks that every one was stored and stops it.
func sendToOrthanc(b *testing.B, storescu, orthanc, dir string, assocs [][]string) cstoreRun {
	b.Helper()
	port, httpPort := freePort(b), freePort(b)
	storage := filepath.Join(dir, "storage")
	config := fmt.Sprintf(`{"Name": "ferry-bench", "StorageDirectory": %q, "IndexDirectory": %q,
  "DicomAet": "ORTHANC", "DicomPort": %s, "HttpPort": %s, "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false, "DicomCheckCalledAet": false, "Plugins": []}`,
		storage, filepath.Join(dir, "index"), port, httpPort)
	configPath := filepath.Join(dir, "orthanc.json")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		b.Fatal(err)
	}
	out := &lockedBuffer{}
	cmd := exec.Command(orthanc, configPath)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // for processGroupCPU
	if err := cmd.Start(); err != nil {
		b.Fatalf("starting Orthanc: %v", err)
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	waitListening(b, net.JoinHostPort("127.0.0.1", port), out)
	run := sendCStores(b, storescu, "127.0.0.1", port, "ORTHANC", assocs, cmd.Process.Pid)
	if n := countFiles(b, storage, ""); n != run.instances {
		b.Fatalf("Orthanc holds %d files after %d successful C-STOREs\n%s", n, run.instances, out.tail(4<<10))
	}
	return run
}
