package server

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// An emptyDir holds at most --emptydir-size-limit: a push past it gets
// 507 with a message saying the storage is full, a chunk past it is not
// kept (the session stays where it was), the metrics show what is held,
// and deleting frees the space.
func TestEmptyDirSizeLimit(t *testing.T) {
	const limit = 1 << 20
	r := start(t, Config{DataDir: t.TempDir(), Storage: "memory", EmptyDirSizeLimit: limit, MetricsSecret: testMetricsSecret})
	first := bytes.Repeat([]byte("1"), 700<<10)
	if resp := pushBlob(t, r.url, "ed/app", first); resp.StatusCode != 201 {
		t.Fatalf("push under the limit: %d", resp.StatusCode)
	}
	held := func() float64 {
		t.Helper()
		_, _, families := scrape(t, r.url, "Bearer "+testMetricsSecret)
		if got := sample(families, "berth_emptydir_limit_bytes"); got != limit {
			t.Errorf("berth_emptydir_limit_bytes %v, want %d", got, limit)
		}
		return sample(families, "berth_emptydir_bytes")
	}
	if got := held(); got != float64(len(first)) {
		t.Errorf("berth_emptydir_bytes %v after one push, want %d", got, len(first))
	}

	second := bytes.Repeat([]byte("2"), 700<<10)
	resp, err := admin.Post(r.url+"/v2/ed/app/blobs/uploads/?digest="+digest.FromBytes(second).String(), "application/octet-stream", bytes.NewReader(second))
	if err != nil {
		t.Fatal(err)
	}
	if code, msg := registryError(t, resp); resp.StatusCode != http.StatusInsufficientStorage || code != "DENIED" || !strings.Contains(msg, "storage is full") {
		t.Errorf("push past the limit: %d %s %q, want 507 DENIED saying the storage is full", resp.StatusCode, code, msg)
	}
	resp.Body.Close()

	// Chunked: the chunk that does not fit is not kept.
	resp, err = admin.Post(r.url+"/v2/ed/app/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := r.url + resp.Header.Get("Location")
	patch := func(b []byte) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("PATCH", loc, bytes.NewReader(b))
		resp, err := admin.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if resp := patch(second[:100<<10]); resp.StatusCode != 202 {
		t.Fatalf("a chunk that fits: %d", resp.StatusCode)
	}
	if resp := patch(second[100<<10:]); resp.StatusCode != http.StatusInsufficientStorage {
		t.Errorf("a chunk past the limit: %d, want 507", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", loc, nil)
	if resp, err := admin.Do(req); err != nil || resp.StatusCode != 204 || resp.Header.Get("Range") != "0-102399" {
		t.Errorf("the session after the refused chunk: %v %v, want 204 Range 0-102399", resp.StatusCode, resp.Header.Get("Range"))
	}
	if got := held(); got < float64(len(first)+100<<10) || got > limit {
		t.Errorf("berth_emptydir_bytes %v, want the blob and the chunk kept (%d) and no more than %d", got, len(first)+100<<10, limit)
	}

	// Ending the session frees its bytes.
	req, _ = http.NewRequest("DELETE", loc, nil)
	if resp, err := admin.Do(req); err != nil || resp.StatusCode != 204 {
		t.Fatalf("cancel the session: %v %v", resp.StatusCode, err)
	}
	if got := held(); got != float64(len(first)) {
		t.Errorf("berth_emptydir_bytes %v after the session ended, want %d", got, len(first))
	}
	if resp := pushBlob(t, r.url, "ed/app", second[:300<<10]); resp.StatusCode != 201 {
		t.Errorf("push into the freed space: %d", resp.StatusCode)
	}
}
