-- +goose Up

-- Failed logins counted per account and per address (engine/access, docs/security.md, "Login
-- throttling"), in the store so that every node sees every failure: on N nodes an attacker gets
-- no more guesses than on one. kind is 'account' or 'address'. A count starts at its first
-- failure (since) and lasts the throttle's window; expired rows are deleted as new failures are
-- counted (login_failures_since).
CREATE TABLE login_failures (
    kind   text COLLATE "C" NOT NULL CHECK (kind IN ('account', 'address')),
    value  text COLLATE "C" NOT NULL,
    since  timestamptz NOT NULL,
    n      integer NOT NULL,
    CONSTRAINT login_failures_pkey PRIMARY KEY (kind, value)
);
CREATE INDEX login_failures_since ON login_failures (since);

-- +goose Down
DROP TABLE login_failures;
