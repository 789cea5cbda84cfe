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
		if _, err := d.Append(ctx, id, 0, strings.NewReader("x")); err != nil {
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
		if _, err := d.Append(context.Background(), id, 0, strings.NewReader("x")); err == nil {
			t.Errorf("Append(%q) accepted", id)
		}
	}
}
