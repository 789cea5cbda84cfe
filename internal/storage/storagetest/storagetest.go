// Package storagetest is the conformance suite every blob driver runs.
package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
)

// Run runs the suite against drivers made by newDriver, a fresh one per test.
func Run(t *testing.T, newDriver func(t *testing.T) storage.Driver) {
	tests := []struct {
		name string
		fn   func(t *testing.T, d storage.Driver)
	}{
		{"AppendCommitOpen", testAppendCommitOpen},
		{"ChunkedAppend", testChunkedAppend},
		{"AppendAtWrongOffset", testAppendAtWrongOffset},
		{"AppendDropsUnrecordedBytes", testAppendDropsUnrecordedBytes},
		{"AppendFromTheRecordedState", testAppendFromTheRecordedState},
		{"CommitChecksSize", testCommitChecksSize},
		{"CommitExistingContent", testCommitExistingContent},
		{"CommitAgainAfterPublish", testCommitAgainAfterPublish},
		{"EmptyBlob", testEmptyBlob},
		{"ReadUpload", testReadUpload},
		{"Abort", testAbort},
		{"AbortWithoutState", testAbortWithoutState},
		{"OpenMissing", testOpenMissing},
		{"Delete", testDelete},
		{"ConcurrentCommitsOfOneDigest", testConcurrentCommits},
		{"Seek", testSeek},
		{"Ranges", testRanges},
		{"LargeContent", testLargeContent},
		{"Health", testHealth},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newDriver(t)) })
	}
}

// RandomBytes is n random bytes.
func RandomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

var idCounter struct {
	sync.Mutex
	n int
}

func newID() string {
	idCounter.Lock()
	defer idCounter.Unlock()
	idCounter.n++
	return fmt.Sprintf("upload%06d", idCounter.n)
}

func ingest(t *testing.T, d storage.Driver, content []byte) digest.Digest {
	t.Helper()
	ctx := context.Background()
	up := newSession(d)
	if n, err := up.append(ctx, 0, bytes.NewReader(content)); err != nil || n != int64(len(content)) {
		t.Fatalf("Append = %d, %v; want %d, nil", n, err, len(content))
	}
	dgst := digest.FromBytes(content)
	if err := up.commit(ctx, dgst, int64(len(content))); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return dgst
}

// ReadBlob is all of blob dgst, read with one Open.
func ReadBlob(t testing.TB, d storage.Provider, dgst digest.Digest) []byte {
	t.Helper()
	rc, err := d.Open(context.Background(), dgst, 0, -1)
	if err != nil {
		t.Fatalf("Open %s: %v", dgst, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", dgst, err)
	}
	return b
}

func testAppendCommitOpen(t *testing.T, d storage.Driver) {
	content := RandomBytes(t, 3<<20+17)
	dgst := ingest(t, d, content)
	if got := ReadBlob(t, d, dgst); !bytes.Equal(got, content) {
		t.Fatalf("content differs: got %d bytes, want %d", len(got), len(content))
	}
}

func testChunkedAppend(t *testing.T, d storage.Driver) {
	ctx := context.Background()
	content := RandomBytes(t, 100_000)
	up := newSession(d)
	var off int64
	for _, end := range []int{1, 4096, 50_000, 100_000} {
		n, err := up.append(ctx, off, bytes.NewReader(content[off:end]))
		if err != nil {
			t.Fatalf("Append at %d: %v", off, err)
		}
		off += n
	}
	dgst := digest.FromBytes(content)
	if err := up.commit(ctx, dgst, off); err != nil {
		t.Fatal(err)
	}
	if got := ReadBlob(t, d, dgst); !bytes.Equal(got, content) {
		t.Fatal("chunked content differs")
	}
}

func testAppendAtWrongOffset(t *testing.T, d storage.Driver) {
	ctx := context.Background()
	up := newSession(d)
	if _, err := up.append(ctx, 0, strings.NewReader("abc")); err != nil {
		t.Fatal(err)
	}
	_, err := up.append(ctx, 10, strings.NewReader("def"))
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("Append past the end = %v, want ErrInvalidArgument", err)
	}
}

