package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/hl7"
)

type messageLog struct {
	log    MessageLog
	logger *slog.Logger
	errors *errorQueueAPI // nil: no error queue
}

// messageSummary is one row of the message log.
type messageSummary struct {
	ID                 int64     `json:"id"`
	Channel            string    `json:"channel"`
	ReceivedAt         time.Time `json:"received_at"`
	PeerAddr           string    `json:"peer_addr"`
	SendingApplication string    `json:"sending_application"`
	SendingFacility    string    `json:"sending_facility"`
	MessageType        string    `json:"message_type"`
	ControlID          string    `json:"control_id"`
	Version            string    `json:"version"`
	Status             string    `json:"status"`
	ACKCode            string    `json:"ack_code"`
	Error              string    `json:"error,omitempty"`
	DuplicateOf        int64     `json:"duplicate_of,omitempty"`
	Size               int       `json:"size"`
	// MappingVersion is the mapping that processed the message (docs/mappings.md).
	MappingVersion string `json:"mapping_version,omitempty"`
	// Pending: acknowledged on receipt, not processed yet; ProcessingError: why processing
	// after such an ACK failed (docs/orders.md).
	Pending         bool   `json:"pending,omitempty"`
	ProcessingError string `json:"processing_error,omitempty"`
}

// messageDetail is one message with its bytes, its parsed tree and the ACK sent.
type messageDetail struct {
	messageSummary
	// Raw is the message as text when its bytes are valid UTF-8; RawBase64 always holds the exact
	// bytes (real feeds carry NULs and other encodings).
	Raw        string          `json:"raw,omitempty"`
	RawBase64  string          `json:"raw_base64"`
	Parsed     json.RawMessage `json:"parsed,omitempty"`
	ParseError string          `json:"parse_error,omitempty"`
	ACK        string          `json:"ack"`
	// Reprocessing is every request about the message in the error queue, oldest first, each
	// with its outcome (docs/orders.md, "The error queue").
	Reprocessing []reprocessing `json:"reprocessing,omitempty"`
}

type messageList struct {
	Messages []messageSummary `json:"messages"`
	// Next is the URL of the next (older) page, empty on the last page.
	Next string `json:"next,omitempty"`
}

func summarize(m *engine.InboundMessage) messageSummary {
	return messageSummary{
		ID: m.ID, Channel: m.Channel, ReceivedAt: m.ReceivedAt.UTC(), PeerAddr: m.PeerAddr,
		SendingApplication: m.SendingApplication, SendingFacility: m.SendingFacility,
		MessageType: m.MessageType, ControlID: m.ControlID, Version: m.Version,
		Status: string(m.Status), ACKCode: m.ACKCode, Error: m.Error, DuplicateOf: m.DuplicateOf,
		Size: len(m.Raw), MappingVersion: m.MappingVersion, Pending: m.Pending, ProcessingError: m.ProcessingError,
	}
}

// list serves GET /api/v1/messages?control_id=&type=&status=&sending_facility=&since=&until=&mrn=
// &accession=&study_uid=&name=&text=&queue=&before_id=&limit=
func (h *messageLog) list(c echo.Context) error {
	q := c.QueryParams()
	f, err := messageFilter(q)
	if err != nil {
		return err
	}
	if f.BeforeID, err = queryInt(q, "before_id"); err != nil {
		return err
	}
	limit, err := queryInt(q, "limit")
	if err != nil {
		return err
	}
	if limit < 0 || limit > 1000 {
		return echo.NewHTTPError(http.StatusBadRequest, "limit: between 1 and 1000")
	}
	f.Limit = int(limit)
	if f.Limit == 0 {
		f.Limit = 100
	}
	// Ask for one more than the page to know whether a next page exists (the store serves at
	// most 1000: a full page of 1000 is assumed to have a next one).
	page := f.Limit
	if f.Limit < 1000 {
		f.Limit++
	}
	msgs, err := h.log.Messages(c.Request().Context(), f)
	if err != nil {
		return err
	}
	more := len(msgs) > page || len(msgs) == 1000
	if len(msgs) > page {
		msgs = msgs[:page]
	}
	out := messageList{Messages: make([]messageSummary, 0, len(msgs))}
	for _, m := range msgs {
		out.Messages = append(out.Messages, summarize(m))
	}
	if more {
		next := c.Request().URL.Query()
		next.Set("before_id", strconv.FormatInt(msgs[len(msgs)-1].ID, 10))
		out.Next = c.Request().URL.Path + "?" + next.Encode()
	}
	h.logger.Info("audit: message log listed", "path", c.Path(), "count", len(msgs), "remote", c.RealIP())
	return c.JSON(http.StatusOK, out)
}

