// Package memory is the blob driver that keeps everything in memory: the
// reference registry's emptyDir storage, where nothing survives a restart.
//
// On Linux each blob and upload is an anonymous in-memory file (memfd):
// bytes reach it the way they reach the filesystem driver's page cache, by
// write(2), and leave it by sendfile(2). Kept in the process's own memory
// instead, every new page cost a page fault on first touch, which made
// this driver slower than the one that writes to disk. A memfd is a file
// descriptor, and those are the process's to share with its connections
// and its database: content holds at most half of them. Beyond that, and
// where memfds are not available (another OS), content is kept in
// segments of process memory, each byte copied once.
package memory

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
)

// content is one blob's or upload's bytes. An upload has one writer at a
// time (the registry locks it); committed content is only read.
type content interface {
	size() int64
	// truncate drops bytes past n (n ≤ size).
	truncate(n int64) error
	// readFrom appends r's bytes.
	readFrom(r io.Reader) (int64, error)
	// reader returns an independent reader of the content.
	reader() (io.ReadSeekCloser, error)
	// release frees the content; readers already open keep working.
	release()
}

// Driver holds blobs and uploads in maps.
type Driver struct {
	mu      sync.RWMutex
	blobs   map[digest.Digest]content
	uploads map[string]content
	// charged is the size each upload was last counted in used at.
	charged map[string]int64
	// newContent makes an upload's content.
	newContent func() content

	// limit caps used (0: no cap). used is the bytes held: blobs, and
	// uploads as last counted, plus what appends in flight have
	// reserved, so that concurrent appends together stay under limit.
	limit int64
	used  atomic.Int64
}

// New returns an empty driver holding at most opts.SizeLimit bytes.
func New(_ context.Context, opts storage.Options) (storage.Driver, error) {
	d := NewDriver()
	d.limit = max(opts.SizeLimit, 0)
	return d, nil
}

// NewDriver returns an empty driver with no size limit.
func NewDriver() *Driver {
	return &Driver{blobs: map[digest.Digest]content{}, uploads: map[string]content{}, charged: map[string]int64{}, newContent: memfdOrSegments}
}

// Usage reports the bytes held (blobs and uploads) and the limit (0:
// none).
func (d *Driver) Usage() (used, limit int64) { return d.used.Load(), d.limit }

// ErrFull is what an append past the size limit fails with: the driver's
// "no space left on device".
var ErrFull = syscall.ENOSPC

// quotaReader reserves in d.used each chunk it reads, and fails with
// ErrFull, reserving nothing, when the chunk would take d past its limit.
type quotaReader struct {
	r        io.Reader
	d        *Driver
	reserved int64
}

func (q *quotaReader) Read(p []byte) (int, error) {
	n, err := q.r.Read(p)
	if n > 0 {
		if used := q.d.used.Add(int64(n)); used > q.d.limit {
			q.d.used.Add(-int64(n))
			return 0, fmt.Errorf("emptyDir storage holds %d bytes of its %d-byte limit (berth serve --emptydir-size-limit): %w",
				used-int64(n), q.d.limit, ErrFull)
		}
		q.reserved += int64(n)
	}
	return n, err
}

// memfdOrSegments returns empty content: a memfd where there can be one,
// else segments.
func memfdOrSegments() content {
	if c, err := newMemfd(); err == nil {
		return c
	}
	return &segments{}
}

// Open implements storage.Provider.
func (d *Driver) Open(ctx context.Context, dgst digest.Digest, offset, length int64) (io.ReadCloser, error) {
	return storage.OpenSection(ctx, d, dgst, offset, length)
}

// OpenSeeker implements storage.Seeker: a memfd's *os.File where there is
// one, for sendfile.
func (d *Driver) OpenSeeker(_ context.Context, dgst digest.Digest) (io.ReadSeekCloser, error) {
	d.mu.RLock()
	c, ok := d.blobs[dgst]
	d.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("open blob %s: %w", dgst, errdefs.ErrNotFound)
	}
	rc, err := c.reader()
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", dgst, err)
	}
	return rc, nil
}

