package registry_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/registry/registrytest"
	"github.com/berth-registry/berth/internal/store"
)

// heldRequest starts a request whose body waits for 100 Continue, which
// the server sends when the handler, past its session check, starts
// reading it. It returns once the handler reads; send then delivers the
// body and returns the answer's status.
func heldRequest(t *testing.T, method, url string, size int) (send func(body []byte) int) {
	t.Helper()
	pr, pw := io.Pipe()
	reading := make(chan struct{})
	trace := &httptrace.ClientTrace{Got100Continue: func() { close(reading) }}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), method, url, pr)
	req.ContentLength = int64(size)
	req.Header.Set("Expect", "100-continue")
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ExpectContinueTimeout = time.Minute
	t.Cleanup(tr.CloseIdleConnections)
	answer := make(chan int, 1)
	go func() {
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			answer <- 0
			return
		}
		resp.Body.Close()
		answer <- resp.StatusCode
	}()
	select {
	case <-reading:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler never read the body")
	}
	return func(body []byte) int {
		pw.Write(body)
		pw.Close()
		return <-answer
	}
}

// A PUT whose last chunk is still arriving when its project is deleted
// (bodies may take as long as a live client needs) must not bring the
// repository back: the project's sessions ended with it, and whoever
// creates a project of that name next inherits nothing.
func TestPutFinishingAfterProjectDeletion(t *testing.T) {
	ctx := context.Background()
	meta, blobs, _ := newParts(t)
	if err := meta.CreateProject(ctx, store.Project{Name: "p", Creator: "mallory"}); err != nil {
		t.Fatal(err)
	}
	srv := serveRegistry(t, registry.Options{Metadata: meta, Blobs: blobs})
	loc := send(t, "POST", srv.URL+"/v2/p/app/blobs/uploads/", nil, nil).Header.Get("Location")
	content := []byte("a blob pushed into a project that is being deleted")
	dgst := digest.FromBytes(content)

	finish := heldRequest(t, "PUT", registrytest.WithDigest(srv.URL+loc, dgst.String()), len(content))
	if _, err := meta.DeleteProjectAndRepositories(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if code := finish(content); code != http.StatusNotFound {
		t.Errorf("PUT finished after its project was deleted = %d, want 404 BLOB_UPLOAD_UNKNOWN", code)
	}
	if exists, err := meta.RepositoryExists(ctx, "p/app"); exists || err != nil {
		t.Errorf("the deleted project's repository came back: %v, %v", exists, err)
	}
	if err := meta.CreateProject(ctx, store.Project{Name: "p", Creator: "victim"}); err != nil {
		t.Fatal(err)
	}
	if size, err := meta.BlobSize(ctx, store.Only(store.DefaultStorage), "p/app", dgst); err == nil {
		t.Errorf("the next project named p holds the blob (%d bytes)", size)
	}
}

// A chunk whose session ends while it arrives (cancelled, expired, its
// project deleted) leaves no bytes behind in the driver.
func TestChunkOfAnEndedSessionIsDiscarded(t *testing.T) {
	ctx := context.Background()
	meta, blobs, dir := newParts(t)
	srv := serveRegistry(t, registry.Options{Metadata: meta, Blobs: blobs})
	loc := send(t, "POST", srv.URL+"/v2/p/app/blobs/uploads/", nil, nil).Header.Get("Location")
	id := registrytest.SessionID(loc)
	chunk := []byte("bytes of a session that ends meanwhile")
	finish := heldRequest(t, "PATCH", srv.URL+loc, len(chunk))
	if err := meta.DeleteUpload(ctx, id); err != nil {
		t.Fatal(err)
	}
	if code := finish(chunk); code != http.StatusNotFound {
		t.Errorf("PATCH of an ended session = %d, want 404", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "storage", "uploads", id)); !os.IsNotExist(err) {
		t.Errorf("the ended session's bytes are left in the driver: %v", err)
	}
}
