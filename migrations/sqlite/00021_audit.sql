-- +goose Up

-- The audit trail, as in migrations/postgres/00021_audit.sql: append-only (the triggers refuse
-- UPDATE and DELETE), hash chained. Times are Unix nanoseconds, UTC.
CREATE TABLE audit_events (
    seq          INTEGER NOT NULL PRIMARY KEY,
    recorded_at  INTEGER NOT NULL,
    action       TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    agent        TEXT NOT NULL,
    role         TEXT NOT NULL,
    address      TEXT NOT NULL,
    patient      TEXT NOT NULL,
    entity       TEXT NOT NULL,
    detail       TEXT NOT NULL,
    prev_hash    BLOB NOT NULL,
    hash         BLOB NOT NULL
) STRICT;
CREATE INDEX audit_events_agent ON audit_events (agent, seq);
CREATE INDEX audit_events_patient ON audit_events (patient, seq) WHERE patient <> '';
CREATE INDEX audit_events_recorded ON audit_events (recorded_at);

CREATE TABLE audit_chain (
    id    INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    head  BLOB NOT NULL
) STRICT;
INSERT INTO audit_chain (id, seq, head) VALUES (1, 0, x'');

-- +goose StatementBegin
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
-- +goose StatementEnd

-- +goose Down
DROP TABLE audit_chain;
DROP TABLE audit_events;
