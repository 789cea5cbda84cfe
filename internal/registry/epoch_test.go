package registry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/registry/registrytest"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/filesystem"
)

// otherBoot is the filesystem driver as seen after the machine restarted:
// the same files, another epoch.
type otherBoot struct{ *filesystem.Driver }

func (otherBoot) Epoch() string { return "boot:after-the-power-cut" }

// Appended bytes are synced only at commit. A session whose last bytes were
// written before the machine restarted is read back before it continues:
// intact, it goes on; shortened or garbled (what a power cut can leave of
// unsynced bytes), it ends as a session that lost data, and nothing wrong
// is ever committed.
func TestSessionsAreCheckedAfterAMachineRestart(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
		want   int
	}{
		{"intact", func(*testing.T, string) {}, http.StatusCreated},
		{"shortened", func(t *testing.T, p string) {
			if err := os.Truncate(p, 3); err != nil {
				t.Fatal(err)
			}
		}, http.StatusNotFound},
		{"garbled", func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte{0}, 2); err != nil {
				t.Fatal(err)
			}
		}, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			meta, blobs, dir := newParts(t)
			before := serveRegistry(t, registry.Options{Metadata: meta, Blobs: blobs})
			after := serveRegistry(t, registry.Options{Metadata: meta, Blobs: otherBoot{blobs}})

			content := []byte("first half|second half")
			resp := send(t, "POST", before.URL+"/v2/p/app/blobs/uploads/", nil, nil)
			loc := resp.Header.Get("Location")
			resp = send(t, "PATCH", before.URL+loc, content[:10], map[string]string{"Content-Range": "0-9"})
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("first PATCH = %d", resp.StatusCode)
			}
			id := registrytest.SessionID(loc)
			tc.damage(t, filepath.Join(dir, "storage", "uploads", id))

			resp = send(t, "PATCH", after.URL+loc, content[10:], map[string]string{"Content-Range": "10-21"})
			if tc.want != http.StatusCreated {
				if resp.StatusCode != tc.want {
					t.Fatalf("PATCH after the restart = %d, want %d", resp.StatusCode, tc.want)
				}
				if r := send(t, "GET", after.URL+loc, nil, nil); r.StatusCode != http.StatusNotFound {
					t.Fatalf("the damaged session lives on: status %d", r.StatusCode)
				}
				return
			}
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("PATCH after the restart = %d, want 202", resp.StatusCode)
			}
			dgst := digest.FromBytes(content)
			if r := send(t, "PUT", registrytest.WithDigest(after.URL+loc, dgst.String()), nil, nil); r.StatusCode != tc.want {
				t.Fatalf("PUT = %d, want %d", r.StatusCode, tc.want)
			}
			rc, err := blobs.Open(context.Background(), dgst, 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if got, _ := io.ReadAll(rc); !bytes.Equal(got, content) {
				t.Fatalf("committed %q, want %q", got, content)
			}
		})
	}
}

func send(t *testing.T, method, url string, body []byte, header map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// failingSync is the filesystem driver on a disk that fails to write back.
type failingSync struct{ *filesystem.Driver }

func (failingSync) Commit(context.Context, storage.Upload, digest.Digest, int64) error {
	return errors.New("sync upload: input/output error")
}

// A commit that fails to make the bytes durable ends the session: they
// were checked as they streamed in, not as the disk kept them, and a sync
// reports a lost write once only, so a retry must not publish them.
func TestFailedCommitEndsTheSession(t *testing.T) {
	meta, blobs, _ := newParts(t)
	srv := httptest.NewServer(registry.New(registry.Options{Metadata: meta, Blobs: failingSync{blobs}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	content := []byte("kept badly")
	loc := send(t, "POST", srv.URL+"/v2/p/app/blobs/uploads/", nil, nil).Header.Get("Location")
	if r := send(t, "PATCH", srv.URL+loc, content, nil); r.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH = %d", r.StatusCode)
	}
	put := registrytest.WithDigest(srv.URL+loc, digest.FromBytes(content).String())
	if r := send(t, "PUT", put, nil, nil); r.StatusCode != http.StatusNotFound {
		t.Fatalf("PUT whose commit failed = %d, want 404 BLOB_UPLOAD_UNKNOWN", r.StatusCode)
	}
	if r := send(t, "PUT", put, nil, nil); r.StatusCode != http.StatusNotFound {
		t.Fatalf("a retried PUT = %d, want 404: the session ended", r.StatusCode)
	}
}

// busyDisk is the filesystem driver failing a commit before anything was
// made durable, once.
type busyDisk struct {
	*filesystem.Driver
	failed *bool
}

func (b busyDisk) Commit(ctx context.Context, u storage.Upload, dgst digest.Digest, size int64) error {
	if !*b.failed {
		*b.failed = true
		return fmt.Errorf("open upload %s: %w: too many open files", u.ID, errdefs.ErrUnavailable)
	}
	return b.Driver.Commit(ctx, u, dgst, size)
}

// A commit that failed before making anything durable keeps the session:
// the retried PUT finishes it.
func TestUnavailableCommitKeepsTheSession(t *testing.T) {
	meta, blobs, _ := newParts(t)
	srv := serveRegistry(t, registry.Options{Metadata: meta, Blobs: busyDisk{blobs, new(bool)}})
	content := []byte("kept for a retry")
	loc := send(t, "POST", srv.URL+"/v2/p/app/blobs/uploads/", nil, nil).Header.Get("Location")
	if r := send(t, "PATCH", srv.URL+loc, content, nil); r.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH = %d", r.StatusCode)
	}
	put := registrytest.WithDigest(srv.URL+loc, digest.FromBytes(content).String())
	if r := send(t, "PUT", put, nil, nil); r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Fatalf("PUT whose commit could not start = %d, want 503 with Retry-After", r.StatusCode)
	}
	if r := send(t, "PUT", put, nil, nil); r.StatusCode != http.StatusCreated {
		t.Fatalf("the retried PUT = %d, want 201", r.StatusCode)
	}
}
