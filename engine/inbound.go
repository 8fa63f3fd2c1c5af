package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ferryhealth/ferry/hl7"
	"github.com/ferryhealth/ferry/mappings"
)

// Received is one message as it came off the wire, handed to Inbound.Receive.
type Received struct {
	// Data is the message bytes inside the frame (for TooLarge, only the head). Receive keeps it
	// as the stored raw message and parses it in place (hl7.ParseShared), so a large message is
	// not copied: the caller hands it over and must not change it afterwards.
	Data       []byte
	TooLarge   bool      // the message exceeded the listener's size cap and was not read whole
	Size       int64     // full size in bytes as sent
	ReceivedAt time.Time // when the frame was complete
	PeerAddr   string
	// PeerCertificate is the client certificate verified under mutual TLS, nil without one.
	PeerCertificate *x509.Certificate
}

// Committer makes an inbound message durable. GroupCommitter implements it. Commit returns nil
// only once msg is committed; it may change msg (ID; Status and ACK when it is a duplicate). Any
// error means nothing was stored and the sender must be told to resend.
type Committer interface {
	Commit(ctx context.Context, msg *InboundMessage) error
}

// DefaultAcceptTypes are the message codes (MSH-9.1) a channel accepts unless configured
// otherwise: orders, patient administration and results — what a teleradiology feed carries.
var DefaultAcceptTypes = []string{"ADT", "ORM", "OMI", "OMG", "ORU"}

// Inbound is the inbound flow of one channel: parse → check MSH → commit → ACK. It never answers
// AA/CA before the message is committed; a message it cannot accept is still stored (status
// rejected) and answered AR/AE (CR/CE) with an ERR segment saying what and where; a store failure
// is answered AE/CE with ERR 207 so the sender resends. Safe for concurrent use.
type Inbound struct {
	Channel   string
	Committer Committer
	// AcceptTypes lists accepted MSH-9.1 codes; others are rejected with ERR 200. Empty: all.
	AcceptTypes []string
	// Trust says which senders may send which messages from where; a message it refuses is
	// stored as rejected and answered AR with ERR 207. nil: every sender (demo mode).
	Trust *SenderTrust
	// Application and Facility are Ferry's MSH-3/MSH-4 in the ACKs it sends (default "FERRY").
	Application, Facility string
	Logger                *slog.Logger
	Metrics               *Metrics
	// Processor, if set, maps accepted messages to resources in the transaction that stores
	// them, so AA means the resources are committed (docs/orders.md).
	Processor *Processor
	// AckOnReceipt (channel option ack: on_receipt) acknowledges a message once it is stored
	// and leaves the processing to a PendingWorker; Pending, if set, is nudged after each such
	// message.
	AckOnReceipt bool
	Pending      *PendingWorker
	// Rejected, if set, caps the bytes of rejected messages stored (mllp.max_rejected_bytes_per_hour).
	Rejected *RejectedBudget
	// Processing, if set, bounds the bytes of large messages processed at once
	// (mllp.max_processing_bytes): one waits for its share before it is mapped, and gives it
	// back once committed.
	Processing *ProcessingBudget
	// Limits bounds the segments of a message and the repetitions of a field (config
	// mllp.max_segments, mllp.max_repetitions); a message beyond is answered AR with ERR 207
	// naming the segment and field, and stored as rejected. Zero: no limit.
	Limits hl7.Limits

	ackPrefix string
	ackSeq    atomic.Uint64
}

// NewInbound returns an Inbound for channel committing through c.
func NewInbound(channel string, c Committer, logger *slog.Logger, m *Metrics) *Inbound {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &Inbound{
		Channel:     channel,
		Committer:   c,
		AcceptTypes: DefaultAcceptTypes,
		Application: "FERRY",
		Facility:    "FERRY",
		Logger:      logger,
		Metrics:     m,
		// ACK control IDs must be unique across nodes and restarts: a random prefix per process.
		ackPrefix: "F" + strings.ToUpper(hex.EncodeToString(b[:])),
	}
}

