package storagemigration_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/filesystem"
	"github.com/berth-registry/berth/internal/storagemigration"
	"github.com/berth-registry/berth/internal/store"
)

// put commits content as dgst in d (dgst is the caller's word: a test
// stores bytes that do not match it on purpose) and records it in meta.
func put(t *testing.T, meta *store.Store, id string, d storage.Driver, repo string, dgst digest.Digest, content []byte) {
	t.Helper()
	ctx := context.Background()
	up := storage.Upload{ID: "u" + dgst.Encoded()[:12] + strings.ReplaceAll(id, ":", "")}
	if _, _, err := d.Append(ctx, up, 0, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(ctx, up, dgst, int64(len(content))); err != nil {
		t.Fatal(err)
	}
	if err := meta.LinkBlob(ctx, id, repo, dgst, int64(len(content))); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, d storage.Driver, dgst digest.Digest) ([]byte, error) {
	t.Helper()
	r, err := d.Open(context.Background(), dgst, 0, -1)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// setup opens a store and filesystem drivers named after dirs, in a
// directory of the test's.
func setup(t *testing.T, dirs ...string) (*store.Store, []*filesystem.Driver, string) {
	t.Helper()
	dir := t.TempDir()
	meta, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	var drivers []*filesystem.Driver
	for _, d := range dirs {
		fd, err := filesystem.Open(filepath.Join(dir, d))
		if err != nil {
			t.Fatal(err)
		}
		drivers = append(drivers, fd)
	}
	return meta, drivers, dir
}

func TestRunMovesVerifiesAndResumes(t *testing.T) {
	ctx := context.Background()
	meta, d, _ := setup(t, "old", "new")
	oldD, newD := d[0], d[1]
	const oldID, newID = "pvc:old", "pvc:new"
	for _, id := range []string{oldID, newID} {
		if err := meta.RecordStorage(ctx, id, []byte(`{"pvc":{"claim":"`+strings.TrimPrefix(id, "pvc:")+`"}}`)); err != nil {
			t.Fatal(err)
		}
	}
	listed := func() []store.RecordedStorage {
		t.Helper()
		all, err := meta.OlderStorages(ctx, newID)
		if err != nil {
			t.Fatal(err)
		}
		return all
	}

	plain := []byte("a layer only the old storage holds")
	both := []byte("a layer pushed again after the switch")
	good := []byte("the bytes this digest names")
	dPlain, dBoth, dBad := digest.FromBytes(plain), digest.FromBytes(both), digest.FromBytes(good)
	put(t, meta, oldID, oldD, "p/app", dPlain, plain)
	put(t, meta, oldID, oldD, "p/app", dBoth, both)
	put(t, meta, newID, newD, "p/other", dBoth, both)
	// Bytes that rotted in the old storage: the same length, other bytes.
	put(t, meta, oldID, oldD, "p/app", dBad, []byte("THE BYTES THIS DIGEST NAMES"))

	m := &storagemigration.Migrator{Records: meta, Log: slog.New(slog.DiscardHandler)}
	to := settings.Storage{ID: newID, Driver: newD}
	src := []storagemigration.Source{{Storage: settings.Storage{ID: oldID, Driver: oldD}, Name: "old volume", Blobs: 3,
		Bytes: int64(len(plain) + len(both) + len(good))}}
	readable := store.Storages{InEffect: newID, Older: []string{oldID}}

	// A dry run counts and changes nothing.
	var last storagemigration.Progress
	rep, err := m.Run(ctx, to, src, true, func(p storagemigration.Progress) { last = p })
	if err != nil {
		t.Fatal(err)
	}
	if last.Blobs != 3 || last.TotalBlobs != 3 || last.Bytes != last.TotalBytes || !rep.DryRun || len(rep.Failures) != 0 {
		t.Fatalf("dry run: progress %+v, report %+v", last, rep)
	}
	if in, err := meta.BlobIn(ctx, oldID, dPlain); err != nil || !in {
		t.Fatalf("a dry run moved a blob: %v %v", in, err)
	}

	rep, err = m.Run(ctx, to, src, false, func(p storagemigration.Progress) { last = p })
	if err != nil {
		t.Fatal(err)
	}
	sr := rep.Storages[0]
	if sr.Copied != 1 || sr.CopiedBytes != int64(len(plain)) || sr.Deduplicated != 1 || sr.Emptied {
		t.Errorf("report %+v: want one copied, one deduplicated, the storage kept (the bad blob is left)", sr)
	}
	if len(rep.Failures) != 1 || rep.Failures[0].Digest != dBad || !strings.Contains(rep.Failures[0].Error, "have digest") {
		t.Errorf("failures %+v: want the rotten blob, for its digest", rep.Failures)
	}
	if last.Blobs != 3 {
		t.Errorf("progress ended at %+v", last)
	}
	// Moved: in the new storage, readable there, gone from the old one.
	for _, c := range []struct {
		d       digest.Digest
		content []byte
	}{{dPlain, plain}, {dBoth, both}} {
		if b, err := read(t, newD, c.d); err != nil || !bytes.Equal(b, c.content) {
			t.Errorf("%s in the new storage: %q %v", c.d, b, err)
		}
		if _, err := read(t, oldD, c.d); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("%s still in the old storage: %v", c.d, err)
		}
		if in, _ := meta.BlobIn(ctx, oldID, c.d); in {
			t.Errorf("%s still recorded in the old storage", c.d)
		}
		loc, err := meta.LocateBlob(ctx, readable, "p/app", c.d)
		if err != nil || loc.Storage != newID {
			t.Errorf("%s located at %+v, %v; want %s", c.d, loc, err, newID)
		}
	}
	// Left: still where it was, never published in the new storage.
	if _, err := read(t, newD, dBad); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("the rotten blob reached the new storage: %v", err)
	}
	if loc, err := meta.LocateBlob(ctx, readable, "p/app", dBad); err != nil || loc.Storage != oldID {
		t.Errorf("the rotten blob located at %+v, %v; want the old storage", loc, err)
	}

	if l := listed(); len(l) != 1 || l[0].ID != oldID || l[0].Blobs != 1 || l[0].Bytes != int64(len(good)) {
		t.Errorf("older storages after the first run: %+v, want the old one with its rotten blob", l)
	}

	// Repaired, a second run resumes: only what is left moves, and the
	// emptied storage holds nothing.
	if err := oldD.Delete(ctx, dBad); err != nil {
		t.Fatal(err)
	}
	up := storage.Upload{ID: "repair"}
	if _, _, err := oldD.Append(ctx, up, 0, bytes.NewReader(good)); err != nil {
		t.Fatal(err)
	}
	if err := oldD.Commit(ctx, up, dBad, int64(len(good))); err != nil {
		t.Fatal(err)
	}
	src[0].Blobs, src[0].Bytes = 1, int64(len(good))
	rep, err = m.Run(ctx, to, src, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sr := rep.Storages[0]; sr.Copied != 1 || sr.Deduplicated != 0 || !sr.Emptied || len(rep.Failures) != 0 {
		t.Errorf("second run: %+v, failures %+v", sr, rep.Failures)
	}
	if l := listed(); len(l) != 1 || l[0].Blobs != 0 || l[0].Bytes != 0 {
		t.Errorf("the emptied storage: %+v, want it recorded and holding nothing", l)
	}
}

func TestRunReportsAStorageThatCannotBeOpened(t *testing.T) {
	ctx := context.Background()
	meta, d, _ := setup(t, "new")
	newD := d[0]
	content := []byte("x")
	if err := meta.LinkBlob(ctx, "s3:gone/bucket", "p/app", digest.FromBytes(content), 1); err != nil {
		t.Fatal(err)
	}
	m := &storagemigration.Migrator{Records: meta, Log: slog.New(slog.DiscardHandler)}
	rep, err := m.Run(ctx, settings.Storage{ID: "pvc:new", Driver: newD},
		[]storagemigration.Source{{Storage: settings.Storage{ID: "s3:gone/bucket"}, Name: "gone", Blobs: 1, Bytes: 1}}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Storages) != 1 || rep.Storages[0].Unreadable == "" || rep.Storages[0].Emptied {
		t.Fatalf("report %+v: want the storage reported unreadable and kept", rep)
	}
	if in, _ := meta.BlobIn(ctx, "s3:gone/bucket", digest.FromBytes(content)); !in {
		t.Error("the blob's record left a storage that could not be read")
	}
}

// Two storage IDs naming one place (a volume linked to another, an
// endpoint spelt two ways): the records move, and the bytes, which are
// the storage in effect's too, are neither copied nor deleted.
func TestRunFindsTheSamePlaceUnderTwoNames(t *testing.T) {
	ctx := context.Background()
	meta, d, dir := setup(t, "shared")
	shared := d[0]
	again, err := filesystem.Open(filepath.Join(dir, "shared"))
	if err != nil {
		t.Fatal(err)
	}
	content := []byte("one copy only")
	dgst := digest.FromBytes(content)
	put(t, meta, "pvc:a", shared, "p/app", dgst, content)
	m := &storagemigration.Migrator{Records: meta, Log: slog.New(slog.DiscardHandler)}
	rep, err := m.Run(ctx, settings.Storage{ID: "pvc:b", Driver: again},
		[]storagemigration.Source{{Storage: settings.Storage{ID: "pvc:a", Driver: shared}, Name: "a", Blobs: 1, Bytes: int64(len(content))}}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sr := rep.Storages[0]; !sr.SamePlace || sr.Copied != 0 || !sr.Emptied {
		t.Errorf("report %+v: want the same place found, nothing copied, the old name emptied", sr)
	}
	if b, err := read(t, again, dgst); err != nil || !bytes.Equal(b, content) {
		t.Fatalf("the only copy after the migration: %q, %v", b, err)
	}
	if loc, err := meta.LocateBlob(ctx, store.Only("pvc:b"), "p/app", dgst); err != nil || loc.Storage != "pvc:b" {
		t.Errorf("located at %+v, %v", loc, err)
	}
}

// failingOpen is a storage whose reads of blobs it was not given fail
// with something other than "not found" (a backend in trouble).
type failingOpen struct {
	storage.Driver
	known map[digest.Digest]bool
}

func (f failingOpen) Open(ctx context.Context, dgst digest.Digest, offset, length int64) (io.ReadCloser, error) {
	if !f.known[dgst] {
		return nil, errors.New("503 SlowDown")
	}
	return f.Driver.Open(ctx, dgst, offset, length)
}

// When whether the older storage is the same place cannot be told, blobs
// are copied and their records moved, but no old byte is deleted.
func TestRunKeepsOldBytesInDoubt(t *testing.T) {
	ctx := context.Background()
	meta, d, _ := setup(t, "old", "new")
	content := []byte("kept in doubt")
	dgst := digest.FromBytes(content)
	put(t, meta, "pvc:old", d[0], "p/app", dgst, content)
	m := &storagemigration.Migrator{Records: meta, Log: slog.New(slog.DiscardHandler)}
	from := failingOpen{d[0], map[digest.Digest]bool{dgst: true}}
	rep, err := m.Run(ctx, settings.Storage{ID: "pvc:new", Driver: d[1]},
		[]storagemigration.Source{{Storage: settings.Storage{ID: "pvc:old", Driver: from}, Name: "old", Blobs: 1, Bytes: int64(len(content))}}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sr := rep.Storages[0]; sr.SamePlace || sr.Copied != 1 || !strings.Contains(sr.KeptOldBytes, "503 SlowDown") {
		t.Errorf("report %+v: want the blob copied and its old bytes kept, saying why", sr)
	}
	for i, drv := range d {
		if b, err := read(t, drv, dgst); err != nil || !bytes.Equal(b, content) {
			t.Errorf("storage %d: %q, %v; want the blob in both", i, b, err)
		}
	}
}

// racingRecords commits the blob being moved into the older storage (a
// request that began before the switch) at the moment the migration
// moves its record, as an in-flight commit would: inside the older
// storage's write gate, bytes then record.
type racingRecords struct {
	*store.Store
	t        *testing.T
	src      settings.Storage
	content  []byte
	repo     string
	done     chan struct{}
	raceOnce bool
}

func (r *racingRecords) MoveBlob(ctx context.Context, dgst digest.Digest, from, to string) error {
	if !r.raceOnce {
		r.raceOnce = true
		go func() {
			defer close(r.done)
			leave, ok := r.src.Writes.Enter() // waits while the migration has the gate to itself
			if !ok {
				r.t.Error("the older storage's gate closed")
				return
			}
			defer leave()
			up := storage.Upload{ID: "racing"}
			if _, _, err := r.src.Driver.Append(ctx, up, 0, bytes.NewReader(r.content)); err != nil {
				r.t.Error(err)
				return
			}
			if err := r.src.Driver.Commit(ctx, up, dgst, int64(len(r.content))); err != nil {
				r.t.Error(err)
				return
			}
			if err := r.Store.LinkBlob(ctx, from, r.repo, dgst, int64(len(r.content))); err != nil {
				r.t.Error(err)
			}
		}()
	}
	return r.Store.MoveBlob(ctx, dgst, from, to)
}

// A commit into the older storage that races the move of the same blob
// never leaves a record of bytes that were deleted: it waits for the move
// and the deletion, and then its bytes and its record are both there.
func TestRunLetsNoCommitIntoTheOlderStorageRecordDeletedBytes(t *testing.T) {
	ctx := context.Background()
	meta, d, _ := setup(t, "old", "new")
	content := []byte("pushed again while it moves")
	dgst := digest.FromBytes(content)
	put(t, meta, "pvc:old", d[0], "p/app", dgst, content)
	src := settings.Storage{ID: "pvc:old", Driver: d[0], Writes: &settings.Gate{}}
	rec := &racingRecords{Store: meta, t: t, src: src, content: content, repo: "p/app", done: make(chan struct{})}
	m := &storagemigration.Migrator{Records: rec, Log: slog.New(slog.DiscardHandler)}
	if _, err := m.Run(ctx, settings.Storage{ID: "pvc:new", Driver: d[1]},
		[]storagemigration.Source{{Storage: src, Name: "old", Blobs: 1, Bytes: int64(len(content))}}, false, nil); err != nil {
		t.Fatal(err)
	}
	<-rec.done
	// Every record names bytes that are there.
	for i, id := range []string{"pvc:old", "pvc:new"} {
		in, err := meta.BlobIn(ctx, id, dgst)
		if err != nil {
			t.Fatal(err)
		}
		b, rerr := read(t, d[i], dgst)
		if in && (rerr != nil || !bytes.Equal(b, content)) {
			t.Errorf("%s records the blob but holds %q, %v", id, b, rerr)
		}
	}
}

// What a run refuses and reports: a storage it cannot open, in a dry run
// too; the storage in effect changing under it; a report of failures
// kept short.
func TestRunReportsAndStops(t *testing.T) {
	ctx := context.Background()
	meta, d, _ := setup(t, "old", "new")
	var blobs []store.StoredBlob
	for i := range maxTestFailures + 5 {
		content := []byte("rotten " + strconv.Itoa(i))
		dgst := digest.FromString("what it should have been " + strconv.Itoa(i))
		put(t, meta, "pvc:old", d[0], "p/app", dgst, content)
		blobs = append(blobs, store.StoredBlob{Digest: dgst, Size: int64(len(content))})
	}
	m := &storagemigration.Migrator{Records: meta, Log: slog.New(slog.DiscardHandler)}
	to := settings.Storage{ID: "pvc:new", Driver: d[1]}
	gone := []storagemigration.Source{{Storage: settings.Storage{ID: "s3:gone"}, Name: "gone", Blobs: 3, Bytes: 30}}
	rep, err := m.Run(ctx, to, gone, true, nil)
	if err != nil || len(rep.Storages) != 1 || rep.Storages[0].Unreadable == "" {
		t.Errorf("a dry run over a storage that cannot be opened: %+v, %v; want it reported unreadable", rep, err)
	}

	rep, err = m.Run(ctx, to, []storagemigration.Source{{Storage: settings.Storage{ID: "pvc:old", Driver: d[0]}, Name: "old", Blobs: int64(len(blobs))}}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Failures) != 100 || rep.MoreFailures != int64(len(blobs)-100) {
		t.Errorf("%d failures listed, %d more; want 100 and the rest counted", len(rep.Failures), rep.MoreFailures)
	}

	m.InEffect = func() string { return "pvc:elsewhere" }
	_, err = m.Run(ctx, to, []storagemigration.Source{{Storage: settings.Storage{ID: "pvc:old", Driver: d[0]}, Name: "old", Blobs: int64(len(blobs))}}, false, nil)
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("a run whose target is no longer in effect: %v, want a conflict", err)
	}
}

const maxTestFailures = 100
