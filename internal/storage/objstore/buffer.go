package objstore

import (
	"fmt"
	"io"
	"os"

	"github.com/berth-registry/berth/internal/errdefs"
)

// Buffer is a part's (a block's, a segment's) bytes, buffered so that a
// backend's SDK can sign them, learn their length and send them again on
// a retry.
type Buffer interface {
	io.ReadSeeker
	Len() int64
	Close() error
}

// MemoryLimit is the largest buffer held in memory; larger ones (an S3
// part size doubled past it for a very large blob) spool to a file.
const MemoryLimit = 64 << 20

// chunkSize is the unit a buffer's memory is taken in as its bytes
// arrive: a slow client holds memory for what it sent, not for a whole
// part, and no byte is copied twice to grow a buffer.
const chunkSize = 1 << 20

// Fill reads up to size bytes of src into a buffer, and returns it, how
// many bytes it holds and the read error (io.EOF or io.ErrUnexpectedEOF
// when src ended first). A buffer above MemoryLimit is an unlinked file
// in spoolDir.
func Fill(src io.Reader, size int64, spoolDir string) (Buffer, int64, error) {
	if size > MemoryLimit {
		f, err := os.CreateTemp(spoolDir, "berth-part-*")
		if err != nil {
			return &memBuffer{}, 0, fmt.Errorf("spool a part: %w", err)
		}
		os.Remove(f.Name()) // the open file lives on until closed
		n, err := io.Copy(f, io.LimitReader(src, size))
		if err == nil && n < size {
			err = io.EOF
		}
		if _, serr := f.Seek(0, io.SeekStart); serr != nil && err == nil {
			err = serr
		}
		return fileBuffer{File: f, n: n}, n, err
	}
	p := &memBuffer{}
	for p.size < size {
		// Fresh memory, never pooled: the HTTP transport may still read a
		// body after its request was answered.
		c := make([]byte, min(chunkSize, size-p.size))
		m, err := io.ReadFull(src, c)
		if m > 0 {
			p.chunks = append(p.chunks, c[:m])
			p.size += int64(m)
		}
		if err != nil {
			return p, p.size, err
		}
	}
	return p, p.size, nil
}

// memBuffer is a buffer in memory, in chunks.
type memBuffer struct {
	chunks [][]byte
	size   int64
	off    int64
}

func (p *memBuffer) Read(b []byte) (int, error) {
	if p.off >= p.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(b) && p.off < p.size {
		c := p.chunks[p.off/chunkSize]
		m := copy(b[n:], c[p.off%chunkSize:])
		n += m
		p.off += int64(m)
	}
	return n, nil
}

func (p *memBuffer) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		offset += p.off
	case io.SeekEnd:
		offset += p.size
	}
	if offset < 0 {
		return 0, fmt.Errorf("seek to %d: %w", offset, errdefs.ErrInvalidArgument)
	}
	p.off = offset
	return offset, nil
}

func (p *memBuffer) Len() int64 { return p.size }

func (p *memBuffer) Close() error { return nil }

type fileBuffer struct {
	*os.File
	n int64
}

func (p fileBuffer) Len() int64 { return p.n }
