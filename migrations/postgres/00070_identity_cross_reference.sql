-- +goose Up

-- The patient identity cross-reference (docs/dicom.md, "Identity cross-reference"; IHE PIX):
-- the identifiers a person is known by are the Patient resources' own (ADT, orders, and the
-- records merged into the person) and the identifier each linked study carries. A study's
-- patient identifier, as the hospital's identifier rules read it (engine/patientid: the
-- authority's system and the normalised value; an issuer no rule names is
-- urn:ferry:issuer:<issuer>), is kept with its decision. While the decision is `linked` it is an
-- identifier of the decision's patient — learned from the linker's evidence or from a person's
-- reconciliation — and the next study with it links by rule patient-id. A new decision for the
-- study (unlink, relink, a merge moving it) replaces the row, so what was learned goes with it.
--
--   id_system  the identifier's system, '' when the study carried none (or one refused)
--   id_value   its value as the rules normalise it, '' likewise

ALTER TABLE study_links
    ADD COLUMN id_system text COLLATE "C" NOT NULL DEFAULT '',
    ADD COLUMN id_value  text COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE study_link_history
    ADD COLUMN id_system text COLLATE "C" NOT NULL DEFAULT '',
    ADD COLUMN id_value  text COLLATE "C" NOT NULL DEFAULT '';
-- Who holds an identifier: the linked studies carrying it (StudyLinksWithIdentifier).
CREATE INDEX study_links_identifier ON study_links (id_system, id_value) WHERE status = 'linked' AND id_value <> '';

-- +goose Down
DROP INDEX study_links_identifier;
ALTER TABLE study_link_history DROP COLUMN id_value, DROP COLUMN id_system;
ALTER TABLE study_links DROP COLUMN id_value, DROP COLUMN id_system;
