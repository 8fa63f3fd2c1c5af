package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Intake keeps received DICOM instances (C-STORE and STOW-RS): it moves each instance's file
// into the DICOM data directory and commits its row, and reports success only once both are
// durable — the file fsynced (by the receiver), its directory entries fsynced here, the row
// committed by the store. Concurrent instances are group-committed (instancecommit.go). Layout:
// DIR/STUDY-UID/SERIES-UID/SOP-INSTANCE-UID.dcm. The zero value of the unexported fields is
// ready; use an Intake by pointer.
type Intake struct {
	Store  InstanceStore
	Dir    string // the DICOM data directory; the receivers' incoming area must be on its file system
	Logger *slog.Logger
	// Linker, if set, decides each new study's order and patient once its first instance is
	// stored, and again with each new instance until it is linked or a person has decided.
	Linker *Linker
	// MaxBatch caps the instances committed in one transaction (default DefaultInstanceBatch).
	MaxBatch int
	// Timeout bounds one instance's commit, from the wait to enter a batch to the transaction's
	// outcome (default DefaultCommitTimeout, the config's commit.timeout): a frozen database
	// fails the C-STORE (the peer sends it again) instead of hanging the association.
	Timeout time.Duration

	mu       sync.Mutex
	queue    []*instanceRequest
	draining bool            // a goroutine is committing the queue
	linking  map[string]bool // studies whose link is being decided (beginLinking)
}

// StoreInstance moves the complete, fsynced Part 10 file at tmpPath into place and records inst.
// added=false: the instance was stored before; its first file is kept and this one dropped.
// On error nothing is recorded and tmpPath is removed.
func (in *Intake) StoreInstance(ctx context.Context, inst *Instance, tmpPath string) (added bool, err error) {
	defer func() {
		if err != nil {
			os.Remove(tmpPath)
		}
	}()
	for _, uid := range []string{inst.StudyInstanceUID, inst.SeriesInstanceUID, inst.SOPInstanceUID} {
		if !validUID(uid) {
			return false, fmt.Errorf("storing instance: %q is not a DICOM UID", limit(uid, 70))
		}
	}
	rel := filepath.Join(inst.StudyInstanceUID, inst.SeriesInstanceUID, inst.SOPInstanceUID+".dcm")
	final := filepath.Join(in.Dir, rel)
	if err := mkdirDurable(in.Dir, filepath.Dir(rel)); err != nil {
		return false, fmt.Errorf("storing instance: %w", err)
	}
	inst.Path = filepath.ToSlash(rel)

	// A hard link never replaces an existing file: the first copy of an instance stays.
	switch err := os.Link(tmpPath, final); {
	case err == nil:
		os.Remove(tmpPath)
		added, err := in.commit(ctx, inst, filepath.Dir(final))
		if err != nil {
			if !inDoubt(err) {
				os.Remove(final) // not acknowledged: not kept
			} // else its row may yet commit: a resend finds the file and asks the store
			return false, fmt.Errorf("storing instance: %w", err)
		}
		if added {
			in.link(ctx, inst.StudyInstanceUID)
		}
		return added, nil
	case errors.Is(err, fs.ErrExist):
		// Stored before — or left by an attempt that stopped before its commit. The store says.
		added, err := in.commit(ctx, inst, "")
		if err != nil {
			return false, fmt.Errorf("storing instance: %w", err)
		}
		if !added {
			os.Remove(tmpPath)
			return false, nil
		}
		// A leftover: this copy replaces it.
		if err := os.Rename(tmpPath, final); err != nil {
			return false, fmt.Errorf("storing instance: %w", err)
		}
		if err := syncDir(filepath.Dir(final)); err != nil {
			return false, err
		}
		in.link(ctx, inst.StudyInstanceUID)
		return true, nil
	default:
		return false, fmt.Errorf("storing instance: %w", err)
	}
}

// validUID reports whether s is a DICOM UID (PS3.5 9.1): digits and dots, at most 64, no empty
// component — which also makes it safe as a file name.
func validUID(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '.' {
			return false
		}
	}
	return true
}

// mkdirDurable creates base/rel's missing directories and fsyncs each parent whose entries
// changed, so a directory survives a crash as the file in it does.
func mkdirDurable(base, rel string) error {
	dir := base
	for _, part := range strings.Split(filepath.ToSlash(rel), "/") {
		next := filepath.Join(dir, part)
		if err := os.Mkdir(next, 0o750); err == nil {
			if err := syncDir(dir); err != nil {
				return err
			}
		} else if !errors.Is(err, fs.ErrExist) {
			return err
		}
		dir = next
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// link runs the linker for a study that is not linked yet. The instance is stored whatever the
// linker decides, so its failure is logged (UIDs only), not returned.
func (in *Intake) link(ctx context.Context, studyUID string) {
	if in.Linker == nil || !in.beginLinking(studyUID) {
		return
	}
	defer in.endLinking(studyUID)
	if l, err := in.Linker.Links.StudyLink(ctx, studyUID); err == nil {
		switch {
		case l.Status == LinkLinked || l.DecidedByOrLinker() != DecidedByLinker:
			// Linked, or decided by a person (or a merge): a new instance changes nothing of that.
			return
		case time.Since(l.DecidedAt) < relinkInterval:
			// Decided a moment ago, by an earlier instance of the same study: the study's
			// attributes come from its first instances, so deciding again per instance (a CT
			// of 500) would only cost searches and commits. An order that arrives later is
			// found by the next instance after the interval.
			return
		}
	}
	study, err := in.Store.Study(ctx, studyUID)
	if err == nil {
		var l *StudyLink
		if l, err = in.Linker.LinkStudy(ctx, study); err == nil {
			in.logger().Info("study linked", "study_uid", studyUID, "status", string(l.Status), "rule", l.Rule, "service_request", l.ServiceRequestID)
			return
		}
	}
	in.logger().Error("linking study", "study_uid", studyUID, "err", err)
}

// beginLinking claims studyUID's link decision for the caller, or reports false when another
// instance of the study (another association's) is deciding it now: the study's attributes come
// from its first instances, so the second decision would only repeat the first's searches and
// commit.
func (in *Intake) beginLinking(studyUID string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.linking[studyUID] {
		return false
	}
	if in.linking == nil {
		in.linking = map[string]bool{}
	}
	in.linking[studyUID] = true
	return true
}

func (in *Intake) endLinking(studyUID string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	delete(in.linking, studyUID)
}

// relinkInterval is how long an unlinked study's decision stands before a new instance of it
// has the linker decide again.
const relinkInterval = 10 * time.Second

func (in *Intake) logger() *slog.Logger {
	if in.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return in.Logger
}
