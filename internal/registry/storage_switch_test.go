package registry_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/registry/registrytest"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/filesystem"
)

// switchable serves a registry whose settings snapshot names one of two
// filesystem storages, A or B, as the operator's does after a switch.
type switchable struct {
	srv     *httptest.Server
	a, b    settings.Storage
	current atomic.Pointer[settings.Storage]
}

func (s *switchable) Built(id string) (storage.Driver, bool) {
	for _, st := range []settings.Storage{s.a, s.b} {
		if st.ID == id {
			return st.Driver, true
		}
	}
	return nil, false
}

func (s *switchable) use(st settings.Storage) { s.current.Store(&st) }

func newSwitchable(t *testing.T) *switchable {
	t.Helper()
	meta, _, dir := newParts(t)
	s := &switchable{}
	for _, x := range []struct {
		st   *settings.Storage
		name string
	}{{&s.a, "a"}, {&s.b, "b"}} {
		d, err := filesystem.Open(filepath.Join(dir, x.name))
		if err != nil {
			t.Fatal(err)
		}
		*x.st = settings.Storage{ID: "pvc:" + x.name, Driver: d}
	}
	s.use(s.a)
	reg := registry.New(registry.Options{Metadata: meta, Storages: s, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reg.ServeHTTP(w, r.WithContext(settings.With(r.Context(), &settings.Settings{Storage: *s.current.Load()})))
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// After a switch a blob pushed before is unknown, a manifest naming it is
// refused, pushing it again makes both work; switching back finds what
// was pushed there. Manifests stay: they are metadata.
func TestStorageSwitchPresence(t *testing.T) {
	s := newSwitchable(t)
	img := pushImage(t, s.srv, "p/app", "one")
	put := call{method: "PUT", path: "/v2/p/app/manifests/v1", body: img.manifest,
		header: map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}}
	if r := do(t, s.srv, put); r.status != 201 {
		t.Fatalf("manifest in A: %d %s", r.status, r.body)
	}
	layer := "/v2/p/app/blobs/" + img.layer.String()

	s.use(s.b)
	if r := do(t, s.srv, call{method: "HEAD", path: layer}); r.status != 404 {
		t.Fatalf("HEAD under B of a layer pushed to A: %d", r.status)
	}
	if r := do(t, s.srv, call{method: "GET", path: "/v2/p/app/manifests/v1"}); r.status != 200 {
		t.Fatalf("manifest under B: %d (manifests are metadata and stay)", r.status)
	}
	put.path = "/v2/p/app/manifests/v2"
	if r := do(t, s.srv, put); r.status != 400 || r.errorCode() != "MANIFEST_BLOB_UNKNOWN" {
		t.Fatalf("manifest under B naming blobs only in A: %d %s", r.status, r.body)
	}
	if r := do(t, s.srv, call{method: "POST", path: "/v2/p/copy/blobs/uploads/?mount=" + img.layer.String() + "&from=p/app"}); r.status != 202 {
		t.Fatalf("mount under B of a blob only in A: %d, want a new session (202)", r.status)
	}
	again := pushImage(t, s.srv, "p/app", "one")
	if r := do(t, s.srv, put); r.status != 201 {
		t.Fatalf("manifest under B after the blobs were pushed again: %d %s", r.status, r.body)
	}
	r := do(t, s.srv, call{method: "GET", path: layer})
	if r.status != 200 || string(r.body) != "layer one" || again.layer != img.layer {
		t.Fatalf("layer under B: %d %q", r.status, r.body)
	}

	// Back to A: its copy was never deleted, and it is counted still (a
	// push to B does not take a blob away from A).
	s.use(s.a)
	if r := do(t, s.srv, call{method: "GET", path: layer}); r.status != 200 || string(r.body) != "layer one" {
		t.Fatalf("layer under A after it was pushed to B too: %d %q", r.status, r.body)
	}
}

// A session started in A and continued after a switch to B ends with
// BLOB_UPLOAD_UNKNOWN, and its bytes leave A; the client's new session
// lands in B.
func TestUploadAcrossStorageSwitch(t *testing.T) {
	s := newSwitchable(t)
	r := do(t, s.srv, call{method: "POST", path: "/v2/p/app/blobs/uploads/"})
	if r.status != 202 {
		t.Fatalf("start: %d", r.status)
	}
	loc := r.header.Get("Location")
	id := registrytest.SessionID(loc)
	if r := do(t, s.srv, call{method: "PATCH", path: loc, body: []byte("first half ")}); r.status != 202 {
		t.Fatalf("first chunk: %d %s", r.status, r.body)
	}
	holds := func(d storage.Driver) bool {
		rc, err := d.ReadUpload(context.Background(), storage.Upload{ID: id})
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		return len(b) > 0
	}
	if !holds(s.a.Driver) {
		t.Fatal("the first chunk is not in A")
	}

	s.use(s.b)
	if r := do(t, s.srv, call{method: "GET", path: loc}); r.status != 404 || r.errorCode() != "BLOB_UPLOAD_UNKNOWN" {
		t.Fatalf("status under B: %d %s", r.status, r.body)
	}
	r = do(t, s.srv, call{method: "PATCH", path: loc, body: []byte("second half")})
	if r.status != 404 || r.errorCode() != "BLOB_UPLOAD_UNKNOWN" {
		t.Fatalf("chunk under B: %d %s", r.status, r.body)
	}
	if holds(s.a.Driver) || holds(s.b.Driver) {
		t.Fatal("the ended session's bytes are still in a storage")
	}
	if r := do(t, s.srv, call{method: "PUT", path: registrytest.WithDigest(loc, digest.FromString("first half second half").String())}); r.status != 404 || r.errorCode() != "BLOB_UPLOAD_UNKNOWN" {
		t.Fatalf("the ended session answered a PUT: %d %s", r.status, r.body)
	}

	// The client starts over; the upload lands in B.
	dgst := pushBlob(t, s.srv, "p/app", []byte("first half second half"))
	if _, err := s.b.Driver.Open(context.Background(), dgst, 0, -1); err != nil {
		t.Fatalf("the new upload is not in B: %v", err)
	}
	if _, err := s.a.Driver.Open(context.Background(), dgst, 0, -1); err == nil {
		t.Fatal("the new upload went to A")
	}
}

// A storage being removed admits no more commits: a push that finishes
// after its gate closed is refused with 503 and leaves no record of
// bytes the removal takes away.
func TestNoCommitIntoAStorageBeingRemoved(t *testing.T) {
	s := newSwitchable(t)
	gate := &settings.Gate{}
	st := s.a
	st.Writes = gate
	s.use(st)
	r := do(t, s.srv, call{method: "POST", path: "/v2/p/app/blobs/uploads/"})
	loc := r.header.Get("Location")
	if r := do(t, s.srv, call{method: "PATCH", path: loc, body: []byte("chunked")}); r.status != 202 {
		t.Fatalf("chunk: %d %s", r.status, r.body)
	}
	gate.Close()
	mono := []byte("monolithic")
	if r := do(t, s.srv, call{method: "POST", path: "/v2/p/app/blobs/uploads/?digest=" + digest.FromBytes(mono).String(), body: mono}); r.status != 503 {
		t.Errorf("a monolithic push into a storage being removed: %d %s, want 503", r.status, r.body)
	}
	if r := do(t, s.srv, call{method: "PUT", path: registrytest.WithDigest(loc, digest.FromString("chunked").String())}); r.status != 503 {
		t.Errorf("a session's PUT into a storage being removed: %d %s, want 503", r.status, r.body)
	}
	for _, d := range []digest.Digest{digest.FromBytes(mono), digest.FromString("chunked")} {
		if r := do(t, s.srv, call{method: "HEAD", path: "/v2/p/app/blobs/" + d.String()}); r.status != 404 {
			t.Errorf("HEAD of a blob refused at commit: %d, want 404", r.status)
		}
	}
}
