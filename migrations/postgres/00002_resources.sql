-- +goose Up

-- FHIR resources (engine.Resource). Four tables:
--
--   resource_versions  every version, only ever inserted: vread and _history;
--   resources          one narrow row per resource pointing at its current version;
--   resource_index     the search parameter values of the current versions;
--   resource_keys      business keys (an MRN, a placer order number), each held by one resource.
--
-- Why a table of current versions rather than a "current" flag on resource_versions: a flag would
-- rewrite the previous version's row at every change (a whole new tuple under MVCC, JSON included
-- when it is stored inline, and an index update), and would need a partial unique index to keep
-- one current version per resource. The narrow row of resources is the one row a change updates,
-- and it is where two writers of one resource meet: PutResource's upsert locks it and checks that
-- the new version follows the current one, so a racing writer waits, then sees the newer version
-- and gets ErrConflict. Reading the current version is two primary-key probes; searching sorts the
-- narrow rows by last_updated and fetches the JSON of only the page it returns.
--
-- type, id, keys and index values are codes and identifiers compared byte for byte: they use the
-- "C" collation, so comparisons are cheap, ranges are lexical (dates in ISO 8601 sort as time),
-- and LIKE 'prefix%' is a btree range.

CREATE TABLE resource_versions (
    type         text COLLATE "C" NOT NULL,
    id           text COLLATE "C" NOT NULL,
    version_id   bigint NOT NULL CHECK (version_id >= 1),
    last_updated timestamptz NOT NULL,
    -- The resource exactly as the engine wrote it, byte for byte: bytea, not jsonb, which would
    -- reorder keys and reformat numbers.
    json         bytea NOT NULL,
    CONSTRAINT resource_versions_pkey PRIMARY KEY (type, id, version_id)
);

CREATE TABLE resources (
    type         text COLLATE "C" NOT NULL,
    id           text COLLATE "C" NOT NULL,
    version_id   bigint NOT NULL, -- the current version
    last_updated timestamptz NOT NULL,
    CONSTRAINT resources_pkey PRIMARY KEY (type, id)
    -- No foreign key to resource_versions: the one statement that writes a version writes both
    -- rows, and a foreign key would lock the version row at every change.
);
-- Search without filters, and the order of every search: newest first, ties by id.
CREATE INDEX resources_last_updated ON resources (type, last_updated DESC, id);

-- One row per distinct (param, system, value) of a resource's current version. The primary key
-- serves replacing a resource's entries; the other two serve search: equality, prefix (LIKE) and
-- ranges on value, with or without the system. id ends both so that a search reads the matching
-- ids from the index alone.
CREATE TABLE resource_index (
    type   text COLLATE "C" NOT NULL,
    id     text COLLATE "C" NOT NULL,
    param  text COLLATE "C" NOT NULL,
    system text COLLATE "C" NOT NULL DEFAULT '',
    value  text COLLATE "C" NOT NULL,
    CONSTRAINT resource_index_pkey PRIMARY KEY (type, id, param, system, value)
);
CREATE INDEX resource_index_value ON resource_index (type, param, value, id);
CREATE INDEX resource_index_system_value ON resource_index (type, param, system, value, id);

-- A key is held by at most one resource of a type: the primary key is the rule, so two nodes
-- racing to create the same patient yield one (the other's PutResource fails on
-- resource_keys_pkey, which the store reports as engine.ErrConflict).
CREATE TABLE resource_keys (
    type text COLLATE "C" NOT NULL,
    key  text COLLATE "C" NOT NULL,
    id   text COLLATE "C" NOT NULL,
    CONSTRAINT resource_keys_pkey PRIMARY KEY (type, key)
);
-- The keys a resource holds, to release those its new version no longer lists.
CREATE INDEX resource_keys_id ON resource_keys (type, id);

-- The Modality Worklist (engine.WorklistItem): one row per ServiceRequest with an active
-- scheduled step. The columns are the ones engine.WorklistFilter narrows on and the order items
-- are returned in; item holds the whole item (see adapters/postgres worklist.go for its format),
-- so that a C-FIND over thousands of items reads one value per row instead of thirty columns.
CREATE TABLE worklist_items (
    service_request_id text COLLATE "C" NOT NULL,
    accession_number   text COLLATE "C" NOT NULL,
    patient_id         text COLLATE "C" NOT NULL,
    modality           text COLLATE "C" NOT NULL,
    station_ae_title   text COLLATE "C" NOT NULL,
    start_date         text COLLATE "C" NOT NULL, -- DA, YYYYMMDD: lexical order is date order
    start_time         text COLLATE "C" NOT NULL, -- TM
    item               bytea NOT NULL,
    CONSTRAINT worklist_items_pkey PRIMARY KEY (service_request_id)
);
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
