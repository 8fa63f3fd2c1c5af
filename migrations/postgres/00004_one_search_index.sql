-- +goose Up

-- One secondary index serves every search: (type, param, value, id) answers equality, prefix
-- and range on value, and a token search with a system reads the system from the primary key
-- row it reaches. The second index, led by system, cost a third of the index writes of every
-- resource version for no query that needs it (docs/performance.md, orders end to end).
DROP INDEX resource_index_system_value;

-- +goose Down
CREATE INDEX resource_index_system_value ON resource_index (type, param, system, value, id);
