package registry_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/registry"
)

// fakeUpstream serves one blob, slowly if asked, and counts its opens.
type fakeUpstream struct {
	content []byte
	opens   atomic.Int64
	gate    chan struct{} // when set, an open's body waits for it
	down    atomic.Bool
	corrupt bool
}

func (f *fakeUpstream) BlobUpstream(ctx context.Context, repo string, dgst digest.Digest) (int64, error) {
	if dgst != digest.FromBytes(f.content) {
		return 0, errdefs.ErrNotFound
	}
	return int64(len(f.content)), nil
}

func (f *fakeUpstream) OpenUpstreamBlob(ctx context.Context, repo string, dgst digest.Digest) (io.ReadCloser, error) {
	f.opens.Add(1)
	if f.down.Load() {
		return nil, fmt.Errorf("connection refused: %w", registry.ErrUpstreamUnavailable)
	}
	content := f.content
	if f.corrupt {
		content = bytes.ToUpper(content)
	}
	if f.gate == nil {
		return io.NopCloser(bytes.NewReader(content)), nil
	}
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write(content[:len(content)/2])
		<-f.gate
		_, _ = pw.Write(content[len(content)/2:])
		pw.Close()
	}()
	return pr, nil
}

func get(t *testing.T, method, url string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// A blob of an imported image is fetched from its upstream once, however
// many pull it at the same time, and then served from here; a HEAD needs
// no fetch; an upstream that is down is a 503 that says so.
func TestPullThroughFetchesOnce(t *testing.T) {
	up := &fakeUpstream{content: bytes.Repeat([]byte("layer "), 10000), gate: make(chan struct{})}
	srv := newServer(t, registry.Options{Upstreams: up})
	dgst := digest.FromBytes(up.content)
	url := srv.URL + "/v2/team/app/blobs/" + dgst.String()

	if code, _ := get(t, http.MethodHead, url); code != http.StatusOK || up.opens.Load() != 0 {
		t.Fatalf("HEAD = %d after %d opens, want 200 without a fetch", code, up.opens.Load())
	}
	const n = 5
	var wg sync.WaitGroup
	results := make([][]byte, n)
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() { codes[i], results[i] = get(t, http.MethodGet, url) })
	}
	time.Sleep(200 * time.Millisecond) // all are waiting on the one fetch
	close(up.gate)
	wg.Wait()
	for i := range n {
		if codes[i] != http.StatusOK || !bytes.Equal(results[i], up.content) {
			t.Fatalf("GET %d = %d, %d bytes", i, codes[i], len(results[i]))
		}
	}
	if got := up.opens.Load(); got != 1 {
		t.Fatalf("%d upstream fetches for %d concurrent GETs, want 1", got, n)
	}
	up.down.Store(true)
	if code, body := get(t, http.MethodGet, url); code != http.StatusOK || !bytes.Equal(body, up.content) {
		t.Fatalf("GET with the upstream down = %d: the fetched blob was not kept", code)
	}
	if got := up.opens.Load(); got != 1 {
		t.Fatalf("a blob already here was fetched again (%d fetches)", got)
	}

	// Another blob, never fetched, with the upstream down.
	other := &fakeUpstream{content: []byte("never fetched")}
	other.down.Store(true)
	srv2 := newServer(t, registry.Options{Upstreams: other})
	code, body := get(t, http.MethodGet, srv2.URL+"/v2/team/app/blobs/"+digest.FromBytes(other.content).String())
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "UNAVAILABLE") || !strings.Contains(string(body), "upstream") {
		t.Fatalf("GET of a never-fetched blob, upstream down = %d %s", code, body)
	}
	// A blob no imported manifest names is unknown, as before.
	if code, _ := get(t, http.MethodGet, srv2.URL+"/v2/team/app/blobs/"+digest.FromString("nothing").String()); code != http.StatusNotFound {
		t.Fatalf("GET of an unknown blob = %d", code)
	}
}

// Bytes that do not match their digest are not kept: the next pull
// fetches again.
func TestPullThroughKeepsOnlyVerifiedBytes(t *testing.T) {
	up := &fakeUpstream{content: []byte("the real layer"), corrupt: true}
	srv := newServer(t, registry.Options{Upstreams: up})
	url := srv.URL + "/v2/team/app/blobs/" + digest.FromBytes(up.content).String()
	get(t, http.MethodGet, url)
	up.corrupt = false
	if code, body := get(t, http.MethodGet, url); code != http.StatusOK || !bytes.Equal(body, up.content) {
		t.Fatalf("second GET = %d %q", code, body)
	}
	if got := up.opens.Load(); got != 2 {
		t.Fatalf("%d fetches, want 2 (the corrupt bytes were not kept)", got)
	}
}

// endless is an upstream whose one blob never ends, counting what it sent.
type endless struct {
	declared int64
	sent     atomic.Int64
}

func (e *endless) BlobUpstream(context.Context, string, digest.Digest) (int64, error) {
	return e.declared, nil
}

func (e *endless) OpenUpstreamBlob(context.Context, string, digest.Digest) (io.ReadCloser, error) {
	return io.NopCloser(readerFunc(func(p []byte) (int, error) {
		time.Sleep(time.Millisecond)
		e.sent.Add(int64(len(p)))
		return len(p), nil
	})), nil
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// A pull-through fetch is bounded: a blob declared larger than the
// maximum is refused before any fetch, and a fetch ends when its client
// leaves instead of writing on for nobody.
func TestPullThroughIsBounded(t *testing.T) {
	huge := &endless{declared: 1 << 40}
	srv := newServer(t, registry.Options{Upstreams: huge, MaxPullThroughBytes: 1 << 30})
	url := srv.URL + "/v2/team/app/blobs/" + digest.FromString("huge").String()
	if code, body := get(t, http.MethodGet, url); code != http.StatusForbidden || !strings.Contains(string(body), "more than") {
		t.Fatalf("GET of a blob declared 1 TiB = %d %s", code, body)
	}
	if huge.sent.Load() != 0 {
		t.Fatal("a refused blob was fetched")
	}

	big := &endless{declared: 1 << 30}
	srv = newServer(t, registry.Options{Upstreams: big})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v2/team/app/blobs/"+digest.FromString("big").String(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadFull(resp.Body, make([]byte, 1<<16))
	cancel()
	resp.Body.Close()
	time.Sleep(300 * time.Millisecond)
	after := big.sent.Load()
	time.Sleep(500 * time.Millisecond)
	if grew := big.sent.Load() - after; grew > 0 {
		t.Fatalf("the fetch went on after its client left (%d more bytes)", grew)
	}
}
