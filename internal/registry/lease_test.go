package registry_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/registry/registrytest"
)

// One request writes to an upload session at a time, whichever instance
// it reaches: a second writer, on another instance of the same store, is
// refused at once with 503 and Retry-After, saying so; once the first is
// done the session takes the next chunk. A lease whose holder died (never
// given back) stops the session only until it lapses.
func TestUploadWriterLease(t *testing.T) {
	meta, blobs, _ := newParts(t)
	one := serveRegistry(t, registry.Options{Metadata: meta, Blobs: blobs})
	other := serveRegistry(t, registry.Options{Metadata: meta, Blobs: blobs})
	loc := do(t, one, call{method: "POST", path: "/v2/p/app/blobs/uploads/"}).header.Get("Location")

	finish := heldRequest(t, "PATCH", one.URL+loc, 5)
	r := do(t, other, call{method: "PATCH", path: loc, body: []byte("other")})
	if r.status != 503 || r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), "being written by another request") {
		t.Errorf("a second writer on another instance: %d %s, want 503 with Retry-After", r.status, r.body)
	}
	if code := finish([]byte("first")); code != 202 {
		t.Fatalf("the first writer: %d", code)
	}
	r = do(t, other, call{method: "PATCH", path: loc, body: []byte("-second")})
	if r.status != 202 || r.header.Get("Range") != "0-11" {
		t.Fatalf("the next chunk, on the other instance: %d %s Range %q", r.status, r.body, r.header.Get("Range"))
	}

	// A holder that died: its lease is never given back.
	if _, err := meta.AcquireUpload(context.Background(), "p/app", registrytest.SessionID(loc), "a dead process", time.Now().Add(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if r := do(t, one, call{method: "PATCH", path: loc, body: []byte("x")}); r.status != 503 {
		t.Errorf("while the dead holder's lease lasts: %d, want 503", r.status)
	}
	time.Sleep(400 * time.Millisecond)
	if r := do(t, one, call{method: "PATCH", path: loc, body: []byte("x")}); r.status != 202 || r.header.Get("Range") != "0-12" {
		t.Errorf("after it lapsed: %d %s Range %q", r.status, r.body, r.header.Get("Range"))
	}
}
