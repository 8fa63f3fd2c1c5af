-- +goose Up

-- Received DICOM instances, assembled into series and studies (engine.InstanceStore). Three
-- tables, each keyed by its DICOM UID:
--
--   dicom_instances  one row per SOP Instance UID: the header attributes Ferry keeps besides the
--                    file, and where the file is. Only ever inserted: the first copy is kept.
--   dicom_series     one row per Series Instance UID, with its instance count.
--   dicom_studies    one row per Study Instance UID: the patient and study attributes, the
--                    modalities in the study, its series and instance counts, first/last received.
--
-- PutInstance writes all three in one statement. The instance's primary key is the duplicate
-- rule: a second copy (a PACS resending, two nodes receiving the same C-STORE) inserts nothing
-- and counts nothing. Series and study rows are upserted; ON CONFLICT DO UPDATE waits for a racing
-- transaction on the same row and then adds to what it committed, so concurrent instances of
-- one new study from several nodes yield exact counts.
--
-- The counters and dicom_studies.last_received change at every instance and are in no index, so
-- those updates are HOT (no index entries written) when the page has room: fillfactor leaves it.
--
-- UIDs, codes, dates (DA, YYYYMMDD: lexical order is date order) and identifiers compare byte
-- for byte: collation "C". Series and instance numbers are IS (text); *_number_value holds the
-- number as an integer (NULL when absent or not a number) so that series and instances sort by
-- number, 2 before 10.

CREATE TABLE dicom_instances (
    sop_instance_uid         text COLLATE "C" NOT NULL,
    sop_class_uid            text COLLATE "C" NOT NULL,
    series_instance_uid      text COLLATE "C" NOT NULL,
    study_instance_uid       text COLLATE "C" NOT NULL,
    transfer_syntax_uid      text COLLATE "C" NOT NULL,
    modality                 text COLLATE "C" NOT NULL,
    series_number            text COLLATE "C" NOT NULL,
    series_description       text NOT NULL,
    instance_number          text COLLATE "C" NOT NULL,
    instance_number_value    bigint,
    patient_id               text COLLATE "C" NOT NULL,
    issuer_of_patient_id     text COLLATE "C" NOT NULL,
    patient_name             text NOT NULL,
    patient_birth_date       text COLLATE "C" NOT NULL,
    patient_sex              text COLLATE "C" NOT NULL,
    accession_number         text COLLATE "C" NOT NULL,
    study_date               text COLLATE "C" NOT NULL,
    study_time               text COLLATE "C" NOT NULL,
    study_description        text NOT NULL,
    study_id                 text COLLATE "C" NOT NULL,
    referring_physician_name text NOT NULL,
    path                     text NOT NULL, -- relative to the DICOM data directory
    size                     bigint NOT NULL CHECK (size >= 0),
    sha256                   text COLLATE "C" NOT NULL,
    received_at              timestamptz NOT NULL,
    calling_ae_title         text COLLATE "C" NOT NULL,
    called_ae_title          text COLLATE "C" NOT NULL,
    peer_addr                text NOT NULL,
    CONSTRAINT dicom_instances_pkey PRIMARY KEY (sop_instance_uid)
);
-- SeriesInstances: a series' instances in their order (ASC sorts NULL last, as the query asks).
CREATE INDEX dicom_instances_series
    ON dicom_instances (series_instance_uid, instance_number_value, sop_instance_uid);
-- A study's instances without going through its series (study-level retrieve, QIDO-RS
-- /studies/{uid}/instances).
CREATE INDEX dicom_instances_study ON dicom_instances (study_instance_uid);

CREATE TABLE dicom_series (
    series_instance_uid  text COLLATE "C" NOT NULL,
    study_instance_uid   text COLLATE "C" NOT NULL, -- of the first instance received
    modality             text COLLATE "C" NOT NULL,
    series_number        text COLLATE "C" NOT NULL,
    series_number_value  bigint,
    series_description   text NOT NULL,
    number_of_instances  integer NOT NULL CHECK (number_of_instances >= 1),
    CONSTRAINT dicom_series_pkey PRIMARY KEY (series_instance_uid)
) WITH (fillfactor = 80);
-- StudySeries: a study's series in their order.
CREATE INDEX dicom_series_study
    ON dicom_series (study_instance_uid, series_number_value, series_instance_uid);

CREATE TABLE dicom_studies (
    study_instance_uid       text COLLATE "C" NOT NULL,
    patient_id               text COLLATE "C" NOT NULL,
    issuer_of_patient_id     text COLLATE "C" NOT NULL,
    patient_name             text NOT NULL,
    patient_birth_date       text COLLATE "C" NOT NULL,
    patient_sex              text COLLATE "C" NOT NULL,
    accession_number         text COLLATE "C" NOT NULL,
    study_date               text COLLATE "C" NOT NULL,
    study_time               text COLLATE "C" NOT NULL,
    study_description        text NOT NULL,
    study_id                 text COLLATE "C" NOT NULL,
    referring_physician_name text NOT NULL,
    -- Distinct, sorted, no empty value: (0008,0061) as QIDO-RS returns it.
    modalities_in_study      text[] COLLATE "C" NOT NULL,
    number_of_series         integer NOT NULL CHECK (number_of_series >= 0),
    number_of_instances      integer NOT NULL CHECK (number_of_instances >= 1),
    first_received           timestamptz NOT NULL,
    last_received            timestamptz NOT NULL,
    CONSTRAINT dicom_studies_pkey PRIMARY KEY (study_instance_uid)
) WITH (fillfactor = 80);
-- Linking a study to its order, and QIDO-RS: by accession number; by patient ID within its
-- issuer (an MRN means nothing without the assigning authority); by study date (ranges) and time.
CREATE INDEX dicom_studies_accession_number ON dicom_studies (accession_number);
CREATE INDEX dicom_studies_patient ON dicom_studies (patient_id, issuer_of_patient_id);
CREATE INDEX dicom_studies_study_date ON dicom_studies (study_date, study_time);

-- +goose Down
DROP TABLE dicom_studies;
DROP TABLE dicom_series;
DROP TABLE dicom_instances;
