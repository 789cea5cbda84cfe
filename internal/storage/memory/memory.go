// Package memory is the blob driver that keeps everything in process
// memory: the reference registry's emptyDir storage, where nothing survives
// a restart.
//
// Content is kept in segments that are filled in place and never moved: a
// byte is copied once, from the request into its segment, and served from
// there. (A growing single slice copied every byte about twice more as it
// doubled, and left as much garbage behind, which made this driver slower
// than the filesystem's.)
package memory

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
)

// Segments start small, so a small blob (a config) costs little, and
// double up to maxSegment, so a large one needs few.
const (
	firstSegment = 16 << 10
	maxSegment   = 4 << 20
)

// Driver holds blobs and uploads in maps.
type Driver struct {
	mu      sync.RWMutex
	blobs   map[digest.Digest]*content
	uploads map[string]*content
}

// New returns an empty driver.
func New(context.Context, storage.Options) (storage.Driver, error) { return NewDriver(), nil }

// NewDriver returns an empty driver.
func NewDriver() *Driver {
	return &Driver{blobs: map[digest.Digest]*content{}, uploads: map[string]*content{}}
}

// content is bytes in segments: every segment but the last is full.
type content struct {
	segs [][]byte
	size int64
}

// truncate drops bytes past n.
func (c *content) truncate(n int64) {
	var kept int64
	for i, s := range c.segs {
		if kept+int64(len(s)) >= n {
			c.segs[i] = s[:n-kept]
			clear(c.segs[i+1:])
			c.segs = c.segs[:i+1]
			c.size = n
			return
		}
		kept += int64(len(s))
	}
}

// readFrom appends r's bytes, filling the last segment before adding one.
func (c *content) readFrom(r io.Reader) (int64, error) {
	var n int64
	for {
		last := len(c.segs) - 1
		if last < 0 || len(c.segs[last]) == cap(c.segs[last]) {
			size := firstSegment
			if last >= 0 {
				size = min(2*cap(c.segs[last]), maxSegment)
			}
			c.segs = append(c.segs, make([]byte, 0, size))
			last++
		}
		seg := c.segs[last]
		m, err := r.Read(seg[len(seg):cap(seg)])
		c.segs[last] = seg[:len(seg)+m]
		c.size += int64(m)
		n += int64(m)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// reader serves c; committed content never changes, so readers share it.
func (c *content) reader() *segmentReader { return &segmentReader{c: c} }

// segmentReader reads and seeks over content.
type segmentReader struct {
	c   *content
	off int64
}

func (r *segmentReader) Read(p []byte) (int, error) {
	if r.off >= r.c.size {
		return 0, io.EOF
	}
	var start int64
	for _, s := range r.c.segs {
		end := start + int64(len(s))
		if r.off < end {
			n := copy(p, s[r.off-start:])
			r.off += int64(n)
			return n, nil
		}
		start = end
	}
	return 0, io.EOF
}

func (r *segmentReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.c.size
	default:
		return 0, fmt.Errorf("seek: invalid whence %d", whence)
	}
	if offset < 0 {
		return 0, fmt.Errorf("seek to %d: %w", offset, errdefs.ErrInvalidArgument)
	}
	r.off = offset
	return offset, nil
}

func (*segmentReader) Close() error { return nil }

// Open implements storage.Provider.
func (d *Driver) Open(_ context.Context, dgst digest.Digest) (io.ReadSeekCloser, error) {
	d.mu.RLock()
	c, ok := d.blobs[dgst]
	d.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("open blob %s: %w", dgst, errdefs.ErrNotFound)
	}
	return c.reader(), nil
}

// Append implements storage.Ingester. An upload has one writer at a time
// (the registry locks it), so its content is written outside the lock.
func (d *Driver) Append(_ context.Context, id string, offset int64, r io.Reader) (int64, error) {
	d.mu.Lock()
	c := d.uploads[id]
	if c == nil {
		c = &content{}
		d.uploads[id] = c
	}
	d.mu.Unlock()
	if c.size < offset {
		return 0, fmt.Errorf("upload %s holds %d bytes, expected %d: %w", id, c.size, offset, errdefs.ErrInvalidArgument)
	}
	c.truncate(offset)
	n, err := c.readFrom(r)
	if err != nil {
		return n, fmt.Errorf("write upload %s: %w", id, err)
	}
	return n, nil
}

// ReadUpload implements storage.Ingester.
func (d *Driver) ReadUpload(_ context.Context, id string) (io.ReadCloser, error) {
	d.mu.RLock()
	c := d.uploads[id]
	d.mu.RUnlock()
	if c == nil {
		c = &content{}
	}
	return c.reader(), nil
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
	c := d.uploads[id]
	if c == nil {
		c = &content{}
	}
	if c.size != size {
		return fmt.Errorf("upload %s holds %d bytes, blob %s declares %d: %w", id, c.size, dgst, size, errdefs.ErrSizeMismatch)
	}
	delete(d.uploads, id)
	d.blobs[dgst] = c
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
