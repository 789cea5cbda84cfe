package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
)

// Migration 8: blobs and sessions recorded before storage could be
// switched are in the data directory's blob store, the default claim's.
func TestMigrationPutsExistingBlobsInTheDefaultStorage(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "meta.db")
	old, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, old, sqliteMigrations[:6]); err != nil {
		t.Fatal(err)
	}
	dgst := digest.FromString("old layer")
	for _, q := range []string{
		`INSERT INTO repositories (id, name, project, created_at) VALUES (1, 'p/app', 'p', 1)`,
		`INSERT INTO blobs (digest, size, created_at) VALUES ('` + dgst.String() + `', 9, 1)`,
		`INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (1, '` + dgst.String() + `', 1)`,
		`INSERT INTO uploads (id, repository, size, created_at, updated_at) VALUES ('u', 'p/app', 0, 1, 1)`,
	} {
		if _, err := old.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	old.Close()

	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatalf("migrate to the current schema: %v", err)
	}
	defer s.Close()
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
