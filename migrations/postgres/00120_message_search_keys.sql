-- +goose Up

-- The message log's patient and order keys (engine.SearchKeysOf, docs/console.md "Finding a
-- message"): MRNs, accession and order numbers, Study Instance UIDs and the words of the
-- patient's name, extracted once at intake from the parsed message and written in the statement
-- that stores it. The primary key is the search's index: a key's messages, newest first. No
-- foreign key: rows are only ever inserted beside a message inserted in the same statement, and
-- a foreign key would cost the intake a probe per key.
CREATE TABLE message_search_keys (
    kind       text COLLATE "C" NOT NULL CHECK (kind IN ('mrn', 'accession', 'study_uid', 'name')),
    value      text COLLATE "C" NOT NULL,
    message_id bigint NOT NULL,
    PRIMARY KEY (kind, value, message_id)
);

-- The messages stored before this migration get their keys from a background backfill
-- (engine.SearchKeyBackfill): it walks the log downwards from below, a batch at a time, and
-- lowers below after each; 1 (nothing left) ends it. Idempotent: keys go in ON CONFLICT DO NOTHING.
CREATE TABLE message_search_backfill (
    below bigint NOT NULL
);
INSERT INTO message_search_backfill (below) SELECT coalesce(max(id), 0) + 1 FROM inbound_messages;

-- +goose Down
DROP TABLE message_search_backfill;
DROP TABLE message_search_keys;
