package registry_test

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-registry/berth/internal/registry"
)

// TestGoContainerRegistryClient pushes and pulls with go-containerregistry,
// the client library crane and ko are built on.
func TestGoContainerRegistryClient(t *testing.T) {
	srv := newServer(t, registry.Options{})
	host := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(srv.Client().Transport)}

	img, err := random.Image(3<<20, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/team/app:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatalf("push image: %v", err)
	}
	pulled, err := remote.Image(ref, opts...)
	if err != nil {
		t.Fatalf("pull image: %v", err)
	}
	want, _ := img.Digest()
	got, _ := pulled.Digest()
	if got != want {
		t.Fatalf("pulled digest %s, pushed %s", got, want)
	}
	layers, err := pulled.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed() // ggcr verifies the digest as it reads
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatalf("read layer: %v", err)
		}
		rc.Close()
	}

	// A multi-platform index; its children are pushed by remote.WriteIndex.
	idx, err := random.Index(1024, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	idx = mutate.IndexMediaType(idx, "application/vnd.oci.image.index.v1+json")
	idxRef, _ := name.ParseReference(host+"/team/multi:latest", name.Insecure)
	if err := remote.WriteIndex(idxRef, idx, opts...); err != nil {
		t.Fatalf("push index: %v", err)
	}
	pulledIdx, err := remote.Index(idxRef, opts...)
	if err != nil {
		t.Fatal(err)
	}
	wantIdx, _ := idx.Digest()
	if gotIdx, _ := pulledIdx.Digest(); gotIdx != wantIdx {
		t.Fatalf("index digest %s, pushed %s", gotIdx, wantIdx)
	}

	// Copy across repositories: ggcr mounts the layers.
	copyRef, _ := name.ParseReference(host+"/other/app:copy", name.Insecure)
	if err := remote.Write(copyRef, pulled, opts...); err != nil {
		t.Fatalf("copy: %v", err)
	}

	repos, err := remote.Catalog(ctx, ref.Context().Registry, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(repos, []string{"other/app", "team/app", "team/multi"}) {
		t.Fatalf("catalog = %v", repos)
	}
	tags, err := remote.List(ref.Context(), opts...)
	if err != nil || !slices.Equal(tags, []string{"v1"}) {
		t.Fatalf("tags = %v, %v", tags, err)
	}
	digestRef := ref.Context().Digest(want.String())
	if err := remote.Delete(digestRef, opts...); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := remote.Image(ref, opts...); err == nil {
		t.Fatal("image still pullable by tag after its manifest was deleted")
	}
}
