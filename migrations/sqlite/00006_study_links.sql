-- +goose Up

-- The linker's decision for each study (engine.LinkStore), as in
-- migrations/postgres/00006_study_links.sql: one row per study, upserted by PutStudyLink; status
-- checked to the three engine.LinkStatus values; evidence a JSON object (encoding/json of the
-- map: keys sorted); decided_at in Unix nanoseconds, UTC.

CREATE TABLE study_links (
    study_instance_uid  TEXT NOT NULL PRIMARY KEY,
    status              TEXT NOT NULL
        CHECK (status IN ('linked', 'contradiction', 'unmatched')),
    service_request_id  TEXT NOT NULL,
    patient_id          TEXT NOT NULL,
    rule                TEXT NOT NULL,
    score               REAL NOT NULL,
    evidence            TEXT NOT NULL CHECK (json_valid(evidence)),
    decided_at          INTEGER NOT NULL
) STRICT;
-- The studies linked to an order.
CREATE INDEX study_links_service_request ON study_links (service_request_id);
-- The work list of open items (contradictions, unmatched), oldest decision first.
CREATE INDEX study_links_status ON study_links (status, decided_at);

-- +goose Down
DROP TABLE study_links;
