package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
)

// Section is Open for a Seeker: length bytes of content from offset on
// (to the end when length < 0), read from the seekable handle rsc, which
// it takes over (closing the result closes it). An offset past the end
// is errdefs.ErrInvalidArgument.
func Section(rsc io.ReadSeekCloser, offset, length int64) (io.ReadCloser, error) {
	size, err := rsc.Seek(0, io.SeekEnd)
	if err == nil && offset > size {
		err = fmt.Errorf("offset %d past the end (%d bytes): %w", offset, size, errdefs.ErrInvalidArgument)
	}
	if err == nil && offset < 0 {
		err = fmt.Errorf("offset %d: %w", offset, errdefs.ErrInvalidArgument)
	}
	if err == nil {
		_, err = rsc.Seek(offset, io.SeekStart)
	}
	if err != nil {
		rsc.Close()
		return nil, err
	}
	if length < 0 {
		return rsc, nil
	}
	return section{Reader: io.LimitReader(rsc, length), Closer: rsc}, nil
}

// OpenSection is Open of a Seeker: length bytes of dgst from offset on,
// read from the handle OpenSeeker returns.
func OpenSection(ctx context.Context, s Seeker, dgst digest.Digest, offset, length int64) (io.ReadCloser, error) {
	rsc, err := s.OpenSeeker(ctx, dgst)
	if err != nil {
		return nil, err
	}
	return Section(rsc, offset, length)
}

type section struct {
	io.Reader
	io.Closer
}

// OpenReadSeeker returns dgst, which holds size bytes (as the metadata
// store says), as a seekable reader for serving ranges: the driver's own
// handle when it is a Seeker, else one that opens a ranged read of the
// driver where it is read, and again only where a seek moved away from
// the read in progress. That first read is opened now, at first (where
// the caller will read first), so that a blob missing from the storage
// shows here rather than at the first Read, after an answer has begun.
func OpenReadSeeker(ctx context.Context, p Provider, dgst digest.Digest, size, first int64) (io.ReadSeekCloser, error) {
	if s, ok := p.(Seeker); ok {
		return s.OpenSeeker(ctx, dgst)
	}
	r := &rangeReader{ctx: ctx, p: p, dgst: dgst, size: size, pos: min(max(first, 0), size)}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

// rangeReader reads a blob through ranged opens of its driver. Its
// methods may be called from several goroutines (net/http writes a
// multi-range answer from one of its own, which can outlive the handler
// that closes the reader): a lock orders them, and nothing opens after
// Close.
type rangeReader struct {
	ctx  context.Context
	p    Provider
	dgst digest.Digest
	size int64

	mu     sync.Mutex
	closed bool
	pos    int64         // where the next Read reads
	body   io.ReadCloser // the read in progress, if any
	at     int64         // where body reads next
}

func (r *rangeReader) open() error {
	if r.body != nil {
		r.body.Close()
		r.body = nil
	}
	body, err := r.p.Open(r.ctx, r.dgst, r.pos, -1)
	if err != nil {
		return err
	}
	r.body, r.at = body, r.pos
	return nil
}

func (r *rangeReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, os.ErrClosed
	}
	if r.pos >= r.size {
		return 0, io.EOF
	}
	if r.body == nil || r.at != r.pos {
		if err := r.open(); err != nil {
			return 0, err
		}
	}
	p = p[:min(int64(len(p)), r.size-r.pos)]
	n, err := r.body.Read(p)
	r.pos += int64(n)
	r.at += int64(n)
	if errors.Is(err, io.EOF) && r.pos < r.size {
		// The storage holds less than the store says: never pass that
		// off as the whole blob.
		err = fmt.Errorf("blob %s ended after %d of its %d bytes: %w", r.dgst, r.pos, r.size, io.ErrUnexpectedEOF)
	}
	return n, err
}

// Seek moves where the next Read reads; it opens nothing.
func (r *rangeReader) Seek(offset int64, whence int) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.pos
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, fmt.Errorf("seek: whence %d: %w", whence, errdefs.ErrInvalidArgument)
	}
	if offset < 0 {
		return 0, fmt.Errorf("seek to %d: %w", offset, errdefs.ErrInvalidArgument)
	}
	r.pos = offset
	return offset, nil
}

func (r *rangeReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.body == nil {
		return nil
	}
	err := r.body.Close()
	r.body = nil
	return err
}
