-- +goose Up

-- Processing after the ACK (channel option ack: on_receipt), as in
-- migrations/postgres/00003_pending_processing.sql: an accepted message can be stored pending,
-- acknowledged at once and processed later by a worker, which claims it (Tx.ClaimPending) and
-- records the outcome (Tx.FinishPending). These are the only columns of inbound_messages that
-- ever change after the insert.

-- The mapping that processed the message (mappings.Mapping.Version); '' when none did.
ALTER TABLE inbound_messages ADD COLUMN mapping_version TEXT NOT NULL DEFAULT '';
-- 1: accepted and acknowledged on receipt, not processed yet. Only an accepted message waits for
-- processing: a duplicate, a rejected or an error message never does.
ALTER TABLE inbound_messages ADD COLUMN pending INTEGER NOT NULL DEFAULT 0
    CHECK (pending IN (0, 1) AND (pending = 0 OR status = 'accepted'));
-- Why processing after the ACK failed; '' when it did not fail. Safe to show: no PHI.
ALTER TABLE inbound_messages ADD COLUMN processing_error TEXT NOT NULL DEFAULT '';

-- ClaimPending: accepted and pending, oldest first; partial, so it holds only the backlog.
CREATE INDEX inbound_messages_pending ON inbound_messages (id)
    WHERE status = 'accepted' AND pending = 1;

-- +goose Down
DROP INDEX inbound_messages_pending;
ALTER TABLE inbound_messages DROP COLUMN processing_error;
ALTER TABLE inbound_messages DROP COLUMN pending;
ALTER TABLE inbound_messages DROP COLUMN mapping_version;
