package server

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/store"
)

// A data directory belongs to the store it was first started with.
func TestDataDirectoryBelongsToOneStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	open := func(name string) *store.Store {
		s, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	first, other := open("a.db"), open("b.db")
	if err := checkStoreID(ctx, first, dir); err != nil {
		t.Fatal(err)
	}
	if err := checkStoreID(ctx, first, dir); err != nil {
		t.Fatalf("the same store again: %v", err)
	}
	if err := checkStoreID(ctx, other, dir); err == nil || !strings.Contains(err.Error(), "belongs to another metadata store") {
		t.Fatalf("another store on the directory: %v", err)
	}
}
