package cli

import (
	"fmt"
	"os"
	"path/filepath"
)

// writeFileAtomic replaces path with data, readable by its owner only: a
// temporary file in the same directory, synced, then renamed over path,
// so a reader (berth serve re-reading an htpasswd file) sees the old
// contents or the new, never part of them. old is the file being replaced
// (nil for a new one); its owner is kept where this process may set it.
func writeFileAtomic(path string, data []byte, old os.FileInfo) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	committed := false
	defer func() {
		if !committed {
			os.Remove(tmp)
		}
	}()
	// CreateTemp makes the file 0600 already; say so anyway, whatever the umask.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if err := keepOwner(f, old); err != nil {
		f.Close()
		return fmt.Errorf("keep the owner of %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	committed = true
	return nil
}
