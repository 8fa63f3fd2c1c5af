-- +goose Up

-- The version row keeps its own search-index entries (issue 16), as on PostgreSQL
-- (migrations/postgres/00150_index_entries_with_version.sql): index_entries is a JSON array of
-- three arrays, the params, the systems and the values. PutResource reads the previous version's
-- entries and writes only the difference: an update that changes one value deletes and inserts one
-- entry, instead of deleting every entry and inserting them all again. resource_index keeps its
-- primary key here: the table is WITHOUT ROWID, so the primary key is the table itself, no second
-- btree. Only current versions need their entries; older versions keep NULL.
ALTER TABLE resource_versions ADD COLUMN index_entries TEXT;

UPDATE resource_versions
SET index_entries = (
	SELECT json_array(json_group_array(param), json_group_array(system), json_group_array(value))
	FROM (SELECT i.param, i.system, i.value FROM resource_index i
		WHERE i.type = resource_versions.type AND i.id = resource_versions.id
		ORDER BY i.param, i.system, i.value))
WHERE EXISTS (SELECT 1 FROM resources r
	WHERE r.type = resource_versions.type AND r.id = resource_versions.id AND r.version_id = resource_versions.version_id);

-- +goose Down
ALTER TABLE resource_versions DROP COLUMN index_entries;
