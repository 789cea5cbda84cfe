package cli

import (
	"fmt"
	"os"

	"github.com/berth-registry/berth/internal/atomicfile"
)

// writeFileAtomic replaces path with data, readable by its owner only: a
// temporary file in the same directory, synced, then renamed over path,
// so a reader (berth serve re-reading an htpasswd file) sees the old
// contents or the new, never part of them. old is the file being replaced
// (nil for a new one); its owner is kept where this process may set it.
func writeFileAtomic(path string, data []byte, old os.FileInfo) error {
	return atomicfile.Write(path, data, 0o600, func(f *os.File) error {
		if err := keepOwner(f, old); err != nil {
			return fmt.Errorf("keep the owner of %s: %w", path, err)
		}
		return nil
	})
}
