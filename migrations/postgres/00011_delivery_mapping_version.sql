-- +goose Up

-- Which outbound mapping built a delivery's message (mappings.Outbound.Version, e.g.
-- "oru_r01@1+3fa2c9d1": its declared version and a digest of the file, tables and partials); ''
-- for a FHIR Bundle, which Ferry builds without a mapping. A replay that builds the message
-- again records the mapping that built it then.

ALTER TABLE deliveries ADD COLUMN mapping_version text COLLATE "C" NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE deliveries DROP COLUMN mapping_version;
