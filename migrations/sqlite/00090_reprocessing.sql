-- +goose Up

-- The error queue, as in migrations/postgres/00090_reprocessing.sql. Times are Unix
-- nanoseconds, UTC; finished_at 0 until the request has an outcome.
CREATE TABLE message_reprocessing (
    id               INTEGER PRIMARY KEY,
    message_id       INTEGER NOT NULL REFERENCES inbound_messages (id),
    kind             TEXT NOT NULL CHECK (kind IN ('reprocess', 'dismiss')),
    requested_at     INTEGER NOT NULL,
    requested_by     TEXT NOT NULL,
    reason           TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    finished_at      INTEGER NOT NULL DEFAULT 0,
    mapping_version  TEXT NOT NULL DEFAULT '',
    error            TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX message_reprocessing_message ON message_reprocessing (message_id, id);
CREATE INDEX message_reprocessing_queued ON message_reprocessing (message_id) WHERE state = 'queued';

CREATE INDEX inbound_messages_failed ON inbound_messages (id)
    WHERE status = 'error' OR processing_error <> '';

-- +goose Down
DROP INDEX inbound_messages_failed;
DROP TABLE message_reprocessing;
