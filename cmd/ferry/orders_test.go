package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// Orders end to end: ORM/ADT over MLLP from python3-hl7's mllp_send, resources through the FHIR
// API, the Modality Worklist through dcmtk's findscu -W — on both stores.

const ordersMRN = "urn:oid:2.16.840.1.113883.3.9999.1" // STMARYS in the shipped authorities table

func ordersORM(ctrl, control, placer, orc5, acc, code, modality, date, mrn string) string {
	return strings.Join([]string{
		"MSH|^~\\&|RIS|STMARYS|FERRY|FERRY|20261127083000-0500||ORM^O01|" + ctrl + "|P|2.3.1",
		"PID|1||" + mrn + "^^^STMARYS^MR||DOE^JANE||19800102|F",
		"ORC|" + control + "|" + placer + "^RIS|||" + orc5 + "||^^^" + date + "0930^^R||20261127082500|||1234^SMITH^ROBERT",
		"OBR|1|" + placer + "^RIS||" + code + "^EXAM^C4||||||||||||||" + acc + "|||||" + modality,
	}, "\r") + "\r"
}

func ordersA40(ctrl, survivor, prior string) string {
	return strings.Join([]string{
		"MSH|^~\\&|ADT|STMARYS|FERRY|FERRY|20261127083000-0500||ADT^A40^ADT_A39|" + ctrl + "|P|2.5.1",
		"EVN|A40|20261127083000-0500",
		"PID|1||" + survivor + "^^^STMARYS^MR||DOE^JANE^QUINN||19800102|F",
		"MRG|" + prior + "^^^STMARYS^MR",
	}, "\r") + "\r"
}

// mllpSendAll sends msgs in order with mllp_send (one connection, each waiting for its ACK) and
// returns each ACK's MSA-1.
func mllpSendAll(t *testing.T, addr string, msgs ...string) []string {
	t.Helper()
	acks, err := mllpSendACKs(requirePeer(t, "mllp_send", "python3-hl7"), t.TempDir(), addr, msgs)
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, a := range acks {
		codes = append(codes, a.Code)
	}
	return codes
}

// mllpSendACKs sends msgs in order with the mllp_send at path mllpSend (one connection, each
// waiting for its ACK), its input file in dir, and returns the ACKs. It does not fail a test,
// so that several goroutines may send at once.
func mllpSendACKs(mllpSend, dir, addr string, msgs []string) ([]*ackInfo, error) {
	var stream bytes.Buffer
	for _, m := range msgs {
		stream.Write(frame([]byte(m)))
	}
	f, err := os.CreateTemp(dir, "msgs-*.mllp")
	if err != nil {
		return nil, err
	}
	_, err = f.Write(stream.Bytes())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, mllpSend, "-f", f.Name(), "-p", port, host).Output()
	if err != nil {
		return nil, fmt.Errorf("mllp_send: %w", err)
	}
	var acks []*ackInfo
	for _, a := range splitACKs(out) {
		ack, err := parseACK(a)
		if err != nil {
			return nil, err
		}
		acks = append(acks, ack)
	}
	if len(acks) != len(msgs) {
		return nil, fmt.Errorf("mllp_send got %d ACKs for %d messages", len(acks), len(msgs))
	}
	return acks, nil
}

type fhirBundle struct {
	Total int `json:"total"`
	Entry []struct {
		Resource map[string]any `json:"resource"`
	} `json:"entry"`
}

func (p *ferryProcess) fhirSearch(t *testing.T, typ string, q url.Values) []map[string]any {
	t.Helper()
	var b fhirBundle
	if code := p.get(t, "/fhir/r4/"+typ+"?"+q.Encode(), &b); code != 200 {
		t.Fatalf("GET /fhir/r4/%s?%s: HTTP %d", typ, q.Encode(), code)
	}
	var out []map[string]any
	for _, e := range b.Entry {
		out = append(out, e.Resource)
	}
	return out
}

var accessionLine = regexp.MustCompile(`\(0008,0050\) SH \[([^\]]*)\]`)

// worklistAccessions queries the worklist with findscu -W and returns the accession numbers of
// the matches, sorted. keys are findscu -k overrides, e.g. "(0008,0050)=ACC1".
func worklistAccessions(t *testing.T, dicomAddr string, keys ...string) []string {
	t.Helper()
	findscu := requirePeer(t, "findscu", "dcmtk")
	host, port, _ := net.SplitHostPort(dicomAddr)
	args := []string{"-W", "-aec", "FERRY", "-aet", "MODALITY1",
		"-k", "(0008,0050)", "-k", "(0010,0010)", "-k", "(0010,0020)",
		"-k", "(0040,0100)[0].Modality", "-k", "(0040,0100)[0].ScheduledProcedureStepStartDate",
		"-k", "(0040,0100)[0].ScheduledStationAETitle"}
	for _, k := range keys {
		args = append(args, "-k", k)
	}
	args = append(args, host, port)
	out, err := exec.Command(findscu, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("findscu %v: %v\n%s", keys, err, out)
	}
	got := []string{}
	for _, m := range accessionLine.FindAllStringSubmatch(string(out), -1) {
		got = append(got, strings.TrimSpace(m[1]))
	}
	slices.Sort(got)
	return got
}

