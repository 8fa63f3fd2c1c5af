-- +goose Up

-- People and access, as in migrations/postgres/00020_people.sql. Times are Unix nanoseconds,
-- UTC; 0 for none.
CREATE TABLE users (
    name           TEXT NOT NULL PRIMARY KEY,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'analyst', 'physician', 'radiologist', 'system')),
    practitioners  TEXT NOT NULL DEFAULT '',
    facilities     TEXT NOT NULL DEFAULT '',
    password_hash  TEXT NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    disabled_at    INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;

CREATE TABLE api_tokens (
    id           TEXT NOT NULL PRIMARY KEY,
    user_name    TEXT NOT NULL REFERENCES users (name),
    secret_hash  BLOB NOT NULL,
    scopes       TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL DEFAULT 0,
    revoked_at   INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;
CREATE INDEX api_tokens_user ON api_tokens (user_name, created_at);

CREATE TABLE web_sessions (
    id_hash     BLOB NOT NULL PRIMARY KEY,
    user_name   TEXT NOT NULL REFERENCES users (name),
    csrf_token  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    seen_at     INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX web_sessions_user ON web_sessions (user_name);

-- +goose Down
DROP TABLE web_sessions;
DROP TABLE api_tokens;
DROP TABLE users;
