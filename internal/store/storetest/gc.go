package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// gcOwner names the tests' collection.
const gcOwner = 7

// notStale is a time no hold of a taken blob is older than.
func notStale() time.Time { return time.Now().Add(-time.Hour) }

// gcEverything is a cutoff after every touch of a test: the grace period
// protects nothing, and only what references something keeps it.
func gcEverything() time.Time { return time.Now().Add(time.Hour) }

// gcCollect runs the store's side of a collection to its end (as
// internal/gc does, with no bytes to delete): manifests until none is a
// candidate, then blobs. It returns what went.
func gcCollect(t *testing.T, s *store.Store, before time.Time) (manifests, blobs []digest.Digest) {
	t.Helper()
	ctx := context.Background()
	for {
		cands, err := s.GCManifestCandidates(ctx, before, "", 100)
		must(t, err)
		if len(cands) == 0 {
			break
		}
		for _, c := range cands {
			ok, err := s.CollectManifest(ctx, c.Digest, before)
			must(t, err)
			if ok {
				manifests = append(manifests, c.Digest)
			}
		}
	}
	cands, err := s.GCBlobCandidates(ctx, before, before, "", 1000)
	must(t, err)
	for _, c := range cands {
		taken, ok, err := s.TakeBlob(ctx, c.Digest, before, before, gcOwner)
		must(t, err)
		if !ok {
			continue
		}
		for _, st := range taken.Storages {
			must(t, s.ForgetBlobBytes(ctx, c.Digest, st, gcOwner))
		}
		done, err := s.FinishBlob(ctx, c.Digest, gcOwner, true)
		must(t, err)
		if done {
			blobs = append(blobs, c.Digest)
		}
	}
	return manifests, blobs
}

