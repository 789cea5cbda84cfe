package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// Tagging an image another repository holds links it, with an index's
// children and every blob, so that the new tag pulls at once; the entry
// records who tagged it and why.
func testTagImage(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	in := store.Only(store.DefaultStorage)
	child := Image(t, s, "p/src", "child")
	must(t, s.PutManifest(ctx, in, "p/src", child, nil))
	payload := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","seed":"index"}`)
	index := store.Manifest{Digest: digest.FromBytes(payload), MediaType: "application/vnd.oci.image.index.v1+json", Payload: payload,
		References: []store.Reference{{Digest: child.Digest, Manifest: true, Size: int64(len(child.Payload)), Required: true}}}
	must(t, s.PutManifest(ctx, in, "p/src", index, []string{"v1"}))

	actx := store.WithActor(ctx, "alice")
	must(t, s.TagImage(actx, "q/dst", "prod", "p/src", index.Digest, store.ReasonTagged))
	for _, ref := range []string{"prod", string(index.Digest), string(child.Digest)} {
		if _, err := s.Manifest(ctx, "q/dst", ref); err != nil {
			t.Errorf("q/dst %s after tagging: %v", ref, err)
		}
	}
	for _, ref := range child.References {
		if _, err := s.BlobSize(ctx, in, "q/dst", ref.Digest); err != nil {
			t.Errorf("blob %s of the child not linked into q/dst: %v", ref.Digest, err)
		}
	}
	h, err := s.TagHistory(ctx, "q/dst", "prod")
	must(t, err)
	if len(h) != 1 || h[0].Digest != index.Digest || h[0].Actor != "alice" || h[0].Reason != store.ReasonTagged {
		t.Fatalf("history of q/dst:prod = %+v, want one entry by alice, Tagged", h)
	}
	events, err := s.Events(ctx, 0, 1000)
	must(t, err)
	found := false
	for _, e := range events {
		if e.Kind == string(store.EventTagUpdated) && e.Repository == "q/dst" && e.Tag == "prod" {
			found = true
		}
	}
	if !found {
		t.Error("no TagUpdated event for q/dst:prod")
	}

	// A manifest the source does not hold is not found, and nothing changes.
	if err := s.TagImage(ctx, "q/dst", "x", "q/other", index.Digest, store.ReasonTagged); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("tag from an absent repository = %v, want not found", err)
	}
	if err := s.TagImage(ctx, "q/dst", "x", "p/src", digest.FromString("nothing"), store.ReasonTagged); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("tag of an absent manifest = %v, want not found", err)
	}
	if _, err := s.Manifest(ctx, "q/dst", "x"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("a refused tag exists: %v", err)
	}

	// A rollback within the repository is one more entry.
	other := Image(t, s, "q/dst", "other")
	must(t, s.PutManifest(ctx, in, "q/dst", other, []string{"prod"}))
	must(t, s.TagImage(actx, "q/dst", "prod", "q/dst", index.Digest, store.ReasonRollback))
	h, err = s.TagHistory(ctx, "q/dst", "prod")
	must(t, err)
	if len(h) != 3 || h[0].Digest != index.Digest || h[0].Reason != store.ReasonRollback || h[1].Digest != other.Digest {
		t.Fatalf("history after rollback = %+v", h)
	}
}

// An alias follows its source tag in the same transaction as the move,
// until it is set directly; aliases cannot form a cycle.
func testTagAliases(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	in := store.Only(store.DefaultStorage)
	m1, m2, m3 := Image(t, s, "p/a", "1"), Image(t, s, "p/a", "2"), Image(t, s, "p/a", "3")
	must(t, s.PutManifest(ctx, in, "p/a", m1, []string{"latest"}))
	if err := s.AliasTag(ctx, "p/a", "stable", "p/a", "absent"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("alias of an absent tag = %v", err)
	}
	before, _ := s.LatestResourceVersion(ctx)
	must(t, s.AliasTag(ctx, "p/a", "stable", "p/a", "latest"))
	events, err := s.Events(ctx, before, 10)
	must(t, err)
	for _, e := range events {
		if e.Kind == string(store.EventTagUpdated) && e.Reason != store.ReasonAlias {
			t.Fatalf("an alias's event says %q, not Alias: webhooks would call it a push", e.Reason)
		}
	}
	must(t, s.AliasTag(ctx, "p/a", "prod", "p/a", "stable")) // an alias of an alias
	resolves := func(tag string, want digest.Digest) {
		t.Helper()
		m, err := s.Manifest(ctx, "p/a", tag)
		if err != nil || m.Digest != want {
			t.Fatalf("%s = %s, %v; want %s", tag, m.Digest, err, want)
		}
	}
	resolves("stable", m1.Digest)
	resolves("prod", m1.Digest)
	if err := s.AliasTag(ctx, "p/a", "latest", "p/a", "prod"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("a cycle of aliases = %v, want invalid", err)
	}
	if err := s.AliasTag(ctx, "p/a", "latest", "p/a", "latest"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("an alias of itself = %v, want invalid", err)
	}
	must(t, s.PutManifest(ctx, in, "p/a", m2, []string{"latest"}))
	resolves("stable", m2.Digest)
	resolves("prod", m2.Digest)
	tags, err := s.StreamTags(ctx, "p/a")
	must(t, err)
	aliases := map[string]string{}
	for _, tag := range tags {
		aliases[tag.Tag] = tag.AliasOf
	}
	if aliases["stable"] != "p/a:latest" || aliases["prod"] != "p/a:stable" || aliases["latest"] != "" {
		t.Fatalf("aliases in the stream = %v", aliases)
	}
	h, err := s.TagHistory(ctx, "p/a", "prod")
	must(t, err)
	if len(h) != 2 || h[0].Reason != store.ReasonAlias {
		t.Fatalf("history of the alias = %+v, want two entries, the newest an Alias", h)
	}

	// Pushing to the alias ends it: it no longer follows.
	must(t, s.PutManifest(ctx, in, "p/a", m3, []string{"stable"}))
	must(t, s.PutManifest(ctx, in, "p/a", m1, []string{"latest"}))
	resolves("stable", m3.Digest)
	resolves("prod", m3.Digest) // still follows stable
	// Deleting a tag ends its alias too.
	must(t, s.DeleteTag(ctx, "p/a", "prod"))
	must(t, s.PutManifest(ctx, in, "p/a", m2, []string{"stable"}))
	if _, err := s.Manifest(ctx, "p/a", "prod"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("a deleted alias came back: %v", err)
	}

	// An alias follows a tag of its own stream only.
	if err := s.AliasTag(ctx, "q/mirror", "stable", "p/a", "stable"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("an alias across repositories = %v, want invalid", err)
	}
	// A chain of aliases is bounded.
	prev := "stable"
	for i := range 20 {
		next := fmt.Sprint("chain", i)
		if err = s.AliasTag(ctx, "p/a", next, "p/a", prev); err != nil {
			break
		}
		prev = next
	}
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("a chain of 20 aliases = %v, want refused past the bound", err)
	}
}

