package memory

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// memfd is content in an anonymous in-memory file.
type memfd struct {
	f *os.File
	n int64
	// refs counts the driver's hold and the open readers that read f
	// itself; f is closed when the last goes. mu also keeps a reader from
	// opening f by its descriptor number once f is closed, when the number
	// could name another file.
	mu   sync.Mutex
	refs int
}

// memfds counts the memfds open in the process. Descriptors are the
// process's, shared with its connections and its database: stored content
// may hold at most half of what the process may open, and beyond that new
// content is kept in process memory.
var memfds atomic.Int64

func newMemfd() (content, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return nil, fmt.Errorf("getrlimit: %w", err)
	}
	if memfds.Add(1) > int64(lim.Cur/2) {
		memfds.Add(-1)
		return nil, errors.New("memfds: half the process's file descriptors are in use for content")
	}
	fd, err := unix.MemfdCreate("berth-blob", unix.MFD_CLOEXEC)
	if err != nil {
		memfds.Add(-1)
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	return &memfd{f: os.NewFile(uintptr(fd), "memfd:berth-blob"), refs: 1}, nil
}

func (c *memfd) size() int64 { return c.n }

func (c *memfd) truncate(n int64) error {
	if n == c.n {
		return nil
	}
	if err := c.f.Truncate(n); err != nil {
		return err
	}
	c.n = n
	return nil
}

func (c *memfd) readFrom(r io.Reader) (int64, error) {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	// An offset writer hides *os.File's ReadFrom, so the bytes pass
	// through the buffer (where they are hashed) instead of a splice.
	n, err := io.CopyBuffer(io.NewOffsetWriter(c.f, c.n), r, *bp)
	c.n += n
	return n, err
}

// reader opens the file anew through /proc, so that each reader has its
// own offset and an *os.File that serving hands to sendfile. When it
// cannot (no descriptor to spare, no /proc), it reads f at offsets, and
// holds f open until it is closed.
func (c *memfd) reader() (io.ReadSeekCloser, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refs == 0 {
		return nil, errors.New("content released")
	}
	if f, err := os.Open("/proc/self/fd/" + strconv.Itoa(int(c.f.Fd()))); err == nil {
		return f, nil
	}
	c.refs++
	return &memfdReader{SectionReader: io.NewSectionReader(c.f, 0, c.n), c: c}, nil
}

// release drops the driver's hold; readers keep the content until they
// close.
func (c *memfd) release() { c.unref() }

func (c *memfd) unref() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refs == 0 {
		return
	}
	c.refs--
	if c.refs == 0 {
		c.f.Close()
		memfds.Add(-1)
	}
}

// memfdReader reads a memfd at offsets.
type memfdReader struct {
	*io.SectionReader
	c    *memfd
	once sync.Once
}

func (r *memfdReader) Close() error {
	r.once.Do(r.c.unref)
	return nil
}
