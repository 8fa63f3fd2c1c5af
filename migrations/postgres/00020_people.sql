-- +goose Up

-- People and access (engine/access, docs/security.md). A user has one role; a physician's or
-- radiologist's practitioner identifiers ("system|value", or a value alone for any system) and the
-- facilities it is limited to are kept one per line. Disabled users keep their rows (the audit
-- trail names them); disabled_at NULL while enabled.
CREATE TABLE users (
    name           text COLLATE "C" NOT NULL,
    role           text COLLATE "C" NOT NULL CHECK (role IN ('admin', 'analyst', 'physician', 'radiologist', 'system')),
    practitioners  text COLLATE "C" NOT NULL DEFAULT '',
    facilities     text COLLATE "C" NOT NULL DEFAULT '',
    password_hash  text COLLATE "C" NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL,
    disabled_at    timestamptz,
    CONSTRAINT users_pkey PRIMARY KEY (name)
);

-- API tokens: only the SHA-256 of the token is kept. scopes (a system user's) one per space.
CREATE TABLE api_tokens (
    id           text COLLATE "C" NOT NULL,
    user_name    text COLLATE "C" NOT NULL REFERENCES users (name),
    secret_hash  bytea NOT NULL,
    scopes       text COLLATE "C" NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    CONSTRAINT api_tokens_pkey PRIMARY KEY (id)
);
CREATE INDEX api_tokens_user ON api_tokens (user_name, created_at);

-- Web sessions, in the store so that any node serves them: the SHA-256 of the cookie's ID.
CREATE TABLE web_sessions (
    id_hash     bytea NOT NULL,
    user_name   text COLLATE "C" NOT NULL REFERENCES users (name),
    csrf_token  text COLLATE "C" NOT NULL,
    created_at  timestamptz NOT NULL,
    seen_at     timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    CONSTRAINT web_sessions_pkey PRIMARY KEY (id_hash)
);
CREATE INDEX web_sessions_user ON web_sessions (user_name);

-- +goose Down
DROP TABLE web_sessions;
DROP TABLE api_tokens;
DROP TABLE users;
