-- +goose Up

-- As migrations/postgres/00011_delivery_mapping_version.sql: the outbound mapping that built a
-- delivery's message, '' for a FHIR Bundle.

ALTER TABLE deliveries ADD COLUMN mapping_version TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE deliveries DROP COLUMN mapping_version;
