package dimse

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/engine"
)

// BenchmarkDecodeCommand decodes a C-STORE-RQ command set, the command Ferry reads most.
func BenchmarkDecodeCommand(b *testing.B) {
	cmd, err := (&Command{Field: CStoreRQ, MessageID: 42, AffectedSOPClassUID: ctImageStorage,
		AffectedSOPInstanceUID: "1.2.826.0.1.3680043.8.498.12345678901234567890123456789012", HasDataSet: true}).Encode()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(cmd)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeCommand(cmd); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEchoRoundTrip measures one C-ECHO-RQ/RSP exchange on an open association over
// loopback TCP: PDU and command encoding and decoding, dispatch to the handler, both ways.
func BenchmarkEchoRoundTrip(b *testing.B) {
	addr := startServer(b, &Server{Logger: slog.New(slog.DiscardHandler)})
	c := dial(b, addr, ClientConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Bytes on the wire per exchange: the request and response PDUs.
	rq := mustEncodePDU(b, &PDataTF{Items: []PDV{{ContextID: 1, Command: true, Last: true, Data: echoRQBytes(b, 1)}}})
	rsp := mustEncodePDU(b, &PDataTF{Items: []PDV{{ContextID: 1, Command: true, Last: true,
		Data: mustEncode(b, &Command{Field: CEchoRSP, MessageIDBeingRespondedTo: 1, AffectedSOPClassUID: VerificationSOPClass})}}})
	b.SetBytes(int64(len(rq) + len(rsp)))
	b.ReportAllocs()
	for b.Loop() {
		if st, err := c.Echo(ctx); err != nil || st != dicom.StatusSuccess {
			b.Fatalf("echo: %v %v", st, err)
		}
	}
	b.StopTimer()
	if err := c.Release(ctx); err != nil {
		b.Fatal(err)
	}
}

// benchWorklist returns n worklist items spread over 5 modalities, 4 stations each and 10 days
// centred on day: a typical modality query (one day, one modality, one station) matches n/200.
func benchWorklist(n int, day time.Time) []*engine.WorklistItem {
	modalities := []string{"CT", "MR", "US", "CR", "NM"}
	items := make([]*engine.WorklistItem, n)
	for i := range items {
		mod := modalities[i%5]
		date := day.AddDate(0, 0, (i/20)%10-5).Format("20060102")
		items[i] = &engine.WorklistItem{
			ServiceRequestID: fmt.Sprintf("sr%d", i), AccessionNumber: fmt.Sprintf("ACC%06d", i),
			RequestedProcedureID: fmt.Sprintf("RP%d", i), RequestedProcedureDescription: mod + " routine study",
			RequestedProcedureCode: engine.Code{Value: mod + "-ROUTINE", Scheme: "99LOCAL", Meaning: mod + " routine"},
			StudyInstanceUID:       fmt.Sprintf("1.2.826.0.1.3680043.8.498.%d", i), RequestedProcedurePriority: "ROUTINE",
			ReferringPhysicianName: "Smith^Ann", Modality: mod, StationAETitle: fmt.Sprintf("%sAE%d", mod, (i/5)%4),
			StartDate: date, StartTime: fmt.Sprintf("%02d%02d00", 7+i%12, i%60), StepID: fmt.Sprintf("SPS%d", i),
			StepDescription: mod + " routine", StepStatus: "SCHEDULED", PatientName: fmt.Sprintf("Patient%d^Test", i),
			PatientID: fmt.Sprintf("P%07d", i), IssuerOfPatientID: "HOSP", PatientBirthDate: "19700101", PatientSex: "F",
		}
	}
	return items
}

// BenchmarkWorklistFind10k measures one typical modality query (today, CT, its station AE
// title) against a worklist of 10,000 items, end to end: the Client's C-FIND-RQ over a real
// association on loopback, the SCP's decoding, matching and pending responses, to the final
// response. "all-candidates": the source returns all 10,000 items and the SCP matches each (a
// store that ignores the filter, the worst case); "filtered": the source applies the
// engine.WorklistFilter as the stores do.
func BenchmarkWorklistFind10k(b *testing.B) {
	today := time.Now()
	items := benchWorklist(10000, today)
	query := typicalModalityQuery(today.Format("20060102"))
	query.Get(dicom.TagScheduledProcedureStepSequence).Items[0].Set(key(tagScheduledStationAETitle, "CTAE0"))
	for _, filter := range []bool{false, true} {
		name := "all-candidates"
		if filter {
			name = "filtered"
		}
		b.Run(name, func(b *testing.B) {
			src := &memoryWorklist{items: items, filter: filter}
			addr := startServer(b, &Server{Logger: slog.New(slog.DiscardHandler),
				Services: []Service{WorklistService(src, slog.New(slog.DiscardHandler))}})
			c := worklistClient(b, addr)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			b.ReportAllocs()
			matches := 0
			for b.Loop() {
				matches = 0
				final, err := c.Find(ctx, ModalityWorklistFindSOPClass, query, func(*Command, *dicom.DataSet) bool { matches++; return true })
				if err != nil || final.Status != dicom.StatusSuccess {
					b.Fatalf("find: %v %v", final, err)
				}
			}
			if matches != 50 {
				b.Fatalf("%d matches, want 50", matches)
			}
			perOp := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(float64(len(items))/perOp, "items/s")
			b.ReportMetric(float64(matches), "matches/op")
		})
	}
}

// BenchmarkWorklistMatch10k measures the SCP's own work for the typical query, without the
// network: compiling the identifier, matching 10,000 items, building the 50 responses.
func BenchmarkWorklistMatch10k(b *testing.B) {
	today := time.Now()
	items := benchWorklist(10000, today)
	query := typicalModalityQuery(today.Format("20060102"))
	query.Get(dicom.TagScheduledProcedureStepSequence).Items[0].Set(key(tagScheduledStationAETitle, "CTAE0"))
	b.ReportAllocs()
	for b.Loop() {
		q, err := compileWorklistQuery(query)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for _, it := range items {
			if q.match(it) {
				_ = q.response(it)
				n++
			}
		}
		if n != 50 {
			b.Fatalf("%d matches", n)
		}
	}
	b.ReportMetric(float64(len(items))/(b.Elapsed().Seconds()/float64(b.N)), "items/s")
}

// BenchmarkWorklistFindServer measures C-FIND against a running `ferry serve` (its store
// included), e.g. one holding 10,000 orders sent with mllpload (docs/performance.md):
//
//	FERRY_BENCH_DICOM=127.0.0.1:11112 FERRY_BENCH_DATE=20261127 go test -run XXX -bench WorklistFindServer ./adapters/dimse/
//
// "accession" pins one item; "day" asks for one day's CT items in a ten-minute window (the
// store narrows by date, the SCP matches the time range and modality on every item of the day).
func BenchmarkWorklistFindServer(b *testing.B) {
	addr, date := os.Getenv("FERRY_BENCH_DICOM"), os.Getenv("FERRY_BENCH_DATE")
	if addr == "" || date == "" {
		b.Skip("set FERRY_BENCH_DICOM (host:port of a running ferry serve) and FERRY_BENCH_DATE (YYYYMMDD)")
	}
	acc := os.Getenv("FERRY_BENCH_ACCESSION")
	queries := map[string]*dicom.DataSet{
		"day": dataSet(key(dicom.TagAccessionNumber, ""), key(dicom.TagPatientName, ""), key(dicom.TagPatientID, ""),
			sps(key(dicom.TagModality, "CT"), key(tagSPSStartDate, date), key(tagSPSStartTime, "0900-0910"))),
	}
	if acc != "" {
		queries["accession"] = dataSet(key(dicom.TagAccessionNumber, acc), key(dicom.TagPatientName, ""), key(dicom.TagPatientID, ""))
	}
	for _, name := range []string{"accession", "day"} {
		q, ok := queries[name]
		if !ok {
			continue
		}
		b.Run(name, func(b *testing.B) {
			c := worklistClient(b, addr)
			ctx := context.Background()
			matches := 0
			for b.Loop() {
				matches = 0
				final, err := c.Find(ctx, ModalityWorklistFindSOPClass, q, func(*Command, *dicom.DataSet) bool { matches++; return true })
				if err != nil || final.Status != dicom.StatusSuccess {
					b.Fatalf("find: %v %v", final, err)
				}
			}
			b.ReportMetric(float64(matches), "matches")
		})
	}
}