// verdict is what Inbound decided before committing.
type verdict struct {
	msg     *hl7.Message // the parsed message, when it parsed (accepted or not)
	header  hl7.Header
	outcome hl7.Outcome
	errs    []hl7.ErrorDetail
	reason  string // metric label for a rejection: empty, too_large, parse, header, type, version
}

// Receive handles one received message and returns the ACK to send back.
func (in *Inbound) Receive(ctx context.Context, r Received) []byte {
	v := in.judge(r)
	h := v.header
	rec := &InboundMessage{
		Channel:            in.Channel,
		ReceivedAt:         r.ReceivedAt,
		PeerAddr:           r.PeerAddr,
		Raw:                r.Data,
		SendingApplication: h.SendingApplication,
		SendingFacility:    h.SendingFacility,
		MessageType:        h.MessageType,
		ControlID:          h.ControlID,
		Version:            h.Version,
		Status:             StatusAccepted,
		ACKCode:            hl7.AckCode(h, v.outcome),
	}
	if rec.ReceivedAt.IsZero() {
		rec.ReceivedAt = time.Now()
	}
	if v.msg != nil {
		// Once, from the parse already made: the message log finds the message by them.
		rec.SearchKeys = SearchKeysOf(v.msg)
	}
	rawKept := true
	if v.outcome != hl7.Accept {
		rec.Status = StatusRejected
		rec.Error = v.errs[0].Text
		rawKept = in.Rejected.keepRejected(rec)
		if !rawKept {
			rec.SearchKeys = nil // nothing of its content is kept
		}
	}
	rec.ACK = in.buildACK(h, v.outcome, v.errs)
	if v.outcome == hl7.Accept && in.Processor != nil {
		if in.AckOnReceipt {
			rec.Pending = true
		} else {
			release, err := in.Processing.acquire(ctx, len(r.Data))
			if err != nil {
				// Shutting down while it waited: not stored, so the sender resends.
				return in.buildACK(h, hl7.Error, []hl7.ErrorDetail{{
					Code: hl7.CodeApplicationInternalError, Severity: "E",
					Text: "message could not be processed now; please resend",
				}})
			}
			defer release()
			in.process(v, rec)
		}
	}

	if err := in.Committer.Commit(ctx, rec); err != nil {
		// Not known to be stored: AE/CE with ERR 207 tells the sender to resend (HL7 v2.5.1
		// §2.9.2). A commit in doubt may have stored it after all: the resend is then its
		// duplicate, answered like it and not processed again.
		if errors.Is(err, ErrCommitInDoubt) {
			in.Logger.Error("inbound message's commit did not end in time; answering AE so the sender resends (a duplicate is recognised if it was stored)",
				"channel", in.Channel, "control_id", h.ControlID, "peer", r.PeerAddr, "err", err)
		} else {
			in.Logger.Error("inbound message not stored; answering AE so the sender resends",
				"channel", in.Channel, "control_id", h.ControlID, "peer", r.PeerAddr, "err", err)
		}
		in.Metrics.Messages.WithLabelValues(in.Channel, typeLabel(h.MessageCode, h.TriggerEvent), hl7.AckCode(h, hl7.Error)).Inc()
		return in.buildACK(h, hl7.Error, []hl7.ErrorDetail{{
			Code: hl7.CodeApplicationInternalError, Severity: "E",
			Text: "message could not be stored; please resend",
		}})
	}

	if rec.Pending && rec.Status == StatusAccepted && in.Pending != nil {
		in.Pending.Nudge()
	}
	in.Metrics.Messages.WithLabelValues(in.Channel, typeLabel(h.MessageCode, h.TriggerEvent), rec.ACKCode).Inc()
	switch rec.Status {
	case StatusDuplicate:
		in.Metrics.Duplicates.WithLabelValues(in.Channel).Inc()
		in.Logger.Info("duplicate message answered like its original", "channel", in.Channel,
			"id", rec.ID, "original", rec.DuplicateOf, "control_id", h.ControlID)
	case StatusRejected:
		in.Metrics.Rejects.WithLabelValues(in.Channel, v.reason).Inc()
		in.Logger.Warn("message rejected", "channel", in.Channel, "id", rec.ID,
			"control_id", h.ControlID, "ack", rec.ACKCode, "reason", rec.Error, "peer", r.PeerAddr,
			"size", r.Size, "raw_kept", rawKept)
	default:
		in.Logger.Debug("message accepted", "channel", in.Channel, "id", rec.ID,
			"control_id", h.ControlID, "type", h.MessageType)
	}
	return rec.ACK
}

