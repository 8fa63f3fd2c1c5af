package storetest

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"testing"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/hl7"
)

// searchMessage is an accepted order of patient mrn with the given name, order numbers and Study
// UID, its search keys read from its parse as the intake reads them.
func searchMessage(t *testing.T, controlID, mrn, name, placer, accession, studyUID string, marker int) *engine.InboundMessage {
	t.Helper()
	m := newMessage("RIS", "STMARYS", controlID, marker)
	m.Raw = fmt.Appendf(nil, "MSH|^~\\&|RIS|STMARYS|FERRY|FERRY|20260301100000||OMI^O23^OMI_O23|%s|P|2.5.1\r"+
		"PID|1||%s^^^HOSP^MR~NHS%d^^^NHS^NH||%s||19700101|F\r"+
		"ORC|NW|%s\rOBR|1|%s||CTCHEST^CT chest^L||||||||||||||%s\rZDS|%s^^Application^DICOM\r",
		controlID, mrn, marker, name, placer, placer, accession, studyUID)
	parsed, err := hl7.Parse(m.Raw)
	if err != nil {
		t.Fatalf("fixture %s does not parse: %v", controlID, err)
	}
	m.SearchKeys = engine.SearchKeysOf(parsed)
	return m
}

// testSearchKeys: the patient and order keys a message was stored with find it, alone or with
// the other filters, in both stores alike; duplicates and messages stored in a transaction are
// found too; free text reads raw bytes exactly.
func testSearchKeys(t *testing.T, st engine.MessageStore) {
	ctx := context.Background()
	a := searchMessage(t, "S1", "mrn-001", "Müller^José^Maria", "PL1", "ACC1", "1.2.840.1", 1)
	b := searchMessage(t, "S2", "MRN-002", "Smith^John", "PL2", "ACC2", "1.2.840.2", 2)
	c := searchMessage(t, "S3", "MRN-001", "MULLER^JOSE", "PL3", "ACC3", "", 3)
	dup := searchMessage(t, "S2", "MRN-002", "Smith^John", "PL2", "ACC2", "1.2.840.2", 4) // S2 again
	rej := rejected(searchMessage(t, "S5", "MRN-005", "Doe^Jane", "PL5", "ACC5", "", 5))
	bare := newMessage("RIS", "GENERAL", "S6", 6) // stored without keys (as before the index)
	commit(t, st, a, b)
	commit(t, st, c, dup, rej, bare)
	if dup.Status != engine.StatusDuplicate {
		t.Fatalf("fixture: the resent S2 is %s, want duplicate", dup.Status)
	}
	msgs := []*engine.InboundMessage{a, b, c, dup, rej, bare}
	var tx *engine.InboundMessage
	if s, ok := st.(interface {
		Begin(context.Context) (engine.Tx, error)
	}); ok {
		// The keys of a message stored in a transaction (a report kept for an analyst, a test
		// order) go in with it.
		tx = searchMessage(t, "S7", "MRN-007", "Tx^Stored", "PL7", "ACC7", "1.2.840.7", 7)
		txn, err := s.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := txn.InsertInbound(ctx, tx); err != nil {
			t.Fatalf("InsertInbound: %v", err)
		}
		if err := txn.Commit(); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, tx)
	}
	tests := []struct {
		name   string
		filter engine.MessageFilter
		want   []int64
	}{
		{"MRN, any repetition of PID-3, case aside", engine.MessageFilter{PatientID: "mrn-001"}, ids(c, a)},
		{"MRN of a second repetition", engine.MessageFilter{PatientID: "NHS2"}, ids(b)},
		{"MRN is exact", engine.MessageFilter{PatientID: "MRN-00"}, nil},
		{"accession from OBR-18", engine.MessageFilter{Accession: "acc3"}, ids(c)},
		{"accession from ORC-2 (placer number)", engine.MessageFilter{Accession: "PL1"}, ids(a)},
		{"Study UID from ZDS-1", engine.MessageFilter{StudyUID: "1.2.840.1"}, ids(a)},
		{"Study UID is exact", engine.MessageFilter{StudyUID: "1.2.840"}, nil},
		{"name, family then given", engine.MessageFilter{PatientName: "Muller Jose"}, ids(c, a)},
		{"name, given then family, accents and case aside", engine.MessageFilter{PatientName: "josé MÜLLER"}, ids(c, a)},
		{"name, every word must match", engine.MessageFilter{PatientName: "Jose Maria Muller"}, ids(a)},
		{"name of punctuation only matches nothing", engine.MessageFilter{PatientName: "^^"}, nil},
		{"a rejected message is found", engine.MessageFilter{Accession: "ACC5"}, ids(rej)},
		{"with another filter", engine.MessageFilter{PatientID: "MRN-001", ControlID: "S1"}, ids(a)},
		{"with the status", engine.MessageFilter{PatientID: "MRN-002", Status: engine.StatusAccepted}, ids(b)},
		{"key and page", engine.MessageFilter{PatientID: "MRN-001", BeforeID: c.ID}, ids(a)},
		{"two keys", engine.MessageFilter{PatientID: "MRN-001", Accession: "ACC1"}, ids(a)},
		{"free text, exact bytes", engine.MessageFilter{Text: "Müller^José"}, ids(a)},
		{"free text in the bare message", engine.MessageFilter{Text: "PL6|FL6"}, ids(bare)},
		{"free text is case sensitive", engine.MessageFilter{Text: "pl6|fl6"}, nil},
		{"free text with a key", engine.MessageFilter{Text: "Smith", PatientID: "MRN-002"}, ids(dup, b)},
		{"free text with a percent sign is literal", engine.MessageFilter{Text: "%"}, nil},
	}
	if tx != nil {
		tests = append(tests, struct {
			name   string
			filter engine.MessageFilter
			want   []int64
		}{"stored in a transaction", engine.MessageFilter{Accession: "ACC7"}, ids(tx)})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ids(list(t, st, tt.filter)...)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Messages(%+v) = %v, want %v", tt.filter, got, tt.want)
			}
		})
	}
	counter, ok := st.(interface {
		CountMessages(context.Context, engine.MessageFilter) (int, error)
		TextWindowEnd(context.Context, engine.MessageFilter) (int64, error)
	})
	if !ok {
		t.Fatalf("%T has no CountMessages and TextWindowEnd", st)
	}
	if n, err := counter.CountMessages(ctx, engine.MessageFilter{PatientName: "jose muller"}); err != nil || n != 2 {
		t.Errorf("CountMessages(name) = %d, %v; want 2", n, err)
	}
	if end, err := counter.TextWindowEnd(ctx, engine.MessageFilter{Text: "x"}); err != nil || end != 0 {
		t.Errorf("TextWindowEnd with %d messages = %d, %v; want 0 (the scan reached the oldest)", len(msgs), end, err)
	}
	if _, err := st.Messages(ctx, engine.MessageFilter{Text: string(make([]byte, engine.MaxSearchText+1))}); err == nil {
		t.Errorf("a free text over %d bytes was searched, want an error", engine.MaxSearchText)
	}
}

