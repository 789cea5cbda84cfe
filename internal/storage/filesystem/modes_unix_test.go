//go:build unix

package filesystem_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/filesystem"
)

// Blobs and uploads are private to the user Berth runs as, whatever the
// umask and the mode of the directory above.
func TestFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	t.Cleanup(func() { syscall.Umask(old) })
	parent := t.TempDir()
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(parent, "storage")
	d, err := filesystem.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := d.Append(ctx, storage.Upload{ID: "open1"}, 0, strings.NewReader("half an upload")); err != nil {
		t.Fatal(err)
	}
	content := "a whole blob"
	if _, _, err := d.Append(ctx, storage.Upload{ID: "done1"}, 0, strings.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(ctx, storage.Upload{ID: "done1"}, digest.FromString(content), int64(len(content))); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(ctx, storage.Upload{ID: "empty1"}, digest.FromString(""), 0); err != nil {
		t.Fatal(err)
	}
	files := 0
	err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := e.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if e.IsDir() {
			want = 0o700
		} else {
			files++
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, st.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files != 3 { // the open upload and two blobs
		t.Fatalf("found %d files, want 3", files)
	}
}
