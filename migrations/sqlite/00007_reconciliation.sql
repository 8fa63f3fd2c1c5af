-- +goose Up

-- Reconciliation, as in migrations/postgres/00007_reconciliation.sql: study_links gains status
-- 'review', candidates (a JSON array), decided_by and reason; study_link_history keeps every
-- decision; study_derivations queues studies whose ImagingStudy must be derived again. SQLite
-- cannot change a CHECK in place: study_links is rebuilt. Times are Unix nanoseconds, UTC.

CREATE TABLE study_links_new (
    study_instance_uid  TEXT NOT NULL PRIMARY KEY,
    status              TEXT NOT NULL
        CHECK (status IN ('linked', 'review', 'contradiction', 'unmatched')),
    service_request_id  TEXT NOT NULL,
    patient_id          TEXT NOT NULL,
    rule                TEXT NOT NULL,
    score               REAL NOT NULL,
    evidence            TEXT NOT NULL CHECK (json_valid(evidence)),
    decided_at          INTEGER NOT NULL,
    candidates          TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(candidates)),
    decided_by          TEXT NOT NULL DEFAULT 'linker',
    reason              TEXT NOT NULL DEFAULT ''
) STRICT;
INSERT INTO study_links_new (study_instance_uid, status, service_request_id, patient_id, rule,
    score, evidence, decided_at)
SELECT study_instance_uid, status, service_request_id, patient_id, rule, score, evidence, decided_at
FROM study_links;
DROP TABLE study_links;
ALTER TABLE study_links_new RENAME TO study_links;
CREATE INDEX study_links_service_request ON study_links (service_request_id);
CREATE INDEX study_links_status ON study_links (status, decided_at);
CREATE INDEX study_links_patient ON study_links (patient_id);

CREATE TABLE study_link_history (
    id                  INTEGER PRIMARY KEY,
    study_instance_uid  TEXT NOT NULL,
    status              TEXT NOT NULL,
    service_request_id  TEXT NOT NULL,
    patient_id          TEXT NOT NULL,
    rule                TEXT NOT NULL,
    score               REAL NOT NULL,
    evidence            TEXT NOT NULL,
    candidates          TEXT NOT NULL,
    decided_at          INTEGER NOT NULL,
    decided_by          TEXT NOT NULL,
    reason              TEXT NOT NULL
) STRICT;
CREATE INDEX study_link_history_study ON study_link_history (study_instance_uid, id);

CREATE TABLE study_derivations (
    study_instance_uid  TEXT NOT NULL PRIMARY KEY,
    changed_at          INTEGER NOT NULL,
    changes             INTEGER NOT NULL DEFAULT 1
) STRICT;
CREATE INDEX study_derivations_changed ON study_derivations (changed_at);

-- +goose Down
DROP TABLE study_derivations;
DROP TABLE study_link_history;
CREATE TABLE study_links_old (
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
INSERT INTO study_links_old
SELECT study_instance_uid, status, service_request_id, patient_id, rule, score, evidence, decided_at
FROM study_links WHERE status <> 'review';
DROP TABLE study_links;
ALTER TABLE study_links_old RENAME TO study_links;
CREATE INDEX study_links_service_request ON study_links (service_request_id);
CREATE INDEX study_links_status ON study_links (status, decided_at);
