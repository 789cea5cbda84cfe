package registry_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/store"
)

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
	srv := httptest.NewServer(registry.New(registry.Options{Metadata: meta, Blobs: blobs, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))

	loc := send(t, "POST", srv.URL+"/v2/p/app/blobs/uploads/", nil, nil).Header.Get("Location")
	content := []byte("a blob pushed into a project that is being deleted")
	dgst := digest.FromBytes(content)

	// The body waits for 100 Continue, which the server sends when the
	// handler, past its session check, starts reading it.
	pr, pw := io.Pipe()
	reading := make(chan struct{})
	trace := &httptrace.ClientTrace{Got100Continue: func() { close(reading) }}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), "PUT", srv.URL+loc+"?digest="+dgst.String(), pr)
	req.ContentLength = int64(len(content))
	req.Header.Set("Expect", "100-continue")
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ExpectContinueTimeout = time.Minute
	defer tr.CloseIdleConnections()
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
	if _, err := meta.DeleteProjectAndRepositories(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	pw.Write(content)
	pw.Close()
	if code := <-answer; code != http.StatusNotFound {
		t.Errorf("PUT finished after its project was deleted = %d, want 404 BLOB_UPLOAD_UNKNOWN", code)
	}
	if exists, err := meta.RepositoryExists(ctx, "p/app"); exists || err != nil {
		t.Errorf("the deleted project's repository came back: %v, %v", exists, err)
	}
	if err := meta.CreateProject(ctx, store.Project{Name: "p", Creator: "victim"}); err != nil {
		t.Fatal(err)
	}
	if size, err := meta.BlobSize(ctx, "p/app", dgst); err == nil {
		t.Errorf("the next project named p holds the blob (%d bytes)", size)
	}
}
