-- +goose Up

-- Reconciliation (docs/dicom.md, "Linking" and "Reconciliation"):
--
--   study_links gains the decisions a person makes and what the linker weighed:
--     status      adds 'review': the demographic score fell in the uncertain band, or two
--                 candidates scored close together — a person decides;
--     candidates  the ranked candidates with their scores and evidence, a JSON array (shown,
--                 never queried: text);
--     decided_by  'linker', 'adt' (a merge moved the study) or the person who decided;
--     reason      why, as that person gave it ('' for the linker).
--   study_link_history keeps every decision ever made for a study, so that what was linked where
--   and why is never lost (IHE PIR): PutStudyLink appends to it in the same transaction.
--   study_derivations is the queue of studies whose FHIR ImagingStudy must be derived again: an
--   instance arrived or the link changed. changed_at is the latest change; the deriver waits
--   until a study has been quiet for a while, derives it, and deletes the row only if nothing
--   changed meanwhile (changes, counted up at every change, still the same).

ALTER TABLE study_links
    DROP CONSTRAINT study_links_status_check,
    ADD CONSTRAINT study_links_status_check
        CHECK (status IN ('linked', 'review', 'contradiction', 'unmatched')),
    ADD COLUMN candidates text NOT NULL DEFAULT '[]',
    ADD COLUMN decided_by text NOT NULL DEFAULT 'linker',
    ADD COLUMN reason     text NOT NULL DEFAULT '';
-- The studies linked to a patient: a merge moves them to the survivor.
CREATE INDEX study_links_patient ON study_links (patient_id);

CREATE TABLE study_link_history (
    id                  bigint GENERATED ALWAYS AS IDENTITY,
    study_instance_uid  text COLLATE "C" NOT NULL,
    status              text COLLATE "C" NOT NULL,
    service_request_id  text COLLATE "C" NOT NULL,
    patient_id          text COLLATE "C" NOT NULL,
    rule                text COLLATE "C" NOT NULL,
    score               double precision NOT NULL,
    evidence            text NOT NULL,
    candidates          text NOT NULL,
    decided_at          timestamptz NOT NULL,
    decided_by          text NOT NULL,
    reason              text NOT NULL,
    CONSTRAINT study_link_history_pkey PRIMARY KEY (id)
);
CREATE INDEX study_link_history_study ON study_link_history (study_instance_uid, id);

CREATE TABLE study_derivations (
    study_instance_uid  text COLLATE "C" NOT NULL,
    changed_at          timestamptz NOT NULL,
    changes             bigint NOT NULL DEFAULT 1,
    CONSTRAINT study_derivations_pkey PRIMARY KEY (study_instance_uid)
);
CREATE INDEX study_derivations_changed ON study_derivations (changed_at);

-- +goose Down
DROP TABLE study_derivations;
DROP TABLE study_link_history;
DROP INDEX study_links_patient;
DELETE FROM study_links WHERE status = 'review';
ALTER TABLE study_links
    DROP COLUMN reason,
    DROP COLUMN decided_by,
    DROP COLUMN candidates,
    DROP CONSTRAINT study_links_status_check,
    ADD CONSTRAINT study_links_status_check CHECK (status IN ('linked', 'contradiction', 'unmatched'));
