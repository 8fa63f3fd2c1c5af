package engine

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ferryhealth/ferry/dicom"
)

// memInstances stands in for the store at the unit boundary (the stores' contract suite is
// engine/storetest).
type memInstances struct {
	mu   sync.Mutex
	byID map[string]*Instance
	fail error
}

func (m *memInstances) PutInstance(_ context.Context, inst *Instance) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return false, m.fail
	}
	if m.byID == nil {
		m.byID = map[string]*Instance{}
	}
	if _, ok := m.byID[inst.SOPInstanceUID]; ok {
		return false, nil
	}
	c := *inst
	m.byID[inst.SOPInstanceUID] = &c
	return true, nil
}
func (m *memInstances) PutInstances(ctx context.Context, insts []*Instance) ([]bool, error) {
	added := make([]bool, len(insts))
	for i, inst := range insts {
		var err error
		if added[i], err = m.PutInstance(ctx, inst); err != nil {
			return nil, err
		}
	}
	return added, nil
}
func (m *memInstances) Instance(context.Context, string) (*Instance, error) { return nil, ErrNotFound }
func (m *memInstances) Study(context.Context, string) (*Study, error)       { return nil, ErrNotFound }
func (m *memInstances) StudySeries(context.Context, string) ([]*Series, error) {
	return nil, nil
}
func (m *memInstances) SeriesInstances(context.Context, string) ([]*Instance, error) {
	return nil, nil
}
func (m *memInstances) SearchStudies(context.Context, StudyFilter) ([]*Study, error) {
	return nil, nil
}

func TestIntakeKeepsTheFirstCopy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	store := &memInstances{}
	in := &Intake{Store: store, Dir: filepath.Join(dir, "dicom")}
	if err := os.MkdirAll(in.Dir, 0o750); err != nil {
		t.Fatal(err)
	}
	put := func(body string) (bool, string, error) {
		tmp := filepath.Join(in.Dir, "incoming-"+body)
		if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		inst := &Instance{Header: dicom.Header{StudyInstanceUID: "1.2.3", SeriesInstanceUID: "1.2.3.4", SOPInstanceUID: "1.2.3.4.5"}}
		added, err := in.StoreInstance(context.Background(), inst, tmp)
		if _, statErr := os.Stat(tmp); statErr == nil {
			t.Errorf("temp file %s left behind", tmp)
		}
		return added, inst.Path, err
	}
	added, path, err := put("first")
	if err != nil || !added || path != "1.2.3/1.2.3.4/1.2.3.4.5.dcm" {
		t.Fatalf("first: %v %q %v", added, path, err)
	}
	if added, _, err = put("second"); err != nil || added {
		t.Fatalf("second: %v %v", added, err)
	}
	if b, _ := os.ReadFile(filepath.Join(in.Dir, path)); string(b) != "first" {
		t.Errorf("the stored file is %q, want the first copy", b)
	}

	// A file left by an attempt that never committed is replaced.
	store.byID = nil
	if added, _, err = put("third"); err != nil || !added {
		t.Fatalf("after a lost commit: %v %v", added, err)
	}
	if b, _ := os.ReadFile(filepath.Join(in.Dir, path)); string(b) != "third" {
		t.Errorf("the stored file is %q, want the committed copy", b)
	}

	// A store failure keeps nothing.
	store.fail = os.ErrPermission
	store.byID = nil
	os.Remove(filepath.Join(in.Dir, path))
	if _, _, err = put("fourth"); err == nil {
		t.Fatal("a store failure was not reported")
	}
	if _, err := os.Stat(filepath.Join(in.Dir, path)); err == nil {
		t.Error("a file was kept for an instance that was not committed")
	}
}

