-- +goose Up

-- The error queue (docs/orders.md, "The error queue"): every inbound message whose processing
-- failed — answered AE (status error), or acknowledged on receipt and failed later
-- (processing_error) — stays in the queue until an analyst reprocesses it successfully or
-- dismisses it with a reason. Each request is a row here, beside the message, which is never
-- changed: its outcome (the mapping version it ran with, the error if it failed again) is
-- recorded on the request.
CREATE TABLE message_reprocessing (
    id               bigserial PRIMARY KEY,
    message_id       bigint NOT NULL REFERENCES inbound_messages (id),
    kind             text NOT NULL CHECK (kind IN ('reprocess', 'dismiss')),
    requested_at     timestamptz NOT NULL,
    requested_by     text NOT NULL,
    reason           text NOT NULL,
    -- queued → running (claimed, inside the processing transaction) → done or failed; a
    -- dismissal is done at once.
    state            text NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    finished_at      timestamptz,
    mapping_version  text NOT NULL DEFAULT '',
    error            text NOT NULL DEFAULT ''
);
CREATE INDEX message_reprocessing_message ON message_reprocessing (message_id, id);
CREATE INDEX message_reprocessing_queued ON message_reprocessing (message_id) WHERE state = 'queued';

-- The failed messages, few among millions: the queue's scan.
CREATE INDEX inbound_messages_failed ON inbound_messages (id)
    WHERE status = 'error' OR processing_error <> '';

-- +goose Down
DROP INDEX inbound_messages_failed;
DROP TABLE message_reprocessing;
