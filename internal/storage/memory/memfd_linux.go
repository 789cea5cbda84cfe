package memory

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// memfd is content in an anonymous in-memory file.
type memfd struct {
	f *os.File
	n int64
	// mu keeps release from closing f while a reader opens it by its
	// descriptor number, which could otherwise name another file by then.
	mu       sync.RWMutex
	released bool
}

func newMemfd() (content, error) {
	fd, err := unix.MemfdCreate("berth-blob", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	return &memfd{f: os.NewFile(uintptr(fd), "memfd:berth-blob")}, nil
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
// own offset and an *os.File that serving hands to sendfile. Without /proc
// it reads at offsets instead.
func (c *memfd) reader() (io.ReadSeekCloser, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.released {
		return nil, errors.New("content released")
	}
	if f, err := os.Open("/proc/self/fd/" + strconv.Itoa(int(c.f.Fd()))); err == nil {
		return f, nil
	}
	return nopCloser{io.NewSectionReader(c.f, 0, c.n)}, nil
}

// release closes the file; readers opened anew keep the memory until they
// close.
func (c *memfd) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.released {
		c.released = true
		c.f.Close()
	}
}

type nopCloser struct{ io.ReadSeeker }

func (nopCloser) Close() error { return nil }