func TestOrdersEndToEnd(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, db, dir string) {
		p := startFerry(t, db, dir, serveOptions{})
		codes := mllpSendAll(t, p.MLLPAddr,
			ordersORM("M1", "NW", "PL1", "SC", "ACC1", "71260", "CT", "20261127", "000123"),
			ordersORM("M2", "NW", "PL2", "SC", "ACC2", "70551", "MR", "20261128", "000123"),
			ordersORM("M3", "NW", "PL3", "SC", "ACC3", "70450", "CT", "20261201", "000456"),
			// XO changes PL1's procedure; status kept.
			ordersORM("M4", "XO", "PL1", "SC", "ACC1", "71250", "CT", "20261127", "000123"),
			// A change to an order Ferry never got is refused.
			ordersORM("M5", "XO", "PL9", "SC", "ACC9", "71250", "CT", "20261127", "000123"),
		)
		if want := []string{"AA", "AA", "AA", "AA", "AE"}; !slices.Equal(codes, want) {
			t.Fatalf("ACKs %v, want %v", codes, want)
		}

		// Every processed message records the mapping that processed it; the refused one its
		// error.
		for ctrl, wantErr := range map[string]bool{"M1": false, "M5": true} {
			ms := p.byControlID(t, ctrl)
			if len(ms) != 1 || !strings.HasPrefix(ms[0].MappingVersion, "orm_o01@1+") || (ms[0].Error != "") != wantErr {
				t.Errorf("message %s in the log: %+v", ctrl, ms)
			}
		}

		// The worklist, as a modality sees it.
		for _, tc := range []struct {
			name string
			keys []string
			want []string
		}{
			{"universal", nil, []string{"ACC1", "ACC2", "ACC3"}},
			{"date range", []string{"(0040,0100)[0].ScheduledProcedureStepStartDate=20261127-20261128"}, []string{"ACC1", "ACC2"}},
			{"open date range", []string{"(0040,0100)[0].ScheduledProcedureStepStartDate=20261130-"}, []string{"ACC3"}},
			{"modality", []string{"(0040,0100)[0].Modality=CT"}, []string{"ACC1", "ACC3"}},
			{"accession", []string{"(0008,0050)=ACC2"}, []string{"ACC2"}},
			{"patient ID", []string{"(0010,0020)=000456"}, []string{"ACC3"}},
			{"wildcard name", []string{"(0010,0010)=DOE*"}, []string{"ACC1", "ACC2", "ACC3"}},
			{"no match", []string{"(0008,0050)=NOPE"}, []string{}},
		} {
			if got := worklistAccessions(t, p.DICOMAddr, tc.keys...); !slices.Equal(got, tc.want) {
				t.Errorf("worklist %s: %v, want %v", tc.name, got, tc.want)
			}
		}

		// FHIR: one patient per MRN, the order changed by XO.
		pts := p.fhirSearch(t, "Patient", url.Values{"identifier": {ordersMRN + "|000123"}})
		if len(pts) != 1 {
			t.Fatalf("Patient?identifier=…|000123: %d patients", len(pts))
		}
		pl1 := p.fhirSearch(t, "ServiceRequest", url.Values{"identifier": {"PL1"}})
		if len(pl1) != 1 || !strings.Contains(fmt.Sprint(pl1[0]["code"]), "71250") || pl1[0]["status"] != "active" {
			t.Fatalf("PL1 after XO: %v", pl1)
		}
		if srs := p.fhirSearch(t, "ServiceRequest", url.Values{"patient": {"Patient/" + pts[0]["id"].(string)}}); len(srs) != 2 {
			t.Errorf("ServiceRequest?patient=: %d orders, want 2", len(srs))
		}
		var v1 map[string]any
		if code := p.get(t, "/fhir/r4/ServiceRequest/"+pl1[0]["id"].(string)+"/_history/1", &v1); code != 200 || strings.Contains(fmt.Sprint(v1["code"]), "71250") {
			t.Errorf("vread of version 1: HTTP %d, code %v", code, v1["code"])
		}

		// Cancel PL1; complete PL2 through SC IP → SC CM. Both leave the worklist.
		codes = mllpSendAll(t, p.MLLPAddr,
			ordersORM("M6", "CA", "PL1", "CA", "ACC1", "71250", "CT", "20261127", "000123"),
			ordersORM("M7", "SC", "PL2", "IP", "ACC2", "70551", "MR", "20261128", "000123"),
			ordersORM("M8", "SC", "PL2", "CM", "ACC2", "70551", "MR", "20261128", "000123"),
		)
		if want := []string{"AA", "AA", "AA"}; !slices.Equal(codes, want) {
			t.Fatalf("ACKs %v, want %v", codes, want)
		}
		if got := worklistAccessions(t, p.DICOMAddr); !slices.Equal(got, []string{"ACC3"}) {
			t.Errorf("worklist after CA and SC(CM): %v, want [ACC3]", got)
		}
		for placer, want := range map[string]string{"PL1": "revoked", "PL2": "completed", "PL3": "active"} {
			if srs := p.fhirSearch(t, "ServiceRequest", url.Values{"identifier": {placer}}); len(srs) != 1 || srs[0]["status"] != want {
				t.Errorf("%s: %v, want status %s", placer, srs, want)
			}
		}

		// A40: 000456 is merged into 000123; an order for the old MRN then lands on the survivor.
		codes = mllpSendAll(t, p.MLLPAddr,
			ordersA40("M9", "000123", "000456"),
			ordersORM("M10", "NW", "PL4", "SC", "ACC4", "71260", "CT", "20261202", "000456"),
			ordersA40("M11", "000123", "000456"), // repeated: refused
		)
		if want := []string{"AA", "AA", "AE"}; !slices.Equal(codes, want) {
			t.Fatalf("merge ACKs %v, want %v", codes, want)
		}
		survivor := pts[0]["id"].(string)
		srs := p.fhirSearch(t, "ServiceRequest", url.Values{"patient": {"Patient/" + survivor}, "status": {"active"}})
		var placers []string
		for _, sr := range srs {
			for _, id := range sr["identifier"].([]any) {
				if v := id.(map[string]any)["value"].(string); strings.HasPrefix(v, "PL") {
					placers = append(placers, v)
				}
			}
		}
		slices.Sort(placers)
		if !slices.Equal(placers, []string{"PL3", "PL4"}) {
			t.Errorf("survivor's active orders after the merge: %v, want [PL3 PL4]", placers)
		}
		if got := worklistAccessions(t, p.DICOMAddr, "(0010,0020)=000123"); !slices.Equal(got, []string{"ACC3", "ACC4"}) {
			t.Errorf("worklist for the survivor's MRN: %v, want [ACC3 ACC4]", got)
		}
	})
}

