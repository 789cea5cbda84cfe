package registry_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/registry/registrytest"
	"github.com/berth-registry/berth/internal/storage/filesystem"
	"github.com/berth-registry/berth/internal/store"
)

// newServer runs a registry over real HTTP with the filesystem driver and
// the SQLite store.
func newServer(t *testing.T, opts registry.Options) *httptest.Server {
	t.Helper()
	meta, blobs, _ := newParts(t)
	opts.Metadata, opts.Blobs = meta, blobs
	return serveRegistry(t, opts)
}

// newParts opens a SQLite store and a filesystem driver in a fresh
// directory, which it returns too.
func newParts(t *testing.T) (*store.Store, *filesystem.Driver, string) {
	t.Helper()
	dir := t.TempDir()
	meta, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	blobs, err := filesystem.Open(filepath.Join(dir, "storage"))
	if err != nil {
		t.Fatal(err)
	}
	return meta, blobs, dir
}

// serveRegistry runs a registry of opts over real HTTP until the test ends.
func serveRegistry(t *testing.T, opts registry.Options) *httptest.Server {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := httptest.NewServer(registry.New(opts))
	t.Cleanup(srv.Close)
	return srv
}

type call struct {
	method, path string
	header       map[string]string
	body         []byte
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// errorCode returns the first spec error code in the body, or "".
func (r response) errorCode() string {
	var e struct {
		Errors []struct{ Code, Message string }
	}
	if json.Unmarshal(r.body, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	return e.Errors[0].Code
}

func do(t *testing.T, srv *httptest.Server, c call) response {
	t.Helper()
	req, err := http.NewRequest(c.method, srv.URL+c.path, bytes.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	if c.body == nil {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, body}
}

// pushBlob uploads content monolithically and returns its digest.
func pushBlob(t *testing.T, srv *httptest.Server, repo string, content []byte) digest.Digest {
	t.Helper()
	dgst := digest.FromBytes(content)
	r := do(t, srv, call{method: "POST", path: "/v2/" + repo + "/blobs/uploads/?digest=" + dgst.String(), body: content})
	if r.status != http.StatusCreated {
		t.Fatalf("push blob: %d %s", r.status, r.body)
	}
	return dgst
}

type testImage struct {
	manifest   []byte
	digest     digest.Digest
	config     digest.Digest
	layer      digest.Digest
	configSize int
	layerSize  int
}

// pushImage pushes a config and one layer and returns (without pushing)
// an OCI manifest for them.
func pushImage(t *testing.T, srv *httptest.Server, repo, seed string) testImage {
	t.Helper()
	cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","seed":%q}`, seed))
	layer := []byte("layer " + seed)
	img := testImage{config: pushBlob(t, srv, repo, cfg), layer: pushBlob(t, srv, repo, layer), configSize: len(cfg), layerSize: len(layer)}
	img.manifest = []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		img.config, len(cfg), img.layer, len(layer)))
	img.digest = digest.FromBytes(img.manifest)
	return img
}

func putManifest(t *testing.T, srv *httptest.Server, repo, ref string, payload []byte, mediaType string) response {
	t.Helper()
	return do(t, srv, call{method: "PUT", path: "/v2/" + repo + "/manifests/" + ref,
		header: map[string]string{"Content-Type": mediaType}, body: payload})
}

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

func TestChunkedUploadResumesAcrossRequests(t *testing.T) {
	srv := newServer(t, registry.Options{})
	content := bytes.Repeat([]byte("0123456789"), 100_000)
	r := do(t, srv, call{method: "POST", path: "/v2/p/chunks/blobs/uploads/"})
	if r.status != 202 || r.header.Get("Range") != "0-0" {
		t.Fatalf("POST = %d, Range %q", r.status, r.header.Get("Range"))
	}
	loc := r.header.Get("Location")
	for off := 0; off < len(content); off += 300_000 {
		end := min(off+300_000, len(content))
		r = do(t, srv, call{method: "PATCH", path: loc, body: content[off:end],
			header: map[string]string{"Content-Range": fmt.Sprintf("%d-%d", off, end-1)}})
		if r.status != 202 || r.header.Get("Range") != fmt.Sprintf("0-%d", end-1) {
			t.Fatalf("PATCH %d-%d = %d, Range %q: %s", off, end-1, r.status, r.header.Get("Range"), r.body)
		}
		loc = r.header.Get("Location")
	}
	st := do(t, srv, call{method: "GET", path: loc})
	if st.status != 204 || st.header.Get("Range") != fmt.Sprintf("0-%d", len(content)-1) {
		t.Fatalf("status = %d, Range %q", st.status, st.header.Get("Range"))
	}
	dgst := digest.FromBytes(content)
	r = do(t, srv, call{method: "PUT", path: registrytest.WithDigest(loc, dgst.String())})
	if r.status != 201 || r.header.Get("Docker-Content-Digest") != dgst.String() {
		t.Fatalf("PUT = %d %s", r.status, r.body)
	}
	got := do(t, srv, call{method: "GET", path: "/v2/p/chunks/blobs/" + dgst.String()})
	if got.status != 200 || !bytes.Equal(got.body, content) {
		t.Fatalf("GET blob = %d, %d bytes", got.status, len(got.body))
	}
	part := do(t, srv, call{method: "GET", path: "/v2/p/chunks/blobs/" + dgst.String(), header: map[string]string{"Range": "bytes=10-19"}})
	if part.status != 206 || string(part.body) != "0123456789" {
		t.Fatalf("ranged GET = %d %q", part.status, part.body)
	}
}

func TestSHA512Upload(t *testing.T) {
	srv := newServer(t, registry.Options{})
	content := []byte("sha512 content, chunked")
	dgst := digest.SHA512.FromBytes(content)
	r := do(t, srv, call{method: "POST", path: "/v2/p/sha/blobs/uploads/"})
	r = do(t, srv, call{method: "PATCH", path: r.header.Get("Location"), body: content[:5]})
	r = do(t, srv, call{method: "PUT", path: registrytest.WithDigest(r.header.Get("Location"), dgst.String()), body: content[5:]})
	if r.status != 201 {
		t.Fatalf("PUT sha512 = %d %s", r.status, r.body)
	}
	if g := do(t, srv, call{method: "GET", path: "/v2/p/sha/blobs/" + dgst.String()}); g.status != 200 || !bytes.Equal(g.body, content) {
		t.Fatalf("GET sha512 blob = %d %q", g.status, g.body)
	}
}

func TestMounts(t *testing.T) {
	srv := newServer(t, registry.Options{})
	dgst := pushBlob(t, srv, "p/src", []byte("shared layer"))
	r := do(t, srv, call{method: "POST", path: "/v2/p/dst/blobs/uploads/?mount=" + dgst.String() + "&from=p/src"})
	if r.status != 201 || r.header.Get("Location") != "/v2/p/dst/blobs/"+dgst.String() {
		t.Fatalf("mount from = %d %v", r.status, r.header)
	}
	r = do(t, srv, call{method: "POST", path: "/v2/p/anon/blobs/uploads/?mount=" + dgst.String()})
	if r.status != 201 {
		t.Fatalf("mount without from = %d", r.status)
	}
	missing := digest.FromString("nowhere")
	r = do(t, srv, call{method: "POST", path: "/v2/p/dst/blobs/uploads/?mount=" + missing.String() + "&from=p/src"})
	if r.status != 202 || r.header.Get("Location") == "" {
		t.Fatalf("unmountable blob = %d, want a 202 upload session", r.status)
	}
}

func TestManifestLifecycle(t *testing.T) {
	srv := newServer(t, registry.Options{})
	img := pushImage(t, srv, "p/app", "v1")
	r := putManifest(t, srv, "p/app", "v1", img.manifest, ociManifest)
	if r.status != 201 || r.header.Get("Docker-Content-Digest") != img.digest.String() ||
		r.header.Get("Location") != "/v2/p/app/manifests/"+img.digest.String() {
		t.Fatalf("PUT manifest = %d %v %s", r.status, r.header, r.body)
	}
	for _, ref := range []string{"v1", img.digest.String()} {
		g := do(t, srv, call{method: "GET", path: "/v2/p/app/manifests/" + ref})
		if g.status != 200 || !bytes.Equal(g.body, img.manifest) || g.header.Get("Content-Type") != ociManifest ||
			g.header.Get("Docker-Content-Digest") != img.digest.String() {
			t.Fatalf("GET manifest %s = %d %v", ref, g.status, g.header)
		}
		h := do(t, srv, call{method: "HEAD", path: "/v2/p/app/manifests/" + ref})
		if h.status != 200 || h.header.Get("Content-Length") != fmt.Sprint(len(img.manifest)) || len(h.body) != 0 {
			t.Fatalf("HEAD manifest %s = %d %v", ref, h.status, h.header)
		}
	}
	// ?tag= on a push by digest
	r = do(t, srv, call{method: "PUT", path: "/v2/p/app/manifests/" + img.digest.String() + "?tag=a&tag=b",
		header: map[string]string{"Content-Type": ociManifest}, body: img.manifest})
	if r.status != 201 || strings.Join(r.header.Values("OCI-Tag"), ",") != "a,b" {
		t.Fatalf("PUT with tag params = %d, OCI-Tag %v", r.status, r.header.Values("OCI-Tag"))
	}
	tags := do(t, srv, call{method: "GET", path: "/v2/p/app/tags/list"})
	if string(tags.body) != `{"name":"p/app","tags":["a","b","v1"]}` {
		t.Fatalf("tags = %s", tags.body)
	}
	page := do(t, srv, call{method: "GET", path: "/v2/p/app/tags/list?n=2"})
	if string(page.body) != `{"name":"p/app","tags":["a","b"]}` || page.header.Get("Link") != `</v2/p/app/tags/list?last=b&n=2>; rel="next"` {
		t.Fatalf("page = %s, Link %q", page.body, page.header.Get("Link"))
	}
	// Deleting a tag keeps the manifest; deleting the digest removes all tags.
	if d := do(t, srv, call{method: "DELETE", path: "/v2/p/app/manifests/v1"}); d.status != 202 {
		t.Fatalf("DELETE tag = %d", d.status)
	}
	if g := do(t, srv, call{method: "GET", path: "/v2/p/app/manifests/v1"}); g.status != 404 || g.errorCode() != "MANIFEST_UNKNOWN" {
		t.Fatalf("GET deleted tag = %d %s", g.status, g.body)
	}
	if g := do(t, srv, call{method: "GET", path: "/v2/p/app/manifests/a"}); g.status != 200 {
		t.Fatalf("other tag lost with the deleted one: %d", g.status)
	}
	if d := do(t, srv, call{method: "DELETE", path: "/v2/p/app/manifests/" + img.digest.String()}); d.status != 202 {
		t.Fatalf("DELETE digest = %d", d.status)
	}
	if tags := do(t, srv, call{method: "GET", path: "/v2/p/app/tags/list"}); string(tags.body) != `{"name":"p/app","tags":[]}` {
		t.Fatalf("tags after manifest delete = %s", tags.body)
	}
	cat := do(t, srv, call{method: "GET", path: "/v2/_catalog"})
	if string(cat.body) != `{"repositories":["p/app"]}` {
		t.Fatalf("catalog = %s", cat.body)
	}
}

func TestStrictReferences(t *testing.T) {
	srv := newServer(t, registry.Options{})
	img := pushImage(t, srv, "p/app", "strict")
	noLayer := bytes.Replace(img.manifest, []byte(img.layer), []byte(digest.FromString("never pushed")), 1)
	r := putManifest(t, srv, "p/app", "broken", noLayer, ociManifest)
	if r.status != 400 || r.errorCode() != "MANIFEST_BLOB_UNKNOWN" {
		t.Fatalf("manifest with a missing layer = %d %s", r.status, r.body)
	}
	index := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`+
		`{"mediaType":%q,"digest":%q,"size":10}]}`, ociManifest, digest.FromString("absent child")))
	r = putManifest(t, srv, "p/app", "idx", index, "application/vnd.oci.image.index.v1+json")
	if r.status != 400 || r.errorCode() != "MANIFEST_UNKNOWN" {
		t.Fatalf("index with a missing child = %d %s", r.status, r.body)
	}
	if g := do(t, srv, call{method: "GET", path: "/v2/p/app/tags/list"}); string(g.body) != `{"name":"p/app","tags":[]}` {
		t.Fatalf("refused manifests left tags behind: %d %s", g.status, g.body)
	}

	sparse := newServer(t, registry.Options{AllowSparse: true})
	img = pushImage(t, sparse, "p/app", "sparse")
	noLayer = bytes.Replace(img.manifest, []byte(img.layer), []byte(digest.FromString("never pushed")), 1)
	if r := putManifest(t, sparse, "p/app", "sparse", noLayer, ociManifest); r.status != 201 {
		t.Fatalf("sparse manifest refused with AllowSparse: %d %s", r.status, r.body)
	}
	if r := putManifest(t, sparse, "p/app", "idx", index, "application/vnd.oci.image.index.v1+json"); r.status != 201 {
		t.Fatalf("sparse index refused with AllowSparse: %d %s", r.status, r.body)
	}
}

func TestReferrers(t *testing.T) {
	srv := newServer(t, registry.Options{})
	subject := pushImage(t, srv, "p/app", "subject")
	putManifest(t, srv, "p/app", "v1", subject.manifest, ociManifest)
	empty := pushBlob(t, srv, "p/app", []byte("{}"))
	sig := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"artifactType":"application/vnd.example.sig",`+
		`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2},"layers":[],`+
		`"subject":{"mediaType":%q,"digest":%q,"size":%d},"annotations":{"k":"v"}}`,
		ociManifest, empty, ociManifest, subject.digest, len(subject.manifest)))
	r := putManifest(t, srv, "p/app", digest.FromBytes(sig).String(), sig, ociManifest)
	if r.status != 201 || r.header.Get("OCI-Subject") != subject.digest.String() {
		t.Fatalf("PUT referrer = %d, OCI-Subject %q", r.status, r.header.Get("OCI-Subject"))
	}
	sig2 := bytes.Replace(sig, []byte(`"k":"v"`), []byte(`"k":"w"`), 1)
	if r := putManifest(t, srv, "p/app", digest.FromBytes(sig2).String(), sig2, ociManifest); r.status != 201 {
		t.Fatalf("PUT second referrer = %d", r.status)
	}
	page := do(t, srv, call{method: "GET", path: "/v2/p/app/referrers/" + subject.digest.String() + "?n=1"})
	link := page.header.Get("Link")
	if page.status != 200 || !strings.Contains(link, `rel="next"`) {
		t.Fatalf("first referrers page = %d, Link %q", page.status, link)
	}
	next := do(t, srv, call{method: "GET", path: strings.TrimSuffix(strings.TrimPrefix(link, "<"), `>; rel="next"`)})
	if next.status != 200 || next.header.Get("Link") != "" || bytes.Equal(next.body, page.body) {
		t.Fatalf("second referrers page = %d %s, Link %q", next.status, next.body, next.header.Get("Link"))
	}
	if r := do(t, srv, call{method: "DELETE", path: "/v2/p/app/manifests/" + digest.FromBytes(sig2).String()}); r.status != 202 {
		t.Fatalf("DELETE second referrer = %d", r.status)
	}
	for _, tc := range []struct {
		query   string
		want    int
		filters string
	}{{"", 1, ""}, {"?artifactType=application/vnd.example.sig", 1, "artifactType"}, {"?artifactType=other", 0, "artifactType"}} {
		g := do(t, srv, call{method: "GET", path: "/v2/p/app/referrers/" + subject.digest.String() + tc.query})
		var idx struct {
			MediaType string `json:"mediaType"`
			Manifests []struct {
				Digest       string            `json:"digest"`
				ArtifactType string            `json:"artifactType"`
				Annotations  map[string]string `json:"annotations"`
			} `json:"manifests"`
		}
		if err := json.Unmarshal(g.body, &idx); err != nil || g.status != 200 {
			t.Fatalf("referrers%s = %d %s", tc.query, g.status, g.body)
		}
		if len(idx.Manifests) != tc.want || g.header.Get("OCI-Filters-Applied") != tc.filters ||
			g.header.Get("Content-Type") != "application/vnd.oci.image.index.v1+json" {
			t.Fatalf("referrers%s = %s %v", tc.query, g.body, g.header)
		}
		if tc.want == 1 && (idx.Manifests[0].Digest != digest.FromBytes(sig).String() || idx.Manifests[0].Annotations["k"] != "v") {
			t.Fatalf("referrer descriptor = %+v", idx.Manifests[0])
		}
	}
}

