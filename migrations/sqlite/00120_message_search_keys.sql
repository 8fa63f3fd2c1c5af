-- +goose Up

-- The message log's patient and order keys, as in migrations/postgres/00120_message_search_keys.sql.
CREATE TABLE message_search_keys (
    kind       TEXT NOT NULL CHECK (kind IN ('mrn', 'accession', 'study_uid', 'name')),
    value      TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    PRIMARY KEY (kind, value, message_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE message_search_backfill (
    below INTEGER NOT NULL
) STRICT;
INSERT INTO message_search_backfill (below) SELECT coalesce(max(id), 0) + 1 FROM inbound_messages;

-- +goose Down
DROP TABLE message_search_backfill;
DROP TABLE message_search_keys;
