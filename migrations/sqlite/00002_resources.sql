-- +goose Up

-- FHIR resources (engine.Resource), as in migrations/postgres/00002_resources.sql:
--
--   resource_versions  every version, only ever inserted: vread and _history;
--   resources          one narrow row per resource pointing at its current version;
--   resource_index     the search parameter values of the current versions;
--   resource_keys      business keys (an MRN, a placer order number), each held by one resource.
--
-- A table of current versions rather than a "current" flag: a change then updates one narrow row
-- instead of rewriting the previous version's row (JSON and all) and its index entries; reading
-- the current version is two primary-key lookups; searching sorts narrow rows and fetches the JSON
-- of only the page it returns. Text compares with BINARY collation (byte order): dates in ISO 8601
-- sort as time, and a prefix is an index range. Times are Unix nanoseconds, UTC.

CREATE TABLE resource_versions (
    type         TEXT NOT NULL,
    id           TEXT NOT NULL,
    version_id   INTEGER NOT NULL CHECK (version_id >= 1),
    last_updated INTEGER NOT NULL,
    json         BLOB NOT NULL, -- the resource exactly as the engine wrote it, byte for byte
    PRIMARY KEY (type, id, version_id)
) STRICT;

-- WITHOUT ROWID: narrow rows found by their primary key, stored in its order.
CREATE TABLE resources (
    type         TEXT NOT NULL,
    id           TEXT NOT NULL,
    version_id   INTEGER NOT NULL, -- the current version
    last_updated INTEGER NOT NULL,
    PRIMARY KEY (type, id)
) STRICT, WITHOUT ROWID;
CREATE INDEX resources_last_updated ON resources (type, last_updated DESC, id);

-- One row per distinct (param, system, value) of a resource's current version. The primary key
-- serves replacing a resource's entries; the other two serve search (equality, prefix and ranges
-- on value, with or without the system) and carry id through the primary key.
CREATE TABLE resource_index (
    type   TEXT NOT NULL,
    id     TEXT NOT NULL,
    param  TEXT NOT NULL,
    system TEXT NOT NULL DEFAULT '',
    value  TEXT NOT NULL,
    PRIMARY KEY (type, id, param, system, value)
) STRICT, WITHOUT ROWID;
CREATE INDEX resource_index_value ON resource_index (type, param, value);
CREATE INDEX resource_index_system_value ON resource_index (type, param, system, value);

-- A key is held by at most one resource of a type: the primary key is the rule.
CREATE TABLE resource_keys (
    type TEXT NOT NULL,
    key  TEXT NOT NULL,
    id   TEXT NOT NULL,
    PRIMARY KEY (type, key)
) STRICT, WITHOUT ROWID;
CREATE INDEX resource_keys_id ON resource_keys (type, id);

-- The Modality Worklist (engine.WorklistItem): one row per ServiceRequest with an active
-- scheduled step. The columns are the ones engine.WorklistFilter narrows on and the order items
-- are returned in; item holds the whole item (see adapters/sqlite worklist.go for its format), so
-- that a C-FIND over thousands of items reads one value per row instead of thirty columns.
CREATE TABLE worklist_items (
    service_request_id TEXT NOT NULL PRIMARY KEY,
    accession_number   TEXT NOT NULL,
    patient_id         TEXT NOT NULL,
    modality           TEXT NOT NULL,
    station_ae_title   TEXT NOT NULL,
    start_date         TEXT NOT NULL, -- DA, YYYYMMDD: lexical order is date order
    start_time         TEXT NOT NULL, -- TM
    item               BLOB NOT NULL
) STRICT;
CREATE INDEX worklist_items_start ON worklist_items (start_date, start_time, service_request_id);
CREATE INDEX worklist_items_accession_number ON worklist_items (accession_number);
CREATE INDEX worklist_items_patient_id ON worklist_items (patient_id);
CREATE INDEX worklist_items_modality ON worklist_items (modality, start_date, start_time, service_request_id);
CREATE INDEX worklist_items_station_ae_title ON worklist_items (station_ae_title, start_date, start_time, service_request_id);

-- +goose Down
DROP TABLE worklist_items;
DROP TABLE resource_keys;
DROP TABLE resource_index;
DROP TABLE resources;
DROP TABLE resource_versions;
