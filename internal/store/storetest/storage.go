package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// Two storages a registry switches between.
const (
	storageA = "pvc:image-registry-storage"
	storageB = "pvc:second"
)

func expectSize(t *testing.T, s *store.Store, storage, repo string, dgst digest.Digest, want int64) {
	t.Helper()
	size, err := s.BlobSize(context.Background(), store.Only(storage), repo, dgst)
	if want < 0 {
		if !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("%s in %s under %s: size %d, %v; want not found", dgst, repo, storage, size, err)
		}
		return
	}
	if err != nil || size != want {
		t.Fatalf("%s in %s under %s: size %d, %v; want %d", dgst, repo, storage, size, err, want)
	}
}

// A blob is present in the storages its bytes were committed to, and
// only there; a commit in one storage never takes it away from another
// (a session that began before a switch commits in its own storage, and
// another tenant's copy in the new one stays counted), and the size cache
// never answers for a storage it was not asked about.
func testBlobPresenceIsPerStorage(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	b := digest.FromString("layer")
	must(t, s.LinkBlob(ctx, storageA, "p/app", b, 5))
	expectSize(t, s, storageA, "p/app", b, 5) // cached from here on
	expectSize(t, s, storageB, "p/app", b, -1)

	// A session opened while A was in effect, and the switch to B.
	must(t, s.CreateUpload(ctx, store.Upload{ID: "old", Repository: "q/app", Storage: storageA}, store.UploadLimits{}))
	// Committed again while B is in effect: present in B, and still in A.
	must(t, s.CreateUpload(ctx, store.Upload{ID: "u1", Repository: "p/app", Storage: storageB}, store.UploadLimits{}))
	must(t, s.CommitUpload(ctx, "u1", "p/app", store.Unclaimed(b, 5)))
	expectSize(t, s, storageB, "p/app", b, 5)
	expectSize(t, s, storageA, "p/app", b, 5)

	// The session of A ends after the switch: its commit records A, and
	// the blob stays present in B for everyone.
	must(t, s.CommitUpload(ctx, "old", "q/app", store.Unclaimed(b, 5)))
	expectSize(t, s, storageA, "q/app", b, 5)
	expectSize(t, s, storageB, "q/app", b, 5)
	expectSize(t, s, storageB, "p/app", b, 5)

	// A blob recorded only in A is absent in B for every repository.
	c := digest.FromString("only in A")
	must(t, s.LinkBlob(ctx, storageA, "p/other", c, 9))
	expectSize(t, s, storageA, "p/other", c, 9)
	expectSize(t, s, storageB, "p/other", c, -1)
	must(t, s.LinkBlob(ctx, storageB, "p/other", b, 5))

	// Deleting a blob from a repository does not depend on the storage in
	// effect: it must not come back when the other storage does.
	must(t, s.UnlinkBlob(ctx, "p/other", b))
	expectSize(t, s, storageA, "p/other", b, -1)
	expectSize(t, s, storageB, "p/other", b, -1)

	if _, err := s.BlobSize(ctx, store.Only(""), "p/app", b); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("a lookup naming no storage: %v", err)
	}
}

// A mount finds its source only in the storages named; across them, the
// blob is linked where its bytes are, never recorded where they are not.
func testMountOnlyFromTheStorageInEffect(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	b := digest.FromString("shared layer")
	must(t, s.LinkBlob(ctx, storageA, "p/source", b, 7))
	for _, from := range []string{"p/source", ""} {
		mounted, err := s.MountBlob(ctx, store.Only(storageB), "p/target", from, b)
		if err != nil || mounted {
			t.Fatalf("mount from %q under B of a blob only in A = %t, %v", from, mounted, err)
		}
	}
	expectSize(t, s, storageB, "p/target", b, -1)
	expectSize(t, s, storageA, "p/target", b, -1)
	mounted, err := s.MountBlob(ctx, store.Only(storageA), "p/target", "p/source", b)
	if err != nil || !mounted {
		t.Fatalf("mount under A = %t, %v", mounted, err)
	}
	expectSize(t, s, storageA, "p/target", b, 7)

	// B in effect, A older: mountable, and still only in A.
	mounted, err = s.MountBlob(ctx, store.Storages{InEffect: storageB, Older: []string{storageA}}, "p/third", "p/source", b)
	if err != nil || !mounted {
		t.Fatalf("mount under B with A older = %t, %v", mounted, err)
	}
	if loc, err := s.LocateBlob(ctx, store.Storages{InEffect: storageB, Older: []string{storageA}}, "p/third", b); err != nil || loc.Storage != storageA {
		t.Errorf("the mounted blob located at %+v, %v; want A, where its bytes are", loc, err)
	}
	expectSize(t, s, storageB, "p/third", b, -1)
}

