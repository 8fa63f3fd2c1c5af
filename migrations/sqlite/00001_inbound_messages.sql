-- +goose Up

-- inbound_messages is the message log: every inbound message exactly as received, with what Ferry
-- answered. Rows are only ever inserted. STRICT: a value of the wrong type is an error, not a
-- silent conversion.
CREATE TABLE inbound_messages (
    -- AUTOINCREMENT: an ID is never reused, even after the newest rows are purged, so paging
    -- cursors and duplicate_of references stay valid (as with PostgreSQL's sequence).
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    channel             TEXT NOT NULL,
    -- Unix nanoseconds, UTC: integer comparisons, so time-range filters use the index and keep
    -- full precision.
    received_at         INTEGER NOT NULL,
    peer_addr           TEXT NOT NULL DEFAULT '',
    -- The frame's bytes exactly as received: real feeds carry NULs and invalid UTF-8.
    raw                 BLOB NOT NULL,
    sending_application TEXT NOT NULL DEFAULT '', -- MSH-3
    sending_facility    TEXT NOT NULL DEFAULT '', -- MSH-4
    message_type        TEXT NOT NULL DEFAULT '', -- MSH-9, code^trigger[^structure]
    control_id          TEXT NOT NULL DEFAULT '', -- MSH-10
    version             TEXT NOT NULL DEFAULT '', -- MSH-12
    status              TEXT NOT NULL
        CHECK (status IN ('accepted', 'duplicate', 'rejected', 'error')),
    ack                 BLOB NOT NULL DEFAULT x'', -- the ACK sent, as framed
    ack_code            TEXT NOT NULL DEFAULT '',  -- MSA-1
    error               TEXT NOT NULL DEFAULT '',
    duplicate_of        INTEGER REFERENCES inbound_messages (id),
    CHECK ((status = 'duplicate') = (duplicate_of IS NOT NULL))
) STRICT;

-- The duplicate rule (same MSH-3, MSH-4 and MSH-10 as an accepted message) is this constraint;
-- CommitInbound's INSERT … ON CONFLICT names it.
CREATE UNIQUE INDEX inbound_messages_accepted_key
    ON inbound_messages (sending_application, sending_facility, control_id)
    WHERE status = 'accepted' AND control_id <> '';

-- Message-log filters. Equality filters carry id so that "newest first" pages walk the index.
-- Text compares with BINARY collation, so message_type prefixes are index range scans.
CREATE INDEX inbound_messages_control_id ON inbound_messages (control_id, id);
CREATE INDEX inbound_messages_received_at ON inbound_messages (received_at);
CREATE INDEX inbound_messages_status ON inbound_messages (status, id);
CREATE INDEX inbound_messages_sending_facility ON inbound_messages (sending_facility, id);
CREATE INDEX inbound_messages_message_type ON inbound_messages (message_type, id);
CREATE INDEX inbound_messages_duplicate_of ON inbound_messages (duplicate_of)
    WHERE duplicate_of IS NOT NULL;

-- +goose Down
DROP TABLE inbound_messages;
