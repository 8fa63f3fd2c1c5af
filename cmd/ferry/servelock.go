package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockEmbeddedStore keeps a second `ferry serve` off an embedded store another one is serving:
// two processes would each run a group committer, workers and a deliverer over one SQLite file
// and one DICOM directory, and every guarantee about order and single delivery would be gone.
// It takes an exclusive flock on PATH.serve-lock beside the database file (released by the kernel
// when the process ends, even on kill -9) and writes the holder's pid into it for the message.
// The CLI's other commands (migrate, users, tokens…) do not take it: they may run beside serve.
// A PostgreSQL store needs no lock: several nodes serving one database is a supported set-up.
func lockEmbeddedStore(databaseURL string) (unlock func(), err error) {
	kind, path, err := storeKind(databaseURL)
	if err != nil || kind != "sqlite" {
		return func() {}, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating the embedded store's directory: %w", err)
	}
	name := path + ".serve-lock"
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the serve lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := "another process"
		if b, rerr := os.ReadFile(name); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				holder = "process " + strconv.Itoa(pid)
			}
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s is already serving the embedded store %s: stop it first, or give this one its own --db (and data_dir)", holder, path)
		}
		return nil, fmt.Errorf("locking the embedded store %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "%d\n", os.Getpid())
	}
	return func() { f.Close() }, nil
}
