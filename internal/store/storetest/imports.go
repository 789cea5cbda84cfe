package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// An import records manifests without their blobs, with where they came
// from; the tag's entry names the upstream image; a failed import is a
// condition the next success clears; an unchanged digest adds nothing.
func testRecordImport(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	layer, cfg := digest.FromString("remote layer"), digest.FromString("remote config")
	child := store.Manifest{Digest: digest.FromString("child"), MediaType: "application/vnd.oci.image.manifest.v1+json", Payload: []byte(`{"child":1}`),
		References: []store.Reference{{Digest: cfg, Size: 3}, {Digest: layer, Size: 5}}}
	index := store.Manifest{Digest: digest.FromString("index"), MediaType: "application/vnd.oci.image.index.v1+json", Payload: []byte(`{"index":1}`),
		References: []store.Reference{{Digest: child.Digest, Manifest: true, Size: int64(len(child.Payload))}}}
	im := store.Imported{Manifests: []store.Manifest{index, child}, Source: "127.0.0.1:5000/lib/app"}

	must(t, s.SetTagCondition(ctx, "p/app", "v1", store.TagCondition{Type: store.ConditionImportSuccess, Status: "False", Reason: "NotFound", Message: "gone"}))
	tags, err := s.StreamTags(ctx, "p/app")
	must(t, err)
	if len(tags) != 1 || tags[0].Tag != "v1" || len(tags[0].Items) != 0 || len(tags[0].Conditions) != 1 || tags[0].Conditions[0].Reason != "NotFound" {
		t.Fatalf("a tag whose import failed: %+v", tags)
	}
	must(t, s.RecordImport(store.WithActor(ctx, "alice"), "p/app", "v1", im))
	for _, d := range []digest.Digest{index.Digest, child.Digest} {
		if _, err := s.Manifest(ctx, "p/app", string(d)); err != nil {
			t.Errorf("imported manifest %s: %v", d, err)
		}
		if src, err := s.ManifestSource(ctx, "p/app", d); err != nil || src.Source != im.Source {
			t.Errorf("source of %s: %+v %v", d, src, err)
		}
	}
	if m, err := s.Manifest(ctx, "p/app", "v1"); err != nil || m.Digest != index.Digest {
		t.Fatalf("p/app:v1 = %s, %v", m.Digest, err)
	}
	if srcs, err := s.BlobSources(ctx, "p/app", layer); err != nil || len(srcs) != 1 || srcs[0].Source != im.Source || srcs[0].Size != 5 {
		t.Fatalf("blob sources of the layer: %+v %v", srcs, err)
	}
	if srcs, err := s.BlobSources(ctx, "p/other", layer); err != nil || len(srcs) != 0 {
		t.Fatalf("blob sources in another repository: %+v %v", srcs, err)
	}
	if _, err := s.ManifestSource(ctx, "p/app", digest.FromString("pushed")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("source of an unknown manifest: %v", err)
	}
	tags, err = s.StreamTags(ctx, "p/app")
	must(t, err)
	if len(tags) != 1 || len(tags[0].Conditions) != 0 || len(tags[0].Items) != 1 ||
		tags[0].Items[0].Source != im.Source+"@"+string(index.Digest) || tags[0].Items[0].Reason != store.ReasonImported || tags[0].Items[0].Actor != "alice" {
		t.Fatalf("after the import: %+v", tags)
	}
	must(t, s.RecordImport(ctx, "p/app", "v1", im)) // unchanged upstream: no new entry
	if h, _ := s.TagHistory(ctx, "p/app", "v1"); len(h) != 1 {
		t.Fatalf("an unchanged import added history: %+v", h)
	}
	// A failure keeps the image; the same failure twice is one change.
	before, _ := s.LatestResourceVersion(ctx)
	c := store.TagCondition{Type: store.ConditionImportSuccess, Status: "False", Reason: "Unauthorized", Message: "no"}
	must(t, s.SetTagCondition(ctx, "p/app", "v1", c))
	must(t, s.SetTagCondition(ctx, "p/app", "v1", c))
	if after, _ := s.LatestResourceVersion(ctx); after != before+1 {
		t.Fatalf("two identical conditions made %d events, want 1", after-before)
	}
	if m, err := s.Manifest(ctx, "p/app", "v1"); err != nil || m.Digest != index.Digest {
		t.Fatalf("a failed import moved the tag: %s, %v", m.Digest, err)
	}
	must(t, s.DeleteTag(ctx, "p/app", "v1"))
	if conds, _ := s.TagConditions(ctx, "p/app"); len(conds) != 0 {
		t.Fatalf("conditions outlived their tag: %+v", conds)
	}
}
