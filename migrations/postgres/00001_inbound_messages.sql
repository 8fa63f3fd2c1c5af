-- +goose Up

-- inbound_messages is the message log: every inbound message exactly as received, with what Ferry
-- answered. Rows are only ever inserted.
CREATE TABLE inbound_messages (
    id                  bigserial PRIMARY KEY,
    -- Header text is compared byte for byte (codes, not prose), so it uses the "C" collation:
    -- cheaper comparisons, and btree indexes that serve LIKE 'prefix%'.
    channel             text COLLATE "C" NOT NULL,
    received_at         timestamptz NOT NULL,
    peer_addr           text COLLATE "C" NOT NULL DEFAULT '',
    -- The frame's bytes exactly as received: real feeds carry NULs and invalid UTF-8.
    raw                 bytea NOT NULL,
    sending_application text COLLATE "C" NOT NULL DEFAULT '', -- MSH-3
    sending_facility    text COLLATE "C" NOT NULL DEFAULT '', -- MSH-4
    message_type        text COLLATE "C" NOT NULL DEFAULT '', -- MSH-9, code^trigger[^structure]
    control_id          text COLLATE "C" NOT NULL DEFAULT '', -- MSH-10
    version             text COLLATE "C" NOT NULL DEFAULT '', -- MSH-12
    status              text COLLATE "C" NOT NULL,
    ack                 bytea NOT NULL DEFAULT '',            -- the ACK sent, as framed
    ack_code            text COLLATE "C" NOT NULL DEFAULT '', -- MSA-1
    error               text NOT NULL DEFAULT '',
    duplicate_of        bigint REFERENCES inbound_messages (id),
    CONSTRAINT inbound_messages_status_check
        CHECK (status IN ('accepted', 'duplicate', 'rejected', 'error')),
    CONSTRAINT inbound_messages_duplicate_of_check
        CHECK ((status = 'duplicate') = (duplicate_of IS NOT NULL))
);

-- The duplicate rule (same MSH-3, MSH-4 and MSH-10 as an accepted message) is this constraint:
-- two nodes racing on one key get one accepted row; CommitInbound's INSERT … ON CONFLICT names it.
CREATE UNIQUE INDEX inbound_messages_accepted_key
    ON inbound_messages (sending_application, sending_facility, control_id)
    WHERE status = 'accepted' AND control_id <> '';

-- Message-log filters. Equality filters carry id so that "newest first" pages walk the index.
CREATE INDEX inbound_messages_control_id ON inbound_messages (control_id, id);
CREATE INDEX inbound_messages_received_at ON inbound_messages (received_at);
CREATE INDEX inbound_messages_status ON inbound_messages (status, id);
CREATE INDEX inbound_messages_sending_facility ON inbound_messages (sending_facility, id);
CREATE INDEX inbound_messages_message_type ON inbound_messages (message_type, id);
-- Duplicates of a message, and the foreign key's check on delete; duplicates are rare, so partial.
CREATE INDEX inbound_messages_duplicate_of ON inbound_messages (duplicate_of)
    WHERE duplicate_of IS NOT NULL;

-- +goose Down
DROP TABLE inbound_messages;
