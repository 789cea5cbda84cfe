// Package memory is the blob driver that keeps everything in process
// memory: the reference registry's emptyDir storage, where nothing survives
// a restart.
package memory

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
)

// Driver holds blobs and uploads in maps.
type Driver struct {
	mu      sync.RWMutex
	blobs   map[digest.Digest][]byte
	uploads map[string][]byte
}

// New returns an empty driver.
func New(context.Context, storage.Options) (storage.Driver, error) { return NewDriver(), nil }

// NewDriver returns an empty driver.
func NewDriver() *Driver {
	return &Driver{blobs: map[digest.Digest][]byte{}, uploads: map[string][]byte{}}
}

type readSeekNopCloser struct{ *bytes.Reader }

func (readSeekNopCloser) Close() error { return nil }

// Open implements storage.Provider.
func (d *Driver) Open(_ context.Context, dgst digest.Digest) (io.ReadSeekCloser, error) {
	d.mu.RLock()
	b, ok := d.blobs[dgst]
	d.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("open blob %s: %w", dgst, errdefs.ErrNotFound)
	}
	return readSeekNopCloser{bytes.NewReader(b)}, nil // committed slices are never written again
}

// Append implements storage.Ingester.
func (d *Driver) Append(_ context.Context, id string, offset int64, r io.Reader) (int64, error) {
	d.mu.RLock()
	cur := d.uploads[id]
	d.mu.RUnlock()
	if int64(len(cur)) < offset {
		return 0, fmt.Errorf("upload %s holds %d bytes, expected %d: %w", id, len(cur), offset, errdefs.ErrInvalidArgument)
	}
	buf := bytes.NewBuffer(cur[:offset]) // an upload has one writer at a time (the registry locks it)
	n, err := buf.ReadFrom(r)
	d.mu.Lock()
	d.uploads[id] = buf.Bytes()
	d.mu.Unlock()
	if err != nil {
		return n, fmt.Errorf("write upload %s: %w", id, err)
	}
	return n, nil
}

// ReadUpload implements storage.Ingester.
func (d *Driver) ReadUpload(_ context.Context, id string) (io.ReadCloser, error) {
	d.mu.RLock()
	b := d.uploads[id]
	d.mu.RUnlock()
	return io.NopCloser(bytes.NewReader(b)), nil
}

// Commit implements storage.Ingester.
func (d *Driver) Commit(_ context.Context, id string, dgst digest.Digest, size int64) error {
	if err := dgst.Validate(); err != nil {
		return fmt.Errorf("commit %q: %w: %v", dgst, errdefs.ErrInvalidArgument, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.blobs[dgst]; ok {
		delete(d.uploads, id) // content-addressed: the bytes are already here
		return nil
	}
	b := d.uploads[id]
	if int64(len(b)) != size {
		return fmt.Errorf("upload %s holds %d bytes, blob %s declares %d: %w", id, len(b), dgst, size, errdefs.ErrSizeMismatch)
	}
	delete(d.uploads, id)
	d.blobs[dgst] = b
	return nil
}

// Abort implements storage.Ingester.
func (d *Driver) Abort(_ context.Context, id string) error {
	d.mu.Lock()
	delete(d.uploads, id)
	d.mu.Unlock()
	return nil
}

// Delete implements storage.Deleter.
func (d *Driver) Delete(_ context.Context, dgst digest.Digest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.blobs[dgst]; !ok {
		return fmt.Errorf("delete blob %s: %w", dgst, errdefs.ErrNotFound)
	}
	delete(d.blobs, dgst)
	return nil
}
