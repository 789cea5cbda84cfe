// Package filesystem is the blob driver for a local directory. Blobs live
// at blobs/<algorithm>/<first two hex>/<hex>; uploads at uploads/<id>, on the
// same file system so that a commit is one rename.
package filesystem

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
)

// Blobs and uploads are their user's alone: a registry's content may be
// private images. (The umask can only take bits away from these.)
const (
	fileMode = 0o600
	dirMode  = 0o700
)

// Driver stores blobs under a root directory.
type Driver struct {
	root string
	// dirs remembers blob prefix directories known to exist and be durable,
	// so a commit creates and syncs each one once.
	dirs sync.Map
	// epoch is this boot of the machine (see Epoch).
	epoch string
}

// New opens (creating if needed) the store at opts.Root, or else under
// opts.DataDir.
func New(_ context.Context, opts storage.Options) (storage.Driver, error) {
	if opts.Root != "" {
		return Open(opts.Root)
	}
	if opts.DataDir == "" {
		return nil, fmt.Errorf("filesystem driver needs a data directory")
	}
	return Open(filepath.Join(opts.DataDir, "storage"))
}

// Open returns a driver rooted at root.
func Open(root string) (*Driver, error) {
	for _, dir := range []string{root, filepath.Join(root, "blobs"), filepath.Join(root, "uploads")} {
		if err := os.MkdirAll(dir, dirMode); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
	}
	d := &Driver{root: root, epoch: bootEpoch()}
	if err := d.prepareDirs(digest.SHA256); err != nil {
		return nil, err
	}
	return d, nil
}

// prepareDirs creates the 256 prefix directories of alg's blobs at once,
// with one sync, so that no commit creates and syncs one on its way.
func (d *Driver) prepareDirs(alg digest.Algorithm) error {
	top := filepath.Join(d.root, "blobs", string(alg))
	if err := os.MkdirAll(top, dirMode); err != nil {
		return fmt.Errorf("create %s: %w", top, err)
	}
	created := false
	for i := range 256 {
		dir := filepath.Join(top, fmt.Sprintf("%02x", i))
		err := os.Mkdir(dir, dirMode)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		created = created || err == nil
	}
	if created {
		if err := syncDir(top); err != nil {
			return err
		}
		if err := syncDir(filepath.Dir(top)); err != nil {
			return err
		}
	}
	for i := range 256 {
		d.dirs.Store(filepath.Join(top, fmt.Sprintf("%02x", i)), struct{}{})
	}
	return nil
}

// Epoch implements storage.Volatile: appended bytes reach the disk at
// Commit, so until then they survive Berth's crash (they are in the page
// cache) but not the machine's. The epoch is the kernel's boot id.
func (d *Driver) Epoch() string { return d.epoch }

// blobPath validates dgst before it becomes a path.
func (d *Driver) blobPath(dgst digest.Digest) (string, error) {
	if err := dgst.Validate(); err != nil {
		return "", fmt.Errorf("blob path for %q: %w: %v", dgst, errdefs.ErrInvalidArgument, err)
	}
	hex := dgst.Encoded()
	return filepath.Join(d.root, "blobs", string(dgst.Algorithm()), hex[:2], hex), nil
}

func (d *Driver) uploadPath(id string) (string, error) {
	if !validUploadID(id) {
		return "", fmt.Errorf("upload id %q: %w", id, errdefs.ErrInvalidArgument)
	}
	return filepath.Join(d.root, "uploads", id), nil
}

func validUploadID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// Open implements storage.Provider.
func (d *Driver) Open(ctx context.Context, dgst digest.Digest, offset, length int64) (io.ReadCloser, error) {
	return storage.OpenSection(ctx, d, dgst, offset, length)
}

// OpenSeeker implements storage.Seeker. The *os.File it returns lets
// net/http send the content with sendfile.
func (d *Driver) OpenSeeker(_ context.Context, dgst digest.Digest) (io.ReadSeekCloser, error) {
	p, err := d.blobPath(dgst)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open blob %s: %w", dgst, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", dgst, err)
	}
	return f, nil
}

// Append implements storage.Ingester. The driver keeps no state about
// an upload: its content holds all it needs.
func (d *Driver) Append(_ context.Context, u storage.Upload, offset int64, r io.Reader) (int64, []byte, error) {
	id := u.ID
	p, err := d.uploadPath(id)
	if err != nil {
		return 0, nil, err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, fileMode)
	if err != nil {
		return 0, nil, fmt.Errorf("open upload %s: %w", id, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, nil, fmt.Errorf("stat upload %s: %w", id, err)
	}
	switch {
	case st.Size() < offset:
		return 0, nil, fmt.Errorf("upload %s holds %d bytes, expected %d: %w", id, st.Size(), offset, errdefs.ErrInvalidArgument)
	case st.Size() > offset:
		if err := f.Truncate(offset); err != nil {
			return 0, nil, fmt.Errorf("truncate upload %s: %w", id, err)
		}
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return 0, nil, fmt.Errorf("seek upload %s: %w", id, err)
	}
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	n, err := io.CopyBuffer(&flushingWriter{f: f, off: offset, flushed: offset}, r, *buf)
	if err != nil {
		return n, nil, fmt.Errorf("write upload %s: %w", id, err)
	}
	// No sync: Commit syncs once, before the blob becomes visible. Until
	// then the bytes outlive a crash of Berth but not of the machine, and
	// the caller checks a session last written in another epoch.
	return n, nil, nil
}

// writebackEvery is how much an upload writes before asking the kernel to
// start flushing it.
const writebackEvery = 8 << 20

// flushingWriter writes an upload and starts writeback as it goes. It also
// hides *os.File's ReadFrom so io.CopyBuffer uses our large buffer.
type flushingWriter struct {
	f            *os.File
	off, flushed int64
}

func (w *flushingWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if w.off-w.flushed >= writebackEvery {
		startWriteback(w.f, w.flushed, w.off-w.flushed)
		w.flushed = w.off
	}
	return n, err
}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// ReadUpload implements storage.Ingester.
func (d *Driver) ReadUpload(_ context.Context, u storage.Upload) (io.ReadCloser, error) {
	id := u.ID
	p, err := d.uploadPath(id)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return io.NopCloser(bytes.NewReader(nil)), nil // nothing appended yet
	}
	if err != nil {
		return nil, fmt.Errorf("open upload %s: %w", id, err)
	}
	return f, nil
}

