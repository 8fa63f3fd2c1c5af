-- +goose Up

-- Failed logins, as in migrations/postgres/00140_login_failures.sql. Times are Unix nanoseconds,
-- UTC.
CREATE TABLE login_failures (
    kind   TEXT NOT NULL CHECK (kind IN ('account', 'address')),
    value  TEXT NOT NULL,
    since  INTEGER NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (kind, value)
) STRICT, WITHOUT ROWID;
CREATE INDEX login_failures_since ON login_failures (since);

-- +goose Down
DROP TABLE login_failures;