// TestMappingsHotReload: an analyst's edit of a code table in mappings.dir takes effect while
// Ferry serves, and a broken edit is refused (logged) with the working mappings kept.
func TestMappingsHotReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tables := filepath.Join(dir, "maps", "tables")
	if err := os.MkdirAll(tables, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(body string) {
		t.Helper()
		path := filepath.Join(tables, "procedures.yaml")
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		// Coarse file-system clocks: make each edit's time differ.
		later := time.Now().Add(time.Duration(len(body)) * time.Second)
		_ = os.Chtimes(path, later, later)
	}
	write("table: procedures\nmissing: empty\nrows:\n  \"71260\": {system: \"http://loinc.org\", code: \"24627-2\", display: CT Chest, modality: CT}\n")
	p := startFerry(t, "sqlite:"+filepath.Join(dir, "ferry.db"), dir, serveOptions{Config: "mappings:\n  dir: maps\n  reload_interval: 50ms\n"})
	order := func(ctrl string) string {
		return ordersORM(ctrl, "NW", "PL"+ctrl, "SC", "ACC"+ctrl, "99999", "CT", "20261127", "000123")
	}
	if codes := mllpSendAll(t, p.MLLPAddr, order("H1")); codes[0] != "AA" {
		t.Fatalf("unknown code with missing: empty: %v", codes)
	}
	// The analyst makes unknown procedure codes an error.
	write("table: procedures\nmissing: error\nrows:\n  \"71260\": {system: \"http://loinc.org\", code: \"24627-2\", display: CT Chest, modality: CT}\n")
	waitFor(t, "the stricter table to be loaded", func() bool { return mllpSendAll(t, p.MLLPAddr, order(randomHex(4)))[0] == "AE" })
	// A broken edit: refused, logged, the strict table stays in force.
	write("table: procedures\nrows: [not, a, map]\n")
	awaitOutput(t, p.stderr, p.exited, "the broken edit to be reported", func(log string) bool {
		return strings.Contains(log, "mappings changed but have problems")
	})
	if codes := mllpSendAll(t, p.MLLPAddr, order("H3")); codes[0] != "AE" {
		t.Errorf("after a broken edit: %v, want the strict table still in force (AE)", codes)
	}
}

// waitFor is this package's one poll: it checks ok every 50 ms until it holds. It is for
// conditions only another process can tell (ferry serve's API or metrics, a peer's log file),
// which announce no event the test could wait on; what Ferry writes to its own output is
// awaited with awaitOutput instead. The deadline, hangGuard, only guards against hanging.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	hang := time.After(hangGuard)
	for !ok() {
		select {
		case <-tick.C:
		case <-hang:
			t.Fatalf("still waiting for %s after %v (a hang guard, not a speed limit)", what, hangGuard)
		}
	}
}