// get serves GET /api/v1/messages/:id
func (h *messageLog) get(c echo.Context) error {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return echo.NewHTTPError(http.StatusBadRequest, "id: want a positive integer")
	}
	m, err := h.log.Message(c.Request().Context(), id)
	if err != nil {
		return err
	}
	h.logger.Info("audit: message read", "message_id", id, "remote", c.RealIP())
	d := messageDetail{
		messageSummary: summarize(m),
		RawBase64:      base64.StdEncoding.EncodeToString(m.Raw),
		ACK:            string(m.ACK),
	}
	if utf8.Valid(m.Raw) {
		d.Raw = string(m.Raw)
	}
	if d.Reprocessing, err = h.errors.history(c, id); err != nil {
		return err
	}
	if parsed, err := hl7.Parse(m.Raw); err != nil {
		d.ParseError = err.Error()
	} else if tree, err := parsed.MarshalJSON(); err != nil {
		d.ParseError = "rendering the parsed tree: " + err.Error()
	} else {
		d.Parsed = tree
	}
	return c.JSON(http.StatusOK, d)
}

// messageFilter reads the message log's filters from q (the list's, and a bulk reprocessing's):
// control_id, type, status, sending_facility, since, until, and queue=errors for the error queue.
func messageFilter(q url.Values) (engine.MessageFilter, error) {
	f := engine.MessageFilter{
		ControlID:       q.Get("control_id"),
		MessageType:     q.Get("type"),
		Status:          engine.Status(q.Get("status")),
		SendingFacility: q.Get("sending_facility"),
		// Patient and order keys and free text (docs/console.md): patient data, so the request's
		// query is never logged (the audit trail in the store records the search).
		PatientID:   q.Get("mrn"),
		Accession:   q.Get("accession"),
		StudyUID:    q.Get("study_uid"),
		PatientName: q.Get("name"),
		Text:        q.Get("text"),
	}
	if len(f.Text) > engine.MaxSearchText {
		return f, echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("text: at most %d bytes", engine.MaxSearchText))
	}
	if f.Status != "" && !f.Status.Valid() {
		return f, echo.NewHTTPError(http.StatusBadRequest, "status: want accepted, duplicate, rejected or error")
	}
	switch q.Get("queue") {
	case "":
	case "errors":
		f.InErrorQueue = true
	default:
		return f, echo.NewHTTPError(http.StatusBadRequest, "queue: want errors (the error queue)")
	}
	var err error
	if f.Since, err = queryTime(q, "since"); err != nil {
		return f, err
	}
	if f.Until, err = queryTime(q, "until"); err != nil {
		return f, err
	}
	return f, nil
}

func queryTime(q url.Values, name string) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, echo.NewHTTPError(http.StatusBadRequest, name+": want an RFC 3339 time, e.g. 2026-11-27T08:00:00Z")
	}
	return t, nil
}

func queryInt(q url.Values, name string) (int64, error) {
	v := q.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, echo.NewHTTPError(http.StatusBadRequest, name+": want a non-negative integer")
	}
	return n, nil
}

// maxExport caps the messages one export writes: the newest that many.
const maxExport = 100_000

// export serves GET /api/v1/messages/export?<the list's filters>&format=ndjson|hl7: every message
// the filters select, newest first, streamed — NDJSON (one summary per line, with raw_base64), or
// an HL7 file of the raw messages one after another (what `ferry inspect` and hl7.SplitBatch read
// back). Capped at 100,000 messages; audited as one search.
func (h *messageLog) export(c echo.Context) error {
	q := c.QueryParams()
	f, err := messageFilter(q)
	if err != nil {
		return err
	}
	format := q.Get("format")
	switch format {
	case "", "ndjson":
		format = "ndjson"
		c.Response().Header().Set(echo.HeaderContentType, "application/x-ndjson")
	case "hl7":
		c.Response().Header().Set(echo.HeaderContentType, "application/hl7-v2; charset=utf-8")
	default:
		return echo.NewHTTPError(http.StatusBadRequest, "format: want ndjson or hl7")
	}
	c.Response().Header().Set("Content-Disposition", `attachment; filename="ferry-messages.`+format+`"`)
	ctx := c.Request().Context()
	f.Limit = 1000
	// The first page is read before the status is written, so a store error is still a 500.
	page, err := h.log.Messages(ctx, f)
	if err != nil {
		return err
	}
	c.Response().WriteHeader(http.StatusOK)
	enc := json.NewEncoder(c.Response())
	written := 0
	for len(page) > 0 && written < maxExport {
		for _, m := range page[:min(len(page), maxExport-written)] {
			if format == "hl7" {
				_, err = c.Response().Write(append(m.Raw, '\n'))
			} else {
				err = enc.Encode(struct {
					messageSummary
					RawBase64 string `json:"raw_base64"`
				}{summarize(m), base64.StdEncoding.EncodeToString(m.Raw)})
			}
			if err != nil {
				return nil // the client went away: nothing more to say to it
			}
			written++
		}
		if len(page) < f.Limit {
			break
		}
		f.BeforeID = page[len(page)-1].ID
		if page, err = h.log.Messages(ctx, f); err != nil {
			h.logger.Error("exporting messages: the store failed mid-export", "written", written, "err", err)
			return nil // the status is sent; the file ends short and the log says why
		}
	}
	h.logger.Info("audit: message log exported", "count", written, "format", format, "remote", c.RealIP())
	return nil
}
