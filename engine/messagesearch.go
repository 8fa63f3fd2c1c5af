package engine

import (
	"context"
	"log/slog"
	"slices"
	"strings"

	"github.com/ferryhealth/ferry/hl7"
)

// SearchKeyKind is what a message's search key identifies (docs/console.md, "Finding a message").
type SearchKeyKind string

const (
	// KeyPatientID is a patient identifier: PID-3.1 of each repetition, and PID-2.1 (the
	// external ID of v2.3 feeds). Upper case.
	KeyPatientID SearchKeyKind = "mrn"
	// KeyAccession is an order's or study's number: ORC-2.1, ORC-3.1, OBR-2.1, OBR-3.1, OBR-18.1,
	// OBR-19.1, IPC-1.1 (the accession identifier of OMI). Upper case.
	KeyAccession SearchKeyKind = "accession"
	// KeyStudyUID is a Study Instance UID: IPC-3.1, ZDS-1.1. As written.
	KeyStudyUID SearchKeyKind = "study_uid"
	// KeyName is one word of the patient's name (PID-5: family, given, middle), without case
	// or accents (nameTokens): a name is found by its words in any order.
	KeyName SearchKeyKind = "name"
)

// SearchKey is one indexed value of a message, extracted once at intake from the parsed message
// and stored beside it (message_search_keys), so that the message log finds a message by patient
// or order without reading raw messages.
type SearchKey struct {
	Kind  SearchKeyKind
	Value string
}

// Bounds of what one message may add to the index: a value longer than any real identifier
// (a UID is at most 64 characters) is not indexed, and a message adds at most maxSearchKeys
// keys, so that a message built to bloat the index costs no more than a normal one.
const (
	maxSearchKeyLen = 64
	maxSearchKeys   = 64
)

// SearchKeysOf returns m's search keys, each once, in the order found. It reads each segment
// once; the work is linear in the message's size.
func SearchKeysOf(m *hl7.Message) []SearchKey {
	if m == nil {
		return nil
	}
	keys := make([]SearchKey, 0, 12) // an order's usual count: one allocation
	add := func(kind SearchKeyKind, v string) {
		if len(keys) >= maxSearchKeys {
			return
		}
		if kind != KeyName {
			v = normalizedKey(kind, v)
		}
		if v == "" || len(v) > maxSearchKeyLen {
			return
		}
		k := SearchKey{Kind: kind, Value: v}
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	first := func(s hl7.Segment, field int) string {
		return s.Field(field).Repetition(1).Component(1).Value()
	}
	for _, s := range m.Segments() {
		switch s.Name() {
		case "PID":
			add(KeyPatientID, first(s, 2))
			for _, rep := range s.Field(3).Repetitions() {
				add(KeyPatientID, rep.Component(1).Value())
			}
			for _, rep := range s.Field(5).Repetitions() {
				for _, c := range []int{1, 2, 3} { // family, given, further given names
					for _, t := range nameTokens(rep.Component(c).Value()) {
						add(KeyName, t)
					}
				}
			}
		case "ORC":
			add(KeyAccession, first(s, 2))
			add(KeyAccession, first(s, 3))
		case "OBR":
			for _, f := range []int{2, 3, 18, 19} {
				add(KeyAccession, first(s, f))
			}
		case "IPC":
			add(KeyAccession, first(s, 1))
			add(KeyStudyUID, first(s, 3))
		case "ZDS":
			add(KeyStudyUID, first(s, 1))
		}
	}
	if len(keys) == 0 {
		return nil
	}
	return keys
}

// normalizedKey is an identifier as the index keeps it and a search compares it: without
// surrounding spaces, identifiers in upper case (MRN "ab123" and "AB123" are one patient's),
// UIDs as written, as text a column holds.
func normalizedKey(kind SearchKeyKind, v string) string {
	v = strings.TrimSpace(v)
	if kind != KeyStudyUID {
		v = strings.ToUpper(v)
	}
	return StorableText(v)
}

// SearchKeys returns the keys a message must all have to match f's patient and order filters
// (PatientID, Accession, StudyUID, PatientName), normalised as SearchKeysOf stores them; none
// when f has none. A name gives one key per word; a filter that normalises to nothing (a name
// of punctuation only) gives a key no message has, so that it matches nothing rather than all.
func (f MessageFilter) SearchKeys() []SearchKey {
	var keys []SearchKey
	for _, k := range []struct {
		kind SearchKeyKind
		v    string
	}{{KeyPatientID, f.PatientID}, {KeyAccession, f.Accession}, {KeyStudyUID, f.StudyUID}} {
		if strings.TrimSpace(k.v) != "" {
			keys = append(keys, SearchKey{Kind: k.kind, Value: normalizedKey(k.kind, k.v)})
		}
	}
	if strings.TrimSpace(f.PatientName) != "" {
		tokens := nameTokens(f.PatientName)
		if len(tokens) == 0 {
			tokens = []string{""}
		}
		for _, t := range tokens {
			keys = append(keys, SearchKey{Kind: KeyName, Value: t})
		}
	}
	return keys
}

// TextScanWindow bounds a free-text search (MessageFilter.Text): it reads the raw bytes of at
// most this many messages — the newest the other filters select, below BeforeID — and the
// console says so and offers to look further back. At about 1 KB a message that is 10 MB read,
// tens of milliseconds on PostgreSQL; the keys above cost an index probe whatever the log's size.
const TextScanWindow = 10_000

// MaxSearchText bounds a free-text search term, in bytes.
const MaxSearchText = 200

// SearchKeyBackfill is the store's side of giving search keys to the messages stored before they
// were kept (adapters/sqlstore BackfillSearchKeys).
type SearchKeyBackfill interface {
	// BackfillSearchKeys indexes up to limit of those messages, newest first, with keysOf, and
	// returns how many it read: 0 once none is left. Idempotent.
	BackfillSearchKeys(ctx context.Context, limit int, keysOf func(raw []byte) []SearchKey) (int, error)
}

// searchBackfillBatch is the messages the backfill reads at a time: a few hundred kilobytes.
const searchBackfillBatch = 500

// BackfillSearchKeys runs in the background of `ferry serve` until every message stored before
// the search keys were kept has them, or ctx ends; it returns how many messages it read. Messages
// that do not parse get no keys (as at intake). A store error ends it (logged; the next start
// goes on where it stopped). The messages go newest first, so recent ones are found first.
func BackfillSearchKeys(ctx context.Context, st SearchKeyBackfill, logger *slog.Logger) int {
	total := 0
	for ctx.Err() == nil {
		n, err := st.BackfillSearchKeys(ctx, searchBackfillBatch, SearchKeysOfRaw)
		if err != nil {
			if ctx.Err() == nil {
				logger.Error("indexing older messages for search stopped; it resumes at the next start", "indexed", total, "err", err)
			}
			return total
		}
		if n == 0 {
			break
		}
		total += n
	}
	if total > 0 {
		logger.Info("older messages indexed for search", "messages", total)
	}
	return total
}

// SearchKeysOfRaw is SearchKeysOf for a stored raw message; nil when it does not parse.
func SearchKeysOfRaw(raw []byte) []SearchKey {
	m, err := hl7.Parse(raw)
	if err != nil {
		return nil
	}
	return SearchKeysOf(m)
}
