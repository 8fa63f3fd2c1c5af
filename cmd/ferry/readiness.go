package main

import (
	"context"
	"fmt"
	"os"

	"github.com/ferryhealth/ferry/adapters/httpapi"
	"github.com/ferryhealth/ferry/engine"
)

// readinessChecks are what /readyz asks besides the store's Ping (issue 18): that the store
// can commit (the committer's last transaction did not fail), and that the instance store can
// write (a probe file in its incoming area: a full disk or a read-only mount fails it).
func readinessChecks(committer *engine.GroupCommitter, incoming string) []httpapi.ReadinessCheck {
	return []httpapi.ReadinessCheck{
		{Name: "commits", Check: func(context.Context) error { return committer.Ready() }},
		{Name: "instance store", Check: func(context.Context) error { return probeWrite(incoming) }},
	}
}

// probeSize is what probeWrite writes: a few file system blocks, so that a full disk refuses it
// (creating an empty file needs only an inode).
const probeSize = 16 << 10

// probeWrite writes, fsyncs and removes a small file in dir: nil when dir takes a file as an
// instance's is taken.
func probeWrite(dir string) error {
	f, err := os.CreateTemp(dir, "readyz-*")
	if err != nil {
		return fmt.Errorf("cannot create a file: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(make([]byte, probeSize))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cannot write a file: %w", err)
	}
	return nil
}
