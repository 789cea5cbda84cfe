package registry_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/registry/registrytest"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/store"
)

// gatedBoot is otherBoot whose read-backs wait for the test: the first
// Read of an upload tells reading, then waits for proceed.
type gatedBoot struct {
	otherBoot
	reading, proceed chan struct{}
}

func (g gatedBoot) ReadUpload(ctx context.Context, u storage.Upload) (io.ReadCloser, error) {
	rc, err := g.otherBoot.ReadUpload(ctx, u)
	if err != nil {
		return nil, err
	}
	return &gatedReader{ReadCloser: rc, g: g}, nil
}

type gatedReader struct {
	io.ReadCloser
	g       gatedBoot
	started bool
}

func (r *gatedReader) Read(p []byte) (int, error) {
	if !r.started {
		r.started = true
		r.g.reading <- struct{}{}
		<-r.g.proceed
	}
	return r.ReadCloser.Read(p)
}

// A session read back after a machine restart is recorded in the new
// epoch even when the client that caused the read-back hung up: otherwise
// a few-byte request (a PUT without a body, whose context net/http cancels
// at once on a hang-up) would cost a read and hash of the whole session,
// as often as the client likes.
func TestReadBackIsRecordedWhenTheClientHangsUp(t *testing.T) {
	meta, blobs, _ := newParts(t)
	before := serveRegistry(t, registry.Options{Metadata: meta, Blobs: blobs})
	gate := gatedBoot{otherBoot{blobs}, make(chan struct{}), make(chan struct{})}
	after := serveRegistry(t, registry.Options{Metadata: meta, Blobs: gate})

	resp := send(t, "POST", before.URL+"/v2/p/app/blobs/uploads/", nil, nil)
	loc := resp.Header.Get("Location")
	chunk := []byte(strings.Repeat("x", 1<<20))
	if resp := send(t, "PATCH", before.URL+loc, chunk, nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH = %d", resp.StatusCode)
	}
	id := registrytest.SessionID(loc)

	// After the restart: a PUT that ends the upload, without a body (so
	// net/http cancels its context as soon as the client hangs up), whose
	// client hangs up while the server reads the session back.
	ctx, hangUp := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "PUT", registrytest.WithDigest(after.URL+loc, digest.FromBytes(chunk).String()), nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	select {
	case <-gate.reading:
	case <-time.After(10 * time.Second):
		t.Fatal("no read-back")
	}
	hangUp()
	<-done
	close(gate.proceed) // the read-back runs to its end: the bytes are intact

	// The server finishes the read-back and goes on: the bytes are intact,
	// so the blob is committed (the work is not thrown away for the next
	// request to repeat).
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := meta.BlobSize(context.Background(), store.Only(store.DefaultStorage), "p/app", digest.FromBytes(chunk)); err == nil {
			return
		}
		u, err := meta.Upload(context.Background(), "p/app", id)
		if err == nil && u.Epoch == (otherBoot{}).Epoch() {
			return // recorded in the new epoch: not read again either
		}
		if time.Now().After(deadline) {
			t.Fatalf("after an intact read-back the session is neither committed nor in the new epoch (%+v, %v): the next request reads it all again", u, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