// What the collector keeps: a tagged image, one linked by digest only,
// one a tag's history still names, an index's child; what it deletes: a
// manifest nothing names, then the blobs only it referenced, and a blob
// no manifest ever referenced (unlinked from its repository on the way).
func testGCRoots(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	in := store.Only(store.DefaultStorage)
	tagged := Image(t, s, "p/a", "tagged")
	must(t, s.PutManifest(ctx, in, "p/a", tagged, []string{"latest"}))
	byDigest := Image(t, s, "p/a", "bydigest")
	must(t, s.PutManifest(ctx, in, "p/a", byDigest, nil))
	inHistory := Image(t, s, "p/a", "history")
	must(t, s.PutManifest(ctx, in, "p/a", inHistory, []string{"old"}))
	must(t, s.DeleteManifest(ctx, "p/a", inHistory.Digest))
	child := Image(t, s, "p/a", "child")
	must(t, s.PutManifest(ctx, in, "p/a", child, nil))
	index := indexOf(child)
	must(t, s.PutManifest(ctx, in, "p/a", index, []string{"multi"}))
	must(t, s.DeleteManifest(ctx, "p/a", child.Digest))
	orphan := Image(t, s, "p/a", "orphan")
	must(t, s.PutManifest(ctx, in, "p/a", orphan, nil))
	must(t, s.DeleteManifest(ctx, "p/a", orphan.Digest))
	loose := digest.FromString("never in a manifest")
	must(t, s.LinkBlob(ctx, store.DefaultStorage, "p/a", loose, 7))

	// Within the grace period nothing goes.
	if m, b := gcCollect(t, s, time.Now().Add(-time.Minute)); len(m)+len(b) != 0 {
		t.Fatalf("collected within the grace period: manifests %v, blobs %v", m, b)
	}
	pendingManifests, pendingBlobs, err := s.GCPending(ctx, time.Now().Add(-time.Minute))
	must(t, err)
	if pendingManifests != 1 || pendingBlobs != 1 {
		t.Fatalf("pending = %d manifests, %d blobs; want the orphan and the loose blob", pendingManifests, pendingBlobs)
	}

	cands, err := s.GCBlobCandidates(ctx, gcEverything(), notStale(), "", 100)
	must(t, err)
	if len(cands) != 1 || cands[0].Digest != loose || cands[0].Linked != 1 || cands[0].Size != 7 {
		t.Fatalf("blob candidates before the orphan manifest went = %+v; want the loose blob, linked once", cands)
	}
	seq := lastSeq(t, s)
	manifests, blobs := gcCollect(t, s, gcEverything())
	if !slices.Equal(manifests, []digest.Digest{orphan.Digest}) {
		t.Fatalf("collected manifests %v, want only the orphan %s", manifests, orphan.Digest)
	}
	want := []digest.Digest{loose, orphan.References[0].Digest, orphan.References[1].Digest}
	slices.Sort(want)
	slices.Sort(blobs)
	if !slices.Equal(blobs, want) {
		t.Fatalf("collected blobs %v, want %v", blobs, want)
	}
	for _, d := range want {
		if _, err := s.BlobSize(ctx, in, "p/a", d); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("blob %s still in p/a after collection: %v", d, err)
		}
	}
	evs, err := s.Events(ctx, seq, 100)
	must(t, err)
	unlinked := map[digest.Digest]bool{}
	for _, ev := range evs {
		if ev.Kind == string(store.EventBlobUnlinked) && ev.Repository == "p/a" {
			unlinked[ev.Digest] = true
		}
	}
	for _, d := range want {
		if !unlinked[d] {
			t.Errorf("no BlobUnlinked event for %s (events %+v)", d, evs)
		}
	}
	// Everything kept is whole.
	for _, m := range []store.Manifest{tagged, byDigest, inHistory, child, index} {
		if _, err := s.StoredManifestByDigest(ctx, m.Digest); err != nil {
			t.Errorf("manifest %s collected: %v", m.Digest, err)
		}
	}
	for _, m := range []store.Manifest{tagged, byDigest, inHistory, child} {
		for _, ref := range m.References {
			if _, err := s.BlobSize(ctx, in, "p/a", ref.Digest); err != nil {
				t.Errorf("blob %s of kept manifest %s: %v", ref.Digest, m.Digest, err)
			}
		}
	}
	if m, b := gcCollect(t, s, gcEverything()); len(m)+len(b) != 0 {
		t.Fatalf("a second collection found more: manifests %v, blobs %v", m, b)
	}
}

// indexOf is an index of one image (not stored).
func indexOf(child store.Manifest) store.Manifest {
	payload := []byte(fmt.Sprintf(`{"schemaVersion":2,"manifests":[{"digest":%q}]}`, child.Digest))
	return store.Manifest{
		Digest: digest.FromBytes(payload), MediaType: "application/vnd.oci.image.index.v1+json", Payload: payload,
		References: []store.Reference{{Digest: child.Digest, Size: int64(len(child.Payload)), Manifest: true, Required: true}},
	}
}

func lastSeq(t *testing.T, s *store.Store) int64 {
	t.Helper()
	var last int64
	for {
		evs, err := s.Events(context.Background(), last, 1000)
		must(t, err)
		if len(evs) == 0 {
			return last
		}
		last = evs[len(evs)-1].Seq
	}
}

