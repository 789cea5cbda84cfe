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
	get := func() (int, string, []byte) {
		t.Helper()
		resp, err := client.Get(srv.URL + "/v2/p/app/blobs/" + dgst.String())
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
	disable.Store(true)
	if code, loc, body := get(); code != http.StatusOK || loc != "" || string(body) != string(content) {
		t.Errorf("with disableRedirect: %d Location %q body %q, want the bytes", code, loc, body)
	}
}
