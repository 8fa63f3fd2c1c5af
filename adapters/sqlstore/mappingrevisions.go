package sqlstore

import (
	"context"
	"fmt"

	"github.com/ferryhealth/ferry/engine"
)

// The mapping history's SQL (engine/mappingrevisions.go, migrations/*/00115_mapping_revisions.sql).
const mappingRevisionColumns = `id, facility, path, seq, digest, author, note, recorded_at`

type mappingRevisionStatements struct {
	recordMappingRevision, mappingRevisions, mappingRevision string
}

func newMappingRevisionStatements(rebind func(string) string) mappingRevisionStatements {
	return mappingRevisionStatements{
		// One statement: the next seq of the file, unless its latest revision has this digest.
		// Two nodes racing to record the same change compute the same seq; the unique key lets
		// one in and the other's row is dropped (ON CONFLICT DO NOTHING: both dialects).
		recordMappingRevision: rebind(`INSERT INTO mapping_revisions (facility, path, seq, digest, content, author, note, recorded_at)
SELECT ?, ?, coalesce(max(seq), 0) + 1, ?, ?, ?, ?, ? FROM mapping_revisions WHERE facility = ? AND path = ?
HAVING coalesce((SELECT digest FROM mapping_revisions WHERE facility = ? AND path = ? ORDER BY seq DESC LIMIT 1), '') <> ?
ON CONFLICT (facility, path, seq) DO NOTHING`),
		mappingRevisions: rebind(`SELECT ` + mappingRevisionColumns + ` FROM mapping_revisions
WHERE facility = ? AND path = ? ORDER BY seq DESC LIMIT 1000`),
		mappingRevision: rebind(`SELECT ` + mappingRevisionColumns + `, content FROM mapping_revisions WHERE id = ?`),
	}
}

// RecordMappingRevision records r unless its file's latest revision has the same content.
func (s *Store) RecordMappingRevision(ctx context.Context, c Conn, r *engine.MappingRevision) (bool, error) {
	if err := r.Validate(); err != nil {
		return false, &InvalidError{err}
	}
	ts, err := s.times(r.At)
	if err != nil {
		return false, err
	}
	r.Digest = engine.MappingDigest(r.Content)
	content := r.Content
	if content == nil {
		content = []byte{}
	}
	fac, path := engine.StorableText(r.Facility), engine.StorableText(r.Path)
	res, err := c.Exec(ctx, s.recordMappingRevision, fac, path, r.Digest, content, engine.StorableText(r.Author),
		engine.StorableText(r.Note), ts[0], fac, path, fac, path, r.Digest)
	var n int64
	if err == nil {
		n, err = res.RowsAffected()
	}
	if err != nil {
		return false, fmt.Errorf("recording a revision of %s: %w", r.Path, s.d.InterpretError(err))
	}
	if n == 0 {
		return false, nil
	}
	// The row just recorded is the file's latest with this digest.
	revs, err := s.MappingRevisions(ctx, c, r.Facility, r.Path)
	if err == nil && len(revs) > 0 && revs[0].Digest == r.Digest {
		r.ID, r.Seq = revs[0].ID, revs[0].Seq
	}
	return true, err
}

// MappingRevisions returns a file's revisions, newest first, without content (the latest 1000).
func (s *Store) MappingRevisions(ctx context.Context, c Conn, facility, path string) ([]*engine.MappingRevision, error) {
	rows, err := c.Query(ctx, s.mappingRevisions, engine.StorableText(facility), engine.StorableText(path))
	out, err := scanAll(s, rows, err, func(r rowScanner) (*engine.MappingRevision, error) { return scanMappingRevision(r, false) })
	if err != nil {
		return nil, fmt.Errorf("reading the history of %s: %w", path, err)
	}
	return out, nil
}

// MappingRevision returns revision id with its content; engine.ErrNotFound when there is none.
func (s *Store) MappingRevision(ctx context.Context, c Conn, id int64) (*engine.MappingRevision, error) {
	rows, err := c.Query(ctx, s.mappingRevision, id)
	r, err := scanRow(s, rows, err, func(r rowScanner) (*engine.MappingRevision, error) { return scanMappingRevision(r, true) })
	if err != nil {
		return nil, fmt.Errorf("reading mapping revision %d: %w", id, err)
	}
	return r, nil
}

func scanMappingRevision(r rowScanner, content bool) (*engine.MappingRevision, error) {
	var m engine.MappingRevision
	dest := []any{&m.ID, &m.Facility, &m.Path, &m.Seq, &m.Digest, &m.Author, &m.Note, scanTime{&m.At}}
	if content {
		dest = append(dest, &m.Content)
	}
	if err := r.Scan(dest...); err != nil {
		return nil, err
	}
	if content && m.Content == nil {
		m.Content = []byte{}
	}
	return &m, nil
}

func (p Pool) RecordMappingRevision(ctx context.Context, r *engine.MappingRevision) (bool, error) {
	return p.S.RecordMappingRevision(ctx, p.C, r)
}

func (p Pool) MappingRevisions(ctx context.Context, facility, path string) ([]*engine.MappingRevision, error) {
	return p.S.MappingRevisions(ctx, p.C, facility, path)
}

func (p Pool) MappingRevision(ctx context.Context, id int64) (*engine.MappingRevision, error) {
	return p.S.MappingRevision(ctx, p.C, id)
}