// A manifest whose layers are only in another storage is refused as if
// they were absent; manifests themselves are metadata and stay.
func testManifestReferencesArePerStorage(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	cfg, layer := digest.FromString("cfg"), digest.FromString("layer")
	must(t, s.LinkBlob(ctx, storageA, "p/app", cfg, 2))
	must(t, s.LinkBlob(ctx, storageA, "p/app", layer, 3))
	payload := []byte(`{"schemaVersion":2}`)
	m := store.Manifest{Digest: digest.FromBytes(payload), MediaType: "application/vnd.oci.image.manifest.v1+json", Payload: payload,
		References: []store.Reference{{Digest: cfg, Size: 2, Required: true}, {Digest: layer, Size: 3, Required: true}}}

	err := s.PutManifest(ctx, store.Only(storageB), "p/app", m, []string{"v1"})
	var missing *store.MissingReferenceError
	if !errors.As(err, &missing) || missing.Digest != cfg || missing.Manifest {
		t.Fatalf("manifest under B referencing blobs only in A = %v, want the config missing", err)
	}
	if _, err := s.Manifest(ctx, "p/app", "v1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("a refused manifest was stored: %v", err)
	}
	must(t, s.PutManifest(ctx, store.Only(storageA), "p/app", m, []string{"v1"}))
	// After a switch to B the manifest still answers: it is metadata.
	if got, err := s.Manifest(ctx, "p/app", "v1"); err != nil || got.Digest != m.Digest {
		t.Fatalf("manifest after the switch = %v, %v", got.Digest, err)
	}
	// An optional reference held only in A is not compared under B.
	m.References[0].Required, m.References[1].Required = false, false
	m.References[1].Size = 99
	if err := s.PutManifest(ctx, store.Only(storageB), "p/app", m, nil); err != nil {
		t.Fatalf("optional references absent from B: %v", err)
	}
}

// A session records its storage; expiry says where each session's bytes are.
func testUploadSessionsKeepTheirStorage(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	must(t, s.CreateUpload(ctx, store.Upload{ID: "ua", Repository: "p/app", Storage: storageA}, store.UploadLimits{}))
	must(t, s.CreateUpload(ctx, store.Upload{ID: "ub", Repository: "p/app", Storage: storageB}, store.UploadLimits{}))
	if u, err := s.Upload(ctx, "p/app", "ub"); err != nil || u.Storage != storageB {
		t.Fatalf("session ub = %+v, %v", u, err)
	}
	if err := s.CreateUpload(ctx, store.Upload{ID: "none", Repository: "p/app"}, store.UploadLimits{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("a session without a storage: %v", err)
	}
	ended, err := s.ExpireUploads(ctx, time.Now().Add(time.Hour))
	must(t, err)
	got := map[string]string{}
	for _, u := range ended {
		got[u.ID] = u.Storage
	}
	if len(got) != 2 || got["ua"] != storageA || got["ub"] != storageB {
		t.Fatalf("expired sessions = %+v", ended)
	}
}

// A blob in several storages is located in the first of them in the
// order the caller names them: the storage in effect, then older ones as
// preferred (those that can be read first).
func testLocateBlobPrefersTheOrderNamed(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	dgst := digest.FromString("in three storages")
	for _, id := range []string{"pvc:a", "pvc:b", "pvc:c"} {
		if err := s.LinkBlob(ctx, id, "p/app", dgst, 17); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		in   store.Storages
		want string
	}{
		{store.Storages{InEffect: "pvc:b", Older: []string{"pvc:a", "pvc:c"}}, "pvc:b"},
		{store.Storages{InEffect: "pvc:x", Older: []string{"pvc:c", "pvc:a"}}, "pvc:c"},
		{store.Storages{InEffect: "pvc:x", Older: []string{"pvc:a", "pvc:c"}}, "pvc:a"},
		{store.Storages{InEffect: "pvc:x", Older: []string{"pvc:y", "pvc:b"}}, "pvc:b"},
	} {
		loc, err := s.LocateBlob(ctx, c.in, "p/app", dgst)
		if err != nil || loc.Storage != c.want || loc.Size != 17 {
			t.Errorf("LocateBlob(%+v) = %+v, %v; want %s", c.in, loc, err, c.want)
		}
	}
	if _, err := s.LocateBlob(ctx, store.Storages{InEffect: "pvc:x", Older: []string{"pvc:y"}}, "p/app", dgst); err == nil {
		t.Error("located in storages that do not hold it")
	}
}
