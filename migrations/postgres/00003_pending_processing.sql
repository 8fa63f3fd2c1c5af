-- +goose Up

-- Processing after the ACK (channel option ack: on_receipt): an accepted message can be stored
-- pending, acknowledged at once and processed later by a worker on any node, which claims it
-- (Tx.ClaimPending) and records the outcome (Tx.FinishPending). These are the only columns of
-- inbound_messages that ever change after the insert.
--
-- Adding a column with a constant default rewrites nothing (PostgreSQL 11+): existing rows read
-- the default.
ALTER TABLE inbound_messages
    -- The mapping that processed the message (mappings.Mapping.Version); '' when none did.
    ADD COLUMN mapping_version  text COLLATE "C" NOT NULL DEFAULT '',
    -- Accepted and acknowledged on receipt, not processed yet.
    ADD COLUMN pending          boolean NOT NULL DEFAULT false,
    -- Why processing after the ACK failed; '' when it did not fail. Safe to show: no PHI.
    ADD COLUMN processing_error text NOT NULL DEFAULT '';

-- Only an accepted message waits for processing: a duplicate, a rejected or an error message
-- never does. NOT VALID: enforced for every row written from now on, without scanning the log
-- under an exclusive lock; every existing row holds the default, false, and satisfies it.
ALTER TABLE inbound_messages ADD CONSTRAINT inbound_messages_pending_check
    CHECK (NOT pending OR status = 'accepted') NOT VALID;

-- ClaimPending: accepted and pending, oldest first. Partial, so it holds only the backlog, and
-- an index scan in id order stops after the limit.
CREATE INDEX inbound_messages_pending ON inbound_messages (id)
    WHERE status = 'accepted' AND pending;

-- +goose Down
DROP INDEX inbound_messages_pending;
ALTER TABLE inbound_messages
    DROP CONSTRAINT inbound_messages_pending_check,
    DROP COLUMN processing_error,
    DROP COLUMN pending,
    DROP COLUMN mapping_version;