// TestHostileInput sends malformed and malicious requests: each must get a
// clear spec error (never a 5xx) and leave stored data as it was.
func TestHostileInput(t *testing.T) {
	srv := newServer(t, registry.Options{MaxManifestBytes: 64 << 10})
	img := pushImage(t, srv, "p/app", "good")
	putManifest(t, srv, "p/app", "v1", img.manifest, ociManifest)
	open := do(t, srv, call{method: "POST", path: "/v2/p/app/blobs/uploads/"})
	loc := open.header.Get("Location")
	do(t, srv, call{method: "PATCH", path: loc, body: []byte("0123456789")})
	otherRepoLoc := strings.Replace(loc, "/p/app/", "/p/other/", 1)
	snapshot := func() string {
		var b strings.Builder
		for _, p := range []string{"/v2/_catalog", "/v2/p/app/tags/list", "/v2/p/app/manifests/v1",
			"/v2/p/app/blobs/" + img.layer.String(), "/v2/p/app/blobs/" + img.config.String()} {
			r := do(t, srv, call{method: "GET", path: p})
			fmt.Fprintf(&b, "%s %d %x\n", p, r.status, sha256.Sum256(r.body))
		}
		r := do(t, srv, call{method: "GET", path: loc})
		fmt.Fprintf(&b, "upload %d %s\n", r.status, r.header.Get("Range"))
		return b.String()
	}
	before := snapshot()

	good := []byte("abc")
	goodDigest := digest.FromBytes(good)
	huge := append([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"x":"`),
		bytes.Repeat([]byte("a"), 70<<10)...)
	huge = append(huge, `"}}`...)
	tests := []struct {
		name       string
		c          call
		wantStatus int
		wantCode   string
	}{
		{"digest mismatch", call{method: "POST", path: "/v2/p/app/blobs/uploads/?digest=" + digest.FromString("other").String(), body: good}, 400, "DIGEST_INVALID"},
		{"malformed digest", call{method: "POST", path: "/v2/p/app/blobs/uploads/?digest=sha256:xyz", body: good}, 400, "DIGEST_INVALID"},
		{"unknown algorithm", call{method: "POST", path: "/v2/p/app/blobs/uploads/?digest=md5:900150983cd24fb0d6963f7d28e17f72", body: good}, 400, "DIGEST_INVALID"},
		{"empty digest", call{method: "POST", path: "/v2/p/app/blobs/uploads/?digest=", body: good}, 400, "DIGEST_INVALID"},
		{"uppercase name", call{method: "GET", path: "/v2/P/app/tags/list"}, 400, "NAME_INVALID"},
		{"one component", call{method: "GET", path: "/v2/app/tags/list"}, 400, "NAME_INVALID"},
		{"three components", call{method: "GET", path: "/v2/a/b/c/manifests/latest"}, 400, "NAME_INVALID"},
		{"dot-dot", call{method: "GET", path: "/v2/p/../app/manifests/latest"}, 400, "NAME_INVALID"},
		{"encoded slash", call{method: "GET", path: "/v2/p%2Fq/app/manifests/latest"}, 400, "NAME_INVALID"},
		{"double slash", call{method: "GET", path: "/v2/p//app/tags/list"}, 400, "NAME_INVALID"},
		{"separator at end", call{method: "GET", path: "/v2/p/app-/tags/list"}, 400, "NAME_INVALID"},
		{"long name", call{method: "GET", path: "/v2/p/" + strings.Repeat("a", 300) + "/tags/list"}, 400, "NAME_INVALID"},
		{"bad tag", call{method: "GET", path: "/v2/p/app/manifests/-bad"}, 400, "MANIFEST_INVALID"},
		{"bad digest reference", call{method: "GET", path: "/v2/p/app/manifests/sha256:nothex"}, 400, "DIGEST_INVALID"},
		{"oversized manifest", call{method: "PUT", path: "/v2/p/app/manifests/v1", body: huge, header: map[string]string{"Content-Type": ociManifest}}, 413, "SIZE_INVALID"},
		{"malformed manifest", call{method: "PUT", path: "/v2/p/app/manifests/v1", body: []byte(`{"schemaVersion":2,`), header: map[string]string{"Content-Type": ociManifest}}, 400, "MANIFEST_INVALID"},
		{"manifest not an object", call{method: "PUT", path: "/v2/p/app/manifests/v1", body: []byte(`[1,2]`), header: map[string]string{"Content-Type": ociManifest}}, 400, "MANIFEST_INVALID"},
		{"schema 1", call{method: "PUT", path: "/v2/p/app/manifests/v1", body: []byte(`{"schemaVersion":1,"name":"p/app","tag":"v1","fsLayers":[]}`), header: map[string]string{"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"}}, 400, "MANIFEST_INVALID"},
		{"unknown media type", call{method: "PUT", path: "/v2/p/app/manifests/v1", body: []byte(`{"schemaVersion":2,"mediaType":"application/x-evil"}`), header: map[string]string{"Content-Type": "application/x-evil"}}, 400, "MANIFEST_INVALID"},
		{"media type mismatch", call{method: "PUT", path: "/v2/p/app/manifests/v1", body: img.manifest, header: map[string]string{"Content-Type": "application/vnd.oci.image.index.v1+json"}}, 400, "MANIFEST_INVALID"},
		{"manifest digest mismatch", call{method: "PUT", path: "/v2/p/app/manifests/" + goodDigest.String(), body: img.manifest, header: map[string]string{"Content-Type": ociManifest}}, 400, "DIGEST_INVALID"},
		{"descriptor with bad digest", call{method: "PUT", path: "/v2/p/app/manifests/v1", body: bytes.Replace(img.manifest, []byte(img.layer), []byte("sha256:zz"), 1), header: map[string]string{"Content-Type": ociManifest}}, 400, "MANIFEST_INVALID"},
		{"bad range", call{method: "GET", path: "/v2/p/app/blobs/" + img.layer.String(), header: map[string]string{"Range": "bytes=9999-"}}, 416, ""},
		{"forged upload id", call{method: "PATCH", path: "/v2/p/app/blobs/uploads/" + strings.Repeat("ab", 32), body: good}, 404, "BLOB_UPLOAD_UNKNOWN"},
		{"hostile upload id", call{method: "PATCH", path: "/v2/p/app/blobs/uploads/..%2F..%2Fetc", body: good}, 400, "NAME_INVALID"},
		{"upload moved to another repository", call{method: "PATCH", path: otherRepoLoc, body: good}, 404, "BLOB_UPLOAD_UNKNOWN"},
		{"out-of-order chunk", call{method: "PATCH", path: loc, body: good, header: map[string]string{"Content-Range": "100-102"}}, 416, "BLOB_UPLOAD_INVALID"},
		{"repeated chunk", call{method: "PATCH", path: loc, body: good, header: map[string]string{"Content-Range": "0-2"}}, 416, "BLOB_UPLOAD_INVALID"},
		{"garbage content range", call{method: "PATCH", path: loc, body: good, header: map[string]string{"Content-Range": "lots"}}, 416, "BLOB_UPLOAD_INVALID"},
		{"signed content range", call{method: "PATCH", path: loc, body: good, header: map[string]string{"Content-Range": "+10-+12"}}, 416, "BLOB_UPLOAD_INVALID"},
		{"content range with a bad total", call{method: "PATCH", path: loc, body: good, header: map[string]string{"Content-Range": "10-12/x"}}, 416, "BLOB_UPLOAD_INVALID"},
		{"range and length disagree", call{method: "PATCH", path: loc, body: good, header: map[string]string{"Content-Range": "10-19"}}, 400, "BLOB_UPLOAD_INVALID"},
		{"finish without digest", call{method: "PUT", path: loc}, 400, "DIGEST_INVALID"},
		{"bad page size", call{method: "GET", path: "/v2/p/app/tags/list?n=-1"}, 400, "PAGINATION_NUMBER_INVALID"},
		{"unsupported method", call{method: "PATCH", path: "/v2/p/app/manifests/v1"}, 405, "UNSUPPORTED"},
		{"unknown endpoint", call{method: "GET", path: "/v2/_nothing"}, 404, "NOT_FOUND"},
		{"upload start below its path", call{method: "POST", path: "/v2/p/app/blobs/uploads/junk/more"}, 404, "NOT_FOUND"},
		{"upload start on an id", call{method: "POST", path: "/v2/p/app/blobs/uploads/junk"}, 405, "UNSUPPORTED"},
		{"unknown blob", call{method: "GET", path: "/v2/p/app/blobs/" + goodDigest.String()}, 404, "BLOB_UNKNOWN"},
		{"unknown repository tags", call{method: "GET", path: "/v2/p/none/tags/list"}, 404, "NAME_UNKNOWN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, srv, tc.c)
			if r.status != tc.wantStatus {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.wantStatus, r.body)
			}
			if tc.wantCode != "" && r.errorCode() != tc.wantCode {
				t.Fatalf("code = %q, want %q: %s", r.errorCode(), tc.wantCode, r.body)
			}
		})
	}
	if after := snapshot(); after != before {
		t.Fatalf("hostile requests changed stored data:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	r := do(t, srv, call{method: "GET", path: "/v2/p/app/blobs/" + goodDigest.String()})
	if r.status != 404 {
		t.Fatalf("blob with a wrong digest became visible: %d", r.status)
	}
	if r.header.Get("Cache-Control") != "" || r.header.Get("ETag") != "" {
		t.Fatalf("an error response carries caching headers: %v", r.header)
	}
}

// TestConcurrentPushesConverge: many clients pushing the same blob (some
// monolithic, some chunked) and moving the same tag end in one consistent
// state: the blob is intact and the tag names the newest history entry.
func TestConcurrentPushesConverge(t *testing.T) {
	srv := newServer(t, registry.Options{})
	content := bytes.Repeat([]byte("same blob "), 50_000)
	dgst := digest.FromBytes(content)
	imgs := make([]testImage, 6)
	for i := range imgs {
		imgs[i] = pushImage(t, srv, "p/race", fmt.Sprint("img", i))
	}
	errs := make(chan error, 64)
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				r := do(t, srv, call{method: "POST", path: "/v2/p/race/blobs/uploads/?digest=" + dgst.String(), body: content})
				if r.status != 201 {
					errs <- fmt.Errorf("monolithic push %d: %d %s", i, r.status, r.body)
				}
				return
			}
			r := do(t, srv, call{method: "POST", path: "/v2/p/race/blobs/uploads/"})
			r = do(t, srv, call{method: "PATCH", path: r.header.Get("Location"), body: content[:len(content)/2]})
			r = do(t, srv, call{method: "PUT", path: registrytest.WithDigest(r.header.Get("Location"), dgst.String()), body: content[len(content)/2:]})
			if r.status != 201 {
				errs <- fmt.Errorf("chunked push %d: %d %s", i, r.status, r.body)
			}
		}()
	}
	for _, img := range imgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := putManifest(t, srv, "p/race", "latest", img.manifest, ociManifest); r.status != 201 {
				errs <- fmt.Errorf("tag push: %d %s", r.status, r.body)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if g := do(t, srv, call{method: "GET", path: "/v2/p/race/blobs/" + dgst.String()}); g.status != 200 || !bytes.Equal(g.body, content) {
		t.Fatalf("blob after concurrent pushes: %d, %d bytes", g.status, len(g.body))
	}
	head := do(t, srv, call{method: "GET", path: "/v2/p/race/manifests/latest"})
	found := false
	for _, img := range imgs {
		found = found || img.digest.String() == head.header.Get("Docker-Content-Digest")
	}
	if head.status != 200 || !found || digest.FromBytes(head.body).String() != head.header.Get("Docker-Content-Digest") {
		t.Fatalf("tag after concurrent pushes: %d %s", head.status, head.header.Get("Docker-Content-Digest"))
	}
}