// Append implements storage.Ingester. The driver keeps no state about
// an upload: its content holds all it needs.
func (d *Driver) Append(_ context.Context, u storage.Upload, offset int64, r io.Reader) (int64, []byte, error) {
	id := u.ID
	d.mu.Lock()
	c := d.uploads[id]
	if c == nil {
		c = d.newContent()
		d.uploads[id] = c
	}
	d.mu.Unlock()
	if c.size() < offset {
		return 0, nil, fmt.Errorf("upload %s holds %d bytes, expected %d: %w", id, c.size(), offset, errdefs.ErrInvalidArgument)
	}
	err := c.truncate(offset)
	// Counted at its size now, before the new bytes reserve their room:
	// the bytes dropped free theirs first.
	d.settle(id, c, 0)
	if err != nil {
		return 0, nil, fmt.Errorf("truncate upload %s: %w", id, err)
	}
	q := &quotaReader{r: r, d: d}
	if d.limit > 0 {
		r = q
	}
	n, err := c.readFrom(r)
	if errors.Is(err, ErrFull) {
		// A chunk that does not fit is not kept, not even its part that
		// did: what the session holds stays what it recorded, and the
		// room goes back to everyone else at once.
		if terr := c.truncate(offset); terr != nil {
			err = errors.Join(err, terr)
		}
		n = 0
	}
	d.settle(id, c, q.reserved)
	if err != nil {
		return n, nil, fmt.Errorf("write upload %s: %w", id, err)
	}
	return n, nil, nil
}

// settle counts upload id at the size of its content c, in place of what
// it was counted at and of what its append reserved; an upload ended
// meanwhile (its charge went with it) gives back only the reservation.
func (d *Driver) settle(id string, c content, reserved int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.uploads[id] != c {
		d.used.Add(-reserved)
		return
	}
	size := c.size()
	d.used.Add(size - d.charged[id] - reserved)
	d.charged[id] = size
}

// dropLocked forgets upload id's charge; its content is about to become
// a blob (keep) or be released.
func (d *Driver) dropLocked(id string, keep bool) {
	if !keep {
		d.used.Add(-d.charged[id])
	}
	delete(d.charged, id)
	delete(d.uploads, id)
}

// ReadUpload implements storage.Ingester.
func (d *Driver) ReadUpload(_ context.Context, u storage.Upload) (io.ReadCloser, error) {
	id := u.ID
	d.mu.RLock()
	c := d.uploads[id]
	d.mu.RUnlock()
	if c == nil {
		c = &segments{}
	}
	rc, err := c.reader()
	if err != nil {
		return nil, fmt.Errorf("read upload %s: %w", id, err)
	}
	return rc, nil
}

// Commit implements storage.Ingester.
func (d *Driver) Commit(_ context.Context, u storage.Upload, dgst digest.Digest, size int64) error {
	id := u.ID
	if err := dgst.Validate(); err != nil {
		return fmt.Errorf("commit %q: %w: %v", dgst, errdefs.ErrInvalidArgument, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.uploads[id]
	if _, ok := d.blobs[dgst]; ok {
		// Content-addressed: the bytes are already here.
		d.dropLocked(id, false)
		if c != nil {
			c.release()
		}
		return nil
	}
	if c == nil {
		c = &segments{}
	}
	if c.size() != size {
		return fmt.Errorf("upload %s holds %d bytes, blob %s declares %d: %w", id, c.size(), dgst, size, errdefs.ErrSizeMismatch)
	}
	d.dropLocked(id, true)
	d.blobs[dgst] = c
	return nil
}

// Abort implements storage.Ingester.
func (d *Driver) Abort(_ context.Context, u storage.Upload) error {
	id := u.ID
	d.mu.Lock()
	c := d.uploads[id]
	d.dropLocked(id, false)
	d.mu.Unlock()
	if c != nil {
		c.release()
	}
	return nil
}

// Delete implements storage.Deleter.
func (d *Driver) Delete(_ context.Context, dgst digest.Digest) error {
	d.mu.Lock()
	c, ok := d.blobs[dgst]
	delete(d.blobs, dgst)
	if ok {
		d.used.Add(-c.size())
	}
	d.mu.Unlock()
	if !ok {
		return fmt.Errorf("delete blob %s: %w", dgst, errdefs.ErrNotFound)
	}
	c.release()
	return nil
}

// Close releases every blob and upload: the emptyDir is removed. Readers
// already open keep working.
func (d *Driver) Close() error {
	d.mu.Lock()
	all := make([]content, 0, len(d.blobs)+len(d.uploads))
	for _, c := range d.blobs {
		all = append(all, c)
	}
	for _, c := range d.uploads {
		all = append(all, c)
	}
	d.blobs, d.uploads, d.charged = map[digest.Digest]content{}, map[string]content{}, map[string]int64{}
	d.used.Store(0)
	d.mu.Unlock()
	for _, c := range all {
		c.release()
	}
	return nil
}

// copyBuffers are what content is read through: big enough for few reads,
// small enough to stay in the CPU's cache, where the registry hashes the
// bytes as they pass.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// Health implements storage.HealthChecker: memory is there while the
// process is.
func (d *Driver) Health(context.Context) error { return nil }
