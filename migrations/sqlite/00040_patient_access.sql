-- +goose Up

-- Who may see which patient, and break-glass grants: as in
-- migrations/postgres/00040_patient_access.sql. Times are Unix nanoseconds, UTC.
CREATE TABLE patient_access (
    patient_id  TEXT NOT NULL,
    facility    TEXT NOT NULL,
    system      TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (patient_id, facility, system, value)
) STRICT, WITHOUT ROWID;
CREATE INDEX patient_access_value ON patient_access (value, patient_id);
CREATE INDEX patient_access_facility ON patient_access (facility, patient_id);

CREATE TABLE break_glass (
    user_name   TEXT NOT NULL REFERENCES users (name),
    patient_id  TEXT NOT NULL,
    reason      TEXT NOT NULL,
    granted_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (user_name, patient_id, granted_at)
) STRICT, WITHOUT ROWID;
CREATE INDEX break_glass_expires ON break_glass (user_name, expires_at);

-- +goose Down
DROP TABLE break_glass;
DROP TABLE patient_access;
