package registry_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/storage"
)

// rangedOnly is a driver as object storage is: no Seeker, only ranged
// opens, counted.
type rangedOnly struct {
	storage.Driver
	opens *atomic.Int64
}

func (r rangedOnly) Open(ctx context.Context, dgst digest.Digest, offset, length int64) (io.ReadCloser, error) {
	r.opens.Add(1)
	return r.Driver.Open(ctx, dgst, offset, length)
}

// Blob GETs through a driver that only has ranged reads: the whole blob in
// one open, a range in one open from its start, several ranges, and a
// blob the store records but the storage lost answered as an error, not
// a 200 cut short.
func TestBlobGetThroughRangedReads(t *testing.T) {
	meta, blobs, _ := newParts(t)
	var opens atomic.Int64
	srv := serveRegistry(t, registry.Options{Metadata: meta, Blobs: rangedOnly{blobs, &opens}})
	content := []byte(strings.Repeat("0123456789", 1000))
	dgst := pushBlob(t, srv, "p/app", content)
	path := "/v2/p/app/blobs/" + dgst.String()

	opens.Store(0)
	if r := do(t, srv, call{method: "GET", path: path}); r.status != 200 || string(r.body) != string(content) || opens.Load() != 1 {
		t.Errorf("GET: %d, %d bytes, %d opens; want 200, the blob, 1 open", r.status, len(r.body), opens.Load())
	}
	opens.Store(0)
	r := do(t, srv, call{method: "GET", path: path, header: map[string]string{"Range": "bytes=5000-5009"}})
	if r.status != http.StatusPartialContent || string(r.body) != "0123456789" || opens.Load() != 1 {
		t.Errorf("ranged GET: %d %q, %d opens; want 206, ten bytes, 1 open", r.status, r.body, opens.Load())
	}
	// Several ranges are the whole blob, in one read: one request cannot
	// make the backend serve a read per range.
	opens.Store(0)
	many := "bytes=0-0" + strings.Repeat(",2-2", 2000)
	r = do(t, srv, call{method: "GET", path: path, header: map[string]string{"Range": many}})
	if r.status != http.StatusOK || string(r.body) != string(content) || opens.Load() != 1 {
		t.Errorf("multi-range GET: %d, %d bytes, %d opens; want 200, the blob, 1 open", r.status, len(r.body), opens.Load())
	}
	// A range with an If-Range that does not match is the whole blob too,
	// probed before the answer begins.
	opens.Store(0)
	r = do(t, srv, call{method: "GET", path: path, header: map[string]string{"Range": "bytes=5-9", "If-Range": `"sha256:other"`}})
	if r.status != http.StatusOK || string(r.body) != string(content) || opens.Load() != 1 {
		t.Errorf("GET with a stale If-Range: %d, %d bytes, %d opens", r.status, len(r.body), opens.Load())
	}
	if r := do(t, srv, call{method: "GET", path: path, header: map[string]string{"Range": "bytes=20000-"}}); r.status != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("a range past the end: %d, want 416", r.status)
	}

	if err := blobs.Delete(context.Background(), dgst); err != nil {
		t.Fatal(err)
	}
	for _, h := range []map[string]string{nil, {"Range": "bytes=0-,0-"}, {"Range": "bytes=0-0", "If-Range": `"sha256:nope"`}, {"Range": "bytes=5-9"}} {
		if r := do(t, srv, call{method: "GET", path: path, header: h}); r.status < 400 {
			t.Errorf("GET %v of a blob the storage lost: %d, want an error answer", h, r.status)
		}
	}
}
