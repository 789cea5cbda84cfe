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