// judge parses and checks a received message without side effects.
func (in *Inbound) judge(r Received) verdict {
	if r.TooLarge {
		h, _ := hl7.ReadHeader(r.Data)
		return reject(h, hl7.Reject, "too_large", hl7.ErrorDetail{
			Code: hl7.CodeApplicationInternalError,
			Text: fmt.Sprintf("message of %d bytes exceeds the size limit; only its first %d bytes were kept", r.Size, len(r.Data)),
		})
	}
	if len(bytes.TrimSpace(r.Data)) == 0 {
		return reject(hl7.Header{}, hl7.Reject, "empty", hl7.ErrorDetail{
			Segment: "MSH", Sequence: 1, Code: hl7.CodeSegmentSequence,
			Text: "empty message: no MSH segment",
		})
	}
	msg, err := hl7.ParseShared(r.Data)
	if err != nil {
		h, _ := hl7.ReadHeader(r.Data)
		d := hl7.ErrorDetail{Code: hl7.CodeSegmentSequence, Text: "message could not be parsed"}
		var pe *hl7.ParseError
		if errors.As(err, &pe) {
			d = pe.Detail()
		}
		// A broken header makes the whole message unacceptable (AR); a fault further in is an
		// error in content (AE) — HL7 v2.5.1 §2.9.2. A segment whose ID is unreadable has no
		// Segment: its position says whether it is the header.
		o := hl7.Error
		if pe == nil || d.Segment == "MSH" || (d.Segment == "" && pe.Position <= 1) {
			o = hl7.Reject
		}
		return reject(h, o, "parse", d)
	}
	// A message that parsed keeps its parse, accepted or not: its search keys are read from it.
	// One beyond the limits is not read further (its reading would cost more than it is worth).
	v := in.judgeParsed(msg, r)
	if v.reason != "limits" {
		v.msg = msg
	}
	return v
}

// judgeParsed checks a message that parsed: its shape, header, sender and type.
func (in *Inbound) judgeParsed(msg *hl7.Message, r Received) verdict {
	h := msg.Header()
	// Before anything reads the message by number: its shape is bounded (issue 17), so that the
	// work done on it stays proportional to its size. The check itself is linear.
	if err := msg.CheckLimits(in.Limits); err != nil {
		var pe *hl7.ParseError
		if errors.As(err, &pe) {
			return reject(h, hl7.Reject, "limits", pe.Detail())
		}
	}
	// MSH-9, MSH-10 and MSH-12 are required to route, deduplicate and answer a message.
	var missing []hl7.ErrorDetail
	if h.MessageCode == "" || (h.TriggerEvent == "" && h.MessageCode != "ACK") {
		missing = append(missing, required(9, "MSH-9 message type"))
	}
	if h.ControlID == "" {
		missing = append(missing, required(10, "MSH-10 message control ID"))
	}
	if h.Version == "" {
		missing = append(missing, required(12, "MSH-12 version ID"))
	}
	if len(missing) > 0 {
		return reject(h, hl7.Reject, "header", missing...)
	}
	if !supportedVersion(h.Version) {
		return reject(h, hl7.Reject, "version", hl7.ErrorDetail{
			Segment: "MSH", Sequence: 1, Field: 12, Code: hl7.CodeUnsupportedVersionID,
			Text: "unsupported version " + strconv.Quote(limit(h.Version, 20)) + ": HL7 v2.x expected",
		})
	}
	if r := in.Trust.Check(senderOf(h, r)); r != nil {
		return untrusted(h, r)
	}
	if len(in.AcceptTypes) > 0 && !slices.Contains(in.AcceptTypes, h.MessageCode) {
		return reject(h, hl7.Reject, "type", hl7.ErrorDetail{
			Segment: "MSH", Sequence: 1, Field: 9, Code: hl7.CodeUnsupportedMessageType,
			Text: "unsupported message type " + strconv.Quote(limit(h.MessageCode, 20)) + " on this channel",
		})
	}
	return verdict{msg: msg, header: h, outcome: hl7.Accept}
}

