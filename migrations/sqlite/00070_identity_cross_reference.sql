-- +goose Up

-- The patient identity cross-reference, as in
-- migrations/postgres/00070_identity_cross_reference.sql: each decision keeps the study's patient
-- identifier as the identifier rules read it (id_system, id_value; '' when none); a linked
-- decision makes it an identifier of its patient until the decision is replaced.

ALTER TABLE study_links ADD COLUMN id_system TEXT NOT NULL DEFAULT '';
ALTER TABLE study_links ADD COLUMN id_value TEXT NOT NULL DEFAULT '';
ALTER TABLE study_link_history ADD COLUMN id_system TEXT NOT NULL DEFAULT '';
ALTER TABLE study_link_history ADD COLUMN id_value TEXT NOT NULL DEFAULT '';
CREATE INDEX study_links_identifier ON study_links (id_system, id_value) WHERE status = 'linked' AND id_value <> '';

-- +goose Down
DROP INDEX study_links_identifier;
ALTER TABLE study_link_history DROP COLUMN id_value;
ALTER TABLE study_link_history DROP COLUMN id_system;
ALTER TABLE study_links DROP COLUMN id_value;
ALTER TABLE study_links DROP COLUMN id_system;