// Each tag keeps at most the limit's entries, the newest; trimming drops
// entries, never the manifests they named.
func testTagHistoryLimit(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	in := store.Only(store.DefaultStorage)
	s.SetTagHistoryLimit(3)
	defer s.SetTagHistoryLimit(0)
	var pushed []store.Manifest
	for i := range 6 {
		m := Image(t, s, "p/h", fmt.Sprint("h", i))
		must(t, s.PutManifest(ctx, in, "p/h", m, []string{"v"}))
		must(t, s.PutManifest(ctx, in, "p/h", m, []string{fmt.Sprint("other", i)}))
		pushed = append(pushed, m)
	}
	h, err := s.TagHistory(ctx, "p/h", "v")
	must(t, err)
	if len(h) != 3 {
		t.Fatalf("history has %d entries, want 3: %+v", len(h), h)
	}
	for i, ev := range h {
		if want := pushed[5-i].Digest; ev.Digest != want {
			t.Errorf("entry %d = %s, want %s", i, ev.Digest, want)
		}
	}
	for _, m := range pushed {
		if _, err := s.Manifest(ctx, "p/h", string(m.Digest)); err != nil {
			t.Errorf("trimming removed manifest %s: %v", m.Digest, err)
		}
	}
	// Other tags' histories are their own.
	for i := range 6 {
		if h, err := s.TagHistory(ctx, "p/h", fmt.Sprint("other", i)); err != nil || len(h) != 1 {
			t.Errorf("history of other%d = %+v, %v", i, h, err)
		}
	}
}

// A manifest may name blobs its repository does not hold (a foreign
// layer, an imported image's layers): tagging it elsewhere links only
// what the source holds, so a tag cannot read another repository's
// blobs by naming their digests.
func testTagImageLinksOnlyWhatTheSourceHolds(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	in := store.Only(store.DefaultStorage)
	secret := digest.FromString("the victim's layer")
	must(t, s.LinkBlob(ctx, store.DefaultStorage, "victim/app", secret, 9))
	cfg := digest.FromString("evil config")
	must(t, s.LinkBlob(ctx, store.DefaultStorage, "evil/x", cfg, 3))
	payload := []byte(`{"schemaVersion":2,"evil":1}`)
	m := store.Manifest{Digest: digest.FromBytes(payload), MediaType: "application/vnd.oci.image.manifest.v1+json", Payload: payload,
		References: []store.Reference{{Digest: cfg, Size: 3, Required: true}, {Digest: secret, Size: 9}}} // a foreign layer: not required
	must(t, s.PutManifest(ctx, in, "evil/x", m, []string{"t"}))
	must(t, s.TagImage(ctx, "evil/y", "t", "evil/x", m.Digest, store.ReasonTagged))
	if _, err := s.BlobSize(ctx, in, "evil/y", secret); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("the victim's blob was linked into evil/y: %v", err)
	}
	if _, err := s.BlobSize(ctx, in, "evil/y", cfg); err != nil {
		t.Fatalf("the source's own blob was not linked: %v", err)
	}
	// An imported image tagged elsewhere keeps where its layers come from.
	layer := digest.FromString("remote layer")
	imp := store.Manifest{Digest: digest.FromString("imp"), MediaType: "application/vnd.oci.image.manifest.v1+json", Payload: []byte(`{"imp":1}`),
		References: []store.Reference{{Digest: layer, Size: 5}}}
	must(t, s.RecordImport(ctx, "evil/src", "v1", store.Imported{Manifests: []store.Manifest{imp}, Source: "upstream.example/lib/x"}))
	must(t, s.TagImage(ctx, "evil/copy", "v1", "evil/src", imp.Digest, store.ReasonTagged))
	if srcs, err := s.BlobSources(ctx, "evil/copy", layer); err != nil || len(srcs) != 1 || srcs[0].Source != "upstream.example/lib/x" {
		t.Fatalf("the copy's pull-through sources: %+v %v", srcs, err)
	}
}
