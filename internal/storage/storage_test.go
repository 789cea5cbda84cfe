package storage_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sync/atomic"
	"testing"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/opencontainers/go-digest"
)

type s3Like struct {
	Bucket       string `json:"bucket"`
	ChunkSizeMiB int    `json:"chunkSizeMiB"`
}

func TestDecodeSettings(t *testing.T) {
	got, err := storage.DecodeSettings[s3Like](storage.Options{Settings: []byte(`{"bucket":"b","chunkSizeMiB":16}`)})
	if err != nil || got != (s3Like{Bucket: "b", ChunkSizeMiB: 16}) {
		t.Errorf("decode: %+v, %v", got, err)
	}
	if _, err := storage.DecodeSettings[s3Like](storage.Options{Settings: []byte(`{"bucket":"b","chunksizemib":16,"unknown":1}`)}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("an unknown field: %v, want ErrInvalidArgument", err)
	}
	if got, err := storage.DecodeSettings[s3Like](storage.Options{}); err != nil || got != (s3Like{}) {
		t.Errorf("no settings: %+v, %v", got, err)
	}
}

// countingProvider serves one blob of content through ranged opens,
// counting the opens and the closes.
type countingProvider struct {
	content       []byte
	opens, closes atomic.Int64
}

func (c *countingProvider) Open(_ context.Context, _ digest.Digest, offset, length int64) (io.ReadCloser, error) {
	c.opens.Add(1)
	rc, err := storage.Section(nopCloser{bytes.NewReader(c.content)}, offset, length)
	if err != nil {
		return nil, err
	}
	return closeCounter{rc, &c.closes}, nil
}

type nopCloser struct{ io.ReadSeeker }

func (nopCloser) Close() error { return nil }

type closeCounter struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c closeCounter) Close() error { c.n.Add(1); return c.ReadCloser.Close() }

// A reader of ranged opens, once closed, opens nothing more (net/http can
// read a multi-range answer's parts after the handler closed it), and
// every open it made is closed.
func TestRangeReaderOpensNothingAfterClose(t *testing.T) {
	p := &countingProvider{content: []byte("0123456789")}
	rc, err := storage.OpenReadSeeker(context.Background(), p, digest.FromString("x"), 10, 4)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2)
	if _, err := io.ReadFull(rc, b); err != nil || string(b) != "45" {
		t.Fatalf("first read: %q, %v", b, err)
	}
	if _, err := rc.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := rc.Read(b); n != 0 || !errors.Is(err, os.ErrClosed) {
		t.Errorf("read after close: %d, %v; want os.ErrClosed", n, err)
	}
	if p.opens.Load() != 1 || p.closes.Load() != 1 {
		t.Errorf("%d opens, %d closes; want 1 and 1", p.opens.Load(), p.closes.Load())
	}
}
