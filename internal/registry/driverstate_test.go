package registry_test

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/registry/registrytest"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/memory"
)

// statefulDriver keeps, as object storage does, state about each upload
// that it hands to the caller and expects back: "bytes=N", the size it
// was last told of. It refuses a call whose state does not match what it
// holds, and records what Commit and Abort were given.
type statefulDriver struct {
	*memory.Driver
	mu        sync.Mutex
	committed map[string]string // upload ID → the state Commit got
	aborted   map[string]string
}

func stateOf(n int64) []byte { return []byte("bytes=" + strconv.FormatInt(n, 10)) }

func (d *statefulDriver) Append(ctx context.Context, u storage.Upload, offset int64, r io.Reader) (int64, []byte, error) {
	if offset > 0 && string(u.State) != string(stateOf(offset)) {
		return 0, nil, fmt.Errorf("append at %d with state %q: the state of another size", offset, u.State)
	}
	n, _, err := d.Driver.Append(ctx, u, offset, r)
	return n, stateOf(offset + n), err
}

func (d *statefulDriver) Commit(ctx context.Context, u storage.Upload, dgst digest.Digest, size int64) error {
	d.mu.Lock()
	d.committed[u.ID] = string(u.State)
	d.mu.Unlock()
	if string(u.State) != string(stateOf(size)) {
		return fmt.Errorf("commit of %d bytes with state %q", size, u.State)
	}
	return d.Driver.Commit(ctx, u, dgst, size)
}

func (d *statefulDriver) Abort(ctx context.Context, u storage.Upload) error {
	d.mu.Lock()
	d.aborted[u.ID] = string(u.State)
	d.mu.Unlock()
	return d.Driver.Abort(ctx, u)
}

// The state a driver returns from each append is recorded with the size
// it goes with and given back with every later call on the session, by
// any instance (it comes from the store): chunks, the closing PUT's last
// chunk and commit, and a cancel all see the state of the size recorded.
func TestDriverStateTravelsWithTheSession(t *testing.T) {
	meta, _, _ := newParts(t)
	d := &statefulDriver{Driver: memory.NewDriver(), committed: map[string]string{}, aborted: map[string]string{}}
	one := serveRegistry(t, registry.Options{Metadata: meta, Blobs: d})
	other := serveRegistry(t, registry.Options{Metadata: meta, Blobs: d})

	start := do(t, one, call{method: "POST", path: "/v2/p/app/blobs/uploads/"})
	loc := start.header.Get("Location")
	for i, srv := range []*httptest.Server{one, other} {
		if r := do(t, srv, call{method: "PATCH", path: loc, body: []byte(strings.Repeat("x", 10))}); r.status != 202 {
			t.Fatalf("chunk %d: %d %s", i, r.status, r.body)
		}
	}
	content := strings.Repeat("x", 25)
	if r := do(t, one, call{method: "PUT", path: registrytest.WithDigest(loc, digest.FromString(content).String()), body: []byte(content[20:])}); r.status != 201 {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	if got := d.committed[registrytest.SessionID(loc)]; got != "bytes=25" {
		t.Errorf("Commit got state %q, want bytes=25", got)
	}

	cancel := do(t, other, call{method: "POST", path: "/v2/p/app/blobs/uploads/"}).header.Get("Location")
	if r := do(t, one, call{method: "PATCH", path: cancel, body: []byte("1234567")}); r.status != 202 {
		t.Fatalf("chunk: %d %s", r.status, r.body)
	}
	if r := do(t, other, call{method: "DELETE", path: cancel}); r.status != 204 {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	if got := d.aborted[registrytest.SessionID(cancel)]; got != "bytes=7" {
		t.Errorf("Abort got state %q, want bytes=7", got)
	}
}
