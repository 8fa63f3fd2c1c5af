-- +goose Up

-- The outbox (engine.Outbox, engine.Delivery): one row per report version and destination,
-- written in the transaction that stores the report version, so that a committed report is
-- always delivered. payload is the message exactly as every attempt sends it; control_id its
-- MSH-10, stable across retries. Deliveries of one queue_key (destination and patient) are sent
-- strictly in id order. A sender claims a delivery with a lease (lease_until) rather than a lock
-- held while it waits for the receiver: a sender that dies is replaced when its lease runs out.
--
--   status   pending (to send, or to retry at next_attempt_at) | delivered | dead (a person
--            replays it)
--   kind     mllp | fhir

CREATE TABLE deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY,
    report_id        text COLLATE "C" NOT NULL,
    report_version   bigint NOT NULL CHECK (report_version >= 1),
    destination      text COLLATE "C" NOT NULL,
    kind             text COLLATE "C" NOT NULL CHECK (kind IN ('mllp', 'fhir')),
    queue_key        text COLLATE "C" NOT NULL,
    status           text COLLATE "C" NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    control_id       text COLLATE "C" NOT NULL,
    payload          bytea NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    lease_until      timestamptz,
    last_error       text NOT NULL DEFAULT '',
    response         text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL,
    delivered_at     timestamptz,
    CONSTRAINT deliveries_pkey PRIMARY KEY (id),
    CONSTRAINT deliveries_report_destination_key UNIQUE (report_id, report_version, destination)
);
-- The head of each queue: pending deliveries by queue, in order.
CREATE INDEX deliveries_pending_queue ON deliveries (queue_key, id) WHERE status = 'pending';
-- What is due, longest due first.
CREATE INDEX deliveries_pending_due ON deliveries (next_attempt_at) WHERE status = 'pending';
-- Listing: newest first, by status (the dead-letter list) or all.
CREATE INDEX deliveries_status ON deliveries (status, id);

-- +goose Down
DROP TABLE deliveries;