// Commit implements storage.Ingester: fsync the data, check the size,
// rename into place, fsync the directory.
func (d *Driver) Commit(_ context.Context, u storage.Upload, dgst digest.Digest, size int64) error {
	id := u.ID
	src, err := d.uploadPath(id)
	if err != nil {
		return err
	}
	dst, err := d.blobPath(dgst)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(dst); err == nil {
		// Content-addressed: identical bytes are already there. This is
		// also how a commit cut short by a crash after the rename finishes,
		// so the directory entry is made durable here too.
		if err := os.Remove(src); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("discard upload %s: %w", id, err)
		}
		if err := syncDir(filepath.Dir(dst)); err != nil {
			return fmt.Errorf("publish blob %s: %w", dgst, err)
		}
		return nil
	}
	flags := os.O_RDWR
	if size == 0 {
		flags |= os.O_CREATE // an empty blob may have had no Append
	}
	f, err := os.OpenFile(src, flags, fileMode)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("upload %s holds no bytes, blob %s declares %d: %w", id, dgst, size, errdefs.ErrSizeMismatch)
	}
	if err != nil {
		// Nothing was synced yet (too many open files, say): a retry may
		// well succeed, and the bytes are as good as before.
		return fmt.Errorf("open upload %s: %w: %w", id, errdefs.ErrUnavailable, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat upload %s: %w: %w", id, errdefs.ErrUnavailable, err)
	}
	if st.Size() != size {
		f.Close()
		return fmt.Errorf("upload %s holds %d bytes, blob %s declares %d: %w", id, st.Size(), dgst, size, errdefs.ErrSizeMismatch)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync upload %s: %w", id, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close upload %s: %w", id, err)
	}
	dir := filepath.Dir(dst)
	if err := d.ensureDir(dir); err != nil {
		return err
	}
	if err := os.Rename(src, dst); err != nil {
		return fmt.Errorf("publish blob %s: %w", dgst, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("publish blob %s: %w", dgst, err)
	}
	return nil
}

// ensureDir creates a blob prefix directory and makes its entry durable.
func (d *Driver) ensureDir(dir string) error {
	if _, ok := d.dirs.Load(dir); ok {
		return nil
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := syncDir(parent); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(parent)); err != nil {
		return err
	}
	d.dirs.Store(dir, struct{}{})
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// Abort implements storage.Ingester.
func (d *Driver) Abort(_ context.Context, u storage.Upload) error {
	id := u.ID
	p, err := d.uploadPath(id)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("abort upload %s: %w", id, err)
	}
	return nil
}

// Delete implements storage.Deleter.
func (d *Driver) Delete(_ context.Context, dgst digest.Digest) error {
	p, err := d.blobPath(dgst)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("delete blob %s: %w", dgst, errdefs.ErrNotFound)
		}
		return fmt.Errorf("delete blob %s: %w", dgst, err)
	}
	return nil
}

// Recover implements storage.Recoverer: uploads nobody records are removed.
func (d *Driver) Recover(_ context.Context, live func(id string) bool) error {
	dir := filepath.Join(d.root, "uploads")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list uploads: %w", err)
	}
	for _, e := range entries {
		if validUploadID(e.Name()) && live(e.Name()) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("remove stale upload %s: %w", e.Name(), err)
		}
	}
	return nil
}

// Health implements storage.HealthChecker: the blob directory can be
// read, and a file can be created (and removed) beside it. Root is not
// enough to judge from permission bits (root writes through them), so it
// tries.
func (d *Driver) Health(context.Context) error {
	if _, err := os.Stat(filepath.Join(d.root, "blobs")); err != nil {
		return fmt.Errorf("blob storage: %w", err)
	}
	f, err := os.CreateTemp(d.root, ".health-")
	if err != nil {
		return fmt.Errorf("blob storage is not writable: %w", err)
	}
	name := f.Name()
	err = f.Close()
	if rmErr := os.Remove(name); err == nil && rmErr != nil {
		err = rmErr
	}
	if err != nil {
		return fmt.Errorf("blob storage: %w", err)
	}
	return nil
}
