package store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/store"
	"github.com/berth-registry/berth/internal/store/storetest"
)

func newSecretKey(t *testing.T) []byte {
	t.Helper()
	key := make([]byte, store.SecretKeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return key
}

// marker is a value no other byte sequence in the database will match.
func marker(t *testing.T, what string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return what + "-" + hex.EncodeToString(b)
}

func secret(ns, name, value string) store.Object {
	return store.Object{
		ObjectKey: store.ObjectKey{Resource: "secrets", Namespace: ns, Name: name},
		UID:       "uid-" + name, Labels: map[string]string{"app": name},
		Body: fmt.Appendf(nil, `{"apiVersion":"v1","kind":"Secret","metadata":{"name":%q,"namespace":%q,"uid":"uid-%s","labels":{"app":%q}},"stringData":{"password":%q}}`,
			name, ns, name, name, value),
	}
}

func openWith(t *testing.T, path string, opts ...store.Option) *store.Store {
	t.Helper()
	s, err := store.OpenSQLite(context.Background(), path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// databaseBytes is everything SQLite keeps for path: the database, its
// WAL and its shared memory.
func databaseBytes(t *testing.T, path string) []byte {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), filepath.Base(path)) {
			b, err := os.ReadFile(filepath.Join(filepath.Dir(path), e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, b...)
		}
	}
	return all
}

// checkpoint moves the WAL into the database file, from a connection of
// its own.
func checkpoint(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
}

// notStored fails the test when any of values is in the database files,
// before and after a checkpoint.
func notStored(t *testing.T, path string, values ...string) {
	t.Helper()
	for _, when := range []string{"in the WAL", "after a checkpoint"} {
		if when == "after a checkpoint" {
			checkpoint(t, path)
		}
		raw := databaseBytes(t, path)
		for _, v := range values {
			if bytes.Contains(raw, []byte(v)) {
				t.Errorf("%s is in the database files in plain text (%s)", v, when)
			}
		}
	}
}

func TestSecretsAreEncryptedAtRest(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "metadata.db")
	s := storetest.WithProjects(t, openWith(t, path, store.WithSecretKeys(newSecretKey(t))), "team")
	first, second, public := marker(t, "first"), marker(t, "second"), marker(t, "public")

	created, err := s.CreateObject(ctx, secret("team", "db", first))
	if err != nil {
		t.Fatal(err)
	}
	updated, err := s.UpdateObject(ctx, secret("team", "db", second), created.ResourceVersion)
	if err != nil {
		t.Fatal(err)
	}
	// A ConfigMap is not encrypted: the search below can find a value.
	if _, err := s.CreateObject(ctx, storetest.ConfigMap("team", "settings", `{"data":{"k":"`+public+`"}}`)); err != nil {
		t.Fatal(err)
	}

	got, err := s.GetObject(ctx, created.ObjectKey)
	if err != nil || !bytes.Contains(got.Body, []byte(second)) || got.ResourceVersion != updated.ResourceVersion || got.Labels["app"] != "db" {
		t.Fatalf("get = %+v, %v", got, err)
	}
	list, _, _, err := s.ListObjects(ctx, store.ObjectQuery{Resource: "secrets", Namespace: "team"})
	if err != nil || len(list) != 1 || !bytes.Contains(list[0].Body, []byte(second)) {
		t.Fatalf("list = %+v, %v", list, err)
	}
	if _, err := s.DeleteObject(ctx, created.ObjectKey, 0, ""); err != nil {
		t.Fatal(err)
	}
	events, err := s.ObjectEvents(ctx, "/secrets", 0, 10)
	if err != nil || len(events) != 3 {
		t.Fatalf("events = %+v, %v", events, err)
	}
	for i, want := range []string{first, second, second} {
		e := events[i]
		if !bytes.Contains(e.Object.Body, []byte(want)) || e.Object.Labels["app"] != "db" || e.Object.UID != "uid-db" {
			t.Errorf("event %d = %s %+v, want the body with %s, its labels and uid", i, e.Type, e.Object, want)
		}
	}

	notStored(t, path, first, second)
	if !bytes.Contains(databaseBytes(t, path), []byte(public)) {
		t.Fatal("the ConfigMap's value is not in the database files: the search cannot find anything")
	}
	s.Close()
	notStored(t, path, first, second)
}

