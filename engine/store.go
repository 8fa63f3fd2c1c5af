package engine

import (
	"context"
	"errors"
	"strings"
	"time"
	"unicode/utf8"
)

// Status is what became of an inbound message.
type Status string

const (
	// StatusAccepted: parsed, validated and committed; answered AA/CA.
	StatusAccepted Status = "accepted"
	// StatusDuplicate: same sending application, sending facility and MSH-10 as an accepted
	// message; answered with the original's ACK and not processed again.
	StatusDuplicate Status = "duplicate"
	// StatusRejected: failed to parse or validate; answered AR/AE (CR/CE) with an ERR segment.
	StatusRejected Status = "rejected"
	// StatusError: valid, but Ferry could not process it; answered AE (CE).
	StatusError Status = "error"
)

// Valid reports whether s is one of the defined statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusAccepted, StatusDuplicate, StatusRejected, StatusError:
		return true
	}
	return false
}

// InboundMessage is one message as received, with what Ferry answered. Raw is kept byte for byte:
// real feeds carry NULs and invalid UTF-8.
type InboundMessage struct {
	ID         int64     // assigned by the store on commit
	Channel    string    // the listener's channel name, e.g. "mllp"
	ReceivedAt time.Time // when the last byte of the frame arrived
	PeerAddr   string    // remote address, host:port
	Raw        []byte

	// Header fields, as far as they could be read (empty when the message did not parse).
	SendingApplication string // MSH-3 (first component)
	SendingFacility    string // MSH-4 (first component)
	MessageType        string // MSH-9 as code^trigger[^structure], e.g. "ORM^O01"
	ControlID          string // MSH-10
	Version            string // MSH-12 (first component)

	Status  Status
	ACK     []byte // the ACK sent, bytes as written inside the MLLP frame
	ACKCode string // MSA-1 of ACK: AA, AE, AR, CA, CE, CR
	// Error is a short reason safe to log and show (no message content), empty when accepted.
	Error string
	// DuplicateOf is the ID of the accepted original when Status is StatusDuplicate.
	DuplicateOf int64
	// MappingVersion is the mapping that processed the message (mappings.Mapping.Version), ""
	// when none did.
	MappingVersion string
	// Pending marks an accepted message acknowledged on receipt (channel option ack:
	// on_receipt) whose processing has not run yet; a processing worker claims it later.
	Pending bool
	// ProcessingError says why processing an accepted message failed after it was acknowledged
	// on receipt ("" when it did not fail or was not processed that way). Safe to show: no PHI.
	ProcessingError string
	// SearchKeys are the patient and order keys the message log finds it by (SearchKeysOf),
	// extracted at intake from the parsed message and stored with it; none when it did not parse.
	SearchKeys []SearchKey

	// effects are what the message changes besides the log, applied in the transaction that
	// stores it (see GroupCommitter); fail turns the message into an error answered AE when
	// they cannot be applied.
	effects *plan
	onFail  func(error)
}

func (m *InboundMessage) fail(err error) {
	m.effects = nil
	if m.onFail != nil {
		m.onFail(err)
	}
}

// DuplicateKey reports whether m takes part in duplicate detection: only messages with a control
// ID do. Duplicate = same MSH-3, MSH-4 and MSH-10 as an accepted message.
func (m *InboundMessage) DuplicateKey() bool { return m.ControlID != "" }

// MessageFilter selects messages for the message log. Zero values do not filter.
type MessageFilter struct {
	ID              int64 // this message only
	ControlID       string
	MessageType     string // prefix match on MSH-9 as stored, e.g. "ORM" or "ORM^O01"
	Status          Status
	SendingFacility string
	Since, Until    time.Time // ReceivedAt >= Since, ReceivedAt < Until
	// PatientID, Accession, StudyUID and PatientName select by the message's search keys
	// (SearchKeysOf, messagesearch.go): an exact identifier (case aside), or every word of a name
	// in any order (case and accents aside). Index probes at any size of the log.
	PatientID, Accession, StudyUID, PatientName string
	// Text selects messages whose raw bytes contain it, exactly (case matters), among the newest
	// TextScanWindow messages the other filters select below BeforeID: a bounded scan
	// (TextWindowEnd says where it stopped). At most MaxSearchText bytes.
	Text string
	// InErrorQueue selects the messages of the error queue (errorqueue.go): processing failed
	// (answered AE, or failed after an AA on receipt) and neither reprocessed successfully nor
	// dismissed.
	InErrorQueue bool
	// BeforeID pages backwards: only messages with ID < BeforeID (newest first). 0: from the newest.
	BeforeID int64
	Limit    int // at most this many; the store caps it at 1000 and defaults 0 to 100
}

// ErrNotFound is returned when a message, or another record asked for by ID, does not exist.
var ErrNotFound = errors.New("not found")

// MessageStore keeps inbound messages. Implementations: adapters/postgres, adapters/sqlite.
type MessageStore interface {
	// CommitInbound stores msgs in one transaction and returns only after it is durably committed
	// (fsynced); the caller sends AA/CA only after it returns nil. Before inserting, for each
	// message with Status accepted and a control ID, the store checks for an accepted message with
	// the same SendingApplication, SendingFacility and ControlID (committed earlier, by any node,
	// or earlier in msgs): if there is one, it stores the message instead with Status duplicate,
	// DuplicateOf set to the original's ID and ACK/ACKCode copied from the original, and updates
	// msgs[i] to match. Uniqueness is a database constraint, so two nodes racing on one key yield
	// one accepted row and one duplicate. It sets each ID. On error nothing is committed.
	CommitInbound(ctx context.Context, msgs []*InboundMessage) error
	// Message returns one message by ID, or ErrNotFound.
	Message(ctx context.Context, id int64) (*InboundMessage, error)
	// Messages returns messages matching f, newest first (by ID, descending).
	Messages(ctx context.Context, f MessageFilter) ([]*InboundMessage, error)
	// Ping reports whether the store is reachable (for /readyz).
	Ping(ctx context.Context) error
	Close() error
}

// StorableText is s as the stores keep text columns: invalid UTF-8 and NUL bytes become U+FFFD
// (PostgreSQL text refuses both; raw messages keep their exact bytes in bytea/blob columns).
func StorableText(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