// A blob the collector took is no longer there for anyone: a mount, a
// link, a manifest naming it; a claim waits until its row is gone and
// then makes a new one; and recording bytes under a claim made before the
// collector took the row fails, since those bytes may be gone.
func testGCTakenBlobIsGoneForEveryone(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	in := store.Only(store.DefaultStorage)
	d := digest.FromString("taken")
	early, err := s.ClaimBlob(ctx, store.DefaultStorage, d, 5)
	must(t, err)
	must(t, s.LinkClaimed(ctx, store.DefaultStorage, "p/a", early))
	m := Image(t, s, "p/a", "names-taken")
	m.References = append(m.References, store.Reference{Digest: d, Size: 5, Required: true})

	taken, ok, err := s.TakeBlob(ctx, d, gcEverything(), notStale(), gcOwner)
	must(t, err)
	if !ok || !slices.Equal(taken.Unlinked, []string{"p/a"}) || !slices.Equal(taken.Storages, []string{store.DefaultStorage}) {
		t.Fatalf("TakeBlob = %+v, %v", taken, ok)
	}
	if mounted, err := s.MountBlob(ctx, in, "p/b", "p/a", d); err != nil || mounted {
		t.Errorf("mount of a taken blob = %v, %v", mounted, err)
	}
	if err := s.LinkBlob(ctx, store.DefaultStorage, "p/b", d, 5); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("link of a taken blob = %v, want not found", err)
	}
	var missing *store.MissingReferenceError
	if err := s.PutManifest(ctx, in, "p/a", m, []string{"x"}); !errors.As(err, &missing) || missing.Digest != d {
		t.Errorf("manifest naming a taken blob = %v, want it missing", err)
	}
	if err := s.LinkClaimed(ctx, store.DefaultStorage, "p/a", early); !errors.As(err, new(*store.BlobCollectedError)) {
		t.Errorf("recording under a claim the collector took = %v", err)
	}

	claimed := make(chan error, 1)
	var late store.BlobClaim
	go func() {
		var err error
		late, err = s.ClaimBlob(ctx, store.DefaultStorage, d, 5)
		claimed <- err
	}()
	select {
	case err := <-claimed:
		t.Fatalf("a claim of a blob being deleted returned at once: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	// Another collection may neither take it nor finish it.
	if _, ok, err := s.TakeBlob(ctx, d, gcEverything(), notStale(), gcOwner+1); err != nil || ok {
		t.Fatalf("a second collection took a blob the first holds: %v, %v", ok, err)
	}
	must(t, s.ForgetBlobBytes(ctx, d, store.DefaultStorage, gcOwner+1))
	if done, err := s.FinishBlob(ctx, d, gcOwner+1, true); err != nil || done {
		t.Fatalf("a second collection finished a blob the first holds: %v, %v", done, err)
	}
	must(t, s.ForgetBlobBytes(ctx, d, store.DefaultStorage, gcOwner))
	done, err := s.FinishBlob(ctx, d, gcOwner, true)
	must(t, err)
	if !done {
		t.Fatal("FinishBlob kept a blob no storage holds")
	}
	select {
	case err := <-claimed:
		must(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the claim still waits after the blob's row went")
	}
	must(t, s.LinkClaimed(ctx, store.DefaultStorage, "p/a", late))
	if err := s.LinkClaimed(ctx, store.DefaultStorage, "p/a", early); !errors.As(err, new(*store.BlobCollectedError)) {
		t.Errorf("an old claim recorded after the row was made again = %v", err)
	}
	must(t, s.PutManifest(ctx, in, "p/a", m, []string{"x"}))

	// Bytes that could not be deleted: the blob is let go, unlinked, and
	// a later collection takes it again.
	loose := digest.FromString("undeletable")
	must(t, s.LinkBlob(ctx, store.DefaultStorage, "p/a", loose, 3))
	if _, ok, err := s.TakeBlob(ctx, loose, gcEverything(), notStale(), gcOwner); err != nil || !ok {
		t.Fatalf("TakeBlob = %v, %v", ok, err)
	}
	if done, err := s.FinishBlob(ctx, loose, gcOwner, true); err != nil || done {
		t.Fatalf("FinishBlob with bytes left = %v, %v", done, err)
	}
	cands, err := s.GCBlobCandidates(ctx, gcEverything(), notStale(), "", 10)
	must(t, err)
	if len(cands) != 1 || cands[0].Digest != loose || cands[0].Deleting || cands[0].Linked != 0 {
		t.Fatalf("candidates after a failed deletion = %+v", cands)
	}
	if _, err := s.ClaimBlob(ctx, store.DefaultStorage, loose, 3); err != nil {
		t.Fatalf("claim of a blob let go = %v", err)
	}
}

// A collection interrupted after it took a blob (the process died), or
// one whose deletion's outcome is unknown, holds it until its hold is
// stale; then another collection takes it over and finishes it.
func testGCResumesTakenBlobs(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	d := digest.FromString("interrupted")
	must(t, s.LinkBlob(ctx, store.DefaultStorage, "p/a", d, 3))
	if _, ok, err := s.TakeBlob(ctx, d, gcEverything(), notStale(), gcOwner); err != nil || !ok {
		t.Fatalf("TakeBlob = %v, %v", ok, err)
	}
	if done, err := s.FinishBlob(ctx, d, gcOwner, false); err != nil || done {
		t.Fatalf("FinishBlob with bytes left, kept = %v, %v", done, err)
	}
	cands, err := s.GCBlobCandidates(ctx, time.Now().Add(-time.Hour), notStale(), "", 10)
	must(t, err)
	if len(cands) != 0 {
		t.Fatalf("a freshly held blob is a candidate: %+v", cands)
	}
	stale := time.Now().Add(time.Hour)
	cands, err = s.GCBlobCandidates(ctx, time.Now().Add(-time.Hour), stale, "", 10)
	must(t, err)
	if len(cands) != 1 || cands[0].Digest != d || !cands[0].Deleting {
		t.Fatalf("candidates = %+v, want the stale taken blob", cands)
	}
	taken, ok, err := s.TakeBlob(ctx, d, time.Now().Add(-time.Hour), stale, gcOwner+1)
	must(t, err)
	if !ok || !slices.Equal(taken.Storages, []string{store.DefaultStorage}) {
		t.Fatalf("TakeBlob over a stale hold = %+v, %v", taken, ok)
	}
	// The first collection, back, finds it no longer its own.
	must(t, s.ForgetBlobBytes(ctx, d, store.DefaultStorage, gcOwner))
	if done, err := s.FinishBlob(ctx, d, gcOwner, true); err != nil || done {
		t.Fatalf("the old holder finished it: %v, %v", done, err)
	}
	must(t, s.ForgetBlobBytes(ctx, d, store.DefaultStorage, gcOwner+1))
	if done, err := s.FinishBlob(ctx, d, gcOwner+1, true); err != nil || !done {
		t.Fatalf("the new holder could not finish it: %v, %v", done, err)
	}
}

// A manifest pushed again while the collector considers it: either the
// collector deleted it first and the push stores it again, whole, or the
// push touched it first and the collector keeps it. Never a link to a
// manifest that is gone.
func testGCManifestPushedAgain(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	in := store.Only(store.DefaultStorage)
	m := Image(t, s, "p/a", "again")
	must(t, s.PutManifest(ctx, in, "p/a", m, nil))
	must(t, s.DeleteManifest(ctx, "p/a", m.Digest))
	if ok, err := s.CollectManifest(ctx, m.Digest, gcEverything()); err != nil || !ok {
		t.Fatalf("CollectManifest = %v, %v", ok, err)
	}
	must(t, s.PutManifest(ctx, in, "p/b", Image(t, s, "p/b", "again"), []string{"v1"}))
	got, err := s.Manifest(ctx, "p/b", "v1")
	must(t, err)
	if got.Digest != m.Digest {
		t.Fatalf("pushed again as %s, want %s", got.Digest, m.Digest)
	}
	// Its references came back with it: its blobs are not candidates.
	cands, err := s.GCBlobCandidates(ctx, gcEverything(), notStale(), "", 10)
	must(t, err)
	if len(cands) != 0 {
		t.Fatalf("blobs of a manifest stored again are candidates: %+v", cands)
	}
	// A push touches it: within the grace period it is kept even unlinked.
	must(t, s.DeleteManifest(ctx, "p/b", m.Digest))
	if ok, err := s.CollectManifest(ctx, m.Digest, time.Now().Add(-time.Minute)); err != nil || ok {
		t.Fatalf("CollectManifest within the grace period = %v, %v", ok, err)
	}
}
