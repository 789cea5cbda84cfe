package imagestream_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/imagestream"
	"github.com/berth-registry/berth/internal/store"
)

// push records a one-layer image in repo under tag, as /v2 does.
func push(t *testing.T, s *store.Store, repo, seed, tag string) digest.Digest {
	t.Helper()
	ctx := context.Background()
	layer := digest.FromString(seed)
	if err := s.LinkBlob(ctx, store.DefaultStorage, repo, layer, 5); err != nil {
		t.Fatal(err)
	}
	payload := []byte(fmt.Sprintf(`{"schemaVersion":2,"seed":%q}`, seed))
	m := store.Manifest{Digest: digest.FromBytes(payload), MediaType: "application/vnd.oci.image.manifest.v1+json",
		Payload: payload, References: []store.Reference{{Digest: layer, Size: 5, Required: true}}}
	if err := s.PutManifest(ctx, store.Only(store.DefaultStorage), repo, m, []string{tag}); err != nil {
		t.Fatal(err)
	}
	return m.Digest
}

// A stream is its repository's rows: its tags' histories, newest first,
// pulled from the host asked; a tag is found by STREAM:TAG, and untagging
// removes it from the stream.
func TestStreamsAndTags(t *testing.T) {
	ctx := context.Background()
	s, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateProject(ctx, store.Project{Name: "team"}); err != nil {
		t.Fatal(err)
	}
	first := push(t, s, "team/app", "one", "v1")
	second := push(t, s, "team/app", "two", "v1")
	push(t, s, "team/app", "three", "beta")
	svc := imagestream.New(s)

	is, err := svc.Named(ctx, "registry.example:5000", "team", "app")
	if err != nil {
		t.Fatal(err)
	}
	if is.Name != "app" || is.Namespace != "team" || is.Status.DockerImageRepository != "registry.example:5000/team/app" || len(is.Status.Tags) != 2 {
		t.Fatalf("stream: %+v", is)
	}
	_, v1, err := svc.Tag(ctx, "h", "team", "app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if len(v1.Items) != 2 || v1.Items[0].Image != string(second) || v1.Items[1].Image != string(first) || v1.Items[0].DockerImageReference != "h/team/app@"+string(second) {
		t.Errorf("v1's history: %+v", v1.Items)
	}
	if ist := imagestream.TagView(is, v1); ist.Name != "app:v1" || ist.Image.Name != string(second) {
		t.Errorf("the ImageStreamTag: %+v", ist)
	}
	all, err := svc.In(ctx, "h", "team")
	if err != nil || len(all) != 1 {
		t.Errorf("streams of team: %d, %v", len(all), err)
	}

	for _, bad := range []string{"app", "app:", ":v1"} {
		if _, _, err := svc.Tag(ctx, "h", "team", bad); !errors.Is(err, imagestream.ErrTagName) || !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Tag(%q) = %v, want a refused name", bad, err)
		}
	}
	for _, missing := range []string{"app:nope", "other:v1"} {
		if _, _, err := svc.Tag(ctx, "h", "team", missing); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("Tag(%q) = %v, want not found", missing, err)
		}
	}
	if err := svc.Untag(ctx, "team", "app", "beta"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Tag(ctx, "h", "team", "app:beta"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("an untagged tag: %v", err)
	}
}