// Secrets written before encryption was configured are encrypted at the
// first start with a key, in the objects and in the history, and nothing
// of them is left in plain text in the database files.
func TestPlaintextSecretsAreEncryptedAtOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "metadata.db")
	first, second, gone := marker(t, "first"), marker(t, "second"), marker(t, "gone")
	old := storetest.WithProjects(t, openWith(t, path), "team")
	// One deleted, its history pruned: only freed pages (overflow pages:
	// it is larger than a page) still hold it.
	g, err := old.CreateObject(ctx, secret("team", "gone", strings.Repeat("x", 10000)+gone))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.DeleteObject(ctx, g.ObjectKey, 0, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := old.PruneEvents(ctx, 0); err != nil {
		t.Fatal(err)
	}
	created, err := old.CreateObject(ctx, secret("team", "db", first))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.UpdateObject(ctx, secret("team", "db", second), 0); err != nil {
		t.Fatal(err)
	}
	old.Close()
	if raw := databaseBytes(t, path); !bytes.Contains(raw, []byte(first)) || !bytes.Contains(raw, []byte(second)) || !bytes.Contains(raw, []byte(gone)) {
		t.Fatal("the secrets written without a key are not in plain text: nothing to migrate")
	}

	key := newSecretKey(t)
	s := openWith(t, path, store.WithSecretKeys(key))
	before, err := s.CountStoredSecrets(ctx)
	if err != nil || before.Plaintext != 3 || len(before.ByKey) != 0 {
		t.Fatalf("before: %+v, %v; want 3 in plain text (the object, two events)", before, err)
	}
	n, err := s.EncryptSecrets(ctx)
	if err != nil || n != 3 {
		t.Fatalf("EncryptSecrets = %d, %v; want 3", n, err)
	}
	after, err := s.CountStoredSecrets(ctx)
	if err != nil || after.Plaintext != 0 || after.ByKey[store.SecretKeyID(key)] != 3 {
		t.Fatalf("after: %+v, %v; want 3 under key %s", after, err, store.SecretKeyID(key))
	}
	if n, err := s.EncryptSecrets(ctx); err != nil || n != 0 {
		t.Fatalf("a second EncryptSecrets = %d, %v; want 0", n, err)
	}
	got, err := s.GetObject(ctx, created.ObjectKey)
	if err != nil || !bytes.Contains(got.Body, []byte(second)) {
		t.Fatalf("get = %+v, %v", got, err)
	}
	events, err := s.ObjectEvents(ctx, "/secrets", created.ResourceVersion-1, 10)
	if err != nil || len(events) != 2 || !bytes.Contains(events[0].Object.Body, []byte(first)) {
		t.Fatalf("events = %+v, %v", events, err)
	}
	notStored(t, path, first, second, gone)
	s.Close()
	notStored(t, path, first, second, gone)
}

// A Secret deleted before encryption was configured, whose history is
// pruned too, is in no row any more but still in freed pages: the first
// start with a key scrubs them, with nothing to rewrite.
func TestFreedPlaintextIsScrubbed(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "metadata.db")
	gone := marker(t, "gone")
	old := storetest.WithProjects(t, openWith(t, path), "team")
	// Larger than a page: its overflow pages go to the free list whole.
	g, err := old.CreateObject(ctx, secret("team", "gone", strings.Repeat("x", 10000)+gone))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.DeleteObject(ctx, g.ObjectKey, 0, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := old.PruneEvents(ctx, 0); err != nil {
		t.Fatal(err)
	}
	old.Close()
	if !bytes.Contains(databaseBytes(t, path), []byte(gone)) {
		t.Fatal("the deleted secret is not in the database files: nothing to scrub")
	}
	s := openWith(t, path, store.WithSecretKeys(newSecretKey(t)))
	if n, err := s.EncryptSecrets(ctx); err != nil || n != 0 {
		t.Fatalf("EncryptSecrets = %d, %v; want 0 rewritten", n, err)
	}
	notStored(t, path, gone)
}

