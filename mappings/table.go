package mappings

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/goccy/go-yaml"
)

// Table is a code table the analyst edits: a key (a local code, an assigning authority, an order
// control code) → a row of named values (a LOINC code, a display, a modality, a system URI).
type Table struct {
	Name        string
	Description string
	Missing     Missing
	// Default is the row a missing key gets when Missing is "default".
	Default map[string]string
	Rows    map[string]map[string]string

	// rows and defaultRow are Rows and Default with every value already in an interface, as
	// the mapping functions return them: a lookup then costs no allocation.
	rows       map[string]map[string]any
	defaultRow map[string]any

	digest [32]byte
}

// Missing says what a lookup of a key that is not in the table gives.
type Missing string

const (
	// MissingEmpty: nothing; the values that would come from the row are left out.
	MissingEmpty Missing = "empty"
	// MissingError: the message is answered AE with ERR 103 (table value not found) at the field
	// the key came from, and kept for replay once the table has the code.
	MissingError Missing = "error"
	// MissingDefault: the table's default row.
	MissingDefault Missing = "default"
)

type tableFile struct {
	Table       string                       `yaml:"table"`
	Description string                       `yaml:"description"`
	Missing     Missing                      `yaml:"missing"`
	Default     map[string]string            `yaml:"default"`
	Rows        map[string]map[string]string `yaml:"rows"`
}

func parseTable(file string, data []byte) (*Table, Problems) {
	var tf tableFile
	if err := yaml.UnmarshalWithOptions(data, &tf, yaml.Strict()); err != nil {
		return nil, Problems{yamlProblem(file, err)}
	}
	var probs Problems
	bad := func(format string, args ...any) {
		probs = append(probs, Problem{File: file, Message: fmt.Sprintf(format, args...)})
	}
	if tf.Table == "" {
		bad("table: a name is required")
	} else if want := strings.TrimSuffix(path.Base(file), ".yaml"); want != tf.Table {
		bad("table: the name %q differs from the file name %q", tf.Table, want)
	}
	switch tf.Missing {
	case "":
		tf.Missing = MissingEmpty
	case MissingEmpty, MissingError:
	case MissingDefault:
		if len(tf.Default) == 0 {
			bad("missing: default needs a default: row")
		}
	default:
		bad("missing: want empty, error or default, got %q", tf.Missing)
	}
	if len(tf.Rows) == 0 {
		bad("rows: the table has no rows")
	}
	if len(probs) > 0 {
		return nil, probs
	}
	t := &Table{Name: tf.Table, Description: tf.Description, Missing: tf.Missing,
		Default: tf.Default, Rows: tf.Rows, digest: sha256.Sum256(data)}
	t.rows = make(map[string]map[string]any, len(t.Rows))
	for k, row := range t.Rows {
		t.rows[k] = anyRow(row)
	}
	t.defaultRow = anyRow(t.Default)
	return t, nil
}

// anyRow is row with its values as interfaces; nil for nil.
func anyRow(row map[string]string) map[string]any {
	if row == nil {
		return nil
	}
	out := make(map[string]any, len(row))
	for k, v := range row {
		out[k] = v
	}
	return out
}

// DirFS is the directory dir as a layer of mappings; problems name its files by their path.
func DirFS(dir string) fs.FS { return dirFS{FS: os.DirFS(dir), dir: dir} }

type dirFS struct {
	fs.FS
	dir string
}

func (d dirFS) Dir() string { return d.dir }

func (d dirFS) ReadDir(name string) ([]fs.DirEntry, error) { return fs.ReadDir(d.FS, name) }

func (d dirFS) ReadFile(name string) ([]byte, error) { return fs.ReadFile(d.FS, name) }
