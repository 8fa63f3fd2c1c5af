package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"
)

// MappingRevision is one version of a mapping, code table, partial or test file in a site's or
// a facility's mappings directory (docs/mappings.md, "History and rollback"): what the file
// held, who made it so — an analyst who saved it in the console, or "files" for content a node
// found on disk (the first time it saw the file, or after an edit made outside the console) —
// and when.
type MappingRevision struct {
	ID       int64
	Facility string // MSH-4 of the facility's directory, "" for the site's (mappings.dir)
	Path     string // inside that directory, slash-separated: "orm_o01.yaml", "tables/procedures.yaml"
	Seq      int    // the file's versions count from 1
	Digest   string // SHA-256 of Content, hex (set by Record)
	Content  []byte
	Author   string
	Note     string // what the author said of the change; a rollback names the revision it restored
	At       time.Time
}

// MappingFilesAuthor is the author of a revision a node found on disk.
const MappingFilesAuthor = "files"

// MaxMappingFile caps a mapping file the console saves or the history records: mappings and
// code tables are a few kilobytes; anything near this is not one.
const MaxMappingFile = 1 << 20

// MappingDigest is the digest a revision records for content.
func MappingDigest(content []byte) string {
	sum := sha256.Sum256(content)
	return hex.EncodeToString(sum[:])
}

// Validate checks what every revision needs.
func (r *MappingRevision) Validate() error {
	switch {
	case r.Path == "":
		return errors.New("mapping revision: the file's path is required")
	case r.Author == "":
		return errors.New("mapping revision: the author is required")
	case r.At.IsZero():
		return errors.New("mapping revision: the time is required")
	case len(r.Content) > MaxMappingFile:
		return errors.New("mapping revision: the file exceeds 1 MiB")
	}
	return nil
}

// MappingHistory is the store of mapping revisions. Implementations: adapters/postgres,
// adapters/sqlite.
type MappingHistory interface {
	// RecordMappingRevision records r as the next revision of its file unless the file's latest
	// revision already holds the same content; it reports whether it recorded one, and sets
	// r.Digest (and r.Seq and r.ID when it did). Two nodes recording the same change at once
	// record it once.
	RecordMappingRevision(ctx context.Context, r *MappingRevision) (bool, error)
	// MappingRevisions returns a file's revisions, newest first, without their content.
	MappingRevisions(ctx context.Context, facility, path string) ([]*MappingRevision, error)
	// MappingRevision returns one revision with its content, or ErrNotFound.
	MappingRevision(ctx context.Context, id int64) (*MappingRevision, error)
}
