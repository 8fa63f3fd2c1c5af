-- The rows an order is, as PostgreSQL itself would keep them at the least: the raw message, a
-- Patient and a ServiceRequest (jsonb, indexed on what Ferry searches them by), and a worklist
-- row. order.sql inserts one order per transaction. Written for bench/pgbench/compare.sh; not a
-- Ferry schema.
DROP TABLE IF EXISTS bench_messages, bench_resources, bench_worklist;
CREATE TABLE bench_messages (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    control_id  text COLLATE "C" NOT NULL,
    raw         bytea NOT NULL
);
CREATE INDEX bench_messages_control_id ON bench_messages (control_id);
CREATE TABLE bench_resources (
    type         text COLLATE "C" NOT NULL,
    id           text COLLATE "C" NOT NULL,
    version_id   bigint NOT NULL,
    last_updated timestamptz NOT NULL DEFAULT now(),
    json         jsonb NOT NULL,
    PRIMARY KEY (type, id)
);
-- identifier (MRN, placer order number) and subject: what an order is looked up by.
CREATE INDEX bench_resources_identifier ON bench_resources USING gin ((json -> 'identifier') jsonb_path_ops);
CREATE INDEX bench_resources_subject ON bench_resources ((json #>> '{subject,reference}'));
CREATE TABLE bench_worklist (
    service_request_id text COLLATE "C" PRIMARY KEY,
    accession_number   text COLLATE "C" NOT NULL,
    patient_id         text COLLATE "C" NOT NULL,
    start_date         text COLLATE "C" NOT NULL,
    item               jsonb NOT NULL
);
CREATE INDEX bench_worklist_accession ON bench_worklist (accession_number);
CREATE INDEX bench_worklist_start ON bench_worklist (start_date, service_request_id);
