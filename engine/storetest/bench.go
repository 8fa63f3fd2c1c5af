package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/fhir"
)

// BenchTxOrder measures the transaction that records one new order (an ORM^O01 NW) with its
// effects, as the engine runs it: Begin, Savepoint, InsertInbound, ResourceByKeys of the
// patient's MRN and of the placer and filler order numbers, PutResource of the Patient (a new
// version of the one found three times in four, else a new patient), of an Encounter and of the
// ServiceRequest (about 1 KB of JSON, six to nine index entries and one or two keys each),
// PutWorklistItem, Commit: one
// transaction per message, from one goroutine, then from eight at once (the MLLP connections of
// the end-to-end measurement), each with its own patients; and as the group committer runs it,
// eight messages per transaction (a savepoint each) from two committers. It reports msgs/s; an op
// is one transaction. open must return a fresh, migrated store.
func BenchTxOrder(b *testing.B, open func(b *testing.B) engine.Store) {
	for _, bc := range []struct{ workers, batch int }{{1, 1}, {8, 1}, {2, 8}} {
		name := fmt.Sprintf("workers=%d", bc.workers)
		if bc.batch > 1 {
			name = fmt.Sprintf("batch=%d/committers=%d", bc.batch, bc.workers)
		}
		b.Run(name, func(b *testing.B) {
			st := open(b)
			var seq atomic.Int64
			work := make(chan struct{})
			var wg sync.WaitGroup
			for w := range bc.workers {
				wg.Go(func() {
					o := &orderWriter{st: st, worker: w}
					for range work {
						if err := o.record(context.Background(), &seq, bc.batch); err != nil {
							b.Error(err)
						}
					}
				})
			}
			for b.Loop() {
				work <- struct{}{}
			}
			close(work)
			wg.Wait()
			b.ReportMetric(float64(b.N*bc.batch)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// orderWriter records orders for one goroutine of BenchTxOrder.
type orderWriter struct {
	st      engine.Store
	worker  int
	patient string // the patient of this worker that orders go to, until the next new one
}

// padding makes a resource's JSON about 1 KB, as the engine's are (narrative, codings, extensions).
var padding = strings.Repeat("x", 700)

// record records batch orders, numbered from seq, in one transaction.
func (o *orderWriter) record(ctx context.Context, seq *atomic.Int64, batch int) (err error) {
	tx, err := o.st.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	for range batch {
		if err := o.recordIn(ctx, tx, int(seq.Add(1))); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// recordIn records order n in tx.
func (o *orderWriter) recordIn(ctx context.Context, tx engine.Tx, n int) error {
	now := time.Now().UTC().Truncate(time.Millisecond)
	if err := tx.Savepoint(ctx); err != nil {
		return err
	}
	m := newMessage("RIS", "STMARYS", fmt.Sprintf("ORD%d", n), n)
	if err := tx.InsertInbound(ctx, m); err != nil {
		return err
	}
	if o.patient == "" || n%4 == 0 {
		o.patient = fmt.Sprintf("w%d-p%d", o.worker, n)
	}
	mrn := "identifier|urn:oid:1.2.3|MRN-" + o.patient
	placer := fmt.Sprintf("placer|urn:oid:1.2.3|PL%d", n)
	filler := fmt.Sprintf("filler|urn:oid:1.2.4|FL%d", n)
	version := int64(1)
	switch p, err := tx.ResourceByKeys(ctx, "Patient", []string{mrn}); {
	case err == nil:
		version = p.VersionID + 1
	case !errors.Is(err, engine.ErrNotFound):
		return err
	}
	if _, err := tx.ResourceByKeys(ctx, "ServiceRequest", []string{placer, filler}); !errors.Is(err, engine.ErrNotFound) {
		return fmt.Errorf("order number %s: %v, want not found", placer, err)
	}
	patientRef := "Patient/" + o.patient
	encounter := fmt.Sprintf("w%d-e%d", o.worker, n)
	sr := fmt.Sprintf("w%d-sr%d", o.worker, n)
	resources := []*engine.Resource{
		newResource("Patient", o.patient, version, now, `,"text":{"div":"`+padding+`"}`, []fhir.IndexEntry{
			{Param: "identifier", System: "urn:oid:1.2.3", Value: "MRN-" + o.patient},
			{Param: "identifier", System: "urn:oid:2.16.840.1.113883.4.1", Value: fmt.Sprint(n)},
			{Param: "family", Value: "doe"}, {Param: "given", Value: "jane"}, {Param: "name", Value: "doe"},
			{Param: "birthdate", Value: "1970-01-01"},
			{Param: "gender", System: "http://hl7.org/fhir/administrative-gender", Value: "female"},
		}, mrn, fmt.Sprintf("identifier|urn:oid:2.16.840.1.113883.4.1|%d", n)),
		newResource("Encounter", encounter, 1, now, `,"text":{"div":"`+padding+`"}`, []fhir.IndexEntry{
			{Param: "identifier", System: "urn:oid:1.2.3.5", Value: fmt.Sprintf("V%d", n)},
			{Param: "status", System: "http://hl7.org/fhir/encounter-status", Value: "planned"},
			{Param: "class", System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Value: "AMB"},
			{Param: "subject", Value: patientRef}, {Param: "patient", Value: patientRef},
			{Param: "date", Value: now.Format("2006-01-02T15:04:05.000Z")},
		}, fmt.Sprintf("identifier|urn:oid:1.2.3.5|V%d", n)),
		newResource("ServiceRequest", sr, 1, now, `,"text":{"div":"`+padding+`"}`, []fhir.IndexEntry{
			{Param: "identifier", System: "urn:oid:1.2.3", Value: fmt.Sprintf("PL%d", n)},
			{Param: "identifier", System: "urn:oid:1.2.4", Value: fmt.Sprintf("FL%d", n)},
			{Param: "status", System: "http://hl7.org/fhir/request-status", Value: "active"},
			{Param: "intent", System: "http://hl7.org/fhir/request-intent", Value: "order"},
			{Param: "code", System: "http://loinc.org", Value: "24627-2"},
			{Param: "subject", Value: patientRef}, {Param: "patient", Value: patientRef},
			{Param: "encounter", Value: "Encounter/" + encounter},
			{Param: "authored", Value: now.Format("2006-01-02T15:04:05.000Z")},
		}, placer, filler),
	}
	for _, r := range resources {
		if err := tx.PutResource(ctx, r); err != nil {
			return err
		}
	}
	item := newWorklistItem(sr, fmt.Sprintf("ACC%d", n), "MRN-"+o.patient, "CT", "CT1", now.Format("20060102"), now.Format("150405"))
	return tx.PutWorklistItem(ctx, item)
}

// BenchWorklistItems10k measures WorklistItems over 10,000 scheduled items (20 days, 5
// modalities, 10 stations each): all of them, as a C-FIND without keys asks; one accession
// number; one patient; and one modality, station and day (10 items), as a modality asks for its
// day. It reports the items returned per query.
func BenchWorklistItems10k(b *testing.B, open func(b *testing.B) engine.Store) {
	st := open(b)
	modalities := []string{"CT", "MR", "US", "CR", "NM"}
	items := make([]*engine.WorklistItem, 10000)
	for i := range items {
		modality := modalities[(i/20)%5]
		items[i] = newWorklistItem(fmt.Sprintf("sr%05d", i), fmt.Sprintf("ACC%05d", i), fmt.Sprintf("MRN%04d", i/3),
			modality, fmt.Sprintf("%s%d", modality, (i/100)%10), fmt.Sprintf("202611%02d", 1+i%20), fmt.Sprintf("%02d%02d00", 7+i%12, i%60))
	}
	putItems(b, st, items...)
	for _, bc := range []struct {
		name   string
		filter engine.WorklistFilter
		want   int
	}{
		{"unfiltered", engine.WorklistFilter{}, 10000},
		{"accession", engine.WorklistFilter{AccessionNumber: "ACC04242"}, 1},
		{"patient", engine.WorklistFilter{PatientID: "MRN1234"}, 3},
		{"modality_station_day", engine.WorklistFilter{Modality: "MR", StationAETitle: "MR4",
			StartDateFrom: "20261105", StartDateTo: "20261105"}, 10},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				got, err := st.WorklistItems(context.Background(), bc.filter)
				if err != nil {
					b.Fatal(err)
				}
				if len(got) != bc.want {
					b.Fatalf("%d items, want %d", len(got), bc.want)
				}
			}
			b.ReportMetric(float64(bc.want), "items/op")
		})
	}
}
