package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// referrerOf is a manifest whose subject is subject (not stored).
func referrerOf(subject digest.Digest, seed string) store.Manifest {
	payload := []byte(fmt.Sprintf(`{"schemaVersion":2,"subject":{"digest":%q},"seed":%q}`, subject, seed))
	return store.Manifest{Digest: digest.FromBytes(payload), MediaType: "application/vnd.oci.image.manifest.v1+json",
		ArtifactType: "application/example.signature", Subject: subject, Payload: payload}
}

// Pruning keeps the newest revisions of each tag and what they need (an
// index's children, referrers of kept images), drops a deleted tag's
// history, unlinks every other image the repository holds, and a dry run
// says exactly what the run then removes.
func testPruneRepository(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	in := store.Only(store.DefaultStorage)
	var v []store.Manifest
	for i := range 5 {
		m := Image(t, s, "p/a", fmt.Sprint("v", i))
		must(t, s.PutManifest(ctx, in, "p/a", m, []string{"v"}))
		v = append(v, m)
	}
	old := Image(t, s, "p/a", "old")
	must(t, s.PutManifest(ctx, in, "p/a", old, []string{"old"}))
	must(t, s.DeleteTag(ctx, "p/a", "old"))
	untagged := Image(t, s, "p/a", "untagged")
	must(t, s.PutManifest(ctx, in, "p/a", untagged, nil))
	child := Image(t, s, "p/a", "child")
	must(t, s.PutManifest(ctx, in, "p/a", child, nil))
	index := indexOf(child)
	must(t, s.PutManifest(ctx, in, "p/a", index, []string{"multi"}))
	signsKept := referrerOf(v[4].Digest, "kept")
	must(t, s.PutManifest(ctx, in, "p/a", signsKept, nil))
	signsPruned := referrerOf(v[0].Digest, "pruned")
	must(t, s.PutManifest(ctx, in, "p/a", signsPruned, nil))

	everything := store.PrunePolicy{KeepTagRevisions: 2, KeepYoungerThan: time.Now().Add(time.Hour)}
	// Young, everything stays.
	young, err := s.PruneRepository(ctx, "p/a", store.PrunePolicy{KeepTagRevisions: 2, KeepYoungerThan: time.Now().Add(-time.Hour)}, true)
	must(t, err)
	if len(young.Revisions)+len(young.Images) != 0 {
		t.Fatalf("pruned what is younger than the cutoff: %+v", young)
	}

	dry, err := s.PruneRepository(ctx, "p/a", everything, false)
	must(t, err)
	var revs []string
	for _, r := range dry.Revisions {
		revs = append(revs, r.Tag+"@"+string(r.Digest))
	}
	// The deleted tag old: its deletion, then its image; v's oldest three.
	if want := []string{"old@", "old@" + string(old.Digest), "v@" + string(v[2].Digest), "v@" + string(v[1].Digest), "v@" + string(v[0].Digest)}; !slices.Equal(revs, want) {
		t.Errorf("pruned revisions %v, want %v", revs, want)
	}
	var images []digest.Digest
	for _, im := range dry.Images {
		images = append(images, im.Digest)
	}
	want := []digest.Digest{v[0].Digest, v[1].Digest, v[2].Digest, old.Digest, untagged.Digest, signsPruned.Digest}
	slices.Sort(want)
	if !slices.Equal(images, want) {
		t.Errorf("pruned images %v, want %v", images, want)
	}
	if h, err := s.TagHistory(ctx, "p/a", "v"); err != nil || len(h) != 5 {
		t.Fatalf("a dry run changed the history: %d entries, %v", len(h), err)
	}

	seq := lastSeq(t, s)
	done, err := s.PruneRepository(ctx, "p/a", everything, true)
	must(t, err)
	if !reflect.DeepEqual(done, dry) {
		t.Errorf("the run removed\n%+v\nthe dry run said\n%+v", done, dry)
	}
	h, err := s.TagHistory(ctx, "p/a", "v")
	must(t, err)
	if len(h) != 2 || h[0].Digest != v[4].Digest || h[1].Digest != v[3].Digest {
		t.Errorf("history of v after pruning = %+v", h)
	}
	for _, m := range []store.Manifest{v[0], v[1], v[2], old, untagged, signsPruned} {
		if _, err := s.Manifest(ctx, "p/a", string(m.Digest)); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("pruned image %s still in p/a: %v", m.Digest, err)
		}
	}
	for _, m := range []store.Manifest{v[3], v[4], child, index, signsKept} {
		if _, err := s.Manifest(ctx, "p/a", string(m.Digest)); err != nil {
			t.Errorf("kept image %s: %v", m.Digest, err)
		}
	}
	for _, tag := range []string{"v", "multi"} {
		if _, err := s.Manifest(ctx, "p/a", tag); err != nil {
			t.Errorf("tag %s after pruning: %v", tag, err)
		}
	}
	evs, err := s.Events(ctx, seq, 100)
	must(t, err)
	deleted, pruned := 0, 0
	for _, ev := range evs {
		switch store.EventKind(ev.Kind) {
		case store.EventManifestDeleted:
			deleted++
		case store.EventTagHistoryPruned:
			pruned++
		}
	}
	if deleted != len(want) || pruned != 1 {
		t.Errorf("events: %d ManifestDeleted, %d TagHistoryPruned; want %d and 1 (%+v)", deleted, pruned, len(want), evs)
	}
	// Garbage collection frees what only pruned images referenced; the
	// history no longer names them.
	manifests, _ := gcCollect(t, s, gcEverything())
	slices.Sort(manifests)
	if !slices.Equal(manifests, want) {
		t.Errorf("collected after pruning %v, want %v", manifests, want)
	}
	again, err := s.PruneRepository(ctx, "p/a", everything, true)
	must(t, err)
	if len(again.Revisions)+len(again.Images) != 0 {
		t.Errorf("a second run pruned more: %+v", again)
	}
	// An image pushed again after the cutoff is young, though its link
	// is old.
	repushed := Image(t, s, "p/a", "repushed")
	must(t, s.PutManifest(ctx, in, "p/a", repushed, nil))
	cutoff := time.Now()
	time.Sleep(2 * time.Millisecond)
	must(t, s.PutManifest(ctx, in, "p/a", repushed, nil))
	res, err := s.PruneRepository(ctx, "p/a", store.PrunePolicy{KeepTagRevisions: 2, KeepYoungerThan: cutoff}, false)
	must(t, err)
	if len(res.Images) != 0 {
		t.Errorf("an image pushed again after the cutoff is pruned: %+v", res.Images)
	}
	if _, err := s.PruneRepository(ctx, "p/none", everything, false); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("pruning an unknown repository = %v", err)
	}
}
