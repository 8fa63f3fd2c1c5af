package engine_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/adapters/postgres"
	"github.com/ferryhealth/ferry/adapters/sqlite"
	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/engine"
)

// BenchmarkIntakeAssociations is issue 18 item 9 in process: b.N instances handed to
// Intake.StoreInstance from 8 and from 32 goroutines at once (the C-STORE handlers of as many
// associations), each first written and fsynced as a receiver does (64 KiB), into 8 studies of 2
// series, on SQLite and, with FERRY_BENCH_PG_DSN, on PostgreSQL. It reports instances/s; the
// linker is left out (BenchmarkLinkDecision measures it).
//
//	go test -run '^$' -bench IntakeAssociations -benchtime 400x -count 10 ./engine/
func BenchmarkIntakeAssociations(b *testing.B) {
	stores := map[string]func(b *testing.B) engine.InstanceStore{
		"sqlite": func(b *testing.B) engine.InstanceStore {
			st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "ferry.db"))
			return migratedInstanceStore(b, st, err)
		},
	}
	if dsn := os.Getenv("FERRY_BENCH_PG_DSN"); dsn != "" {
		stores["postgres"] = func(b *testing.B) engine.InstanceStore {
			db, err := sql.Open("postgres", dsn)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(`DROP SCHEMA IF EXISTS intake_bench CASCADE; CREATE SCHEMA intake_bench`); err != nil {
				b.Fatal(err)
			}
			sep := "?"
			if strings.Contains(dsn, "?") {
				sep = "&"
			}
			st, err := postgres.Open(context.Background(), dsn+sep+"search_path=intake_bench")
			return migratedInstanceStore(b, st, err)
		}
	}
	body := make([]byte, 64<<10)
	for _, name := range []string{"sqlite", "postgres"} {
		open, ok := stores[name]
		if !ok {
			continue
		}
		for _, assocs := range []int{8, 32} {
			b.Run(fmt.Sprintf("%s/associations=%d", name, assocs), func(b *testing.B) {
				dir := b.TempDir()
				incoming := filepath.Join(dir, ".incoming")
				if err := os.Mkdir(incoming, 0o750); err != nil {
					b.Fatal(err)
				}
				in := &engine.Intake{Store: open(b), Dir: dir}
				run := fmt.Sprintf("1.2.826.0.1.3680043.10.79.%d", time.Now().UnixNano()%1e9)
				var next atomic.Int64
				var wg sync.WaitGroup
				b.SetBytes(int64(len(body)))
				b.ResetTimer()
				for range assocs {
					wg.Go(func() {
						for {
							n := int(next.Add(1)) - 1
							if n >= b.N {
								return
							}
							if err := storeOne(in, incoming, run, n, body); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "instances/s")
			})
		}
	}
}

// migratedInstanceStore fails b on err, else migrates st and closes it when b ends.
func migratedInstanceStore[S interface {
	engine.InstanceStore
	Migrate(context.Context) error
	Close() error
}](b *testing.B, st S, err error) engine.InstanceStore {
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	if err := st.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	return st
}

// storeOne writes instance n as a receiver does (file written and fsynced in the incoming
// area) and hands it to the intake.
func storeOne(in *engine.Intake, incoming, run string, n int, body []byte) error {
	f, err := os.CreateTemp(incoming, "cstore-*.dcm")
	if err != nil {
		return err
	}
	if _, err := f.Write(body); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	study := fmt.Sprintf("%s.%d", run, n%8)
	inst := engine.NewInstance(&dicom.Header{SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", StudyInstanceUID: study,
		SeriesInstanceUID: fmt.Sprintf("%s.%d", study, n/8%2), SOPInstanceUID: fmt.Sprintf("%s.%d.%d", study, n/8%2, n),
		Modality: "CT", PatientID: "BENCH", Size: int64(len(body))}, f.Name())
	inst.ReceivedAt = time.Now()
	added, err := in.StoreInstance(context.Background(), inst, f.Name())
	if err == nil && !added {
		err = fmt.Errorf("instance %d not added", n)
	}
	return err
}
