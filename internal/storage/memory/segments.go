package memory

import (
	"errors"
	"fmt"
	"io"

	"github.com/berth-registry/berth/internal/errdefs"
)

// Segments start small, so a small blob (a config) costs little, and
// double up to maxSegment, so a large one needs few.
const (
	firstSegment = 16 << 10
	maxSegment   = 4 << 20
)

// segments is content in process memory, in segments filled in place and
// never moved: every segment but the last is full.
type segments struct {
	segs [][]byte
	n    int64
}

func (c *segments) size() int64 { return c.n }

func (c *segments) truncate(n int64) error {
	var kept int64
	for i, s := range c.segs {
		if kept+int64(len(s)) >= n {
			c.segs[i] = s[:n-kept]
			clear(c.segs[i+1:])
			c.segs = c.segs[:i+1]
			c.n = n
			return nil
		}
		kept += int64(len(s))
	}
	return nil
}

// readFrom reads through a buffer that stays in cache and copies to the
// segments from there: read straight into a new segment, every byte went
// to memory cold and came back from it to be hashed.
func (c *segments) readFrom(r io.Reader) (int64, error) {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	var n int64
	for {
		m, err := io.ReadFull(r, *bp)
		c.write((*bp)[:m])
		n += int64(m)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// write appends p, filling the last segment before adding one.
func (c *segments) write(p []byte) {
	for len(p) > 0 {
		last := len(c.segs) - 1
		if last < 0 || len(c.segs[last]) == cap(c.segs[last]) {
			size := firstSegment
			if last >= 0 {
				size = min(2*cap(c.segs[last]), maxSegment)
			}
			seg := make([]byte, 0, size)
			populate(seg)
			c.segs = append(c.segs, seg)
			last++
		}
		seg := c.segs[last]
		k := copy(seg[len(seg):cap(seg)], p)
		c.segs[last] = seg[:len(seg)+k]
		c.n += int64(k)
		p = p[k:]
	}
}

func (c *segments) reader() (io.ReadSeekCloser, error) { return &segmentReader{c: c}, nil }

func (c *segments) release() {}

// segmentReader reads and seeks over segments.
type segmentReader struct {
	c   *segments
	off int64
}

func (r *segmentReader) Read(p []byte) (int, error) {
	if r.off >= r.c.n {
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
		offset += r.c.n
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
