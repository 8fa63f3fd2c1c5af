package web_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/ferryhealth/ferry/adapters/httpapi"
	"github.com/ferryhealth/ferry/adapters/postgres"
	"github.com/ferryhealth/ferry/adapters/web"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/access"
	"github.com/ferryhealth/ferry/engine/audit"
	"github.com/ferryhealth/ferry/fhir"
)

// Report page benchmark population: benchPatients patients, each with one order and
// benchReportsPer reports; the benchmark's physician orders for one patient in benchDocEvery.
const (
	benchPatients   = 100_000
	benchReportsPer = 3
	benchDocEvery   = 500
)

// BenchmarkReportPage measures the server time of GET /reports/{id} — the physician's report
// page, every read through access.Reader and the view audited — for a physician with 200
// patients among 100,000 patients and 300,000 reports, in the PostgreSQL database
// FERRY_BENCH_REPORTS_DSN names (created and filled on first use through the store's own
// PutResource, in batches; kept for the next run). It reports p50 and p95 over the physician's
// reports in random order. docs/performance.md, "The physician's report page", has the figures.
//
//	FERRY_BENCH_REPORTS_DSN=postgres://postgres@127.0.0.1:5432/ferry_reportbench?sslmode=disable \
//	  go test -run '^$' -bench BenchmarkReportPage -benchtime 500x ./adapters/web/
func BenchmarkReportPage(b *testing.B) {
	dsn := os.Getenv("FERRY_BENCH_REPORTS_DSN")
	if dsn == "" {
		b.Skip("set FERRY_BENCH_REPORTS_DSN to a PostgreSQL database for the report page benchmark (docs/performance.md)")
	}
	ctx := context.Background()
	createBenchDatabase(b, dsn)
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	fillReportBench(b, st)

	svc := &access.Service{Store: st}
	if err := svc.AddUser(ctx, &access.User{Name: "benchdoc", Role: access.RolePhysician, Practitioners: []access.Practitioner{{System: "urn:npi", Value: "BENCHDOC"}}}, physPassword); err != nil && !strings.Contains(err.Error(), "exists") {
		b.Fatal(err)
	}
	patients := &access.Patients{Store: st, Resources: st}
	trail := &audit.Recorder{Begin: st.Begin}
	e, err := httpapi.New(httpapi.Options{Messages: st, Resources: st, Access: svc, SessionCookie: web.SessionCookie, Audit: trail, Patients: patients})
	if err != nil {
		b.Fatal(err)
	}
	if err := web.Register(e, web.Options{Access: svc, Audit: trail, Physician: &web.Physician{Patients: patients, Resources: st, Reads: st, Turnaround: st}}); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(e)
	defer srv.Close()
	session, _, _, err := svc.Login(ctx, "benchdoc", physPassword, "127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	var ids []string
	for p := 0; p < benchPatients; p += benchDocEvery {
		for k := range benchReportsPer {
			ids = append(ids, fmt.Sprintf("bench-r-%d-%d", p, k))
		}
	}
	rng := rand.New(rand.NewPCG(13, 13))
	get := func(id string) time.Duration {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/reports/"+url.PathEscape(id), nil)
		req.AddCookie(&http.Cookie{Name: web.SessionCookie, Value: session})
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("GET /reports/%s: %d", id, resp.StatusCode)
		}
		return took
	}
	get(ids[0]) // warm the connection pool
	latencies := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		latencies = append(latencies, get(ids[rng.IntN(len(ids))]))
	}
	b.StopTimer()
	slices.Sort(latencies)
	q := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.95), "p95-ms")
}

// createBenchDatabase creates the database dsn names when it does not exist.
func createBenchDatabase(b *testing.B, dsn string) {
	b.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		b.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	u.Path = "/postgres"
	db, err := sql.Open("postgres", u.String())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var exists bool
	if err := db.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		b.Fatal(err)
	}
	if !exists {
		if _, err := db.Exec("CREATE DATABASE " + pq.QuoteIdentifier(name)); err != nil {
			b.Fatal(err)
		}
	}
}

// fillReportBench writes the population once (the last report is the mark of a finished fill).
func fillReportBench(b *testing.B, st *postgres.Store) {
	b.Helper()
	ctx := context.Background()
	last := fmt.Sprintf("bench-r-%d-%d", benchPatients-1, benchReportsPer-1)
	if _, err := st.Resource(ctx, "DiagnosticReport", last); err == nil {
		return
	} else if !errors.Is(err, engine.ErrNotFound) {
		b.Fatal(err)
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const batch = 1000
	for start := 0; start < benchPatients; start += batch {
		tx, err := st.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		put := func(typ, id string, when time.Time, body string) {
			doc := fmt.Sprintf(`{"resourceType":%q,"id":%q,"meta":{"versionId":"1","lastUpdated":%q},%s}`, typ, id, fhir.FormatInstant(when), body)
			index, err := fhir.Index(typ, []byte(doc))
			if err != nil {
				b.Fatal(err)
			}
			err = tx.PutResource(ctx, &engine.Resource{Type: typ, ID: id, VersionID: 1, LastUpdated: when, JSON: []byte(doc), Index: index})
			if err != nil && !errors.Is(err, engine.ErrConflict) {
				b.Fatal(err)
			}
		}
		var rows []engine.PatientAccess
		for p := start; p < min(start+batch, benchPatients); p++ {
			when := at.Add(time.Duration(p) * time.Minute)
			pid, sid := fmt.Sprintf("bench-p-%d", p), fmt.Sprintf("bench-s-%d", p)
			put("Patient", pid, when, fmt.Sprintf(`"identifier":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},"system":"urn:oid:2.16.840.1.113883.3.9999.1","value":"M%07d"}],"name":[{"family":"FAMILY%d","given":["GIVEN"]}],"gender":"female","birthDate":"1970-01-01"`, p, p%5000))
			put("ServiceRequest", sid, when, fmt.Sprintf(`"status":"active","intent":"order","priority":"routine","extension":[{"url":"%s","valueString":"STMARYS"}],"identifier":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"ACSN"}]},"value":"A%07d"}],"code":{"text":"CT CHEST"},"subject":{"reference":"Patient/%s"},"reasonCode":[{"text":"Cough"}]`, engine.SendingFacilityURL, p, pid))
			for k := range benchReportsPer {
				put("DiagnosticReport", fmt.Sprintf("bench-r-%d-%d", p, k), when.Add(time.Duration(k)*time.Hour),
					fmt.Sprintf(`"status":"final","basedOn":[{"reference":"ServiceRequest/%s"}],"subject":{"reference":"Patient/%s"},"code":{"text":"CT CHEST"},"conclusion":"FINDINGS: report %d of patient %d. IMPRESSION: No acute abnormality."`, sid, pid, k, p))
			}
			value := fmt.Sprintf("DOC%d", p%997)
			if p%benchDocEvery == 0 {
				value = "BENCHDOC"
			}
			rows = append(rows, engine.PatientAccess{PatientID: pid, Facility: "STMARYS", System: "urn:npi", Value: value})
		}
		if err := tx.AddPatientAccess(ctx, rows); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}
