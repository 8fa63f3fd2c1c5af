-- +goose Up

-- Each search-index entry in one btree instead of two (issue 16: fewer index entries per order).
--
-- resource_index had a primary key (type, id, param, system, value) beside its search index
-- (type, param, value, id): every entry was written into both. The primary key served one thing,
-- finding a resource's entries to replace them at its next version. The version row now keeps
-- its own entries (index_entries: a two-dimensional array, row 1 the params, row 2 the systems,
-- row 3 the values), so PutResource finds the entries to delete by reading the previous version's
-- row (a primary-key probe it is) and deletes each through the search index; the primary key goes.
-- A new Patient's 14 entries are 14 btree insertions, not 28, and no probes for existing entries.
--
-- Only current versions need their entries; older versions migrated here keep NULL. Entries are
-- distinct per resource (PutResource sorts and compacts them), so nothing needs the uniqueness.
ALTER TABLE resource_versions ADD COLUMN index_entries text[];

UPDATE resource_versions v
SET index_entries = coalesce((
	SELECT ARRAY[array_agg(i.param ORDER BY i.param, i.system, i.value),
	             array_agg(i.system ORDER BY i.param, i.system, i.value),
	             array_agg(i.value ORDER BY i.param, i.system, i.value)]
	FROM resource_index i WHERE i.type = v.type AND i.id = v.id), '{}')
FROM resources r
WHERE r.type = v.type AND r.id = v.id AND r.version_id = v.version_id;

ALTER TABLE resource_index DROP CONSTRAINT resource_index_pkey;

-- +goose Down
ALTER TABLE resource_index ADD CONSTRAINT resource_index_pkey PRIMARY KEY (type, id, param, system, value);
ALTER TABLE resource_versions DROP COLUMN index_entries;