func TestIntakeRefusesBadUIDs(t *testing.T) {
	t.Parallel()
	in := &Intake{Store: &memInstances{}, Dir: t.TempDir()}
	for _, uid := range []string{"", "../x", "1..2", "1.2.", "1.2.a", "/etc"} {
		tmp := filepath.Join(in.Dir, "tmp")
		_ = os.WriteFile(tmp, []byte("x"), 0o600)
		inst := &Instance{Header: dicom.Header{StudyInstanceUID: "1.2", SeriesInstanceUID: "1.2.3", SOPInstanceUID: uid}}
		if _, err := in.StoreInstance(context.Background(), inst, tmp); err == nil {
			t.Errorf("SOP Instance UID %q accepted", uid)
		}
	}
}

// gatedInstances is memInstances whose first PutInstances waits until release is closed, and
// which records the size of every batch.
type gatedInstances struct {
	memInstances
	entered chan struct{} // closed when the first batch is in the store
	release chan struct{}
	mu      sync.Mutex
	batches []int
	refuse  string // a SOP Instance UID the store refuses
}

func (g *gatedInstances) PutInstances(ctx context.Context, insts []*Instance) ([]bool, error) {
	g.mu.Lock()
	first := len(g.batches) == 0
	g.batches = append(g.batches, len(insts))
	g.mu.Unlock()
	if first {
		close(g.entered)
		<-g.release
	}
	for _, inst := range insts {
		if inst.SOPInstanceUID == g.refuse {
			return nil, os.ErrInvalid
		}
	}
	return g.memInstances.PutInstances(ctx, insts)
}

// Instances that arrive while a commit is in progress are committed together in the next
// transaction, each caller answered with its own outcome; one the store refuses fails alone.
func TestIntakeGroupCommitsConcurrentInstances(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		store := &gatedInstances{entered: make(chan struct{}), release: make(chan struct{}), refuse: "1.2.3.4.99"}
		in := &Intake{Store: store, Dir: dir, Timeout: time.Hour}
		put := func(uid string) error {
			tmp := filepath.Join(in.Dir, "tmp-"+uid)
			if err := os.WriteFile(tmp, []byte(uid), 0o600); err != nil {
				return err
			}
			inst := &Instance{Header: dicom.Header{StudyInstanceUID: "1.2.3", SeriesInstanceUID: "1.2.3.4", SOPInstanceUID: uid}}
			added, err := in.StoreInstance(context.Background(), inst, tmp)
			if err == nil && !added {
				t.Errorf("%s: not added", uid)
			}
			return err
		}
		firstDone := make(chan error, 1)
		go func() { firstDone <- put("1.2.3.4.1") }()
		<-store.entered

		// Eight more while the first commit holds the store: queued behind it.
		uids := []string{"1.2.3.4.2", "1.2.3.4.3", "1.2.3.4.4", "1.2.3.4.5", "1.2.3.4.6", "1.2.3.4.7", "1.2.3.4.8", "1.2.3.4.99"}
		errs := make(chan error, len(uids))
		for _, uid := range uids {
			go func() { errs <- put(uid) }()
		}
		synctest.Wait()
		in.mu.Lock()
		queued := len(in.queue)
		in.mu.Unlock()
		if queued != len(uids) {
			t.Fatalf("%d instances queued behind the first commit, want %d", queued, len(uids))
		}
		close(store.release)
		if err := <-firstDone; err != nil {
			t.Fatalf("first instance: %v", err)
		}
		failed := 0
		for range uids {
			if err := <-errs; err != nil {
				failed++
			}
		}
		if failed != 1 {
			t.Errorf("%d instances failed, want 1 (the one the store refuses)", failed)
		}
		if _, err := os.Stat(filepath.Join(in.Dir, "1.2.3", "1.2.3.4", "1.2.3.4.99.dcm")); err == nil {
			t.Error("the refused instance's file was kept")
		}
		// The first alone, the eight together (refused as a batch), then each of them alone.
		want := []int{1, 8, 1, 1, 1, 1, 1, 1, 1, 1}
		if !slices.Equal(store.batches, want) {
			t.Errorf("transactions of %v instances, want %v", store.batches, want)
		}
		if len(store.byID) != 8 {
			t.Errorf("%d instances stored, want 8", len(store.byID))
		}
	})
}
