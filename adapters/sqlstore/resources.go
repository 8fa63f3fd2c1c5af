package sqlstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ferryhealth/ferry/engine"
	"github.com/ferryhealth/ferry/fhir"
)

// ResourceByKeysStatement is the dialect's statement for ResourceByKeys, tuned to its planner:
// it takes the type, then either Slots keys (unused slots NULL, matching nothing; more keys take
// one more execution per Slots, in order) or, when Slots is 0, every key as one List parameter.
// It returns the current version of the resource holding the first key any resource of the type
// holds, as the columns id, version_id, last_updated, json and the held keys (a list column).
type ResourceByKeysStatement struct {
	Query string
	Slots int
}

// resourceStatements are the reads of resources and their keys (migrations/*/00002_resources.sql).
// Writing a version (PutResource) is each store's own: the hot path of every order.
type resourceStatements struct {
	currentResource, resourceVersion, resourceHistory, resolveKey string
	resourceByKeys                                                ResourceByKeysStatement
}

func newResourceStatements(rebind func(string) string, d Dialect) resourceStatements {
	return resourceStatements{
		// The current version with the keys the resource holds (engine.ResourceReader: Resource
		// returns them, for the next PutResource).
		currentResource: rebind(`
SELECT v.version_id, v.last_updated, v.json,
       ` + d.ListOf(`SELECT k.key AS value FROM resource_keys k WHERE k.type = r.type AND k.id = r.id ORDER BY k.key`) + `
FROM resources r
JOIN resource_versions v ON v.type = r.type AND v.id = r.id AND v.version_id = r.version_id
WHERE r.type = ? AND r.id = ?`),
		resourceVersion: rebind(`
SELECT version_id, last_updated, json FROM resource_versions
WHERE type = ? AND id = ? AND version_id = ?`),
		resourceHistory: rebind(`
SELECT version_id, last_updated, json FROM resource_versions
WHERE type = ? AND id = ?
ORDER BY version_id DESC`),
		resolveKey:     rebind(`SELECT id FROM resource_keys WHERE type = ? AND key = ?`),
		resourceByKeys: d.ResourceByKeys(),
	}
}