// senderOf is who sent a message: its header's claims and its connection.
func senderOf(h hl7.Header, r Received) Sender {
	s := Sender{Application: h.SendingApplication, Facility: h.SendingFacility, MessageCode: h.MessageCode,
		Trigger: h.TriggerEvent, Certificate: r.PeerCertificate}
	if ap, err := netip.ParseAddrPort(r.PeerAddr); err == nil {
		s.Addr = ap.Addr()
	} else if a, err := netip.ParseAddr(r.PeerAddr); err == nil {
		s.Addr = a
	}
	return s
}

func reject(h hl7.Header, o hl7.Outcome, reason string, errs ...hl7.ErrorDetail) verdict {
	for i := range errs {
		if errs[i].Severity == "" {
			errs[i].Severity = "E"
		}
	}
	return verdict{header: h, outcome: o, errs: errs, reason: reason}
}

func required(field int, what string) hl7.ErrorDetail {
	return hl7.ErrorDetail{Segment: "MSH", Sequence: 1, Field: field,
		Code: hl7.CodeRequiredFieldMissing, Text: what + " is required"}
}

// supportedVersion accepts any HL7 v2.x version ID (MSH-12.1), e.g. "2.3.1", "2.5.1", "2.8".
func supportedVersion(v string) bool {
	if !strings.HasPrefix(v, "2.") || len(v) < 3 {
		return false
	}
	for _, c := range v[2:] {
		if (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return true
}

// limit shortens s for an error text; header fields are not patient data, but keep them short.
func limit(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func (in *Inbound) buildACK(h hl7.Header, o hl7.Outcome, errs []hl7.ErrorDetail) []byte {
	return hl7.BuildACK(h, hl7.ACKOptions{
		Outcome:            o,
		Errors:             errs,
		ControlID:          in.ackPrefix + strconv.FormatUint(in.ackSeq.Add(1), 36),
		Time:               time.Now(),
		SendingApplication: in.Application,
		SendingFacility:    in.Facility,
	})
}

// process maps an accepted message before its commit: a message the mapping or validation
// rejects is stored as an error and answered AE with the ERR saying which field and why (HL7
// v2.5.1 §2.9.2: an error in content); one that maps carries its effects into the commit.
func (in *Inbound) process(v verdict, rec *InboundMessage) {
	h := v.header
	fail := func(err error) {
		d := errorDetail(err)
		rec.Status = StatusError
		rec.Error = d.Text
		rec.ACK = in.buildACK(h, hl7.Error, []hl7.ErrorDetail{d})
		rec.ACKCode = hl7.AckCode(h, hl7.Error)
		in.Metrics.Rejects.WithLabelValues(in.Channel, "processing").Inc()
		in.Logger.Warn("message not processed", "channel", in.Channel, "control_id", h.ControlID,
			"mapping", rec.MappingVersion, "err", d.Text, "location", d.Segment, "field", d.Field, "code", int(d.Code))
	}
	pl, _ := in.Processor.Plan(v.msg)
	if pl != nil {
		rec.MappingVersion = pl.mappingVersion
	}
	// A failure (pl.err) is applied in the commit, after duplicate detection: a duplicate of an
	// accepted message is answered like its original even if the mapping changed since.
	if pl == nil {
		return
	}
	rec.effects = pl
	rec.onFail = fail
}

// errorDetail is the ERR content for an error from mapping or processing. Other errors (a
// conflicting change from another node, a store fault) are answered AE with ERR 207 so the
// sender resends.
func errorDetail(err error) hl7.ErrorDetail {
	var me *mappings.Error
	if errors.As(err, &me) {
		return me.Detail()
	}
	var pe *ProcessError
	if errors.As(err, &pe) {
		return pe.Detail
	}
	text := "message could not be processed; please resend"
	if errors.Is(err, ErrConflict) {
		text = "a concurrent change to the same record; please resend"
	}
	return hl7.ErrorDetail{Code: hl7.CodeApplicationInternalError, Severity: "E", Text: text}
}
