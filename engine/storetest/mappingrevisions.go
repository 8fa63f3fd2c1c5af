package storetest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ferryhealth/ferry/engine"
)

// MappingHistoryStore is a store with the mapping history (engine/mappingrevisions.go).
type MappingHistoryStore interface {
	engine.Store
	engine.MappingHistory
}

// RunMappingHistory checks the mapping history: a file's revisions are numbered from 1, content
// comes back byte for byte, a revision with the latest content is not recorded again (also when
// several nodes record it at once), a rollback is a new revision, and files of different
// facilities keep their own histories.
func RunMappingHistory(t *testing.T, open func(t *testing.T) MappingHistoryStore) {
	t.Parallel()
	ctx := context.Background()
	st := open(t)
	at := baseTime
	record := func(facility, path, author string, content []byte) (*engine.MappingRevision, bool) {
		t.Helper()
		at = at.Add(time.Minute)
		r := &engine.MappingRevision{Facility: facility, Path: path, Content: content, Author: author, Note: "n " + author, At: at}
		ok, err := st.RecordMappingRevision(ctx, r)
		if err != nil {
			t.Fatalf("RecordMappingRevision(%s %s by %s): %v", facility, path, author, err)
		}
		return r, ok
	}
	v1 := []byte("table: procedures\nrows:\n  CTHEAD: {loinc: 24725-4}\n")
	v2 := append(bytes.Clone(v1), []byte("  MRBRAIN: {loinc: 24590-2}\n# \x00\xff not UTF-8\n")...)

	r1, ok := record("", "tables/procedures.yaml", engine.MappingFilesAuthor, v1)
	if !ok || r1.Seq != 1 || r1.ID == 0 || r1.Digest != engine.MappingDigest(v1) {
		t.Fatalf("first revision: recorded %v, seq %d, id %d, digest %q; want recorded as seq 1", ok, r1.Seq, r1.ID, r1.Digest)
	}
	if _, ok := record("", "tables/procedures.yaml", engine.MappingFilesAuthor, v1); ok {
		t.Fatal("the same content was recorded again as a new revision")
	}
	r2, ok := record("", "tables/procedures.yaml", "ana", v2)
	if !ok || r2.Seq != 2 {
		t.Fatalf("a change: recorded %v, seq %d; want seq 2", ok, r2.Seq)
	}
	r3, ok := record("", "tables/procedures.yaml", "ana", v1) // a rollback to revision 1
	if !ok || r3.Seq != 3 {
		t.Fatalf("a rollback: recorded %v, seq %d; want seq 3", ok, r3.Seq)
	}
	if _, ok := record("STMARYS", "tables/procedures.yaml", engine.MappingFilesAuthor, v1); !ok {
		t.Fatal("a facility's file of the same name shares the site's history")
	}

	revs, err := st.MappingRevisions(ctx, "", "tables/procedures.yaml")
	if err != nil || len(revs) != 3 {
		t.Fatalf("MappingRevisions: %d, %v; want 3", len(revs), err)
	}
	for i, want := range []*engine.MappingRevision{r3, r2, r1} {
		got := revs[i]
		if got.ID != want.ID || got.Seq != want.Seq || got.Author != want.Author || got.Note != want.Note ||
			got.Digest != want.Digest || !got.At.Equal(want.At) || got.Content != nil {
			t.Fatalf("revision %d: %+v; want %+v without content (newest first)", i, got, want)
		}
	}
	got, err := st.MappingRevision(ctx, r2.ID)
	if err != nil || !bytes.Equal(got.Content, v2) || got.Path != "tables/procedures.yaml" || got.Facility != "" {
		t.Fatalf("MappingRevision(%d): %+v, %v; want the content byte for byte", r2.ID, got, err)
	}
	if _, err := st.MappingRevision(ctx, r3.ID+1000); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("MappingRevision of no revision: %v; want ErrNotFound", err)
	}
	if _, err := st.RecordMappingRevision(ctx, &engine.MappingRevision{Path: "x.yaml", At: at}); err == nil {
		t.Fatal("a revision without an author was recorded")
	}
	if empty, err := st.MappingRevisions(ctx, "", "none.yaml"); err != nil || len(empty) != 0 {
		t.Fatalf("MappingRevisions of a file never seen: %d, %v; want none", len(empty), err)
	}

	// Nodes noticing the same edit at once record it once.
	v4 := []byte("table: procedures # edited on disk\n")
	var wg sync.WaitGroup
	var mu sync.Mutex
	recorded := 0
	for range 6 {
		wg.Go(func() {
			r := &engine.MappingRevision{Path: "tables/procedures.yaml", Content: v4, Author: engine.MappingFilesAuthor, At: at}
			ok, err := st.RecordMappingRevision(ctx, r)
			if err != nil {
				t.Errorf("concurrent RecordMappingRevision: %v", err)
			}
			if ok {
				mu.Lock()
				recorded++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if recorded != 1 {
		t.Fatalf("6 nodes recording one edit recorded %d revisions, want 1", recorded)
	}
	if revs, err := st.MappingRevisions(ctx, "", "tables/procedures.yaml"); err != nil || len(revs) != 4 || revs[0].Seq != 4 {
		t.Fatalf("after the concurrent record: %d revisions (%v); want 4, the newest seq 4", len(revs), err)
	}
}
