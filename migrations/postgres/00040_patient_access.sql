-- +goose Up

-- Who may see which patient (engine/access, docs/security.md "A physician's patients"): one row
-- per patient, sending facility and practitioner identifier an order of the patient named as
-- requester, ordering, attending or referring doctor (ORC-12, OBR-16, PV1-7, PV1-8). Written
-- in the order's transaction; a merge copies the rows of each patient to the other. A row with
-- an empty value records only the facility (an order naming no doctor). system is the
-- identifier's system, or its assigning authority when it has none ('' when neither).
CREATE TABLE patient_access (
    patient_id  text COLLATE "C" NOT NULL,
    facility    text COLLATE "C" NOT NULL,
    system      text COLLATE "C" NOT NULL,
    value       text COLLATE "C" NOT NULL,
    CONSTRAINT patient_access_pkey PRIMARY KEY (patient_id, facility, system, value)
);
-- A physician's patients by identifier value (the system is compared after), a radiologist's
-- by facility: each an index range, never a scan.
CREATE INDEX patient_access_value ON patient_access (value, patient_id);
CREATE INDEX patient_access_facility ON patient_access (facility, patient_id);

-- Break-glass grants: a physician opened a patient who is not theirs, giving a reason; the
-- grant lasts until expires_at. Kept after they expire (the audit trail names them too).
CREATE TABLE break_glass (
    user_name   text COLLATE "C" NOT NULL REFERENCES users (name),
    patient_id  text COLLATE "C" NOT NULL,
    reason      text NOT NULL,
    granted_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    CONSTRAINT break_glass_pkey PRIMARY KEY (user_name, patient_id, granted_at)
);
CREATE INDEX break_glass_expires ON break_glass (user_name, expires_at);

-- +goose Down
DROP TABLE break_glass;
DROP TABLE patient_access;
