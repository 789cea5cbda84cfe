package apiserver_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/apiserver/apiservertest"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/store"
)

func pushImage(t *testing.T, st *store.Store, repo, tag, seed string) digest.Digest {
	t.Helper()
	ctx := context.Background()
	layer := digest.FromString(seed)
	must(t, st.LinkBlob(ctx, store.DefaultStorage, repo, layer, 1))
	payload := []byte(fmt.Sprintf(`{"schemaVersion":2,"layers":[{"digest":%q}]}`, layer))
	m := store.Manifest{Digest: digest.FromBytes(payload), MediaType: "application/vnd.oci.image.manifest.v1+json",
		Payload: payload, References: []store.Reference{{Digest: layer, Size: 1, Required: true}}}
	must(t, st.PutManifest(ctx, store.Only(store.DefaultStorage), repo, m, []string{tag}))
	return m.Digest
}

func TestImageStreamsAreAuthorizedViews(t *testing.T) {
	s := newServer(t)
	alice := login(t, s, "alice", "alice-pw")
	bob := login(t, s, "bob", "bob-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	first := pushImage(t, s.Store, "team/app", "v1", "one")
	second := pushImage(t, s.Store, "team/app", "v1", "two")

	const base = "/apis/image.openshift.io/v1/namespaces/team"
	is := alice.expect(200, "GET", base+"/imagestreams/app", nil)
	tags := is.body["status"].(map[string]any)["tags"].([]any)
	items := tags[0].(map[string]any)["items"].([]any)
	if len(items) != 2 || items[0].(map[string]any)["image"] != string(second) || items[1].(map[string]any)["image"] != string(first) {
		t.Fatalf("status.tags: %s", is.raw)
	}
	alice.expect(404, "GET", base+"/imagestreams/none", nil)
	if a := alice.expect(200, "GET", base+"/imagestreamtags/app:v1", nil); a.body["image"].(map[string]any)["metadata"].(map[string]any)["name"] != string(second) {
		t.Fatalf("istag: %s", a.raw)
	}
	alice.expect(400, "GET", base+"/imagestreamtags/app", nil)

	bob.expect(403, "GET", base+"/imagestreams/app", nil)
	bob.expect(403, "GET", base+"/imagestreams", nil)
	alice.expect(201, "POST", rbac+"/namespaces/team/rolebindings", binding("registry-viewer", user("bob")))
	bob.expect(200, "GET", base+"/imagestreams/app", nil)
	bob.expect(403, "DELETE", base+"/imagestreamtags/app:v1", nil)
	alice.expect(200, "DELETE", base+"/imagestreamtags/app:v1", nil)
	if tags, _, err := s.Store.Tags(context.Background(), "team/app", "", 10); err != nil || len(tags) != 0 {
		t.Fatalf("/v2 tags after deleting the ImageStreamTag: %v %v", tags, err)
	}
}

func TestClusterRolesAreTheRoleTable(t *testing.T) {
	s := newServer(t)
	admin := login(t, s, "admin", apiservertest.AdminPassword)
	bob := login(t, s, "bob", "bob-pw")
	const base = "/apis/rbac.authorization.k8s.io/v1/clusterroles"
	list := admin.expect(200, "GET", base, nil)
	if names := list.names(); !slices.Contains(names, "registry-viewer") || !slices.Contains(names, "system:image-builder") || len(names) != len(auth.BuiltinRoles) {
		t.Fatalf("clusterroles: %v", names)
	}
	viewer := admin.expect(200, "GET", base+"/registry-viewer", nil)
	if !strings.Contains(string(viewer.raw), `"imagestreams/layers"`) {
		t.Fatalf("registry-viewer rules: %s", viewer.raw)
	}
	admin.expect(404, "GET", base+"/no-such-role", nil)
	bob.expect(403, "GET", base, nil)
}

func TestImagesAreClusterScopedViews(t *testing.T) {
	s := newServer(t)
	admin := login(t, s, "admin", apiservertest.AdminPassword)
	alice := login(t, s, "alice", "alice-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	d := pushImage(t, s.Store, "team/app", "v1", "one")
	const base = "/apis/image.openshift.io/v1/images"
	img := admin.expect(200, "GET", base+"/"+string(d), nil)
	layers := img.body["dockerImageLayers"].([]any)
	if img.str("kind") != "Image" || len(layers) != 1 || !strings.HasSuffix(img.str("dockerImageReference"), "/team/app@"+string(d)) {
		t.Fatalf("image: %s", img.raw)
	}
	if names := admin.expect(200, "GET", base, nil).names(); !slices.Contains(names, string(d)) {
		t.Fatalf("images: %v", names)
	}
	admin.expect(404, "GET", base+"/sha256:"+strings.Repeat("0", 64), nil)
	// Images are cluster-scoped: a project admin may not list them all.
	alice.expect(403, "GET", base, nil)
	alice.expect(403, "GET", base+"/"+string(d), nil)
}

// countingBlobs serves blobs from memory and counts the reads.
type countingBlobs struct {
	blobs map[digest.Digest][]byte
	opens atomic.Int64
}

func (b *countingBlobs) Open(_ context.Context, d digest.Digest, offset, length int64) (io.ReadCloser, error) {
	b.opens.Add(1)
	data, ok := b.blobs[d]
	if !ok {
		return nil, errdefs.ErrNotFound
	}
	return storage.Section(nopCloser{bytes.NewReader(data)}, offset, length)
}

func (b *countingBlobs) AbortUpload(context.Context, store.EndedUpload) error { return nil }

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

// An Image's metadata comes from its config blob, read once: a blob never
// changes under its digest. A Table (kubectl get images) reads none.
func TestImageMetadataFromConfigIsCached(t *testing.T) {
	config := []byte(`{"architecture":"arm64","os":"linux","created":"2026-01-02T03:04:05Z","config":{"User":"1001","Labels":{"app":"web"},"Cmd":["serve"]},"rootfs":{"type":"layers","diff_ids":[]}}`)
	cfgDigest := digest.FromBytes(config)
	blobs := &countingBlobs{blobs: map[digest.Digest][]byte{cfgDigest: config}}
	s := apiservertest.New(t, apiservertest.Options{Users: map[string]string{"alice": "alice-pw"}, Blobs: blobs})
	alice := login(t, s, "alice", "alice-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	ctx := context.Background()
	layer := digest.FromString("layer")
	must(t, s.Store.LinkBlob(ctx, store.DefaultStorage, "team/app", layer, 5))
	must(t, s.Store.LinkBlob(ctx, store.DefaultStorage, "team/app", cfgDigest, int64(len(config))))
	payload := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":%q,"size":5}]}`,
		cfgDigest, len(config), layer))
	m := store.Manifest{Digest: digest.FromBytes(payload), MediaType: "application/vnd.oci.image.manifest.v1+json", Payload: payload,
		References: []store.Reference{{Digest: layer, Size: 5, Required: true}, {Digest: cfgDigest, Size: int64(len(config)), Required: true}}}
	must(t, s.Store.PutManifest(ctx, store.Only(store.DefaultStorage), "team/app", m, []string{"v1"}))

	admin := login(t, s, "admin", apiservertest.AdminPassword)
	for range 3 {
		img := admin.expect(200, "GET", "/apis/image.openshift.io/v1/images/"+string(m.Digest), nil)
		meta := img.body["dockerImageMetadata"].(map[string]any)
		if meta["Architecture"] != "arm64" || meta["Os"] != "linux" || meta["Created"] != "2026-01-02T03:04:05Z" ||
			meta["Config"].(map[string]any)["Labels"].(map[string]any)["app"] != "web" || meta["Size"] != float64(len(config)+5) {
			t.Fatalf("dockerImageMetadata: %s", img.raw)
		}
	}
	if n := blobs.opens.Load(); n != 1 {
		t.Errorf("three GETs of one Image read its config %d times, want 1", n)
	}
	table := admin.raw("GET", "/apis/image.openshift.io/v1/images", "", nil, "Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	if table.code != 200 || table.str("kind") != "Table" || blobs.opens.Load() != 1 {
		t.Errorf("get images as a Table: %d, %d config reads: %.300s", table.code, blobs.opens.Load(), table.raw)
	}
}

// Tags are written through imagestreamtags: from an image by digest (set
// once, a rollback when it is in the tag's history), from another tag
// (followed), across projects only for who may pull from the source.
func TestImageStreamTagsAreWritable(t *testing.T) {
	s := newServer(t)
	alice := login(t, s, "alice", "alice-pw")
	bob := login(t, s, "bob", "bob-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	bob.expect(201, "POST", projects+"/projectrequests", projectRequest("bobs"))
	first := pushImage(t, s.Store, "team/app", "latest", "one")
	second := pushImage(t, s.Store, "team/app", "latest", "two")

	const base = "/apis/image.openshift.io/v1/namespaces/team/imagestreamtags"
	istag := func(name, kind, from string) map[string]any {
		return map[string]any{"apiVersion": "image.openshift.io/v1", "kind": "ImageStreamTag",
			"metadata": map[string]any{"name": name}, "tag": map[string]any{"from": map[string]any{"kind": kind, "name": from}}}
	}
	imageOf := func(a answer) string {
		return a.body["image"].(map[string]any)["metadata"].(map[string]any)["name"].(string)
	}

	// An image by digest, set once.
	if a := alice.expect(201, "POST", base, istag("app:v1", "ImageStreamImage", "app@"+string(first))); imageOf(a) != string(first) {
		t.Fatalf("created istag: %s", a.raw)
	}
	alice.expect(409, "POST", base, istag("app:v1", "ImageStreamImage", "app@"+string(first)))
	// A tag followed: it moves with its source.
	a := alice.expect(201, "POST", base, istag("app:stable", "ImageStreamTag", "app:latest"))
	if imageOf(a) != string(second) || a.body["tag"].(map[string]any)["from"].(map[string]any)["name"] != "app:latest" {
		t.Fatalf("alias istag: %s", a.raw)
	}
	third := pushImage(t, s.Store, "team/app", "latest", "three")
	if a := alice.expect(200, "GET", base+"/app:stable", nil); imageOf(a) != string(third) {
		t.Fatalf("the alias did not follow the push: %s", a.raw)
	}
	is := alice.expect(200, "GET", "/apis/image.openshift.io/v1/namespaces/team/imagestreams/app", nil)
	if !strings.Contains(string(is.raw), `"from":{"kind":"ImageStreamTag","name":"app:latest"}`) {
		t.Fatalf("the stream's spec does not show the alias: %s", is.raw)
	}

	// A rollback: PUT of an earlier image of the tag's own history.
	if a := alice.expect(200, "PUT", base+"/app:latest", istag("app:latest", "ImageStreamImage", "app@"+string(first))); imageOf(a) != string(first) {
		t.Fatalf("rolled back istag: %s", a.raw)
	}
	h, err := s.Store.TagHistory(context.Background(), "team/app", "latest")
	must(t, err)
	if len(h) != 4 || h[0].Reason != store.ReasonRollback || h[0].Actor != "alice" {
		t.Fatalf("history after the rollback: %+v", h)
	}

	// Refusals, each with its reason.
	for _, c := range []struct {
		code int
		body map[string]any
	}{
		{422, istag("app", "ImageStreamImage", "app@"+string(first))},
		{422, istag("app:-bad", "ImageStreamImage", "app@"+string(first))},
		{422, istag("App:x", "ImageStreamImage", "app@"+string(first))},
		{422, istag("app:x", "ImageStreamImage", "app:latest")},
		{422, istag("app:x", "ImageStreamTag", "app@"+string(first))},
		{422, istag("app:x", "Pod", "app:latest")},
		{422, istag("app:x", "DockerImage", "docker.io/library/busybox:latest")},
		{422, istag("app:x", "ImageStreamTag", "app:x")},
		{404, istag("app:x", "ImageStreamTag", "app:absent")},
		{404, istag("app:x", "ImageStreamImage", "app@"+string(digest.FromString("absent")))},
		{422, map[string]any{"metadata": map[string]any{"name": "app:x"}}},
		{400, map[string]any{"metadata": map[string]any{"name": "app:x"}, "tag": map[string]any{"bogus": 1}}},
	} {
		if a := alice.do("POST", base, c.body); a.code != c.code {
			t.Errorf("POST %v = %d %s, want %d", c.body, a.code, a.raw, c.code)
		}
	}
	alice.expect(400, "PUT", base+"/app:v2", istag("app:v3", "ImageStreamImage", "app@"+string(first)))

	// Across projects: bob may write in his project but not read alice's.
	bobBase := "/apis/image.openshift.io/v1/namespaces/bobs/imagestreamtags"
	cross := istag("copy:v1", "ImageStreamImage", "app@"+string(first))
	cross["tag"].(map[string]any)["from"].(map[string]any)["namespace"] = "team"
	bob.expect(403, "POST", bobBase, cross)
	bob.expect(403, "POST", base, istag("app:bob", "ImageStreamImage", "app@"+string(first)))
	alice.expect(201, "POST", rbac+"/namespaces/team/rolebindings", binding("system:image-puller", user("bob")))
	if a := bob.expect(201, "POST", bobBase, cross); imageOf(a) != string(first) {
		t.Fatalf("cross-project istag: %s", a.raw)
	}
	if _, err := s.Store.Manifest(context.Background(), "bobs/copy", "v1"); err != nil {
		t.Fatalf("the copied tag does not resolve in /v2: %v", err)
	}
}
