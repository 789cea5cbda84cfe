package memory_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/iotest"

	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/memory"
	"github.com/berth-registry/berth/internal/storage/storagetest"
	"github.com/opencontainers/go-digest"
)

func TestSuite(t *testing.T) {
	storagetest.Run(t, func(*testing.T) storage.Driver { return memory.NewDriver() })
}

// The suite passes under a limit it never reaches.
func TestSuiteWithALimit(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Driver {
		d, err := memory.New(context.Background(), storage.Options{SizeLimit: 64 << 20})
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}

// Usage counts what is held, through appends that rewrite unrecorded
// bytes, commits of content already held, aborts and deletes; an append
// past the limit fails with ENOSPC, keeps nothing of its chunk, and the
// space freed later can be used again.
func TestSizeLimit(t *testing.T) {
	ctx := context.Background()
	sd, err := memory.New(ctx, storage.Options{SizeLimit: 100})
	if err != nil {
		t.Fatal(err)
	}
	d := sd.(*memory.Driver)
	want := func(used int64) {
		t.Helper()
		if got, limit := d.Usage(); got != used || limit != 100 {
			t.Fatalf("usage %d of %d, want %d of 100", got, limit, used)
		}
	}
	appendBytes := func(id string, off int64, b []byte) error {
		t.Helper()
		_, _, err := d.Append(ctx, storage.Upload{ID: id}, off, bytes.NewReader(b))
		return err
	}
	a := bytes.Repeat([]byte("a"), 60)
	if err := appendBytes("u1", 0, a[:40]); err != nil {
		t.Fatal(err)
	}
	want(40)
	// The last 10 bytes were never recorded: the next append rewrites them.
	if err := appendBytes("u1", 30, a[30:60]); err != nil {
		t.Fatal(err)
	}
	want(60)
	if err := d.Commit(ctx, storage.Upload{ID: "u1"}, digest.FromBytes(a), 60); err != nil {
		t.Fatal(err)
	}
	want(60)
	// The same content again: the upload's bytes go, the blob stays.
	if err := appendBytes("u2", 0, a); err == nil || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("an append past the limit: %v, want ENOSPC", err)
	}
	want(60)
	if err := appendBytes("u2", 0, a[:30]); err != nil {
		t.Fatal(err)
	}
	want(90)
	if err := d.Commit(ctx, storage.Upload{ID: "u2"}, digest.FromBytes(a[:30]), 30); err != nil {
		t.Fatal(err)
	}
	if err := appendBytes("u3", 0, a[:10]); err != nil {
		t.Fatal(err)
	}
	want(100)
	if err := d.Abort(ctx, storage.Upload{ID: "u3"}); err != nil {
		t.Fatal(err)
	}
	want(90)
	if err := d.Delete(ctx, digest.FromBytes(a)); err != nil {
		t.Fatal(err)
	}
	want(30)
	if err := appendBytes("u4", 0, a); err != nil {
		t.Fatalf("an append into the freed space: %v", err)
	}
	want(90)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	want(0)
}

// Concurrent appends together never take the driver past its limit.
func TestSizeLimitUnderConcurrentAppends(t *testing.T) {
	ctx := context.Background()
	const limit = 1 << 20
	sd, err := memory.New(ctx, storage.Options{SizeLimit: limit})
	if err != nil {
		t.Fatal(err)
	}
	d := sd.(*memory.Driver)
	var wg sync.WaitGroup
	var accepted atomic.Int64
	for i := range 16 {
		wg.Go(func() {
			n, _, _ := d.Append(ctx, storage.Upload{ID: fmt.Sprintf("u%d", i)}, 0, bytes.NewReader(make([]byte, 256<<10)))
			accepted.Add(n)
		})
	}
	wg.Wait()
	used, _ := d.Usage()
	if used > limit || used != accepted.Load() {
		t.Errorf("usage %d after appends that kept %d bytes, limit %d", used, accepted.Load(), limit)
	}
	if used < limit/2 {
		t.Errorf("usage %d: the appends stopped far below the limit %d", used, limit)
	}
}

// An append that runs past the limit keeps nothing, not even the part
// that fitted, so the room is everyone's again at once; a retry at the
// same offset is charged once.
func TestSizeLimitRefusedChunkKeepsNothing(t *testing.T) {
	ctx := context.Background()
	sd, err := memory.New(ctx, storage.Options{SizeLimit: 100})
	if err != nil {
		t.Fatal(err)
	}
	d := sd.(*memory.Driver)
	// 10-byte reads: 100 bytes fit before the refusal.
	n, _, err := d.Append(ctx, storage.Upload{ID: "u"}, 0, iotest.OneByteReader(bytes.NewReader(make([]byte, 150))))
	if !errors.Is(err, syscall.ENOSPC) || n != 0 {
		t.Fatalf("append past the limit: %d, %v; want 0, ENOSPC", n, err)
	}
	if used, _ := d.Usage(); used != 0 {
		t.Fatalf("usage after a refused chunk: %d, want 0", used)
	}
	if _, _, err := d.Append(ctx, storage.Upload{ID: "other"}, 0, bytes.NewReader(make([]byte, 60))); err != nil {
		t.Fatalf("another upload after the refusal: %v", err)
	}
	if _, _, err := d.Append(ctx, storage.Upload{ID: "u"}, 0, bytes.NewReader(make([]byte, 30))); err != nil {
		t.Fatal(err)
	}
	// Rewriting the same 30 bytes (unrecorded) costs nothing more.
	if _, _, err := d.Append(ctx, storage.Upload{ID: "u"}, 0, bytes.NewReader(make([]byte, 40))); err != nil {
		t.Fatalf("a retry at the same offset: %v", err)
	}
	if used, _ := d.Usage(); used != 100 {
		t.Errorf("usage %d, want 100", used)
	}
}
