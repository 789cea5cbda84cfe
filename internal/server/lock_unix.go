//go:build unix

package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// LockDataDir locks the data directory for the life of the process.
// With a store of its own (shared false) the lock is exclusive: upload
// locks and start-up recovery assume one process per directory, and a
// second berth on the same data is refused, not allowed to interleave
// writes or delete the first one's uploads. Instances that share a store
// take the lock shared: they may share the directory with each other,
// never with a berth that has a store of its own.
func LockDataDir(dir string, shared bool) (unlock func(), err error) {
	how, mode := unix.LOCK_EX, "exclusive"
	if shared {
		how, mode = unix.LOCK_SH, "shared"
	}
	f, err := flock(filepath.Join(dir, ".lock"), how|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		if shared {
			return nil, fmt.Errorf("data directory %s is in use by a berth with a metadata store of its own (SQLite): instances sharing --store cannot share it", dir)
		}
		return nil, fmt.Errorf("data directory %s is in use by another berth process (%s lock)", dir, mode)
	}
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}

// lockSetup makes instances that share a data directory take turns at
// their first steps, which create files in it (keys, the CA, the admin
// password): one creates, the others then read. It waits for the lock.
func lockSetup(dir string, shared bool) (end func(), err error) {
	if !shared {
		return func() {}, nil // the directory's lock is exclusive already
	}
	f, err := flock(filepath.Join(dir, ".setup.lock"), unix.LOCK_EX)
	if err != nil {
		return nil, fmt.Errorf("lock data directory for setup: %w", err)
	}
	ended := false
	return func() {
		if !ended {
			ended = true
			f.Close()
		}
	}, nil
}

func flock(path string, how int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, privateFile)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
