package store_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
	"github.com/berth-registry/berth/internal/store/pgtest"
	"github.com/berth-registry/berth/internal/store/storetest"
)

// Two instances on one PostgreSQL store: what one commits, the other
// hears at once (its watchers wake, its access generation moves), and its
// caches never serve what a commit of the other changed, even when it
// does not hear (they go by counters in the store).
func TestInstancesHearEachOther(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	open := func() *store.Store {
		s, err := store.OpenPostgres(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	first, second := storetest.Image(t, a, "p/app", "one"), storetest.Image(t, a, "p/app", "two")
	if err := a.PutManifest(ctx, store.Only(store.DefaultStorage), "p/app", first, []string{"latest"}); err != nil {
		t.Fatal(err)
	}
	if m, err := b.Manifest(ctx, "p/app", "latest"); err != nil || m.Digest != first.Digest {
		t.Fatalf("b reads latest = %v, %v", m.Digest, err) // and caches it
	}

	woken := b.Changed()
	if err := a.PutManifest(ctx, store.Only(store.DefaultStorage), "p/app", second, []string{"latest"}); err != nil {
		t.Fatal(err)
	}
	wait(t, woken, "b's watchers to wake after a's push")
	if m, err := b.Manifest(ctx, "p/app", "latest"); err != nil || m.Digest != second.Digest {
		t.Fatalf("after a moved the tag, b reads latest = %v, %v; want %s", m.Digest, err, second.Digest)
	}

	before := b.AccessGeneration()
	accessMoved := b.AccessChanged()
	if err := a.CreateProject(ctx, store.Project{Name: "team"}); err != nil {
		t.Fatal(err)
	}
	wait(t, accessMoved, "b's access generation to move after a's access change")
	if after := b.AccessGeneration(); after == before {
		t.Fatalf("b's access generation stayed at %d after a created a project", after)
	}

	// Cut both listening connections: a tag a moves meanwhile is still
	// read anew on b.
	if m, err := b.Manifest(ctx, "p/app", "latest"); err != nil || m.Digest != second.Digest {
		t.Fatal(m.Digest, err)
	}
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var cut int
	if err := admin.QueryRowContext(ctx, `SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE query LIKE 'LISTEN %' AND application_name = current_setting('application_name') AND pid <> pg_backend_pid()`).Scan(&cut); err != nil || cut < 2 {
		t.Fatalf("terminated %d listeners (%v), want both instances'", cut, err)
	}
	if err := a.PutManifest(ctx, store.Only(store.DefaultStorage), "p/app", first, []string{"latest"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, err := b.Manifest(ctx, "p/app", "latest")
		if err != nil {
			t.Fatal(err)
		}
		if m.Digest == first.Digest {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with its listener cut, b still reads latest as %s, not %s", m.Digest, first.Digest)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

var _ = stdlib.GetDefaultDriver // registers the "pgx" driver

// A chunked upload may go on on another instance, one writer at a time:
// the lease one instance took holds on the others until it is released.
func TestUploadLeasesAcrossInstances(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	var stores []*store.Store
	for range 2 {
		s, err := store.OpenPostgres(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	a, b := stores[0], stores[1]
	if err := a.CreateUpload(ctx, store.Upload{ID: "u1", Repository: "p/a", Storage: store.DefaultStorage}, store.UploadLimits{}); err != nil {
		t.Fatal(err)
	}
	soon := time.Now().Add(time.Minute)
	u, err := a.AcquireUpload(ctx, "p/a", "u1", "on-a", soon)
	if err != nil {
		t.Fatal(err)
	}
	var held *store.LeaseHeldError
	if _, err := b.AcquireUpload(ctx, "p/a", "u1", "on-b", soon); !errors.As(err, &held) {
		t.Fatalf("b took the session a holds: %v", err)
	}
	u.Size = 5
	if err := a.AdvanceUpload(ctx, u, 0, true); err != nil {
		t.Fatal(err)
	}
	got, err := b.AcquireUpload(ctx, "p/a", "u1", "on-b", soon)
	if err != nil || got.Size != 5 {
		t.Fatalf("b continues the session at %d, %v; want 5", got.Size, err)
	}
	u.Size = 9
	if err := a.AdvanceUpload(ctx, u, 5, false); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("a advanced a session b now holds: %v", err)
	}
}

// A SQLite store copied into PostgreSQL reads the same there, and goes on
// numbering where it left off.
func TestCopySQLiteToPostgres(t *testing.T) {
	ctx := context.Background()
	key := bytes.Repeat([]byte{7}, store.SecretKeySize)
	src, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "meta.db"), store.WithSecretKeys(key))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	storetest.WithProjects(t, src, "team")
	var images []store.Manifest
	for i := range 3 {
		m := storetest.Image(t, src, "team/app", fmt.Sprint("v", i))
		if err := src.PutManifest(ctx, store.Only(store.DefaultStorage), "team/app", m, []string{"latest"}); err != nil {
			t.Fatal(err)
		}
		images = append(images, m)
	}
	secret, err := src.CreateObject(ctx, store.Object{ObjectKey: store.ObjectKey{Resource: "secrets", Namespace: "team", Name: "pull"},
		UID: "u1", Body: []byte(`{"data":{"k":"c2VjcmV0"}}`)})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.CreateToken(ctx, store.Token{ID: "t1", User: "admin", SecretHash: []byte("0123456789abcdef0123456789abcdef"), Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	lastSeq, err := src.LatestResourceVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}

	dst, err := store.OpenPostgres(ctx, pgtest.DSN(t), store.WithSecretKeys(key))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	var reported []string
	counts, err := src.CopyTo(ctx, dst, func(table string, done, total int64) {
		if done == total {
			reported = append(reported, table)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range counts {
		if c.Source != c.Destination {
			t.Errorf("%s: %d rows, %d copied", c.Table, c.Source, c.Destination)
		}
	}
	if len(reported) != len(counts) {
		t.Errorf("progress finished %d tables of %d", len(reported), len(counts))
	}
	if m, err := dst.Manifest(ctx, "team/app", "latest"); err != nil || m.Digest != images[2].Digest {
		t.Fatalf("latest in the copy = %v, %v", m.Digest, err)
	}
	if h, err := dst.TagHistory(ctx, "team/app", "latest"); err != nil || len(h) != 3 || h[2].Digest != images[0].Digest {
		t.Fatalf("history in the copy = %+v, %v", h, err)
	}
	got, err := dst.GetObject(ctx, secret.ObjectKey)
	if err != nil || string(got.Body) != string(secret.Body) || got.ResourceVersion != secret.ResourceVersion {
		t.Fatalf("the secret in the copy = %s at %d, %v", got.Body, got.ResourceVersion, err)
	}
	if rec, err := dst.LookupToken(ctx, []byte("0123456789abcdef0123456789abcdef")); err != nil || rec.User != "admin" {
		t.Fatalf("the token in the copy = %+v, %v", rec, err)
	}
	// New writes go on after the copied numbers.
	more := storetest.Image(t, dst, "team/other", "new")
	if err := dst.PutManifest(ctx, store.Only(store.DefaultStorage), "team/other", more, []string{"x"}); err != nil {
		t.Fatal(err)
	}
	evs, err := dst.Events(ctx, lastSeq, 100)
	if err != nil || len(evs) == 0 || evs[0].Seq != lastSeq+1 {
		t.Fatalf("events after the copy: %+v, %v; want numbered from %d", evs, err, lastSeq+1)
	}
	if _, err := src.CopyTo(ctx, dst, nil); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("a second copy into the same store: %v", err)
	}
}

// An import or a tag into a repository takes the repository's row before
// it relies on the repository's links: a prune (or anything holding that
// row) that unlinks an image meanwhile is waited for, and the image is
// linked again, never left behind a tag that names it unlinked.
func TestWritesIntoARepositoryWaitForItsRow(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	s, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := store.Only(store.DefaultStorage)
	for _, write := range []struct {
		name string
		run  func(m store.Manifest) error
	}{
		{"RecordImport", func(m store.Manifest) error {
			return s.RecordImport(ctx, "p/app", "latest", store.Imported{Manifests: []store.Manifest{m}, Source: "upstream.example/app"})
		}},
		{"TagImage", func(m store.Manifest) error {
			return s.TagImage(ctx, "p/app", "latest", "p/src", m.Digest, store.ReasonTagged)
		}},
	} {
		t.Run(write.name, func(t *testing.T) {
			old := storetest.Image(t, s, "p/app", write.name+"old")
			if err := s.PutManifest(ctx, in, "p/app", old, []string{"latest"}); err != nil {
				t.Fatal(err)
			}
			if err := s.PutManifest(ctx, in, "p/src", storetest.Image(t, s, "p/src", write.name+"old"), nil); err != nil {
				t.Fatal(err)
			}
			if err := s.PutManifest(ctx, in, "p/app", storetest.Image(t, s, "p/app", write.name+"new"), []string{"latest"}); err != nil {
				t.Fatal(err)
			}
			// Another holds p/app's row (as a prune does) and unlinks the
			// old image, which the write is about to tag again.
			db, err := sql.Open("pgx", dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			var id int64
			if err := tx.QueryRowContext(ctx, `SELECT id FROM repositories WHERE name = 'p/app' FOR NO KEY UPDATE`).Scan(&id); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- write.run(old) }()
			time.Sleep(300 * time.Millisecond)
			if _, err := tx.ExecContext(ctx, `DELETE FROM repository_manifests WHERE repository_id = $1 AND digest = $2`, id, string(old.Digest)); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			m, err := s.Manifest(ctx, "p/app", "latest")
			if err != nil || m.Digest != old.Digest {
				t.Fatalf("latest = %v, %v; want %s", m.Digest, err, old.Digest)
			}
			if _, err := s.Manifest(ctx, "p/app", string(old.Digest)); err != nil {
				t.Fatalf("latest names %s, which p/app does not link: %v", old.Digest, err)
			}
		})
	}
}
