-- +goose Up

-- Received DICOM instances, assembled into series and studies (engine.InstanceStore), as in
-- migrations/postgres/00005_dicom_studies.sql: dicom_instances (one row per SOP Instance UID,
-- only ever inserted: the primary key is the duplicate rule), dicom_series (one per Series
-- Instance UID, with its instance count) and dicom_studies (one per Study Instance UID: patient
-- and study attributes, modalities, counts, first/last received). PutInstance writes all three
-- in one transaction on the one writer connection.
--
-- Text compares with BINARY collation (byte order): DA dates sort as dates. Times are Unix
-- nanoseconds, UTC. *_number_value is the IS number as an integer (NULL when absent or not a
-- number), so that series and instances sort by number, 2 before 10.

CREATE TABLE dicom_instances (
    sop_instance_uid         TEXT NOT NULL PRIMARY KEY,
    sop_class_uid            TEXT NOT NULL,
    series_instance_uid      TEXT NOT NULL,
    study_instance_uid       TEXT NOT NULL,
    transfer_syntax_uid      TEXT NOT NULL,
    modality                 TEXT NOT NULL,
    series_number            TEXT NOT NULL,
    series_description       TEXT NOT NULL,
    instance_number          TEXT NOT NULL,
    instance_number_value    INTEGER,
    patient_id               TEXT NOT NULL,
    issuer_of_patient_id     TEXT NOT NULL,
    patient_name             TEXT NOT NULL,
    patient_birth_date       TEXT NOT NULL,
    patient_sex              TEXT NOT NULL,
    accession_number         TEXT NOT NULL,
    study_date               TEXT NOT NULL,
    study_time               TEXT NOT NULL,
    study_description        TEXT NOT NULL,
    study_id                 TEXT NOT NULL,
    referring_physician_name TEXT NOT NULL,
    path                     TEXT NOT NULL, -- relative to the DICOM data directory
    size                     INTEGER NOT NULL CHECK (size >= 0),
    sha256                   TEXT NOT NULL,
    received_at              INTEGER NOT NULL,
    calling_ae_title         TEXT NOT NULL,
    called_ae_title          TEXT NOT NULL,
    peer_addr                TEXT NOT NULL
) STRICT; -- rowid: rows of several hundred bytes, too wide to gain from WITHOUT ROWID
-- SeriesInstances: a series' instances (SQLite sorts the series' rows: NULLS LAST).
CREATE INDEX dicom_instances_series
    ON dicom_instances (series_instance_uid, instance_number_value, sop_instance_uid);
-- A study's instances without going through its series.
CREATE INDEX dicom_instances_study ON dicom_instances (study_instance_uid);

CREATE TABLE dicom_series (
    series_instance_uid  TEXT NOT NULL PRIMARY KEY,
    study_instance_uid   TEXT NOT NULL, -- of the first instance received
    modality             TEXT NOT NULL,
    series_number        TEXT NOT NULL,
    series_number_value  INTEGER,
    series_description   TEXT NOT NULL,
    number_of_instances  INTEGER NOT NULL CHECK (number_of_instances >= 1)
) STRICT, WITHOUT ROWID;
CREATE INDEX dicom_series_study
    ON dicom_series (study_instance_uid, series_number_value, series_instance_uid);

CREATE TABLE dicom_studies (
    study_instance_uid       TEXT NOT NULL PRIMARY KEY,
    patient_id               TEXT NOT NULL,
    issuer_of_patient_id     TEXT NOT NULL,
    patient_name             TEXT NOT NULL,
    patient_birth_date       TEXT NOT NULL,
    patient_sex              TEXT NOT NULL,
    accession_number         TEXT NOT NULL,
    study_date               TEXT NOT NULL,
    study_time               TEXT NOT NULL,
    study_description        TEXT NOT NULL,
    study_id                 TEXT NOT NULL,
    referring_physician_name TEXT NOT NULL,
    -- A JSON array of text: distinct, sorted, no empty value ((0008,0061) as QIDO-RS returns it).
    modalities_in_study      TEXT NOT NULL CHECK (json_valid(modalities_in_study)),
    number_of_series         INTEGER NOT NULL CHECK (number_of_series >= 0),
    number_of_instances      INTEGER NOT NULL CHECK (number_of_instances >= 1),
    first_received           INTEGER NOT NULL,
    last_received            INTEGER NOT NULL
) STRICT;
-- Linking and QIDO-RS: by accession number; by patient ID within its issuer; by study date.
CREATE INDEX dicom_studies_accession_number ON dicom_studies (accession_number);
CREATE INDEX dicom_studies_patient ON dicom_studies (patient_id, issuer_of_patient_id);
CREATE INDEX dicom_studies_study_date ON dicom_studies (study_date, study_time);

-- +goose Down
DROP TABLE dicom_studies;
DROP TABLE dicom_series;
DROP TABLE dicom_instances;