func testAppendDropsUnrecordedBytes(t *testing.T, d storage.Driver) {
	ctx := context.Background()
	up := newSession(d)
	if _, err := up.append(ctx, 0, strings.NewReader("hello, garbage")); err != nil {
		t.Fatal(err)
	}
	// The caller recorded only 7 bytes (say it crashed after the write).
	if _, err := up.append(ctx, 7, strings.NewReader("world")); err != nil {
		t.Fatal(err)
	}
	want := []byte("hello, world")
	dgst := digest.FromBytes(want)
	if err := up.commit(ctx, dgst, int64(len(want))); err != nil {
		t.Fatal(err)
	}
	if got := ReadBlob(t, d, dgst); !bytes.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// testAppendFromTheRecordedState is a crash between an append and its
// record, as a driver with state sees it: the caller goes on from the
// size and the state it recorded before that append, and the bytes and
// state of the lost append are replaced, in the upload and in the blob.
func testAppendFromTheRecordedState(t *testing.T, d storage.Driver) {
	ctx := context.Background()
	up := newSession(d)
	first := RandomBytes(t, 300<<10)
	if _, err := up.append(ctx, 0, bytes.NewReader(first)); err != nil {
		t.Fatal(err)
	}
	recorded := up.u // the record the caller made
	if _, err := up.append(ctx, int64(len(first)), bytes.NewReader(RandomBytes(t, 200<<10))); err != nil {
		t.Fatal(err)
	}
	up.u = recorded // the second append was never recorded
	rest := RandomBytes(t, 100<<10)
	if _, err := up.append(ctx, int64(len(first)), bytes.NewReader(rest)); err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte{}, first...), rest...)
	dgst := digest.FromBytes(want)
	if err := up.commit(ctx, dgst, int64(len(want))); err != nil {
		t.Fatal(err)
	}
	if got := ReadBlob(t, d, dgst); !bytes.Equal(got, want) {
		t.Fatalf("the blob holds %d bytes, not the %d recorded ones", len(got), len(want))
	}
}

func testCommitChecksSize(t *testing.T, d storage.Driver) {
	ctx := context.Background()
	up := newSession(d)
	content := []byte("twelve bytes")
	if _, err := up.append(ctx, 0, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	dgst := digest.FromBytes(content)
	if err := up.commit(ctx, dgst, 13); !errors.Is(err, errdefs.ErrSizeMismatch) {
		t.Fatalf("Commit with wrong size = %v, want ErrSizeMismatch", err)
	}
	if _, err := d.Open(ctx, dgst, 0, -1); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("blob visible after failed commit: %v", err)
	}
	if err := up.commit(ctx, dgst, 12); err != nil {
		t.Fatalf("upload unusable after a failed commit: %v", err)
	}
}

func testCommitExistingContent(t *testing.T, d storage.Driver) {
	content := RandomBytes(t, 1000)
	dgst := ingest(t, d, content)
	dgst2 := ingest(t, d, content)
	if dgst != dgst2 {
		t.Fatal("digests differ")
	}
	if got := ReadBlob(t, d, dgst); !bytes.Equal(got, content) {
		t.Fatal("content differs after second commit")
	}
}

