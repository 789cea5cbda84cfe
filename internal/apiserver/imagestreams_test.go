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

// ImageStreams are objects users write: an empty stream; one whose spec
// tags name images (set at once); updates that retarget or drop spec
// tags; merge patches; delete, which takes the tags and history.
func TestImageStreamsAreWritable(t *testing.T) {
	s := newServer(t)
	alice := login(t, s, "alice", "alice-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	one := pushImage(t, s.Store, "team/base", "v1", "one")
	two := pushImage(t, s.Store, "team/base", "v2", "two")
	const base = "/apis/image.openshift.io/v1/namespaces/team/imagestreams"
	stream := func(name string, tags ...map[string]any) map[string]any {
		is := map[string]any{"apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
			"metadata": map[string]any{"name": name, "labels": map[string]any{"app": "x"}}, "spec": map[string]any{}}
		if len(tags) > 0 {
			is["spec"] = map[string]any{"tags": tags}
		}
		return is
	}
	from := func(tag, kind, name string) map[string]any {
		return map[string]any{"name": tag, "from": map[string]any{"kind": kind, "name": name}}
	}
	head := func(repo, tag string) digest.Digest {
		t.Helper()
		m, err := s.Store.Manifest(context.Background(), repo, tag)
		if err != nil {
			return ""
		}
		return m.Digest
	}

	// An empty stream, listed and watched like a pushed one.
	a := alice.expect(201, "POST", base, stream("empty"))
	if a.body["metadata"].(map[string]any)["generation"] != float64(1) || a.body["metadata"].(map[string]any)["labels"].(map[string]any)["app"] != "x" {
		t.Fatalf("created stream: %s", a.raw)
	}
	alice.expect(409, "POST", base, stream("empty"))
	alice.expect(409, "POST", base, stream("base")) // pushed to: exists
	if names := alice.expect(200, "GET", base, nil).names(); !slices.Contains(names, "empty") || !slices.Contains(names, "base") {
		t.Fatalf("streams: %v", names)
	}

	// Spec tags set at once: by digest, and following a tag.
	a = alice.expect(201, "POST", base, stream("app", from("stable", "ImageStreamImage", "base@"+string(one)), from("edge", "ImageStreamTag", "base:v2")))
	if head("team/app", "stable") != one || head("team/app", "edge") != two {
		t.Fatalf("spec tags not set: stable %s, edge %s: %s", head("team/app", "stable"), head("team/app", "edge"), a.raw)
	}
	got := alice.expect(200, "GET", base+"/app", nil)
	if !strings.Contains(string(got.raw), `"name":"base@`+string(one)+`"`) || !strings.Contains(string(got.raw), `"tag":"stable"`) {
		t.Fatalf("stream: %s", got.raw)
	}
	// A tag of another stream is taken as it is: edge does not follow.
	pushImage(t, s.Store, "team/base", "v2", "three")
	if head("team/app", "edge") != two {
		t.Fatalf("edge followed base:v2 into another stream")
	}

	// Refusals: invalid names and sources, absent sources; nothing made.
	for _, c := range []struct {
		code int
		body map[string]any
	}{
		{422, stream("Bad")},
		{422, stream("x", from("-t", "ImageStreamTag", "base:v1"))},
		{422, stream("x", from("t", "ImageStreamTag", "base:v1"), from("t", "ImageStreamTag", "base:v2"))},
		{422, stream("x", from("t", "DockerImage", "docker.io/library/busybox"))},
		{422, stream("x", from("t", "ImageStreamTag", "x:t"))},
		{404, stream("x", from("t", "ImageStreamTag", "base:absent"))},
		{400, map[string]any{"metadata": map[string]any{"name": "x"}, "spec": map[string]any{"bogus": true}}},
	} {
		if a := alice.do("POST", base, c.body); a.code != c.code {
			t.Errorf("POST %v = %d %s, want %d", c.body, a.code, a.raw, c.code)
		}
	}
	alice.expect(404, "GET", base+"/x", nil)

	// Update: retarget stable, drop edge; the generation moves.
	cur := alice.expect(200, "GET", base+"/app", nil)
	upd := stream("app", from("stable", "ImageStreamImage", "base@"+string(two)))
	upd["metadata"].(map[string]any)["resourceVersion"] = cur.body["metadata"].(map[string]any)["resourceVersion"]
	a = alice.expect(200, "PUT", base+"/app", upd)
	if head("team/app", "stable") != two || head("team/app", "edge") != "" || a.body["metadata"].(map[string]any)["generation"] != float64(2) {
		t.Fatalf("after update: stable %s, edge %s: %s", head("team/app", "stable"), head("team/app", "edge"), a.raw)
	}
	alice.expect(409, "PUT", base+"/app", upd) // stale resourceVersion

	// A tag moved by a push is set from its source again only when asked:
	// generation 0 on the spec tag.
	pushImage(t, s.Store, "team/app", "stable", "pushed over")
	again := stream("app", from("stable", "ImageStreamImage", "base@"+string(two)))
	alice.expect(200, "PUT", base+"/app", again)
	if head("team/app", "stable") == two {
		t.Fatal("an unchanged spec tag was set again")
	}
	zero := from("stable", "ImageStreamImage", "base@"+string(two))
	zero["generation"] = 0
	alice.expect(200, "PUT", base+"/app", stream("app", zero))
	if head("team/app", "stable") != two {
		t.Fatal("generation 0 did not set the tag again")
	}
	if a := alice.expect(200, "GET", base+"/app", nil); strings.Contains(string(a.raw), `"generation":0`) {
		t.Fatalf("the request for a new generation was kept: %s", a.raw)
	}

	// A merge patch of the labels only changes neither tags nor generation.
	gen := alice.expect(200, "GET", base+"/app", nil).body["metadata"].(map[string]any)["generation"]
	a = alice.raw("PATCH", base+"/app", "application/merge-patch+json", []byte(`{"metadata":{"annotations":{"note":"hi"}}}`))
	if a.code != 200 || a.body["metadata"].(map[string]any)["generation"] != gen || head("team/app", "stable") != two {
		t.Fatalf("patch: %d %s", a.code, a.raw)
	}
	if a := alice.expect(200, "GET", base+"/app", nil); a.body["metadata"].(map[string]any)["annotations"].(map[string]any)["note"] != "hi" {
		t.Fatalf("annotation not kept: %s", a.raw)
	}
	// Deleting an istag drops its spec tag too: it is not set again.
	alice.expect(200, "DELETE", "/apis/image.openshift.io/v1/namespaces/team/imagestreamtags/app:stable", nil)
	if a := alice.expect(200, "GET", base+"/app", nil); strings.Contains(string(a.raw), `"name":"stable"`) {
		t.Fatalf("spec tag survived the istag's deletion: %s", a.raw)
	}

	// Delete: tags and history go, the source stays.
	alice.expect(200, "DELETE", base+"/app", nil)
	alice.expect(404, "GET", base+"/app", nil)
	alice.expect(404, "DELETE", base+"/app", nil)
	if _, err := s.Store.RepositoryByName(context.Background(), "team/app"); err == nil {
		t.Fatal("the repository of the deleted stream is still there")
	}
	if head("team/base", "v1") != one {
		t.Fatal("deleting a stream touched its source")
	}
	// A pushed stream is deleted the same way.
	alice.expect(200, "DELETE", base+"/base", nil)
	if head("team/base", "v1") != "" {
		t.Fatal("the pushed stream's tags survived its deletion")
	}
}

// A tag whose first import failed has a condition and no image: the
// stream shows it, the tag listing skips it instead of failing.
func TestTagWithoutImageIsListed(t *testing.T) {
	s := newServer(t)
	alice := login(t, s, "alice", "alice-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	pushImage(t, s.Store, "team/app", "v1", "one")
	must(t, s.Store.SetTagCondition(context.Background(), "team/app", "broken", store.TagCondition{
		Type: store.ConditionImportSuccess, Status: "False", Reason: "NotFound", Message: "no such image upstream"}))
	list := alice.expect(200, "GET", "/apis/image.openshift.io/v1/namespaces/team/imagestreamtags", nil)
	if names := list.names(); len(names) != 1 || names[0] != "app:v1" {
		t.Fatalf("istags: %v", names)
	}
	is := alice.expect(200, "GET", "/apis/image.openshift.io/v1/namespaces/team/imagestreams/app", nil)
	if !strings.Contains(string(is.raw), `"reason":"NotFound"`) {
		t.Fatalf("the stream does not show the failed import: %s", is.raw)
	}
}
