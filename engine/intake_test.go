package engine

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
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
		inst := &Instance{StudyInstanceUID: "1.2.3", SeriesInstanceUID: "1.2.3.4", SOPInstanceUID: "1.2.3.4.5"}
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
		inst := &Instance{StudyInstanceUID: "1.2", SeriesInstanceUID: "1.2.3", SOPInstanceUID: uid}
		if _, err := in.StoreInstance(context.Background(), inst, tmp); err == nil {
			t.Errorf("SOP Instance UID %q accepted", uid)
		}
	}
}
