package store_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/store"
	"github.com/berth-registry/berth/internal/store/pgtest"
	"github.com/berth-registry/berth/internal/store/storetest"
)

func openSQLite(t testing.TB) *store.Store {
	t.Helper()
	s, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// withProjects creates projects (without creators) for objects to live in.
func TestSQLite(t *testing.T) {
	storetest.Run(t, openSQLite)
}

func openPostgres(t testing.TB) *store.Store {
	t.Helper()
	s, err := store.OpenPostgres(context.Background(), pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestPostgres(t *testing.T) {
	storetest.Run(t, openPostgres)
}

func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "odd #1 ?x=y %20")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "meta.db")
	s, err := store.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	b := digest.FromString("kept")
	if err := s.LinkBlob(ctx, store.DefaultStorage, "p/a", b, 4); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = store.OpenSQLite(ctx, path) // migrations must not run twice
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if size, err := s.BlobSize(ctx, store.Only(store.DefaultStorage), "p/a", b); err != nil || size != 4 {
		t.Fatalf("after reopen BlobSize = %d, %v", size, err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at %s: %v", path, err)
	}
}

// runSuite holds the behaviour every dialect of the store must show.
