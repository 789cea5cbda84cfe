package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
)

// upgradedFrom opens a store whose database had the first n migrations
// and the rows statements wrote, migrated to the current schema.
func upgradedFrom(t *testing.T, n int, statements ...string) *Store {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "meta.db")
	old, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, old, sqliteMigrations[:n]); err != nil {
		t.Fatal(err)
	}
	for _, q := range statements {
		if _, err := old.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	old.Close()
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatalf("migrate to the current schema: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Migration 8: blobs and sessions recorded before storage could be
// switched are in the data directory's blob store, the default claim's.
func TestMigrationPutsExistingBlobsInTheDefaultStorage(t *testing.T) {
	ctx := context.Background()
	dgst := digest.FromString("old layer")
	s := upgradedFrom(t, 6,
		`INSERT INTO repositories (id, name, project, created_at) VALUES (1, 'p/app', 'p', 1)`,
		`INSERT INTO blobs (digest, size, created_at) VALUES ('`+dgst.String()+`', 9, 1)`,
		`INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (1, '`+dgst.String()+`', 1)`,
		`INSERT INTO uploads (id, repository, size, created_at, updated_at) VALUES ('u', 'p/app', 0, 1, 1)`,
	)
	if size, err := s.BlobSize(ctx, Only(DefaultStorage), "p/app", dgst); err != nil || size != 9 {
		t.Fatalf("an existing blob in the default storage: %d, %v", size, err)
	}
	if _, err := s.BlobSize(ctx, Only("pvc:other"), "p/app", dgst); err == nil {
		t.Fatal("an existing blob is present in another storage")
	}
	if u, err := s.Upload(ctx, "p/app", "u"); err != nil || u.Storage != DefaultStorage {
		t.Fatalf("an existing session: %+v, %v", u, err)
	}
}

// Migration 11: every storage that holds blobs when storages start being
// recorded is recorded, by ID alone, so that a switch made before it is
// still listed as holding them.
func TestMigrationRecordsTheStoragesHoldingBlobs(t *testing.T) {
	ctx := context.Background()
	a, b := digest.FromString("in the default volume"), digest.FromString("in a second volume")
	s := upgradedFrom(t, 10,
		`INSERT INTO blobs (digest, size, storage, created_at) VALUES ('`+a.String()+`', 21, 'pvc:image-registry-storage', 1)`,
		`INSERT INTO blobs (digest, size, storage, created_at) VALUES ('`+b.String()+`', 18, 'pvc:second', 1)`,
		`INSERT INTO blob_storages (digest, storage) VALUES ('`+a.String()+`', 'pvc:image-registry-storage'), ('`+b.String()+`', 'pvc:second')`,
	)
	older, err := s.OlderStorages(ctx, "pvc:second")
	if err != nil {
		t.Fatal(err)
	}
	if len(older) != 1 || older[0].ID != DefaultStorage || older[0].Blobs != 1 || older[0].Bytes != 21 || older[0].Config != nil {
		t.Errorf("older storages after the migration: %+v", older)
	}
}
