package registry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/store"
)

type pullCounter struct {
	mu    sync.Mutex
	pulls []string
}

func (p *pullCounter) Pulled(repo string, dgst digest.Digest, actor string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pulls = append(p.pulls, repo+"@"+string(dgst))
}

// A manifest GET is a pull, counted; one the console makes to show the
// manifest (store.Viewing) is not, and no client can make it so.
func TestViewingIsNotAPull(t *testing.T) {
	meta, blobs, _ := newParts(t)
	pulls := &pullCounter{}
	reg := registry.New(registry.Options{Metadata: meta, Blobs: blobs, Pulls: pulls})
	ctx := context.Background()
	cfg := digest.FromString("cfg")
	if err := meta.LinkBlob(ctx, store.DefaultStorage, "p/app", cfg, 3); err != nil {
		t.Fatal(err)
	}
	payload := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + string(cfg) + `","size":3},"layers":[]}`)
	m := store.Manifest{Digest: digest.FromBytes(payload), MediaType: "application/vnd.oci.image.manifest.v1+json", Payload: payload,
		References: []store.Reference{{Digest: cfg, Size: 3, Required: true}}}
	if err := meta.PutManifest(ctx, store.Only(store.DefaultStorage), "p/app", m, []string{"v1"}); err != nil {
		t.Fatal(err)
	}
	get := func(ctx context.Context, header string) int {
		req := httptest.NewRequest(http.MethodGet, "/v2/p/app/manifests/v1", nil).WithContext(ctx)
		req.Header.Set("Accept", m.MediaType)
		if header != "" {
			req.Header.Set(header, "true")
		}
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, req)
		return rec.Code
	}
	if code := get(ctx, ""); code != http.StatusOK {
		t.Fatalf("GET manifest = %d", code)
	}
	if code := get(store.Viewing(ctx), ""); code != http.StatusOK {
		t.Fatalf("GET manifest, viewing = %d", code)
	}
	if code := get(ctx, "Viewing"); code != http.StatusOK {
		t.Fatalf("GET manifest with a header = %d", code)
	}
	if len(pulls.pulls) != 2 {
		t.Errorf("pulls counted: %v, want the two that were not the console's", pulls.pulls)
	}
}
