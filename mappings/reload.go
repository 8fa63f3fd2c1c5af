package mappings

import (
	"context"
	"crypto/sha256"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Config says where a site's mappings are: Dir over the shipped ones, and per sending facility
// (MSH-4) a directory of files that override the site's for that facility.
type Config struct {
	Dir        string            // "" for the shipped mappings alone
	Facilities map[string]string // MSH-4 → directory
}

// Source returns the layers c names.
func (c Config) Source() Source {
	src := Source{Base: []fs.FS{Shipped()}}
	if c.Dir != "" {
		src.Base = append(src.Base, DirFS(c.Dir))
	}
	if len(c.Facilities) > 0 {
		src.Facilities = map[string]fs.FS{}
		for f, d := range c.Facilities {
			src.Facilities[f] = DirFS(d)
		}
	}
	return src
}

// Reloader holds the Set in force and replaces it when the files change: it loads and checks
// the new files first, and a broken edit is logged with every problem and never replaces a
// working set. Safe for concurrent use.
type Reloader struct {
	cfg    Config
	logger *slog.Logger
	cur    atomic.Pointer[Set]

	// Changed, if set, is called after Check found the files changed (whether or not they
	// loaded): the history records what is on disk now (cmd/ferry, Editor.Sync). Set it before
	// Watch starts.
	Changed func()

	mu    sync.Mutex // Check, from Watch and from an Editor's save
	print [32]byte   // fingerprint of the files the current set was loaded from
}

// NewReloader loads the set c names; it fails when that set has problems (Ferry does not start
// on broken mappings).
func NewReloader(c Config, logger *slog.Logger) (*Reloader, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{cfg: c, logger: logger}
	r.print = r.fingerprint()
	s, err := Load(c.Source())
	if err != nil {
		return nil, err
	}
	r.cur.Store(s)
	return r, nil
}

// Current is the set in force.
func (r *Reloader) Current() *Set { return r.cur.Load() }

// Watch checks the directories every interval until ctx ends, and reloads on a change.
func (r *Reloader) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Check()
		}
	}
}

// Check reloads when the files changed since the last load (or failed attempt); it reports
// whether a new set is now in force.
func (r *Reloader) Check() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.fingerprint()
	if p == r.print {
		return false
	}
	r.print = p
	if r.Changed != nil {
		defer r.Changed()
	}
	s, err := Load(r.cfg.Source())
	if err != nil {
		// The problems name files and lines, never message content.
		r.logger.Error("mappings changed but have problems; the previous mappings stay in force", "problems", err.Error())
		return false
	}
	r.cur.Store(s)
	r.logger.Info("mappings reloaded", "mappings", s.Versions())
	return true
}

// fingerprint digests the names, sizes and modification times of the files under the
// configured directories.
func (r *Reloader) fingerprint() [32]byte {
	h := sha256.New()
	dirs := []string{r.cfg.Dir}
	for _, f := range sortedKeys(r.cfg.Facilities) {
		dirs = append(dirs, r.cfg.Facilities[f])
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		var lines []string
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return nil
			}
			info, err := os.Stat(p)
			if err != nil {
				return nil
			}
			lines = append(lines, p+"|"+info.ModTime().String()+"|"+itoa(int(info.Size())))
			return nil
		})
		sort.Strings(lines)
		for _, l := range lines {
			h.Write([]byte(l))
			h.Write([]byte{0})
		}
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}
