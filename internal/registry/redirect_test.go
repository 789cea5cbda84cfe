package registry_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/storage/filesystem"
)

// redirecting is a filesystem driver that hands out object-storage URLs,
// as the object-storage drivers will.
type redirecting struct{ *filesystem.Driver }

func (redirecting) RedirectURL(_ context.Context, dgst digest.Digest) (string, error) {
	return "https://objects.example/" + dgst.Encoded(), nil
}

// A blob GET is redirected to the driver's URL, unless the Config's
// disableRedirect is in effect: then the registry streams the bytes.
func TestDisableRedirect(t *testing.T) {
	meta, blobs, _ := newParts(t)
	var disable atomic.Bool
	reg := registry.New(registry.Options{Metadata: meta, Blobs: redirecting{blobs}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := &settings.Settings{DisableRedirect: disable.Load()}
		reg.ServeHTTP(w, r.WithContext(settings.With(r.Context(), s)))
	}))
	defer srv.Close()
	content := []byte("served one way or the other")
	dgst := pushBlob(t, srv, "p/app", content)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(rng ...string) (int, string, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v2/p/app/blobs/"+dgst.String(), nil)
		for _, r := range rng {
			req.Header.Set("Range", r)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Location"), body
	}
	if code, loc, _ := get(); code != http.StatusTemporaryRedirect || loc != "https://objects.example/"+dgst.Encoded() {
		t.Errorf("with redirects: %d Location %q, want 307 to the driver's URL", code, loc)
	}
	// A range from an offset goes to the storage too; a suffix range or
	// several ranges are Berth's to serve (object stores differ in them).
	if code, _, _ := get("bytes=3-9"); code != http.StatusTemporaryRedirect {
		t.Errorf("a range from an offset: %d, want 307", code)
	}
	for _, r := range []string{"bytes=-5", "bytes=0-1,4-5"} {
		if code, loc, body := get(r); code != http.StatusPartialContent || loc != "" || len(body) == 0 {
			t.Errorf("Range %s: %d Location %q, want 206 from Berth", r, code, loc)
		}
	}
	disable.Store(true)
	if code, loc, body := get(); code != http.StatusOK || loc != "" || string(body) != string(content) {
		t.Errorf("with disableRedirect: %d Location %q body %q, want the bytes", code, loc, body)
	}
}
