package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Everything Berth keeps in its data directory is its user's alone: the
// metadata holds Secrets and password hashes, the blobs may be private
// images. The packages that write there create files and directories with
// these modes; the umask can only take bits away.
const (
	privateFile fs.FileMode = 0o600
	privateDir  fs.FileMode = 0o700
)

// ownEntries are what Berth creates at the top of the data directory; an
// entry is Berth's when its name is one of these or one of these followed
// by "-" or "." (metadata.db-wal), alone or after a "." (a temporary file
// of atomicfile, .admin-password-123). Anything else there is the
// operator's and keeps its mode.
var ownEntries = []string{"metadata.db", AdminPasswordFile, SecretKeyFile, ".lock", ".setup.lock", StoreIDFile, "storage", volumesDir, "pki"}

func isOwnEntry(name string) bool {
	for _, own := range ownEntries {
		if temp, ok := strings.CutPrefix(name, "."+own+"-"); ok && temp != "" {
			return true
		}
		if name == own || strings.HasPrefix(name, own+"-") || strings.HasPrefix(name, own+".") {
			return true
		}
	}
	return false
}

// modeFixes collects what tightening changed and what it could not change
// (say, a file owned by another user); neither stops the start.
type modeFixes struct {
	changed []string
	failed  []error
	checked int
}

// tighten takes group and other permissions away from one entry: a file
// becomes 0600 and a directory 0700 (earlier versions created them 0644
// and 0755 under the usual umask, and a data directory made by hand may be
// 0755). Symbolic links, sockets and devices are left alone, and a link is
// never followed.
func (m *modeFixes) tighten(p string, e fs.DirEntry) {
	m.checked++
	info, err := e.Info()
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) { // an upload removed meanwhile
			m.failed = append(m.failed, err)
		}
		return
	}
	mode := info.Mode()
	want := privateFile
	switch {
	case mode.IsDir():
		want = privateDir
	case !mode.IsRegular():
		return
	}
	if mode.Perm()&0o077 == 0 {
		return // private already (a 0400 file stays 0400)
	}
	if err := os.Chmod(p, want); err != nil {
		m.failed = append(m.failed, err)
		return
	}
	m.changed = append(m.changed, p)
}

// makeDataDirPrivate closes the data directory and Berth's entries at its
// top to others before anything is opened there: from then on nobody else
// can reach what is inside, and the database's -wal and -shm, which SQLite
// creates with the database file's mode, are private too. What is inside
// Berth's directories (every blob) is tightened by the returned walk,
// which Run runs beside serving: a million blobs take seconds to look at.
// The walk logs, once, what changed; it stops early when ctx ends.
func makeDataDirPrivate(dir string, log *slog.Logger) (walk func(context.Context), err error) {
	var fixes modeFixes
	root, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	fixes.tighten(dir, fs.FileInfoToDirEntry(root))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	var subtrees []string
	for _, e := range entries {
		if !isOwnEntry(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		fixes.tighten(p, e)
		if e.IsDir() { // a symbolic link to a directory is not IsDir
			subtrees = append(subtrees, p)
		}
	}
	return func(ctx context.Context) {
		began := time.Now()
		for _, top := range subtrees {
			err := filepath.WalkDir(top, func(p string, e fs.DirEntry, err error) error {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err != nil {
					if !errors.Is(err, fs.ErrNotExist) {
						fixes.failed = append(fixes.failed, err)
					}
					return nil // skip what cannot be read, look at the rest
				}
				if p != top { // done above
					fixes.tighten(p, e)
				}
				return nil
			})
			if err != nil {
				break // ctx ended
			}
		}
		fixes.log(log, ctx.Err() == nil, time.Since(began))
	}, nil
}

func (m *modeFixes) log(log *slog.Logger, complete bool, took time.Duration) {
	const examples = 3
	if len(m.changed) > 0 {
		log.Warn("made files of the data directory private to the user berth runs as (others could read them)",
			"count", len(m.changed), "examples", m.changed[:min(examples, len(m.changed))], "complete", complete)
	}
	if len(m.failed) > 0 {
		log.Warn("could not make files of the data directory private", "count", len(m.failed), "first", m.failed[0].Error())
	}
	log.Debug("checked the modes of the data directory", "entries", m.checked, "complete", complete, "took", took)
}