// testTextWindow: free text reads the newest engine.TextScanWindow messages the other filters
// select, and TextWindowEnd says where the next window starts.
func testTextWindow(t *testing.T, st engine.MessageStore) {
	if testing.Short() {
		t.Skip("commits engine.TextScanWindow messages")
	}
	ctx := context.Background()
	const batch = 1000
	var first, oldestInWindow *engine.InboundMessage
	total := engine.TextScanWindow + 2
	for i := 0; i < total; i += batch {
		var msgs []*engine.InboundMessage
		for j := i; j < min(i+batch, total); j++ {
			m := &engine.InboundMessage{Channel: "mllp", ReceivedAt: baseTime, Raw: fmt.Appendf(nil, "MSH|^~\\&|N%d|", j),
				SendingFacility: "WINDOW", Status: engine.StatusRejected, ACKCode: "AR", Error: "test"}
			msgs = append(msgs, m)
		}
		commit(t, st, msgs...)
		if i == 0 {
			first = msgs[0]
			oldestInWindow = msgs[2] // the newest TextScanWindow are all but the first two
		}
	}
	f := engine.MessageFilter{Text: "|N0|", SendingFacility: "WINDOW"}
	if got := list(t, st, f); len(got) != 0 {
		t.Errorf("free text found message %d beyond the newest %d", got[0].ID, engine.TextScanWindow)
	}
	counter := st.(interface {
		TextWindowEnd(context.Context, engine.MessageFilter) (int64, error)
	})
	end, err := counter.TextWindowEnd(ctx, f)
	if err != nil || end != oldestInWindow.ID {
		t.Fatalf("TextWindowEnd = %d, %v; want %d (the oldest message read)", end, err, oldestInWindow.ID)
	}
	f.BeforeID = end
	if got := list(t, st, f); len(got) != 1 || got[0].ID != first.ID {
		t.Errorf("the next window found %v, want message %d", ids(got...), first.ID)
	}
	if end, err := counter.TextWindowEnd(ctx, f); err != nil || end != 0 {
		t.Errorf("TextWindowEnd of the last window = %d, %v; want 0", end, err)
	}
}

func ids(ms ...*engine.InboundMessage) []int64 {
	var out []int64
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

// testSearchBackfill: messages stored before the search keys were kept (the mark
// message_search_backfill.below set above them, as migration 00120 sets it) get their keys from
// engine.BackfillSearchKeys, newest first, a batch at a time, and a second run does nothing.
func testSearchBackfill(t *testing.T, st engine.MessageStore) {
	ctx := context.Background()
	s, ok := st.(interface {
		engine.SearchKeyBackfill
		DB() *sql.DB
	})
	if !ok {
		t.Fatalf("%T has no BackfillSearchKeys", st)
	}
	var old []*engine.InboundMessage
	for i := range 3 {
		m := searchMessage(t, "B"+strconv.Itoa(i), "MRN-B", "Old^Message", "PLB"+strconv.Itoa(i), "ACCB", "", 10+i)
		m.SearchKeys = nil // stored before the keys were kept
		old = append(old, m)
	}
	commit(t, st, old...)
	if _, err := s.DB().ExecContext(ctx, `UPDATE message_search_backfill SET below = `+strconv.FormatInt(old[2].ID+1, 10)); err != nil {
		t.Fatal(err)
	}
	if got := list(t, st, engine.MessageFilter{PatientID: "MRN-B"}); len(got) != 0 {
		t.Fatalf("before the backfill, %d messages found by a key they were not given", len(got))
	}
	if n := engine.BackfillSearchKeys(ctx, s, slog.New(slog.DiscardHandler)); n != 3 {
		t.Errorf("the backfill read %d messages, want 3", n)
	}
	if got := ids(list(t, st, engine.MessageFilter{PatientID: "MRN-B", PatientName: "old message"})...); !reflect.DeepEqual(got, ids(old[2], old[1], old[0])) {
		t.Errorf("after the backfill: %v, want %v", got, ids(old[2], old[1], old[0]))
	}
	if n := engine.BackfillSearchKeys(ctx, s, slog.New(slog.DiscardHandler)); n != 0 {
		t.Errorf("a second backfill read %d messages, want 0", n)
	}
}
