package store

import (
	"context"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/store/pgtest"
)

// A link written while PostgreSQL's migration 3 runs (another instance's
// push during an upgrade) is counted: the migration makes its triggers
// before it counts, and making them waits for the writes under way.
func TestPostgresMigrationCountsLinksMadeMeanwhile(t *testing.T) {
	ctx := context.Background()
	s, err := OpenPostgres(ctx, pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	x, y := digest.FromString("x"), digest.FromString("y")
	if err := s.LinkBlob(ctx, DefaultStorage, "p/a", x, 100); err != nil {
		t.Fatal(err)
	}
	if err := s.LinkBlob(ctx, DefaultStorage, "q/a", y, 50); err != nil {
		t.Fatal(err)
	}
	// Back to the schema before migration 3 (and those after it).
	for _, q := range []string{
		`ALTER TABLE manifests DROP COLUMN image_size`,
		`DROP TABLE image_pulls`,
		`DROP TABLE audit_log`,
		`DROP TABLE project_contents`,
		`DROP FUNCTION project_contents_link() CASCADE`,
		`DROP FUNCTION project_contents_unlink() CASCADE`,
		`DELETE FROM schema_migrations WHERE version >= 3`,
	} {
		if _, err := s.write.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	meanwhile, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := meanwhile.ExecContext(ctx, `INSERT INTO repository_blobs (repository_id, digest, created_at)
SELECT id, ?, 1 FROM repositories WHERE name = 'p/a'`, string(y)); err != nil {
		t.Fatal(err)
	}
	migrated := make(chan error, 1)
	go func() { migrated <- migratePostgres(ctx, s.write) }()
	time.Sleep(500 * time.Millisecond) // the migration waits for the link's commit
	if err := meanwhile.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-migrated; err != nil {
		t.Fatal(err)
	}
	if u, err := s.ProjectUsage(ctx, "p"); err != nil || u.StorageBytes != 150 {
		t.Fatalf("p after the migration: %+v %v, want the 150 bytes its links hold", u, err)
	}
}
