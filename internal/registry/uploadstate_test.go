package registry_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/registry/registrytest"
	"github.com/berth-registry/berth/internal/settings"
)

// withHTTPSecret serves a registry whose settings snapshot carries the
// httpSecret *secret holds at each request, as the operator's does.
func withHTTPSecret(t *testing.T, secret *atomic.Pointer[string]) *httptest.Server {
	t.Helper()
	meta, blobs, _ := newParts(t)
	reg := registry.New(registry.Options{Metadata: meta, Blobs: blobs, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := settings.Defaults()
		s.HTTPSecret = []byte(*secret.Load())
		reg.ServeHTTP(w, r.WithContext(settings.With(r.Context(), s)))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// A session continues only through the Location the registry returned:
// one without its signature, with another's, or moved to another
// repository answers as an unknown session, and leaves the session as
// it was for the client that holds the real Location.
func TestUploadLocationIsSigned(t *testing.T) {
	var secret atomic.Pointer[string]
	first := strings.Repeat("ab", 64)
	secret.Store(&first)
	srv := withHTTPSecret(t, &secret)

	start := func() string {
		t.Helper()
		r := do(t, srv, call{method: "POST", path: "/v2/p/app/blobs/uploads/"})
		loc := r.header.Get("Location")
		if r.status != 202 || !strings.Contains(loc, "_state=") {
			t.Fatalf("start: %d Location %q, want 202 and a signed Location", r.status, loc)
		}
		return loc
	}
	loc, other := start(), start()
	if r := do(t, srv, call{method: "PATCH", path: loc, body: []byte("01234")}); r.status != 202 || !strings.Contains(r.header.Get("Location"), "_state=") {
		t.Fatalf("first chunk: %d %s Location %q", r.status, r.body, r.header.Get("Location"))
	}
	bare, _, _ := strings.Cut(loc, "?")
	u, _ := url.Parse(loc)
	state := u.Query().Get("_state")
	changed := "A"
	if state[0] == 'A' {
		changed = "B"
	}
	otherBare, _, _ := strings.Cut(other, "?")
	_, otherQuery, _ := strings.Cut(other, "?")
	forged := []struct{ name, loc string }{
		{"no signature", bare},
		{"empty signature", bare + "?_state="},
		{"a changed signature", bare + "?_state=" + changed + state[1:]},
		{"another session's signature", bare + "?" + otherQuery},
		{"this signature on another session", otherBare + "?_state=" + state},
		{"another repository", strings.Replace(loc, "/p/app/", "/p/other/", 1)},
	}
	for _, f := range forged {
		for _, method := range []string{"GET", "PATCH", "PUT", "DELETE"} {
			path := f.loc
			if method == "PUT" {
				path = registrytest.WithDigest(f.loc, digest.FromString("0123456789").String())
			}
			r := do(t, srv, call{method: method, path: path, body: []byte("56789")})
			if r.status != 404 || r.errorCode() != "BLOB_UPLOAD_UNKNOWN" {
				t.Errorf("%s with %s: %d %s, want 404 BLOB_UPLOAD_UNKNOWN", method, f.name, r.status, r.body)
			}
		}
	}
	if r := do(t, srv, call{method: "GET", path: loc}); r.status != 204 || r.header.Get("Range") != "0-4" {
		t.Fatalf("the session after the forged requests: %d Range %q, want 204 0-4", r.status, r.header.Get("Range"))
	}
	want := digest.FromString("0123456789")
	if r := do(t, srv, call{method: "PUT", path: registrytest.WithDigest(loc, want.String()), body: []byte("56789")}); r.status != 201 {
		t.Fatalf("finish with the real Location: %d %s", r.status, r.body)
	}

	// A new httpSecret ends the sessions signed with the old one, on
	// every instance alike; new sessions work.
	second := strings.Repeat("cd", 64)
	secret.Store(&second)
	if r := do(t, srv, call{method: "PATCH", path: other, body: []byte("x")}); r.status != 404 || r.errorCode() != "BLOB_UPLOAD_UNKNOWN" ||
		!strings.Contains(string(r.body), "httpSecret") {
		t.Errorf("a session signed with the previous httpSecret: %d %s, want 404 BLOB_UPLOAD_UNKNOWN naming httpSecret", r.status, r.body)
	}
	if r := do(t, srv, call{method: "PUT", path: registrytest.WithDigest(start(), digest.FromString("after").String()), body: []byte("after")}); r.status != 201 {
		t.Errorf("a session started after the change: %d %s", r.status, r.body)
	}
}
