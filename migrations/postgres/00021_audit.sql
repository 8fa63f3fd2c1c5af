-- +goose Up

-- The audit trail (engine/audit): one row per read, search, create, update, link, replay and
-- login of patient data, append-only (the trigger refuses UPDATE, DELETE and TRUNCATE) and
-- tamper-evident: hash is SHA-256 of prev_hash and the row (engine/audit.Event.ChainHash), so
-- `ferry audit verify` finds any row changed, removed or inserted out of place. seq is given
-- under audit_chain's row lock, which also holds the head of the chain: appends are in seq
-- order, one transaction at a time.
CREATE TABLE audit_events (
    seq          bigint NOT NULL,
    recorded_at  timestamptz NOT NULL,
    action       text COLLATE "C" NOT NULL,
    outcome      text COLLATE "C" NOT NULL,
    agent        text COLLATE "C" NOT NULL,
    role         text COLLATE "C" NOT NULL,
    address      text COLLATE "C" NOT NULL,
    patient      text COLLATE "C" NOT NULL,
    entity       text COLLATE "C" NOT NULL,
    detail       text COLLATE "C" NOT NULL,
    prev_hash    bytea NOT NULL,
    hash         bytea NOT NULL,
    CONSTRAINT audit_events_pkey PRIMARY KEY (seq)
);
CREATE INDEX audit_events_agent ON audit_events (agent, seq);
CREATE INDEX audit_events_patient ON audit_events (patient, seq) WHERE patient <> '';
CREATE INDEX audit_events_recorded ON audit_events (recorded_at);

CREATE TABLE audit_chain (
    id    integer NOT NULL CHECK (id = 1),
    seq   bigint NOT NULL,
    head  bytea NOT NULL,
    CONSTRAINT audit_chain_pkey PRIMARY KEY (id)
);
INSERT INTO audit_chain (id, seq, head) VALUES (1, 0, '\x');

-- +goose StatementBegin
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- +goose Down
DROP TABLE audit_chain;
DROP TABLE audit_events;
DROP FUNCTION audit_events_append_only();
