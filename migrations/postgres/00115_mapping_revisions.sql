-- +goose Up

-- Mapping and code-table history (docs/mappings.md, "History and rollback"): every version of a
-- file under mappings.dir or a facility's mappings directory, as the console saved it (by the
-- analyst) or as a node first found it or found it changed on disk (by "files"). seq counts a
-- file's versions from 1; the unique key makes two nodes that notice the same change at once
-- record it once. Rows are never changed: a rollback is a new revision with old content.
CREATE TABLE mapping_revisions (
    id           bigserial PRIMARY KEY,
    facility     text NOT NULL,   -- MSH-4 of a facility's directory, '' for mappings.dir
    path         text NOT NULL,   -- inside that directory, e.g. tables/procedures.yaml
    seq          integer NOT NULL,
    digest       text NOT NULL,   -- SHA-256 of content, hex
    content      bytea NOT NULL,
    author       text NOT NULL,   -- a user, or 'files'
    note         text NOT NULL,
    recorded_at  timestamptz NOT NULL,
    UNIQUE (facility, path, seq)
);

-- +goose Down
DROP TABLE mapping_revisions;
