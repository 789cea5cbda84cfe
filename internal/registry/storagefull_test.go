package registry_test

import (
	"context"
	"io"
	"io/fs"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/filesystem"
)

// failingWrites is the filesystem driver whose appends fail as the disk
// under it does, naming a path the way the OS does.
type failingWrites struct {
	*filesystem.Driver
	errno syscall.Errno
}

func (f failingWrites) Append(ctx context.Context, u storage.Upload, offset int64, r io.Reader) (int64, []byte, error) {
	_, _ = io.CopyN(io.Discard, r, 10)
	return 0, nil, &fs.PathError{Op: "write", Path: "/srv/secret/storage/uploads/" + u.ID, Err: f.errno}
}

// A full disk and a volume at its quota answer 507 DENIED saying the
// storage is full; another write failure is a 500; neither names a path.
func TestStorageFullAndWriteFailures(t *testing.T) {
	for _, tc := range []struct {
		errno  syscall.Errno
		status int
		code   string
	}{
		{syscall.ENOSPC, 507, "DENIED"},
		{syscall.EDQUOT, 507, "DENIED"},
		{syscall.EIO, 500, "INTERNAL_ERROR"},
	} {
		t.Run(tc.errno.Error(), func(t *testing.T) {
			meta, blobs, _ := newParts(t)
			srv := serveRegistry(t, registry.Options{Metadata: meta, Blobs: failingWrites{blobs, tc.errno}})
			content := []byte("a layer that does not fit")
			mono := do(t, srv, call{method: "POST", path: "/v2/p/app/blobs/uploads/?digest=" + digest.FromBytes(content).String(), body: content})
			start := do(t, srv, call{method: "POST", path: "/v2/p/app/blobs/uploads/"})
			chunk := do(t, srv, call{method: "PATCH", path: start.header.Get("Location"), body: content})
			for name, r := range map[string]response{"monolithic push": mono, "chunk": chunk} {
				if r.status != tc.status || r.errorCode() != tc.code || strings.Contains(string(r.body), "/srv/secret") {
					t.Errorf("%s: %d %s, want %d %s naming no path", name, r.status, r.body, tc.status, tc.code)
				}
				if tc.status == 507 && !strings.Contains(string(r.body), "storage is full") {
					t.Errorf("%s: %s, want it to say the storage is full", name, r.body)
				}
			}
		})
	}
}

// keepsLess is a driver that reads every byte but keeps (and says it
// kept) ten fewer: a broken driver, which must not leave a session whose
// hash covers bytes it does not hold.
type keepsLess struct{ *filesystem.Driver }

func (k keepsLess) Append(ctx context.Context, u storage.Upload, offset int64, r io.Reader) (int64, []byte, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return 0, nil, err
	}
	n, state, err := k.Driver.Append(ctx, u, offset, strings.NewReader(string(b[:len(b)-10])))
	return n, state, err
}

// A driver that kept a different number of bytes than it read ends the
// push with a 500 (and the session): the digest checked would not be
// that of the bytes kept.
func TestDriverKeepingOtherBytes(t *testing.T) {
	meta, blobs, _ := newParts(t)
	srv := serveRegistry(t, registry.Options{Metadata: meta, Blobs: keepsLess{blobs}})
	content := []byte("a layer of some forty bytes, more or less")
	mono := do(t, srv, call{method: "POST", path: "/v2/p/app/blobs/uploads/?digest=" + digest.FromBytes(content).String(), body: content})
	if mono.status != 500 || mono.errorCode() != "INTERNAL_ERROR" {
		t.Errorf("monolithic push: %d %s", mono.status, mono.body)
	}
	start := do(t, srv, call{method: "POST", path: "/v2/p/app/blobs/uploads/"})
	chunk := do(t, srv, call{method: "PATCH", path: start.header.Get("Location"), body: content})
	if chunk.status != 500 || chunk.errorCode() != "INTERNAL_ERROR" {
		t.Errorf("chunk: %d %s", chunk.status, chunk.body)
	}
	status := do(t, srv, call{method: "GET", path: start.header.Get("Location")})
	if status.status != 404 {
		t.Errorf("the session after the broken append: %d, want 404 (ended)", status.status)
	}
	if head := do(t, srv, call{method: "HEAD", path: "/v2/p/app/blobs/" + digest.FromBytes(content).String()}); head.status != 404 {
		t.Errorf("the blob exists: %d", head.status)
	}
}