// A key other than the one that encrypted a Secret fails its reads with
// an error that says so, and rewrites nothing: with the right key back,
// the Secret reads as before.
func TestWrongSecretKeyFailsClearly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "metadata.db")
	right, wrong := newSecretKey(t), newSecretKey(t)
	value := marker(t, "value")
	s := storetest.WithProjects(t, openWith(t, path, store.WithSecretKeys(right)), "team")
	created, err := s.CreateObject(ctx, secret("team", "db", value))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateObject(ctx, storetest.ConfigMap("team", "settings", `{}`)); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openWith(t, path, store.WithSecretKeys(wrong))
	_, err = s.GetObject(ctx, created.ObjectKey)
	var keyErr *store.SecretKeyError
	if !errors.As(err, &keyErr) || keyErr.KeyID != store.SecretKeyID(right) ||
		!strings.Contains(err.Error(), "does not match") || !strings.Contains(err.Error(), "team/db") {
		t.Fatalf("get with the wrong key = %v, want a SecretKeyError naming the object and saying the key does not match", err)
	}
	if _, _, _, err := s.ListObjects(ctx, store.ObjectQuery{Resource: "secrets"}); !errors.As(err, &keyErr) {
		t.Fatalf("list with the wrong key = %v", err)
	}
	if _, err := s.ObjectEvents(ctx, "/secrets", 0, 10); !errors.As(err, &keyErr) {
		t.Fatalf("events with the wrong key = %v", err)
	}
	// A watch of Secrets in another project is not failed by the one that
	// cannot be decrypted: other namespaces' events are not decoded.
	storetest.WithProjects(t, s, "other")
	if _, err := s.CreateObject(ctx, secret("other", "fine", "readable")); err != nil {
		t.Fatal(err)
	}
	if evs, upTo, _, err := s.ObjectEventsIn(ctx, "/secrets", "other", 0, 10); err != nil || len(evs) != 1 || upTo < evs[0].Object.ResourceVersion {
		t.Fatalf("events of another project beside an undecryptable Secret = %d, up to %d, %v; want its one event", len(evs), upTo, err)
	}
	if _, err := s.UpdateObject(ctx, secret("team", "db", "overwritten"), 0); !errors.As(err, &keyErr) {
		t.Fatalf("update with the wrong key = %v", err)
	}
	if _, err := s.GetObject(ctx, storetest.ConfigMap("team", "settings", "").ObjectKey); err != nil {
		t.Fatalf("a ConfigMap with the wrong secret key: %v", err)
	}
	counts, err := s.CountStoredSecrets(ctx)
	if err != nil || counts.ByKey[store.SecretKeyID(right)] != 2 {
		t.Fatalf("counts = %+v, %v; want 2 under the right key", counts, err)
	}
	if n, err := s.EncryptSecrets(ctx); err != nil || n != 0 {
		t.Fatalf("EncryptSecrets with the wrong key = %d, %v; want 0 rewritten", n, err)
	}
	s.Close()

	s = openWith(t, path)
	if _, err := s.GetObject(ctx, created.ObjectKey); !errors.As(err, &keyErr) || !strings.Contains(err.Error(), "no secret encryption key") {
		t.Fatalf("get without a key = %v", err)
	}
	s.Close()

	s = openWith(t, path, store.WithSecretKeys(right))
	got, err := s.GetObject(ctx, created.ObjectKey)
	if err != nil || !bytes.Contains(got.Body, []byte(value)) {
		t.Fatalf("get with the right key again = %+v, %v", got, err)
	}
}

// A new key first and the old one after: the old key still decrypts, and
// EncryptSecrets moves everything to the new one.
func TestSecretKeyRotation(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "metadata.db")
	oldKey, newKey := newSecretKey(t), newSecretKey(t)
	value := marker(t, "value")
	s := storetest.WithProjects(t, openWith(t, path, store.WithSecretKeys(oldKey)), "team")
	created, err := s.CreateObject(ctx, secret("team", "db", value))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openWith(t, path, store.WithSecretKeys(newKey, oldKey))
	if got, err := s.GetObject(ctx, created.ObjectKey); err != nil || !bytes.Contains(got.Body, []byte(value)) {
		t.Fatalf("get with the old key second = %+v, %v", got, err)
	}
	if n, err := s.EncryptSecrets(ctx); err != nil || n != 2 {
		t.Fatalf("EncryptSecrets = %d, %v; want 2", n, err)
	}
	s.Close()

	s = openWith(t, path, store.WithSecretKeys(newKey))
	if got, err := s.GetObject(ctx, created.ObjectKey); err != nil || !bytes.Contains(got.Body, []byte(value)) {
		t.Fatalf("get with the new key alone = %+v, %v", got, err)
	}
}

// Deleting a project removes its Secrets even when they cannot be
// decrypted (a lost key must not make a project undeletable), and a
// Secret that cannot be decrypted can be deleted by itself.
func TestUndecryptableSecretsCanBeDeleted(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "metadata.db")
	s := storetest.WithProjects(t, openWith(t, path, store.WithSecretKeys(newSecretKey(t))), "team", "other")
	for _, o := range []store.Object{secret("team", "a", "x"), secret("other", "b", "y")} {
		if _, err := s.CreateObject(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	s = openWith(t, path, store.WithSecretKeys(newSecretKey(t)))
	if _, err := s.DeleteObject(ctx, secret("other", "b", "").ObjectKey, 0, ""); err != nil {
		t.Fatalf("delete an undecryptable secret: %v", err)
	}
	if _, err := s.DeleteProjectAndRepositories(ctx, "team"); err != nil {
		t.Fatalf("delete a project with an undecryptable secret: %v", err)
	}
	list, _, _, err := s.ListObjects(ctx, store.ObjectQuery{Resource: "secrets"})
	if err != nil || len(list) != 0 {
		t.Fatalf("secrets left = %+v, %v", list, err)
	}
}