// testCommitAgainAfterPublish: a crash after a commit published the blob
// but before the caller recorded it makes the caller commit again; the
// upload's bytes are gone by then and the commit must still succeed.
func testCommitAgainAfterPublish(t *testing.T, d storage.Driver) {
	ctx := context.Background()
	content := RandomBytes(t, 4096)
	up := newSession(d)
	if _, err := up.append(ctx, 0, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	dgst := digest.FromBytes(content)
	for i := range 2 {
		if err := up.commit(ctx, dgst, int64(len(content))); err != nil {
			t.Fatalf("commit %d: %v", i+1, err)
		}
	}
	if got := ReadBlob(t, d, dgst); !bytes.Equal(got, content) {
		t.Fatal("content differs")
	}
}

func testEmptyBlob(t *testing.T, d storage.Driver) {
	ctx := context.Background()
	up := newSession(d)
	dgst := digest.FromBytes(nil)
	if err := up.commit(ctx, dgst, 0); err != nil {
		t.Fatalf("commit empty upload without Append: %v", err)
	}
	if got := ReadBlob(t, d, dgst); len(got) != 0 {
		t.Fatalf("empty blob has %d bytes", len(got))
	}
}

func testReadUpload(t *testing.T, d storage.Driver) {
	ctx := context.Background()
	up := newSession(d)
	rc, err := up.read(ctx)
	if err != nil {
		t.Fatalf("ReadUpload of a fresh id: %v", err)
	}
	if b, _ := io.ReadAll(rc); len(b) != 0 {
		t.Fatalf("fresh upload has %d bytes", len(b))
	}
	rc.Close()
	if _, err := up.append(ctx, 0, strings.NewReader("partial")); err != nil {
		t.Fatal(err)
	}
	rc, err = up.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, _ := io.ReadAll(rc); string(b) != "partial" {
		t.Fatalf("ReadUpload = %q", b)
	}
}

func testAbort(t *testing.T, d storage.Driver) {
	ctx := context.Background()
	up := newSession(d)
	if _, err := up.append(ctx, 0, strings.NewReader("doomed")); err != nil {
		t.Fatal(err)
	}
	if err := up.abort(ctx); err != nil {
		t.Fatal(err)
	}
	if err := up.abort(ctx); err != nil {
		t.Fatalf("second Abort: %v", err)
	}
	if err := up.commit(ctx, digest.FromString("doomed"), 6); !errors.Is(err, errdefs.ErrSizeMismatch) {
		t.Fatalf("Commit after Abort = %v, want ErrSizeMismatch (upload is empty)", err)
	}
}

// testAbortWithoutState: a caller that lost an upload's state (it ended
// with a crash, or with a project deleted by another path) still has its
// bytes discarded by ID.
func testAbortWithoutState(t *testing.T, d storage.Driver) {
	ctx := context.Background()
	up := newSession(d)
	if _, err := up.append(ctx, 0, bytes.NewReader(RandomBytes(t, 64<<10))); err != nil {
		t.Fatal(err)
	}
	if err := d.Abort(ctx, storage.Upload{ID: up.u.ID}); err != nil {
		t.Fatal(err)
	}
	fresh := storage.Upload{ID: up.u.ID}
	n, state, err := d.Append(ctx, fresh, 0, strings.NewReader("again"))
	if err != nil || n != 5 {
		t.Fatalf("the ID started anew after the abort: %d, %v", n, err)
	}
	fresh.State = state
	rc, err := d.ReadUpload(ctx, fresh)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got, _ := io.ReadAll(rc); string(got) != "again" {
		t.Errorf("after an abort without state the upload holds %q, want only the new bytes", got)
	}
}

func testOpenMissing(t *testing.T, d storage.Driver) {
	if _, err := d.Open(context.Background(), digest.FromString("never stored"), 0, -1); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Open missing = %v, want ErrNotFound", err)
	}
}

func testDelete(t *testing.T, d storage.Driver) {
	ctx := context.Background()
	dgst := ingest(t, d, []byte("to delete"))
	if err := d.Delete(ctx, dgst); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Open(ctx, dgst, 0, -1); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Open after Delete = %v", err)
	}
	if err := d.Delete(ctx, dgst); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("second Delete = %v, want ErrNotFound", err)
	}
}

