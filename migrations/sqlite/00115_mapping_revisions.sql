-- +goose Up

-- Mapping and code-table history, as in migrations/postgres/00115_mapping_revisions.sql. Times
-- are Unix nanoseconds, UTC.
CREATE TABLE mapping_revisions (
    id           INTEGER PRIMARY KEY,
    facility     TEXT NOT NULL,
    path         TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    digest       TEXT NOT NULL,
    content      BLOB NOT NULL,
    author       TEXT NOT NULL,
    note         TEXT NOT NULL,
    recorded_at  INTEGER NOT NULL,
    UNIQUE (facility, path, seq)
) STRICT;

-- +goose Down
DROP TABLE mapping_revisions;
