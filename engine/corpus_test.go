package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferryhealth/ferry/fhir"
	"github.com/ferryhealth/ferry/hl7"
	"github.com/ferryhealth/ferry/internal/peers"
	"github.com/ferryhealth/ferry/mappings"
)

// corpusDir is the shared corpus of real messages (../shared: in CI, not in a user's clone);
// ownDir holds Ferry's own order and ADT fixtures, always present.
const (
	corpusDir = "../../shared/corpus/hl7v2"
	ownDir    = "../mappings/testdata/messages"
)

// TestOwnResourcesAreValidFHIR does for Ferry's own order and ADT fixtures what
// TestCorpusResourcesAreValidFHIR does for the shared corpus; it runs in a user's clone too.
func TestOwnResourcesAreValidFHIR(t *testing.T) {
	planned, written := checkResourcesAreValidFHIR(t, ownDir)
	if planned < 15 || written < 30 {
		t.Fatalf("only %d messages mapped (%d resources): the fixtures or the mappings look wrong", planned, written)
	}
}

// TestCorpusResourcesAreValidFHIR puts every ORM, OMI and ADT message of the shared corpus
// through the shipped mappings and google/fhir validation (Processor.Plan): each either yields
// resources that passed validation or fails with an error an AE can locate — never anything
// else. The resources are then checked by a second, independent validator, @medplum/core through
// ../shared/peers/fhir-validate.mjs, when FERRY_PEERS_DIR names an installed copy of the peers
// (.ci/run installs one; FERRY_REQUIRE_PEERS=1 fails instead of skipping that part).
func TestCorpusResourcesAreValidFHIR(t *testing.T) {
	if _, err := os.Stat(corpusDir); err != nil {
		t.Skipf("shared corpus not found at %s (it is in CI, not in a user's clone; TestOwnResourcesAreValidFHIR covers Ferry's own fixtures): %v", corpusDir, err)
	}
	planned, written := checkResourcesAreValidFHIR(t, corpusDir)
	if planned < 100 || written < 300 {
		t.Fatalf("only %d messages mapped (%d resources): the corpus or the mappings look wrong", planned, written)
	}
}

// checkResourcesAreValidFHIR plans every message below dir and checks what it yields (see
// TestCorpusResourcesAreValidFHIR); it returns how many messages were planned and how many
// resources they gave.
func checkResourcesAreValidFHIR(t *testing.T, dir string) (planned, written int) {
	t.Helper()
	set, err := mappings.Load(mappings.Source{Base: []fs.FS{mappings.Shipped()}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	p := &Processor{Mappings: func() MappingSource { return set }, Validator: v}
	out := t.TempDir()
	var refused int
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".hl7") {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		batch, err := hl7.SplitBatch(raw)
		if err != nil {
			batch = [][]byte{raw}
		}
		for n, one := range batch {
			msg, err := hl7.Parse(one)
			if err != nil {
				continue
			}
			pl, err := p.Plan(msg)
			if pl == nil {
				continue
			}
			if err != nil {
				var me *mappings.Error
				var pe *ProcessError
				if !errors.As(err, &me) && !errors.As(err, &pe) {
					t.Errorf("%s[%d]: error %T without a location: %v", path, n, err, err)
				}
				refused++
				continue
			}
			planned++
			for i, r := range pl.drafts() {
				body, err := resourceJSON(r.typ, placeholderID, 1, pl.now, pl.mappingVersion, r.content)
				if err != nil {
					t.Fatal(err)
				}
				name := fmt.Sprintf("%05d-%d-%s.json", planned, i, r.typ)
				if err := os.WriteFile(filepath.Join(out, name), body, 0o600); err != nil {
					t.Fatal(err)
				}
				written++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d messages mapped to %d valid resources, %d refused with a located error", dir, planned, written, refused)
	files, _ := filepath.Glob(filepath.Join(out, "*.json"))
	peers.ValidateFHIR(t, files)
	return planned, written
}