// Resource returns the current version of typ/id with the keys it holds, or engine.ErrNotFound.
func (s *Store) Resource(ctx context.Context, c Conn, typ, id string) (*engine.Resource, error) {
	if !ValidType(typ) || !ValidID(id) {
		return nil, fmt.Errorf("reading %s/%s: %w", typ, id, engine.ErrNotFound)
	}
	r := &engine.Resource{Type: typ, ID: id}
	rows, err := c.Query(ctx, s.currentResource, typ, id)
	err = s.scanOne(rows, err, func(row rowScanner) error {
		return row.Scan(&r.VersionID, scanTime{&r.LastUpdated}, &r.JSON, s.d.ListScanner(&r.Keys))
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s/%s: %w", typ, id, err)
	}
	return r, nil
}

// ResourceVersion returns one version of typ/id, or engine.ErrNotFound.
func (s *Store) ResourceVersion(ctx context.Context, c Conn, typ, id string, version int64) (*engine.Resource, error) {
	if !ValidType(typ) || !ValidID(id) {
		return nil, fmt.Errorf("reading %s/%s version %d: %w", typ, id, version, engine.ErrNotFound)
	}
	rows, err := c.Query(ctx, s.resourceVersion, typ, id, version)
	var r *engine.Resource
	err = s.scanOne(rows, err, func(row rowScanner) (err error) {
		r, err = scanVersion(row, typ, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s/%s version %d: %w", typ, id, version, err)
	}
	return r, nil
}

// ResourceHistory returns every version of typ/id, newest first, or engine.ErrNotFound.
func (s *Store) ResourceHistory(ctx context.Context, c Conn, typ, id string) ([]*engine.Resource, error) {
	if !ValidType(typ) || !ValidID(id) {
		return nil, fmt.Errorf("reading history of %s/%s: %w", typ, id, engine.ErrNotFound)
	}
	rows, err := c.Query(ctx, s.resourceHistory, typ, id)
	out, err := scanAll(s, rows, err, func(row rowScanner) (*engine.Resource, error) {
		return scanVersion(row, typ, id)
	})
	if err == nil && len(out) == 0 {
		err = engine.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading history of %s/%s: %w", typ, id, err)
	}
	return out, nil
}

// scanVersion reads the version_id, last_updated and json columns as a version of typ/id.
func scanVersion(row rowScanner, typ, id string) (*engine.Resource, error) {
	r := &engine.Resource{Type: typ, ID: id}
	return r, row.Scan(&r.VersionID, scanTime{&r.LastUpdated}, &r.JSON)
}

// ResolveKey returns the id of the resource of typ holding key, or engine.ErrNotFound. The key is
// not logged: it may be an MRN.
func (s *Store) ResolveKey(ctx context.Context, c Conn, typ, key string) (string, error) {
	if !ValidType(typ) {
		return "", fmt.Errorf("resolving a %s key: %w", typ, engine.ErrNotFound)
	}
	var id string
	rows, err := c.Query(ctx, s.resolveKey, typ, engine.StorableText(key))
	if err := s.scanOne(rows, err, func(row rowScanner) error { return row.Scan(&id) }); err != nil {
		return "", fmt.Errorf("resolving a %s key: %w", typ, err)
	}
	return id, nil
}

// ResourceByKeys returns the current version of the resource of typ holding the first of keys
// that any resource holds (the dialect's ResourceByKeysStatement), or engine.ErrNotFound. The
// keys are not logged: they may hold an MRN.
func (s *Store) ResourceByKeys(ctx context.Context, c Conn, typ string, keys []string) (*engine.Resource, error) {
	if !ValidType(typ) || len(keys) == 0 {
		return nil, fmt.Errorf("finding a %s by key: %w", typ, engine.ErrNotFound)
	}
	stored := make([]string, len(keys))
	for i, k := range keys {
		stored[i] = engine.StorableText(k)
	}
	st := s.resourceByKeys
	var batches [][]any
	if st.Slots == 0 {
		batches = [][]any{{typ, s.d.List(stored)}}
	}
	for start := 0; st.Slots > 0 && start < len(stored); start += st.Slots {
		args := make([]any, 1+st.Slots)
		args[0] = typ
		for j := range st.Slots {
			if start+j < len(stored) {
				args[1+j] = stored[start+j]
			} // else NULL: matches nothing
		}
		batches = append(batches, args)
	}
	for _, args := range batches {
		r := &engine.Resource{Type: typ}
		rows, err := c.Query(ctx, st.Query, args...)
		err = s.scanOne(rows, err, func(row rowScanner) error {
			return row.Scan(&r.ID, &r.VersionID, scanTime{&r.LastUpdated}, &r.JSON, s.d.ListScanner(&r.Keys))
		})
		if errors.Is(err, engine.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("finding a %s by key: %w", typ, err)
		}
		return r, nil
	}
	return nil, fmt.Errorf("finding a %s by key: %w", typ, engine.ErrNotFound)
}

// SearchResources returns the current versions matching q, as engine.ResourceReader documents,
// in one query: the page of current versions (narrow rows, sorted, skipped and cut), then the
// JSON of just that page. Each filter is a semi-join on the index entries; values are
// parameters, never text of the query.
//
// A prefix matches the stored value's leading bytes exactly: case-sensitive, no wildcard (% and _
// are themselves), as the dialect's Prefix spells it. A search with a prefix runs unprepared, so
// that PostgreSQL plans the prefix as an index range; others take few shapes (equalities of
// several values are one list) and run prepared (QueryShape): planning each execution anew cost
// more than running it (1.5 ms against 0.6 ms for the linker's lookups on PostgreSQL).
func (s *Store) SearchResources(ctx context.Context, c Conn, q engine.ResourceQuery) ([]*engine.Resource, error) {
	if !ValidType(q.Type) {
		return nil, nil
	}
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return s.d.Placeholder(len(args))
	}
	// Arguments are added in the order their placeholders stand in the text: a dialect's
	// placeholders may be numbered by position (SQLite's ?). The type is one at each use.
	rType := arg(q.Type)
	var (
		where  strings.Builder
		prefix bool
	)
	for _, f := range q.Filters {
		if len(f.Values) == 0 {
			return nil, nil // no value to match: nothing matches
		}
		where.WriteString("\n\tAND r.id IN (SELECT i.id FROM resource_index i WHERE i.type = " + arg(q.Type) +
			" AND i.param = " + arg(IndexText(f.Param)) + " AND (")
		if anyOf := equalValues(f); anyOf != nil {
			// One index condition (a list the btree answers value by value), where ORed
			// equalities could end up a filter over every entry of the parameter.
			where.WriteString(s.d.InList("i.value", arg(s.d.List(anyOf))) + "))")
			// A long list (a physician's patients, engine/access) is planned for its length:
			// a generic plan compares each entry with the list one by one.
			prefix = prefix || len(anyOf) > longList
			continue
		}
		for j, v := range f.Values {
			if j > 0 {
				where.WriteString(" OR ")
			}
			value := IndexText(v.Value)
			var cond string
			if v.System != "" {
				cond = "i.system = " + arg(IndexText(v.System)) + " AND "
			}
			switch f.Op {
			case engine.SearchEq:
				cond += "i.value = " + arg(value)
			case engine.SearchPrefix:
				cond += s.d.Prefix("i.value", value, arg)
				prefix = true
			case engine.SearchGe:
				cond += "i.value >= " + arg(value)
			case engine.SearchGt:
				cond += "i.value > " + arg(value)
			case engine.SearchLe:
				cond += "i.value <= " + arg(value)
			case engine.SearchLt:
				cond += "i.value < " + arg(value)
			default:
				return nil, fmt.Errorf("searching %s: unknown operator %q", q.Type, f.Op)
			}
			where.WriteString("(" + cond + ")")
		}
		where.WriteString("))")
	}
	query := `SELECT p.id, p.version_id, p.last_updated, v.json
FROM (
	SELECT r.id, r.version_id, r.last_updated
	FROM resources r
	WHERE r.type = ` + rType + where.String() + `
	ORDER BY ` + s.d.SearchOrder(len(q.Filters) > 0) + ` DESC, r.id
	LIMIT ` + arg(Limit(q.Count)) + ` OFFSET ` + arg(max(q.Offset, 0)) + `
) p
JOIN resource_versions v ON v.type = ` + arg(q.Type) + ` AND v.id = p.id AND v.version_id = p.version_id
ORDER BY p.last_updated DESC, p.id`

	run := c.QueryShape
	if prefix {
		run = c.QueryOnce
	}
	rows, err := run(ctx, query, args...)
	out, err := scanAll(s, rows, err, func(row rowScanner) (*engine.Resource, error) {
		r := &engine.Resource{Type: q.Type}
		return r, row.Scan(&r.ID, &r.VersionID, scanTime{&r.LastUpdated}, &r.JSON)
	})
	if err != nil {
		return nil, fmt.Errorf("searching %s: %w", q.Type, err)
	}
	return out, nil
}

// longList is the length from which a list filter's query is planned for its values.
const longList = 64

// equalValues returns the values of an equality filter with several values and no systems (the
// linker's blocking keys, a status list) as one list; nil for any other filter.
func equalValues(f engine.SearchFilter) []string {
	if f.Op != engine.SearchEq || len(f.Values) < 2 {
		return nil
	}
	out := make([]string, len(f.Values))
	for i, v := range f.Values {
		if v.System != "" {
			return nil
		}
		out[i] = IndexText(v.Value)
	}
	return out
}

// IndexEntries returns a version's search-index entries as resource_index keeps them (IndexText),
// sorted by param, system and value and distinct (two values may differ only past MaxIndexText).
// Both stores write them in this order and keep them with the version (index_entries,
// migrations/*/00150), to write only the difference at the next version.
func IndexEntries(index []fhir.IndexEntry) []fhir.IndexEntry {
	out := make([]fhir.IndexEntry, len(index))
	for i, e := range index {
		out[i] = fhir.IndexEntry{Param: IndexText(e.Param), System: IndexText(e.System), Value: IndexText(e.Value)}
	}
	slices.SortFunc(out, func(a, b fhir.IndexEntry) int {
		return cmp.Or(strings.Compare(a.Param, b.Param), strings.Compare(a.System, b.System), strings.Compare(a.Value, b.Value))
	})
	return slices.Compact(out)
}
