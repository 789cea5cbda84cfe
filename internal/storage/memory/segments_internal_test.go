package memory

import (
	"bytes"
	"runtime"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/storagetest"
)

// The process-memory fallback passes the driver suite on its own.
func TestSegmentsSuite(t *testing.T) {
	storagetest.Run(t, func(*testing.T) storage.Driver {
		d := NewDriver()
		d.newContent = func() content { return &segments{} }
		return d
	})
}

// On Linux content lives in memfds, and a blob read while it is deleted
// keeps its bytes for the reader.
func TestMemfdContent(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("memfds are Linux only")
	}
	d := NewDriver()
	if _, ok := d.newContent().(*memfd); !ok {
		t.Fatal("content is not a memfd on Linux")
	}
	ctx := t.Context()
	content := []byte("read while deleted")
	if _, _, err := d.Append(ctx, storage.Upload{ID: "u1"}, 0, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	dgst := digest.FromBytes(content)
	if err := d.Commit(ctx, storage.Upload{ID: "u1"}, dgst, int64(len(content))); err != nil {
		t.Fatal(err)
	}
	rc, err := d.OpenSeeker(ctx, dgst)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := d.Delete(ctx, dgst); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(content))
	if _, err := rc.Read(got); err != nil || string(got) != string(content) {
		t.Fatalf("reader after delete: %q, %v", got, err)
	}
	if _, err := d.OpenSeeker(ctx, dgst); err == nil {
		t.Fatal("deleted blob opens")
	}
}
