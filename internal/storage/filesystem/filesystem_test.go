package filesystem_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/filesystem"
	"github.com/berth-registry/berth/internal/storage/storagetest"
)

func TestSuite(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Driver {
		d, err := filesystem.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}

func TestRecoverRemovesUnrecordedUploads(t *testing.T) {
	root := t.TempDir()
	d, err := filesystem.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, id := range []string{"keep1", "stale1"} {
		if _, _, err := d.Append(ctx, storage.Upload{ID: id}, 0, strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "uploads", "NOT-AN-ID.tmp"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Recover(ctx, func(id string) bool { return id == "keep1" }); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(root, "uploads"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "keep1" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("uploads after Recover = %v, want [keep1]", names)
	}
}

func TestRejectsHostileIDs(t *testing.T) {
	d, err := filesystem.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"../etc", "a/b", "", "UPPER", strings.Repeat("a", 200)} {
		if _, _, err := d.Append(context.Background(), storage.Upload{ID: id}, 0, strings.NewReader("x")); err == nil {
			t.Errorf("Append(%q) accepted", id)
		}
	}
}

// Health fails when the blob directory is gone or cannot take a new file,
// and leaves nothing behind when it passes.
func TestHealth(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "storage")
	d, err := filesystem.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Health(ctx); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 2 {
		t.Errorf("the check left files behind: %v", entries)
	}
	if os.Geteuid() != 0 {
		// Root writes through permission bits: only others can test this.
		if err := os.Chmod(root, 0o500); err != nil {
			t.Fatal(err)
		}
		if err := d.Health(ctx); err == nil {
			t.Error("healthy with a read-only blob root")
		}
		if err := os.Chmod(root, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	if err := d.Health(ctx); err == nil {
		t.Error("healthy with the blob root removed")
	}
	// A file where the root was: not a directory to write in.
	if err := os.WriteFile(root, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Health(ctx); err == nil {
		t.Error("healthy with a file for a blob root")
	}
}