func testConcurrentCommits(t *testing.T, d storage.Driver) {
	content := RandomBytes(t, 256<<10)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			up := newSession(d)
			if _, err := up.append(ctx, 0, bytes.NewReader(content)); err != nil {
				t.Error(err)
				return
			}
			if err := up.commit(ctx, digest.FromBytes(content), int64(len(content))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := ReadBlob(t, d, digest.FromBytes(content)); !bytes.Equal(got, content) {
		t.Fatal("content differs after concurrent commits")
	}
}

func testSeek(t *testing.T, d storage.Driver) {
	content := []byte("0123456789")
	dgst := ingest(t, d, content)
	for name, p := range providers(d) {
		rc, err := storage.OpenReadSeeker(context.Background(), p, dgst, int64(len(content)), 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rc.Seek(4, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 3)
		if _, err := io.ReadFull(rc, b); err != nil || string(b) != "456" {
			t.Errorf("%s: read after seek = %q, %v", name, b, err)
		}
		rc.Close()
	}
}

// providers are the ways the registry reads d: as it is, and through
// ranged opens only (as of a driver that is no Seeker).
func providers(d storage.Driver) map[string]storage.Provider {
	return map[string]storage.Provider{"the driver": d, "ranged opens": rangesOnly{d}}
}

// rangesOnly hides every capability of a Provider but Open.
type rangesOnly struct{ p storage.Provider }

func (r rangesOnly) Open(ctx context.Context, dgst digest.Digest, offset, length int64) (io.ReadCloser, error) {
	return r.p.Open(ctx, dgst, offset, length)
}

// testRanges reads ranges with Open: from an offset to the end, a length
// from an offset, nothing at the end; past the end is an invalid argument.
func testRanges(t *testing.T, d storage.Driver) {
	ctx := context.Background()
	content := RandomBytes(t, 1<<20+7)
	dgst := ingest(t, d, content)
	size := int64(len(content))
	for _, r := range []struct{ offset, length int64 }{
		{0, -1}, {0, size}, {1, -1}, {1 << 19, 100}, {size - 1, -1}, {size - 3, 3}, {size, -1}, {size, 0}, {10, 0},
	} {
		rc, err := d.Open(ctx, dgst, r.offset, r.length)
		if err != nil {
			t.Fatalf("Open(%d, %d): %v", r.offset, r.length, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		end := size
		if r.length >= 0 {
			end = r.offset + r.length
		}
		if err != nil || !bytes.Equal(got, content[r.offset:end]) {
			t.Errorf("Open(%d, %d): %d bytes, %v; want %d", r.offset, r.length, len(got), err, end-r.offset)
		}
	}
	if _, err := d.Open(ctx, dgst, size+1, -1); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Open past the end: %v, want ErrInvalidArgument", err)
	}
	// Through ranged opens, a seek back and a read across the end.
	rc, err := storage.OpenReadSeeker(ctx, rangesOnly{d}, dgst, size, size-10)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	for _, at := range []int64{size - 10, 5, 1 << 19} {
		if _, err := rc.Seek(at, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(io.LimitReader(rc, 20))
		if want := content[at:min(at+20, size)]; err != nil || !bytes.Equal(got, want) {
			t.Errorf("ranged read at %d: %d bytes, %v", at, len(got), err)
		}
	}
	// A blob missing from the storage shows at open when probed.
	if _, err := storage.OpenReadSeeker(ctx, rangesOnly{d}, digest.FromString("never stored"), 10, 0); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("probing a missing blob: %v, want ErrNotFound", err)
	}
}

// testLargeContent writes a few MiB in uneven chunks, drops an unrecorded
// tail in the middle of it, and reads ranges at many offsets: drivers that
// keep content in pieces (pages, segments, parts) must join them right.
func testLargeContent(t *testing.T, d storage.Driver) {
	ctx := context.Background()
	content := RandomBytes(t, 5<<20+321)
	up := newSession(d)
	var off int64
	for _, end := range []int{7, 70_000, 1 << 20, 3<<20 + 5} {
		n, err := up.append(ctx, off, bytes.NewReader(content[off:end]))
		if err != nil {
			t.Fatalf("Append at %d: %v", off, err)
		}
		off += n
	}
	// Bytes past what the caller recorded (1 MiB + 11) are replaced.
	off = 1<<20 + 11
	if _, err := up.append(ctx, off, bytes.NewReader(content[off:])); err != nil {
		t.Fatal(err)
	}
	dgst := digest.FromBytes(content)
	if err := up.commit(ctx, dgst, int64(len(content))); err != nil {
		t.Fatal(err)
	}
	if got := ReadBlob(t, d, dgst); !bytes.Equal(got, content) {
		t.Fatal("large content differs")
	}
	rc, err := storage.OpenReadSeeker(ctx, d, dgst, int64(len(content)), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	for _, at := range []int64{0, 1, 16<<10 - 1, 16 << 10, 48<<10 + 3, 1<<20 + 10, 4<<20 - 2, int64(len(content)) - 5} {
		if _, err := rc.Seek(at, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		want := content[at:min(at+100_000, int64(len(content)))]
		got := make([]byte, len(want))
		if _, err := io.ReadFull(rc, got); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read at %d: %v, content differs %v", at, err, !bytes.Equal(got, want))
		}
	}
	if end, err := rc.Seek(0, io.SeekEnd); err != nil || end != int64(len(content)) {
		t.Fatalf("Seek to the end = %d, %v", end, err)
	}
}

// testHealth: a driver that checks its health is healthy when new and
// after use, and the check leaves no content behind.
func testHealth(t *testing.T, d storage.Driver) {
	hc, ok := d.(storage.HealthChecker)
	if !ok {
		t.Skip("the driver does not check its health")
	}
	ctx := context.Background()
	if err := hc.Health(ctx); err != nil {
		t.Fatalf("a new driver is unhealthy: %v", err)
	}
	dgst := ingest(t, d, []byte("health"))
	if err := hc.Health(ctx); err != nil {
		t.Fatalf("unhealthy after a commit: %v", err)
	}
	if got := ReadBlob(t, d, dgst); string(got) != "health" {
		t.Fatalf("the blob after a health check: %q", got)
	}
}

// session drives one upload as the registry does: it keeps the state
// each Append returns and passes it back with every later call.
type session struct {
	d storage.Driver
	u storage.Upload
}

func newSession(d storage.Driver) *session {
	return &session{d: d, u: storage.Upload{ID: newID()}}
}

func (s *session) append(ctx context.Context, offset int64, r io.Reader) (int64, error) {
	n, state, err := s.d.Append(ctx, s.u, offset, r)
	if err == nil || n > 0 {
		s.u.State = state
	}
	return n, err
}

func (s *session) commit(ctx context.Context, dgst digest.Digest, size int64) error {
	return s.d.Commit(ctx, s.u, dgst, size)
}

func (s *session) abort(ctx context.Context) error { return s.d.Abort(ctx, s.u) }

func (s *session) read(ctx context.Context) (io.ReadCloser, error) { return s.d.ReadUpload(ctx, s.u) }

// AppendChunks appends content to u in chunks of the given sizes, keeping
// the state as the registry does, and returns u with its last state.
func AppendChunks(t testing.TB, d storage.Driver, u storage.Upload, content []byte, chunks ...int) storage.Upload {
	t.Helper()
	var off int64
	for _, c := range chunks {
		n, st, err := d.Append(context.Background(), u, off, bytes.NewReader(content[off:off+int64(c)]))
		if err != nil || n != int64(c) {
			t.Fatalf("Append at %d: %d, %v", off, n, err)
		}
		u.State = st
		off += n
	}
	return u
}

// HangingUp yields r's bytes, then fails with err instead of io.EOF, as a
// client that hangs up mid-body does.
func HangingUp(r io.Reader, err error) io.Reader { return &hangingUp{r: r, err: err} }

type hangingUp struct {
	r   io.Reader
	err error
}

func (h *hangingUp) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if err == io.EOF {
		return n, h.err
	}
	return n, err
}
