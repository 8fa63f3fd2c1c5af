package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ferryhealth/ferry/adapters/sqlite"
	"github.com/ferryhealth/ferry/dicom"
	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/engine/patientid"
	"github.com/ferryhealth/ferry/fhir"
	"github.com/ferryhealth/ferry/hl7"
	"github.com/ferryhealth/ferry/mappings"
)

// orderHarness is the inbound flow with the real pieces: the shipped mappings, google/fhir
// validation, the group committer and the embedded SQLite store.
type orderHarness struct {
	t   testing.TB
	st  *sqlite.Store
	in  *engine.Inbound
	seq int
}

func newOrderHarness(t testing.TB) *orderHarness {
	t.Helper()
	return newOrderHarnessOn(t, nil)
}

// newOrderHarnessOn is newOrderHarness committing through wrap(the SQLite store), when wrap is
// set.
func newOrderHarnessOn(t testing.TB, wrap func(engine.Store) engine.Store) *orderHarness {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() }) // after the committer's (cleanups run last first)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var committed engine.Store = st
	if wrap != nil {
		committed = wrap(st)
	}
	return &orderHarness{t: t, st: st, in: shippedInbound(t, committed)}
}

// shippedInbound is the inbound flow committing to st through a group committer (closed at
// the test's end), with the shipped mappings and google/fhir validation.
func shippedInbound(t testing.TB, st engine.Store) *engine.Inbound {
	t.Helper()
	set, err := mappings.Load(mappings.Source{Base: []fs.FS{mappings.Shipped()}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	// A commit timeout long for a test: a 10,000-segment message on a loaded machine under the
	// race detector takes seconds, and the default (4 s) is a production answer time.
	gc := engine.NewGroupCommitter(st, engine.GroupCommitOptions{Timeout: time.Minute})
	t.Cleanup(gc.Close)
	in := engine.NewInbound("mllp", gc, nil, nil)
	in.Processor = &engine.Processor{Mappings: func() engine.MappingSource { return set }, Validator: v}
	return in
}

// send receives segs as one message with a fresh MSH-10 and returns MSA-1 and the ACK.
func (h *orderHarness) send(msh string, segs ...string) (string, *hl7.Message) {
	h.t.Helper()
	h.seq++
	msh = strings.Replace(msh, "CTRL", fmt.Sprintf("C%04d", h.seq), 1)
	raw := []byte(strings.Join(append([]string{msh}, segs...), "\r") + "\r")
	ack, err := hl7.Parse(h.in.Receive(context.Background(), engine.Received{Data: raw, ReceivedAt: time.Now()}))
	if err != nil {
		h.t.Fatalf("ACK does not parse: %v", err)
	}
	return ack.Value("MSA-1"), ack
}

func (h *orderHarness) mustAccept(msh string, segs ...string) {
	h.t.Helper()
	if code, ack := h.send(msh, segs...); code != "AA" {
		h.t.Fatalf("want AA, got %s: %s", code, ack.Value("ERR-8")+ack.Value("ERR-1"))
	}
}

func (h *orderHarness) search(typ string, filters ...engine.SearchFilter) []map[string]any {
	h.t.Helper()
	rs, err := h.st.SearchResources(context.Background(), engine.ResourceQuery{Type: typ, Filters: filters})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []map[string]any
	for _, r := range rs {
		var m map[string]any
		if err := json.Unmarshal(r.JSON, &m); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func eq(param, value string) engine.SearchFilter {
	sys := ""
	if i := strings.LastIndexByte(value, '|'); i >= 0 {
		sys, value = value[:i], value[i+1:]
	}
	return engine.SearchFilter{Param: param, Op: engine.SearchEq, Values: []engine.SearchValue{{System: sys, Value: value}}}
}

func (h *orderHarness) worklist(f engine.WorklistFilter) []*engine.WorklistItem {
	h.t.Helper()
	items, err := h.st.WorklistItems(context.Background(), f)
	if err != nil {
		h.t.Fatal(err)
	}
	return items
}

const (
	mshORM = `MSH|^~\&|RIS|STMARYS|FERRY|FERRY|20261127083000-0500||ORM^O01|CTRL|P|2.3.1`
	mshADT = `MSH|^~\&|ADT|STMARYS|FERRY|FERRY|20261127083000-0500||ADT^A08^ADT_A01|CTRL|P|2.5.1`
	mshA40 = `MSH|^~\&|ADT|STMARYS|FERRY|FERRY|20261127083000-0500||ADT^A40^ADT_A39|CTRL|P|2.5.1`
	mrn    = "urn:oid:2.16.840.1.113883.3.9999.1"
)

func pidFor(id, name string) string {
	return "PID|1||" + id + "^^^STMARYS^MR||" + name + "||19800102|F"
}

func orc(control, placer, status string) string {
	return "ORC|" + control + "|" + placer + "^RIS|||" + status + "||^^^20261127093000^^R||20261127082500"
}

func obr(placer, acc string) string {
	return "OBR|1|" + placer + "^RIS||71260^CT CHEST W/O CONTRAST^C4||||||||||||||" + acc + "||||||CT"
}

func TestOrderLifecycleNewChangeCancel(t *testing.T) {
	t.Parallel()
	h := newOrderHarness(t)
	h.mustAccept(mshORM, pidFor("000123", "DOE^JANE"), orc("NW", "PL1", "SC"), obr("PL1", "ACC1"))

	srs := h.search("ServiceRequest", eq("identifier", "PL1"))
	if len(srs) != 1 || srs[0]["status"] != "active" {
		t.Fatalf("after NW: %v", srs)
	}
	if got := h.worklist(engine.WorklistFilter{AccessionNumber: "ACC1"}); len(got) != 1 || got[0].Modality != "CT" || got[0].PatientID != "000123" {
		t.Fatalf("after NW the worklist has %+v", got)
	}

	// An identical repeat (new MSH-10, same content) changes nothing: still version 1.
	h.mustAccept(mshORM, pidFor("000123", "DOE^JANE"), orc("NW", "PL1", "SC"), obr("PL1", "ACC1"))
	if v := h.search("ServiceRequest", eq("identifier", "PL1"))[0]["meta"].(map[string]any)["versionId"]; v != "1" {
		t.Errorf("identical NW wrote version %v", v)
	}
	if n := len(h.search("Patient", eq("identifier", mrn+"|000123"))); n != 1 {
		t.Errorf("%d patients for one MRN", n)
	}

	// XO changes the order (the procedure) and keeps its status.
	h.mustAccept(mshORM, pidFor("000123", "DOE^JANE"), orc("XO", "PL1", "SC"),
		strings.Replace(obr("PL1", "ACC1"), "71260^CT CHEST W/O CONTRAST^C4", "70450^CT HEAD WO CONTRAST^C4", 1))
	sr := h.search("ServiceRequest", eq("identifier", "PL1"))[0]
	if sr["status"] != "active" || sr["meta"].(map[string]any)["versionId"] != "2" || !strings.Contains(fmt.Sprint(sr["code"]), "70450") {
		t.Errorf("after XO: status %v, version %v, code %v", sr["status"], sr["meta"], sr["code"])
	}

	// CA revokes it and takes it off the worklist.
	h.mustAccept(mshORM, pidFor("000123", "DOE^JANE"), orc("CA", "PL1", "CA"), obr("PL1", "ACC1"))
	if sr := h.search("ServiceRequest", eq("identifier", "PL1"))[0]; sr["status"] != "revoked" {
		t.Errorf("after CA: status %v", sr["status"])
	}
	if got := h.worklist(engine.WorklistFilter{AccessionNumber: "ACC1"}); len(got) != 0 {
		t.Errorf("a cancelled order stays on the worklist: %+v", got)
	}

	// A change to an order Ferry never got: AE with ERR 204 at ORC-2.
	code, ack := h.send(mshORM, pidFor("000123", "DOE^JANE"), orc("XO", "PL404", "SC"), obr("PL404", "ACC404"))
	// v2.3.1: ERR-1 carries segment^sequence^field^code.
	if code != "AE" || ack.Value("ERR-1.1") != "ORC" || ack.Value("ERR-1.3") != "2" || ack.Value("ERR-1.4.1") != "204" {
		t.Errorf("XO of an unknown order: %s %q", code, ack.Bytes())
	}
	if n := len(h.search("ServiceRequest", eq("identifier", "PL404"))); n != 0 {
		t.Errorf("the refused change created %d orders", n)
	}
}

func TestOrderStatusAndHold(t *testing.T) {
	t.Parallel()
	h := newOrderHarness(t)
	h.mustAccept(mshORM, pidFor("000123", "DOE^JANE"), orc("NW", "PL2", "SC"), obr("PL2", "ACC2"))
	for _, step := range []struct{ control, orc5, want string }{
		{"SC", "IP", "active"},
		{"HD", "HD", "on-hold"},
		{"RL", "SC", "active"},
		{"SC", "CM", "completed"},
	} {
		h.mustAccept(mshORM, pidFor("000123", "DOE^JANE"), orc(step.control, "PL2", step.orc5), obr("PL2", "ACC2"))
		if sr := h.search("ServiceRequest", eq("identifier", "PL2"))[0]; sr["status"] != step.want {
			t.Errorf("after %s(%s): status %v, want %s", step.control, step.orc5, sr["status"], step.want)
		}
		onList := len(h.worklist(engine.WorklistFilter{AccessionNumber: "ACC2"})) == 1
		if onList != (step.want == "active") {
			t.Errorf("after %s(%s): on the worklist = %v", step.control, step.orc5, onList)
		}
	}
}

func TestMergeMovesOrdersAndResolvesTheOldIdentifier(t *testing.T) {
	t.Parallel()
	h := newOrderHarness(t)
	// Two records of one woman: 000999 (registered twice by mistake) and 000123.
	h.mustAccept(mshORM, pidFor("000999", "DOE^JANE"), orc("NW", "PL3", "SC"), obr("PL3", "ACC3"))
	h.mustAccept(mshADT, pidFor("000123", "DOE^JANE^QUINN"), "PV1|1|O")
	h.mustAccept(mshA40, pidFor("000123", "DOE^JANE^QUINN"), "MRG|000999^^^STMARYS^MR")

	survivor := h.search("Patient", eq("identifier", mrn+"|000123"))
	old := h.search("Patient", eq("identifier", mrn+"|000999"))
	if len(survivor) != 1 || len(old) != 1 {
		t.Fatalf("patients: survivor %d, old %d", len(survivor), len(old))
	}
	sid, oid := survivor[0]["id"].(string), old[0]["id"].(string)
	if old[0]["active"] != false || !strings.Contains(fmt.Sprint(old[0]["link"]), "replaced-by") || !strings.Contains(fmt.Sprint(old[0]["link"]), sid) {
		t.Errorf("old patient after merge: active %v, link %v", old[0]["active"], old[0]["link"])
	}
	if !strings.Contains(fmt.Sprint(survivor[0]["link"]), "replaces") {
		t.Errorf("survivor after merge: link %v", survivor[0]["link"])
	}
	// The old patient's order is the survivor's now, and so is its worklist item.
	if srs := h.search("ServiceRequest", eq("patient", "Patient/"+sid)); len(srs) != 1 {
		t.Errorf("survivor has %d orders, want the merged one", len(srs))
	}
	if items := h.worklist(engine.WorklistFilter{AccessionNumber: "ACC3"}); len(items) != 1 || items[0].PatientID != "000123" || items[0].PatientName != "DOE^JANE^QUINN" {
		t.Errorf("worklist after merge: %+v", items)
	}
	// An order for the old MRN lands on the survivor.
	h.mustAccept(mshORM, pidFor("000999", "DOE^JANE"), orc("NW", "PL4", "SC"), obr("PL4", "ACC4"))
	if srs := h.search("ServiceRequest", eq("identifier", "PL4")); len(srs) != 1 || !strings.Contains(fmt.Sprint(srs[0]["subject"]), sid) {
		t.Errorf("order for the old MRN: %v", srs)
	}
	if n := len(h.search("Patient", eq("identifier", mrn+"|000999"))); n != 1 {
		t.Errorf("the old MRN made %d patients", n)
	}
	_ = oid

	// Repeating the merge, or merging the survivor back, is refused.
	for name, segs := range map[string][]string{
		"repeated": {pidFor("000123", "DOE^JANE^QUINN"), "MRG|000999^^^STMARYS^MR"},
		"circular": {pidFor("000999", "DOE^JANE"), "MRG|000123^^^STMARYS^MR"},
		"unknown":  {pidFor("000123", "DOE^JANE^QUINN"), "MRG|000555^^^STMARYS^MR"},
	} {
		if code, ack := h.send(mshA40, segs...); code != "AE" || ack.Value("ERR-2.1") == "" {
			t.Errorf("%s merge: %s %q", name, code, ack.Bytes())
		}
	}
}

func TestADTUpdatesDemographicsOnce(t *testing.T) {
	t.Parallel()
	h := newOrderHarness(t)
	h.mustAccept(mshADT, pidFor("000777", "ROE^RICHARD"), "PV1|1|O")
	h.mustAccept(mshADT, pidFor("000777", "ROE^RICHARD"), "PV1|1|O")
	h.mustAccept(mshADT, pidFor("000777", "ROE^RICHARD^ALAN"), "PV1|1|O")
	ps := h.search("Patient", eq("identifier", mrn+"|000777"))
	if len(ps) != 1 {
		t.Fatalf("%d patients", len(ps))
	}
	if v := ps[0]["meta"].(map[string]any)["versionId"]; v != "2" {
		t.Errorf("version %v after one real change", v)
	}
	hist, err := h.st.ResourceHistory(context.Background(), "Patient", ps[0]["id"].(string))
	if err != nil || len(hist) != 2 {
		t.Errorf("history: %d versions, %v", len(hist), err)
	}
}

func TestMappingErrorIsStoredAndAnsweredAE(t *testing.T) {
	t.Parallel()
	h := newOrderHarness(t)
	code, ack := h.send(mshORM, pidFor("000123", "DOE^JANE"), orc("NW", "PL5", "SC"), "OBR|1|PL5^RIS||")
	if code != "AE" || ack.Value("ERR-1.1") != "OBR" || ack.Value("ERR-1.3") != "4" || ack.Value("ERR-1.4.1") != "101" {
		t.Fatalf("order without OBR-4: %s %q", code, ack.Bytes())
	}
	msgs, err := h.st.Messages(context.Background(), engine.MessageFilter{Status: engine.StatusError})
	if err != nil || len(msgs) != 1 || len(msgs[0].Raw) == 0 {
		t.Fatalf("the failed order is not kept for replay: %v %v", msgs, err)
	}
	if n := len(h.search("Patient")); n != 0 {
		t.Errorf("a failed order left %d patients", n)
	}
}

// BenchmarkPlanORM is the in-process half of an order: parse an ORM^O01, map it with the shipped
// mapping and validate its Patient, Encounter, Practitioner and ServiceRequest with google/fhir.
// The goal is ≥ 2,500 messages/s per core (docs/performance.md); run with -cpu 1. Every message
// is a new patient with a new visit and a new order (nothing repeats, so content validated
// before never helps), ordered by one of 50 physicians (who do repeat, as in a real feed).
func BenchmarkPlanORM(b *testing.B) {
	set, err := mappings.Load(mappings.Source{Base: []fs.FS{mappings.Shipped()}})
	if err != nil {
		b.Fatal(err)
	}
	v, err := fhir.NewValidator()
	if err != nil {
		b.Fatal(err)
	}
	p := &engine.Processor{Mappings: func() engine.MappingSource { return set }, Validator: v}
	families := []string{"DOE", "ROE", "SMITH", "GARCIA", "NGUYEN", "MÜLLER", "O'BRIEN"}
	msg := func(i int, visit bool) []byte {
		doc := i % 50
		return []byte(strings.Join([]string{
			strings.Replace(mshORM, "CTRL", fmt.Sprintf("B%d", i), 1),
			fmt.Sprintf("PID|1||%07d^^^STMARYS^MR~%03d-88-%04d^^^SSN^SS||%s^JANE^Q^^DR||19%02d0102|F|||%d MAIN ST^^SPRINGFIELD^IL^62701^USA^H||^PRN^PH^^^217^555%04d",
				i, i%1000, i%10000, families[i%len(families)], i%100, i%900+1, i%10000),
			pv1(i, doc, visit),
			fmt.Sprintf("ORC|NW|PL%d^RIS|FL%d^PACS||SC||^^^20261127093000^^S||20261127082500|||%d^SMITH^ROBERT^J^^^MD^^STMARYS", i, i, 1000+doc),
			fmt.Sprintf("OBR|1|PL%d^RIS|FL%d^PACS|71260^CT CHEST W/O CONTRAST^C4|||||||||Cough, rule out mass|||||ACC%d||||||CT|||||||R05^Cough^I10", i, i, i),
		}, "\r") + "\r")
	}
	seq := 0
	// patient+request is the goal's definition (an ORM without a visit number: Patient and
	// ServiceRequest, the physician cached); full adds the Encounter of PV1-19.
	for _, variant := range []struct {
		name  string
		visit bool
	}{{"patient+request", false}, {"full", true}} {
		b.Run(variant.name, func(b *testing.B) {
			b.SetBytes(int64(len(msg(0, variant.visit))))
			b.ReportAllocs()
			for b.Loop() {
				seq++ // across runs too: a repeated message would find its content validated
				m, err := hl7.Parse(msg(seq, variant.visit))
				if err != nil {
					b.Fatal(err)
				}
				pl, err := p.Plan(m)
				if err != nil || pl == nil {
					b.Fatalf("plan: %v", err)
				}
			}
		})
	}
}

func TestAckOnReceiptProcessesAfterwards(t *testing.T) {
	t.Parallel()
	h := newOrderHarness(t)
	h.in.AckOnReceipt = true
	worker := &engine.PendingWorker{Store: h.st, Processor: h.in.Processor}

	// Both are answered AA on storage, even the one the mapping will refuse.
	h.mustAccept(mshORM, pidFor("000123", "DOE^JANE"), orc("NW", "PL6", "SC"), obr("PL6", "ACC6"))
	h.mustAccept(mshORM, pidFor("000123", "DOE^JANE"), orc("NW", "PL7", "SC"), "OBR|1|PL7^RIS||")
	if n := len(h.search("ServiceRequest")); n != 0 {
		t.Fatalf("%d orders before processing", n)
	}
	n, err := worker.ProcessBatch(context.Background())
	if err != nil || n != 2 {
		t.Fatalf("ProcessBatch: %d, %v", n, err)
	}
	if n, _ := worker.ProcessBatch(context.Background()); n != 0 {
		t.Errorf("processed %d messages twice", n)
	}
	if srs := h.search("ServiceRequest", eq("identifier", "PL6")); len(srs) != 1 {
		t.Errorf("PL6 not processed: %v", srs)
	}
	msgs, err := h.st.Messages(context.Background(), engine.MessageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if m.Pending || m.Status != engine.StatusAccepted || m.MappingVersion == "" {
			t.Errorf("message %s: pending %v, status %s, mapping %q", m.ControlID, m.Pending, m.Status, m.MappingVersion)
		}
		if wantErr := m.ControlID == "C0002"; wantErr != (m.ProcessingError != "") {
			t.Errorf("message %s: processing error %q", m.ControlID, m.ProcessingError)
		}
	}
}

// pv1 is a benchmark order's visit: with a visit number (an Encounter) or without.
func pv1(i, doc int, visit bool) string {
	s := fmt.Sprintf("PV1|1|O|RAD^^^STMARYS||||%d^SMITH^ROBERT^J^^^MD^^STMARYS|5678^JONES^ANNA", 1000+doc)
	if visit {
		s += fmt.Sprintf("|||||||||||V%d^^^STMARYS^VN", i)
	}
	return s
}

// TestPendingWorkerIsNudged: with ack on receipt, the worker processes a stored message at once
// when the receiver nudges it (its poll is an hour here), receivers nudging concurrently.
func TestPendingWorkerIsNudged(t *testing.T) {
	t.Parallel()
	h := newOrderHarness(t)
	st := &commitSignallingStore{Store: h.st, commits: make(chan struct{}, 1)}
	worker := &engine.PendingWorker{Store: st, Processor: h.in.Processor, Poll: time.Hour}
	h.in.AckOnReceipt, h.in.Pending = true, worker
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { worker.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msh := strings.Replace(mshORM, "CTRL", fmt.Sprintf("N%d", i), 1)
			raw := []byte(strings.Join([]string{msh, pidFor("000123", "DOE^JANE"),
				orc("NW", fmt.Sprintf("PLN%d", i), "SC"), obr(fmt.Sprintf("PLN%d", i), fmt.Sprintf("ACCN%d", i))}, "\r") + "\r")
			h.in.Receive(context.Background(), engine.Received{Data: raw, ReceivedAt: time.Now()})
		}()
	}
	wg.Wait()
	// Each of the worker's commits is a moment the orders may all be there; the hour-long poll
	// cannot be what processed them. The deadline only guards against hanging.
	hang := time.After(time.Minute)
	for len(h.search("ServiceRequest")) < 4 {
		select {
		case <-st.commits:
		case <-hang:
			t.Fatalf("only %d of 4 orders processed after the nudges", len(h.search("ServiceRequest")))
		}
	}
}

// commitSignallingStore tells commits of each transaction that committed (a buffered channel
// of one: a commit while nobody listens is kept for the next look).
type commitSignallingStore struct {
	engine.Store
	commits chan struct{}
}

func (s *commitSignallingStore) Begin(ctx context.Context) (engine.Tx, error) {
	tx, err := s.Store.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &commitSignallingTx{Tx: tx, commits: s.commits}, nil
}

type commitSignallingTx struct {
	engine.Tx
	commits chan struct{}
}

func (tx *commitSignallingTx) Commit() error {
	err := tx.Tx.Commit()
	select {
	case tx.commits <- struct{}{}:
	default:
	}
	return err
}

// TestLinkStudies: studies received after their orders are linked by accession, or by the
// Study Instance UID scheduled on the order; a study whose patient contradicts the order's is
// never linked; one no rule matches is held.
func TestLinkStudies(t *testing.T) {
	t.Parallel()
	h := newOrderHarness(t)
	h.mustAccept(mshORM, pidFor("000123", "DOE^JANE"), orc("NW", "PLL1", "SC"), obr("PLL1", "ACCL1"))
	h.mustAccept(mshORM, pidFor("000123", "DOE^JANE"), orc("NW", "PLL2", "SC"), obr("PLL2", ""), "ZDS|1.2.826.0.1.3680043.10.99.2")
	intake := &engine.Intake{Store: h.st, Dir: t.TempDir(), Linker: &engine.Linker{Resources: h.st, Links: h.st}}
	store := func(study, acc, patientID, birth string) *engine.StudyLink {
		t.Helper()
		tmp := filepath.Join(intake.Dir, "incoming")
		if err := os.WriteFile(tmp, []byte("DICM"), 0o600); err != nil {
			t.Fatal(err)
		}
		inst := &engine.Instance{
			Header: dicom.Header{
				StudyInstanceUID:  study,
				SeriesInstanceUID: study + ".1",
				SOPInstanceUID:    study + ".1.1",
				SOPClassUID:       "1.2.840.10008.5.1.4.1.1.2",
				Modality:          "CT",
				AccessionNumber:   acc,
				PatientID:         patientID,
				PatientBirthDate:  birth,
				PatientSex:        "F",
				Size:              4,
			},
			ReceivedAt: time.Now(),
		}
		if _, err := intake.StoreInstance(context.Background(), inst, tmp); err != nil {
			t.Fatal(err)
		}
		l, err := h.st.StudyLink(context.Background(), study)
		if err != nil {
			t.Fatalf("no decision recorded for %s: %v", study, err)
		}
		return l
	}
	pl1 := h.search("ServiceRequest", eq("identifier", "PLL1"))[0]["id"]
	pl2 := h.search("ServiceRequest", eq("identifier", "PLL2"))[0]["id"]

	if l := store("1.2.826.0.1.3680043.10.99.1", "ACCL1", "000123", "19800102"); l.Status != engine.LinkLinked || l.Rule != "accession" || l.ServiceRequestID != pl1 || l.PatientID == "" {
		t.Errorf("by accession: %+v", l)
	}
	if l := store("1.2.826.0.1.3680043.10.99.2", "", "000123", ""); l.Status != engine.LinkLinked || l.Rule != "study-uid" || l.ServiceRequestID != pl2 {
		t.Errorf("by study UID: %+v", l)
	}
	// An ID that is not the patient's (nobody's), and no name to agree: the order alone does not
	// decide.
	if l := store("1.2.826.0.1.3680043.10.99.3", "ACCL1", "000999", "19800102"); l.Status != engine.LinkContradiction || !strings.Contains(l.Evidence["patient_id"], "differs") {
		t.Errorf("another ID with the order's accession, no name: %+v", l)
	}
	if l := store("1.2.826.0.1.3680043.10.99.4", "ACCL1", "000123", "19751231"); l.Status != engine.LinkContradiction || !strings.Contains(l.Evidence["birth_date"], "contradicts") {
		t.Errorf("another birth date: %+v", l)
	}
	// An unknown accession: rule 3 finds the patient by ID; both of its orders are CT and
	// current, so none is chosen.
	if l := store("1.2.826.0.1.3680043.10.99.5", "NOPE", "000123", ""); l.Status != engine.LinkLinked || l.Rule != "patient-id" || l.PatientID == "" || l.ServiceRequestID != "" {
		t.Errorf("unknown accession, known patient ID: %+v", l)
	}
	if l := store("1.2.826.0.1.3680043.10.99.6", "NOPE", "000777", ""); l.Status != engine.LinkUnmatched || l.PatientID != "" {
		t.Errorf("unknown accession and patient ID: %+v", l)
	}
}

// TestLinkByPatientIDAndDemographics: rule 3 finds the patient by an ID written the issuer's way
// (zeros dropped, a prefix), and the one order that fits; rule 4 links a study with swapped name
// components and no ID, sends a twin to review, holds a stranger; a merge moves the linked
// studies to the survivor, keeping the history.
func TestLinkByPatientIDAndDemographics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newOrderHarness(t)
	pid := func(id, name, birth, sex string) string {
		return "PID|1||" + id + "^^^STMARYS^MR||" + name + "||" + birth + "|" + sex
	}
	h.mustAccept(mshORM, pid("000123", "DOE^JANE", "19800102", "F"), orc("NW", "PLD1", "SC"), obr("PLD1", "ACCD1"))
	h.mustAccept(mshADT, pid("000124", "DOE^JOAN", "19800102", "F"), "PV1|1|O") // Jane's twin
	h.mustAccept(mshADT, pid("000555", "SMITH^ALICE", "19700315", "F"), "PV1|1|O")
	jane := h.search("Patient", eq("identifier", mrn+"|000123"))[0]["id"].(string)
	alice := h.search("Patient", eq("identifier", mrn+"|000555"))[0]["id"].(string)
	order := h.search("ServiceRequest", eq("identifier", "PLD1"))[0]["id"].(string)

	linker := &engine.Linker{Resources: h.st, Links: h.st, Match: engine.MatchConfig{Identifiers: []*patientid.Rules{{
		Authorities: []patientid.Authority{{Name: "St Mary's MRN", System: mrn, Issuers: []string{"STMARYS"},
			Steps: []patientid.Step{{StripPrefixes: []string{"MRN-"}}, {DropLeadingZeros: true}}}}}}}}
	n := 0
	link := func(pn, patientID, issuer, birth, sex string) *engine.StudyLink {
		t.Helper()
		n++
		l, err := linker.LinkStudy(ctx, &engine.Study{StudyInstanceUID: fmt.Sprintf("2.25.4711%d", n),
			PatientName: pn, PatientID: patientID, IssuerOfPatientID: issuer, PatientBirthDate: birth,
			PatientSex: sex, StudyDate: "20261127", ModalitiesInStudy: []string{"CT"}})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	for _, tt := range []struct {
		name                   string
		pn, id, issuer, birth  string
		status                 engine.LinkStatus
		rule, patient, request string
	}{
		{"ID without zeros", "DOE^JANE", "123", "STMARYS", "19800102", engine.LinkLinked, "patient-id", jane, order},
		{"ID with prefix", "", "MRN-000123", "STMARYS", "", engine.LinkLinked, "patient-id", jane, order},
		{"ID of the twin, Jane's name", "DOE^JANE", "124", "STMARYS", "19800102", engine.LinkContradiction, "patient-id", "", ""},
		{"other issuer: demographics, swapped", "JANE^DOE", "X9", "ELSEWHERE", "19800102", engine.LinkLinked, "demographics", jane, order},
		{"twin without ID", "DOE^J", "", "", "19800102", engine.LinkReview, "demographics", "", ""},
		{"Alice, transposed birth date", "Smith, Alice", "", "", "19700351", engine.LinkReview, "demographics", "", ""},
		{"stranger", "BLOGGS^FRED", "", "", "19991231", engine.LinkUnmatched, "", "", ""},
	} {
		l := link(tt.pn, tt.id, tt.issuer, tt.birth, "F")
		if l.Status != tt.status || l.Rule != tt.rule || (tt.patient != "" && l.PatientID != tt.patient) || l.ServiceRequestID != tt.request {
			t.Errorf("%s: %s by %q, Patient/%s, ServiceRequest/%s; want %s by %q, Patient/%s, ServiceRequest/%s\nevidence %v\ncandidates %+v",
				tt.name, l.Status, l.Rule, l.PatientID, l.ServiceRequestID, tt.status, tt.rule, tt.patient, tt.request, l.Evidence, l.Candidates)
		}
		if tt.status == engine.LinkReview && len(l.Candidates) == 0 {
			t.Errorf("%s: review without candidates", tt.name)
		}
	}
	// Alice has two CT orders: the study description names the procedure of one.
	h.mustAccept(mshORM, pid("000555", "SMITH^ALICE", "19700315", "F"), orc("NW", "PLA1", "SC"), obr("PLA1", "ACCA1"))
	h.mustAccept(mshORM, pid("000555", "SMITH^ALICE", "19700315", "F"), orc("NW", "PLA2", "SC"),
		strings.Replace(obr("PLA2", "ACCA2"), "71260^CT CHEST W/O CONTRAST^C4", "70450^CT HEAD W/O CONTRAST^C4", 1))
	head := h.search("ServiceRequest", eq("identifier", "PLA2"))[0]["id"].(string)
	for desc, want := range map[string]string{"CT HEAD WO": head, "CT": "", "": ""} {
		n++
		l, err := linker.LinkStudy(ctx, &engine.Study{StudyInstanceUID: fmt.Sprintf("2.25.4711%d", n), PatientID: "555",
			IssuerOfPatientID: "STMARYS", StudyDate: "20261127", StudyDescription: desc, ModalitiesInStudy: []string{"CT"}})
		if err != nil {
			t.Fatal(err)
		}
		if l.Status != engine.LinkLinked || l.PatientID != alice || l.ServiceRequestID != want {
			t.Errorf("study described %q: %s Patient/%s ServiceRequest/%s, want ServiceRequest/%s (%s)", desc, l.Status, l.PatientID, l.ServiceRequestID, want, l.Evidence["order"])
		}
	}

	// Jane is merged into Alice (a registration error): her linked studies follow.
	before, err := h.st.StudyLinksOfPatient(ctx, jane)
	if err != nil || len(before) < 3 {
		t.Fatalf("Jane's studies before the merge: %d, %v", len(before), err)
	}
	own, err := h.st.StudyLinksOfPatient(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	h.mustAccept(mshA40, pid("000555", "SMITH^ALICE", "19700315", "F"), "MRG|000123^^^STMARYS^MR")
	if after, _ := h.st.StudyLinksOfPatient(ctx, jane); len(after) != 0 {
		t.Errorf("after the merge, %d studies still name the merged patient", len(after))
	}
	moved, err := h.st.StudyLinksOfPatient(ctx, alice)
	if err != nil || len(moved) != len(before)+len(own) {
		t.Fatalf("the survivor has %d studies, want %d (%v)", len(moved), len(before)+len(own), err)
	}
	for _, l := range moved {
		if slices.ContainsFunc(own, func(o *engine.StudyLink) bool { return o.StudyInstanceUID == l.StudyInstanceUID }) {
			continue
		}
		hist, err := h.st.StudyLinkHistory(ctx, l.StudyInstanceUID)
		if err != nil {
			t.Fatal(err)
		}
		if l.Rule != "merge" || l.DecidedBy != engine.DecidedByADT || len(hist) < 2 || hist[len(hist)-2].PatientID != jane {
			t.Errorf("moved study %s: rule %q by %q, history %d decisions", l.StudyInstanceUID, l.Rule, l.DecidedBy, len(hist))
		}
	}
	// The old MRN now finds the survivor.
	if l := link("", "123", "STMARYS", "", "F"); l.Status != engine.LinkLinked || l.PatientID != alice {
		t.Errorf("old MRN after the merge: %s Patient/%s, want linked to Patient/%s; %v", l.Status, l.PatientID, alice, l.Evidence)
	}
}

// TestImagingStudyDerived: a linked study is published as an ImagingStudy once quiet — valid,
// on the order's patient, based on the order, counting its instances — and kept current as
// instances arrive and the link changes; the order's worklist step is STARTED; unlinked, it is
// withdrawn (entered-in-error); a merge moves it to the survivor.
func TestImagingStudyDerived(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newOrderHarness(t)
	h.mustAccept(mshORM, pidFor("000123", "DOE^JANE"), orc("NW", "PLI1", "SC"), obr("PLI1", "ACCI1"))
	h.mustAccept(mshADT, pidFor("000555", "ROE^RITA"), "PV1|1|O")
	jane := h.search("Patient", eq("identifier", mrn+"|000123"))[0]["id"].(string)
	rita := h.search("Patient", eq("identifier", mrn+"|000555"))[0]["id"].(string)
	order := h.search("ServiceRequest", eq("identifier", "PLI1"))[0]["id"].(string)

	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	deriver := &engine.StudyDeriver{Store: h.st, Validator: v, Settle: time.Second, Zone: time.UTC,
		DICOMwebURL: "https://ferry.example/dicomweb", Now: func() time.Time { return clock }}
	intake := &engine.Intake{Store: h.st, Dir: t.TempDir(), Linker: &engine.Linker{Resources: h.st, Links: h.st}}
	const study = "1.2.826.0.1.3680043.10.77"
	store := func(n int) {
		t.Helper()
		tmp := filepath.Join(intake.Dir, "incoming")
		if err := os.WriteFile(tmp, []byte("DICM"), 0o600); err != nil {
			t.Fatal(err)
		}
		inst := &engine.Instance{
			Header: dicom.Header{
				StudyInstanceUID:  study,
				SeriesInstanceUID: study + ".1",
				SOPInstanceUID:    fmt.Sprintf("%s.1.%d", study, n),
				SOPClassUID:       "1.2.840.10008.5.1.4.1.1.2",
				Modality:          "CT",
				AccessionNumber:   "ACCI1",
				PatientID:         "000123",
				PatientName:       "DOE^JANE",
				PatientBirthDate:  "19800102",
				PatientSex:        "F",
				StudyDate:         "20261127",
				StudyTime:         "101500",
				InstanceNumber:    fmt.Sprint(n),
				Size:              4,
			},
			ReceivedAt: clock,
		}
		if _, err := intake.StoreInstance(ctx, inst, tmp); err != nil {
			t.Fatal(err)
		}
	}
	derive := func(wantDone int) map[string]any {
		t.Helper()
		clock = clock.Add(2 * time.Second)
		n, err := deriver.DeriveDue(ctx)
		if err != nil || n != wantDone {
			t.Fatalf("DeriveDue = %d, %v; want %d", n, err, wantDone)
		}
		r, err := h.st.Resource(ctx, "ImagingStudy", study)
		if err != nil {
			t.Fatalf("ImagingStudy/%s: %v", study, err)
		}
		if err := v.Validate(r.JSON); err != nil {
			t.Fatalf("stored ImagingStudy is not valid: %v", err)
		}
		var m map[string]any
		if err := json.Unmarshal(r.JSON, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	ref := func(m map[string]any, field string) string {
		if l, ok := m[field].([]any); ok && len(l) > 0 {
			return l[0].(map[string]any)["reference"].(string)
		}
		r, _ := m[field].(map[string]any)["reference"].(string)
		return r
	}

	store(1)
	if n, _ := deriver.DeriveDue(ctx); n != 0 {
		t.Errorf("derived %d studies before the study was quiet", n)
	}
	is := derive(1)
	if is["status"] != "available" || ref(is, "subject") != "Patient/"+jane || ref(is, "basedOn") != "ServiceRequest/"+order ||
		is["numberOfInstances"] != 1.0 || ref(is, "endpoint") != "Endpoint/dicomweb" {
		t.Errorf("ImagingStudy = %v", is)
	}
	items, err := h.st.WorklistItems(ctx, engine.WorklistFilter{AccessionNumber: "ACCI1"})
	if err != nil || len(items) != 1 || items[0].StepStatus != "STARTED" {
		t.Errorf("worklist step after the study arrived: %+v, %v; want STARTED", items, err)
	}
	if _, err := h.st.Resource(ctx, "Endpoint", "dicomweb"); err != nil {
		t.Errorf("Endpoint/dicomweb: %v", err)
	}

	store(2)
	store(2) // a copy: no change
	if is = derive(1); is["numberOfInstances"] != 2.0 || is["meta"].(map[string]any)["versionId"] != "2" {
		t.Errorf("after a second instance: %v", is)
	}
	if n, _ := deriver.DeriveDue(ctx); n != 0 {
		t.Errorf("derived again with nothing changed: %d", n)
	}

	// Merged into Rita: the study follows.
	h.mustAccept(mshA40, pidFor("000555", "ROE^RITA"), "MRG|000123^^^STMARYS^MR")
	if is = derive(1); ref(is, "subject") != "Patient/"+rita {
		t.Errorf("after the merge, subject %s, want Patient/%s", ref(is, "subject"), rita)
	}

	// Unlinked by a person: withdrawn.
	if err := h.st.PutStudyLink(ctx, &engine.StudyLink{StudyInstanceUID: study, Status: engine.LinkUnmatched,
		Rule: engine.RuleManual, DecidedAt: clock, DecidedBy: "ana", Reason: "wrong patient"}); err != nil {
		t.Fatal(err)
	}
	if is = derive(1); is["status"] != "entered-in-error" {
		t.Errorf("after unlinking, status %v", is["status"])
	}
}

// recordingValidator is the real validator, keeping what it was given.
type recordingValidator struct {
	v      *fhir.Validator
	mu     sync.Mutex
	bodies []string
}

func (r *recordingValidator) Validate(body []byte) error {
	r.mu.Lock()
	r.bodies = append(r.bodies, string(body))
	r.mu.Unlock()
	return r.v.Validate(body)
}

// taken returns what was validated since the last call, as "Type" or "Type+head".
func (r *recordingValidator) taken() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, b := range r.bodies {
		var head struct {
			ResourceType string          `json:"resourceType"`
			Meta         json.RawMessage `json:"meta"`
		}
		if err := json.Unmarshal([]byte(b), &head); err != nil {
			panic(err)
		}
		if head.Meta != nil {
			head.ResourceType += "+head"
		}
		out = append(out, head.ResourceType)
	}
	r.bodies = nil
	return out
}

// TestValidationOfTheHead: every new content is validated; Ferry's head (id, meta) with the
// first content of each type and mapping version, not again; a facility's own mapping version
// has its head validated once too.
func TestValidationOfTheHead(t *testing.T) {
	t.Parallel()
	shipped, err := fs.ReadFile(mappings.Shipped(), "orm_o01.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v2 := strings.Replace(string(shipped), "\nversion: 1\n", "\nversion: 2\n", 1)
	partial, err := fs.ReadFile(mappings.Shipped(), "partials/patient.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// St Luke's mapping writes a meta of its own when PID-2 is set: the head would repeat it.
	withMeta := strings.Replace(string(partial), "\n  active: true\n",
		"\n  active: true\n  meta: '=PID-2 != \"\" ? {\"tag\": [{\"code\": PID-2}]} : nil'\n", 1)
	set, err := mappings.Load(mappings.Source{Base: []fs.FS{mappings.Shipped()},
		Facilities: map[string]fs.FS{
			"STJOHNS": fstest.MapFS{"orm_o01.yaml": {Data: []byte(v2)}},
			"STLUKES": fstest.MapFS{"partials/patient.yaml": {Data: []byte(withMeta)}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingValidator{v: v}
	p := &engine.Processor{Mappings: func() engine.MappingSource { return set }, Validator: rec}
	plan := func(msh string, i int) {
		t.Helper()
		m, err := hl7.Parse([]byte(strings.Join([]string{strings.Replace(msh, "CTRL", fmt.Sprint("H", i), 1),
			pidFor(fmt.Sprintf("%06d", i), "DOE^JANE"),
			"ORC|NW|PL" + fmt.Sprint(i) + "^RIS|||SC||^^^20261127093000^^R||20261127082500|||1001^SMITH^ROBERT",
			obr("PL"+fmt.Sprint(i), "ACC"+fmt.Sprint(i))}, "\r")))
		if err != nil {
			t.Fatal(err)
		}
		if pl, err := p.Plan(m); err != nil || pl == nil {
			t.Fatalf("plan: %v", err)
		}
	}
	stJohns := strings.Replace(mshORM, "|STMARYS|", "|STJOHNS|", 1)
	for _, step := range []struct {
		msh  string
		i    int
		want []string
	}{
		{mshORM, 1, []string{"Patient+head", "Practitioner+head", "ServiceRequest+head"}},
		{mshORM, 2, []string{"Patient", "ServiceRequest"}}, // the physician's content is known
		{mshORM, 1, nil}, // all known
		{stJohns, 3, []string{"Patient+head", "ServiceRequest+head"}},
		{stJohns, 4, []string{"Patient", "ServiceRequest"}},
	} {
		plan(step.msh, step.i)
		if got := rec.taken(); !slices.Equal(got, step.want) {
			t.Errorf("message %d from %s: validated %v, want %v", step.i, strings.Split(step.msh, "|")[3], got, step.want)
		}
	}

	// Content with a meta of its own is always validated under the head, and refused: the
	// resource would have two meta properties.
	stLukes := strings.Replace(mshORM, "|STMARYS|", "|STLUKES|", 1)
	plan(stLukes, 5) // no PID-2: no meta; the head of St Luke's mapping version is validated
	rec.taken()
	m, err := hl7.Parse([]byte(strings.Join([]string{strings.Replace(stLukes, "CTRL", "H6", 1),
		"PID|1|VIP|000006^^^STMARYS^MR||DOE^JANE||19800102|F", orc("NW", "PL6", "SC"), obr("PL6", "ACC6")}, "\r")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Plan(m); err == nil || !strings.Contains(err.Error(), "Patient is not valid FHIR R4") {
		t.Errorf("a Patient with a meta of its own: %v, want it refused", err)
	}
	if got := rec.taken(); !slices.Equal(got, []string{"Patient+head"}) {
		t.Errorf("a Patient with a meta of its own: validated %v, want [Patient+head]", got)
	}
}

// conflictingStore stands for another node changing the same records: the first conflicts
// PutResource calls fail with ErrConflict, as the store answers a record changed or created by
// a transaction that committed meanwhile.
type conflictingStore struct {
	engine.Store
	conflicts atomic.Int32
}

func (s *conflictingStore) Begin(ctx context.Context) (engine.Tx, error) {
	tx, err := s.Store.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &conflictingTx{Tx: tx, s: s}, nil
}

type conflictingTx struct {
	engine.Tx
	s *conflictingStore
}

func (tx *conflictingTx) PutResource(ctx context.Context, r *engine.Resource) error {
	if tx.s.conflicts.Add(-1) >= 0 {
		return fmt.Errorf("storing %s/%s: %w", r.Type, r.ID, engine.ErrConflict)
	}
	return tx.Tx.PutResource(ctx, r)
}

// TestConflictIsRetried: a conflict with a concurrent transaction is Ferry's to resolve: the
// transaction is tried again, and the sender answered AA; only a conflict that persists through
// every try is answered AE (ERR 207), with nothing of the message's effects stored.
func TestConflictIsRetried(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		conflicts int32
		want      string
	}{
		{1, "AA"},
		{3, "AA"},
		{100, "AE"},
	} {
		t.Run(fmt.Sprint(tc.conflicts), func(t *testing.T) {
			t.Parallel()
			cs := &conflictingStore{}
			cs.conflicts.Store(tc.conflicts)
			h := newOrderHarnessOn(t, func(st engine.Store) engine.Store { cs.Store = st; return cs })
			code, ack := h.send(mshORM, pidFor("000321", "DOE^JANE"), orc("NW", "PLR1", "SC"), obr("PLR1", "ACCR1"))
			if code != tc.want {
				t.Fatalf("ACK %s (%s), want %s", code, ack.Value("ERR-1"), tc.want)
			}
			msgs, err := h.st.Messages(context.Background(), engine.MessageFilter{ControlID: "C0001"})
			if err != nil || len(msgs) != 1 {
				t.Fatalf("message log: %d messages, %v; want it stored once", len(msgs), err)
			}
			wantPatients := 1
			if tc.want == "AE" {
				if msgs[0].Status != engine.StatusError || !strings.Contains(msgs[0].Error, "concurrent change") {
					t.Errorf("stored as %s: %q", msgs[0].Status, msgs[0].Error)
				}
				wantPatients = 0
			}
			if ps := h.search("Patient", eq("identifier", mrn+"|000321")); len(ps) != wantPatients {
				t.Errorf("%d patients, want %d", len(ps), wantPatients)
			}
		})
	}
}

// BenchmarkOrderThroughCommitter is one new order (new patient, order and ordering physician)
// from Receive to ACK on the embedded SQLite store: mapping, validation (cached after the
// first), the group committer's transaction with effects, the commit.
func BenchmarkOrderThroughCommitter(b *testing.B) {
	h := newOrderHarness(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprintf("B%07d", i)
		if code, _ := h.send(mshORM, pidFor(id, "DOE^JANE"), orc("NW", "PL"+id, "SC"), obr("PL"+id, "ACC"+id)); code != "AA" {
			b.Fatalf("ACK %s", code)
		}
	}
}
