package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// Manifests and blob sizes are cached; every change that could alter an
// answer is seen by the next lookup: a tag moved or deleted, a manifest
// deleted, a blob unlinked, a project deleted and pushed again.
func testCachedLookupsFollowChanges(t *testing.T, open Opener) {
	s := WithProjects(t, open(t), "p")
	ctx := context.Background()
	manifestAt := func(ref string) (digest.Digest, error) {
		m, err := s.Manifest(ctx, "p/app", ref)
		return m.Digest, err
	}
	one, two := Image(t, s, "p/app", "one"), Image(t, s, "p/app", "two")
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/app", one, []string{"v"}))
	for range 3 { // read until cached
		if d, err := manifestAt("v"); err != nil || d != one.Digest {
			t.Fatalf("v = %s, %v; want %s", d, err, one.Digest)
		}
	}
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/app", two, []string{"v"}))
	if d, _ := manifestAt("v"); d != two.Digest {
		t.Fatalf("after the tag moved v = %s, want %s", d, two.Digest)
	}
	must(t, s.DeleteTag(ctx, "p/app", "v"))
	if _, err := manifestAt("v"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("deleted tag = %v, want not found", err)
	}
	if d, err := manifestAt(one.Digest.String()); err != nil || d != one.Digest {
		t.Fatalf("by digest = %s, %v", d, err)
	}
	must(t, s.DeleteManifest(ctx, "p/app", one.Digest))
	if _, err := manifestAt(one.Digest.String()); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("deleted manifest by digest = %v, want not found", err)
	}

	b := digest.FromString("sized")
	must(t, s.LinkBlob(ctx, store.DefaultStorage, "p/app", b, 7))
	for range 3 {
		if n, err := s.BlobSize(ctx, store.Only(store.DefaultStorage), "p/app", b); err != nil || n != 7 {
			t.Fatalf("BlobSize = %d, %v", n, err)
		}
	}
	must(t, s.UnlinkBlob(ctx, "p/app", b))
	if _, err := s.BlobSize(ctx, store.Only(store.DefaultStorage), "p/app", b); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("unlinked blob = %v, want not found", err)
	}
	must(t, s.LinkBlob(ctx, store.DefaultStorage, "p/app", b, 7)) // a miss is not remembered
	if n, err := s.BlobSize(ctx, store.Only(store.DefaultStorage), "p/app", b); err != nil || n != 7 {
		t.Fatalf("relinked BlobSize = %d, %v", n, err)
	}
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/app", two, []string{"w"}))
	if d, _ := manifestAt("w"); d != two.Digest {
		t.Fatal("w not readable")
	}
	must(t, s.DeleteProject(ctx, "p"))
	if _, err := s.BlobSize(ctx, store.Only(store.DefaultStorage), "p/app", b); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("blob of a deleted project = %v, want not found", err)
	}
	if _, err := manifestAt("w"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("tag of a deleted project = %v, want not found", err)
	}
	if _, err := manifestAt(two.Digest.String()); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("manifest of a deleted project = %v, want not found", err)
	}
}

// A reader that starts after a tag move returned never sees the old
// digest, however the reads and the move interleave.
func testCachedTagNeverStaleAfterMove(t *testing.T, open Opener) {
	s := WithProjects(t, open(t), "p")
	ctx := context.Background()
	const moves = 30
	images := make([]store.Manifest, moves)
	for i := range images {
		images[i] = Image(t, s, "p/app", fmt.Sprint("gen", i))
	}
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/app", images[0], []string{"latest"}))
	var mu sync.Mutex
	current := 0 // index of the last move that returned
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				floor := current
				mu.Unlock()
				m, err := s.Manifest(ctx, "p/app", "latest")
				if err != nil {
					t.Error(err)
					return
				}
				for i := 0; i < floor; i++ {
					if m.Digest == images[i].Digest {
						t.Errorf("read image %d after move %d had returned", i, floor)
						return
					}
				}
			}
		})
	}
	for i := 1; i < moves; i++ {
		must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/app", images[i], []string{"latest"}))
		mu.Lock()
		current = i
		mu.Unlock()
	}
	close(stop)
	wg.Wait()
}
